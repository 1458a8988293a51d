// Package sipstack is the gateway's SIP side, on sipgo: UDP, TCP and TLS
// listeners, the long-lived UAS dialogs RCC clients open, in-dialog requests
// both ways, session timers (RFC 4028), trust and body limits. It knows
// nothing of CTI: the gateway implements Handler.
package sipstack

import (
	"context"
	"time"

	"github.com/emiago/sipgo/sip"
)

// ContentTypeCSTA is the only body type the gateway takes and sends.
const ContentTypeCSTA = "application/csta+xml"

// Allowed is the Allow header value.
const Allowed = "INVITE, ACK, CANCEL, BYE, INFO, UPDATE, OPTIONS"

// Request is what a Handler is given of a SIP request that passed the
// transport-level checks (trust, size, content type).
type Request struct {
	Method string
	// Body is the CSTA document (the CSTA part of a multipart body); empty
	// for a bodiless UPDATE or re-INVITE.
	Body   []byte
	CallID string
	// Identity is the user the request speaks for: the P-Asserted-Identity
	// a trusted proxy added, else the From URI (scheme:user@host).
	Identity string
	// RequestUser is the user part of the Request-URI (a fallback line).
	RequestUser string
	Source      string // remote address
	Transport   string // udp, tcp, tls
	Raw         *sip.Request
	// Received is when the handler was given the request (unix ns), for
	// the gateway's latency histogram.
	Received int64
}

// Reply is a Handler's answer.
type Reply struct {
	Status int
	Reason string // empty: the standard phrase
	// Body, when set, is sent as application/csta+xml.
	Body []byte
	// RetryAfter adds a Retry-After header (503).
	RetryAfter time.Duration
	// End ends the dialog after this reply without sending BYE (a stale
	// session answered 481).
	End bool
	// Sent, when set, is called once the response has been handed to the
	// transport (or failed to be): the gateway holds back the events a
	// request caused until its response is on the wire.
	Sent func()
}

func (r Reply) sent() {
	if r.Sent != nil {
		r.Sent()
	}
}

// EndReason says why a dialog ended.
type EndReason int

const (
	EndClientBye  EndReason = iota // the client sent BYE
	EndGatewayBye                  // we sent BYE (Dialog.Bye)
	EndExpired                     // no refresh within Session-Expires
	EndCancelled                   // CANCEL before our 200
	EndNoAck                       // our 200 was never acknowledged
	EndStale                       // answered 481 with Reply.End
	EndShutdown                    // server closed
	EndHandedOff                   // another node serves it now (Dialog.Release)
)

var endNames = [...]string{"client_bye", "gateway_bye", "expired", "cancelled", "no_ack", "stale", "shutdown", "handed_off"}

func (r EndReason) String() string {
	if int(r) < len(endNames) {
		return endNames[r]
	}
	return "unknown"
}

// Handler is implemented by the gateway. Every call runs on the goroutine
// sipgo gave the request, must answer within ctx, and must not block on
// anything slower than the CTI round trip.
type Handler interface {
	// Invite handles an initial INVITE. A 2xx reply establishes d; any
	// other status rejects it (d is then never used again).
	Invite(ctx context.Context, d *Dialog, req *Request) Reply
	// InDialog handles INFO, re-INVITE and UPDATE on an established dialog.
	// The session timer has already been refreshed for re-INVITE/UPDATE.
	InDialog(ctx context.Context, d *Dialog, req *Request) Reply
	// Ended is told once that a dialog is over, whatever the cause.
	Ended(d *Dialog, reason EndReason)
}
