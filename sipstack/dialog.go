package sipstack

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// ErrDialogEnded is returned when sending on a dialog that is over.
var ErrDialogEnded = errors.New("sipstack: dialog ended")

// Dialog is one long-lived UAS dialog with an RCC client. The gateway sends
// its events (INFO) and BYE on it; sipstack keeps its session timer.
type Dialog struct {
	s         *Server
	key       string
	callID    string
	localTag  string
	remoteTag string
	transport string
	source    string

	// Headers of our own requests, fixed at creation.
	localURI   sip.Uri        // the To URI of the INVITE: our From
	remoteFrom sip.FromHeader // the client's From with every parameter: our To
	routeSet   []string       // Record-Route values, in order (UAS route set)
	routeDest  string         // where requests go when routeSet is set
	// authIdentity is the digest account a direct client authenticated
	// as ("" for a dialog through a trusted proxy).
	authIdentity string
	contact      sip.ContactHeader

	cseq atomic.Uint32
	// cseqMark: when our CSeq reaches it, onMark runs (adopt.go).
	cseqMark atomic.Uint32

	mu           sync.Mutex
	remoteTarget sip.Uri // Contact of the last (re-)INVITE
	ended        bool
	established  bool
	inviteBusy   bool
	ackWait      chan struct{} // closed by the ACK of the pending 2xx
	expires      time.Duration
	uasRefresh   bool // the client has no session timer: we refresh (RFC 4028 §9)
	timer        *time.Timer
	owner        any
	onMark       func()
}

// ID identifies the dialog (Call-ID and both tags).
func (d *Dialog) ID() string { return d.key }

// CallID is the SIP Call-ID.
func (d *Dialog) CallID() string { return d.callID }

// Transport is udp, tcp or tls.
func (d *Dialog) Transport() string { return d.transport }

// Source is the remote address the dialog was created from.
func (d *Dialog) Source() string { return d.source }

// SessionExpires is the negotiated session interval.
func (d *Dialog) SessionExpires() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.expires
}

// SetOwner attaches the gateway's session to the dialog.
func (d *Dialog) SetOwner(v any) {
	d.mu.Lock()
	d.owner = v
	d.mu.Unlock()
}

// Owner returns what SetOwner attached.
func (d *Dialog) Owner() any {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.owner
}

// Ended reports whether the dialog is over.
func (d *Dialog) Ended() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ended
}

// DialogID is the ID of the dialog with these Call-ID and tags (ours
// local, the client's remote), as Dialog.ID gives it.
func DialogID(callID, localTag, remoteTag string) string {
	return dialogKey(callID, localTag, remoteTag)
}

func dialogKey(callID, localTag, remoteTag string) string {
	return callID + "\x00" + localTag + "\x00" + remoteTag
}

func newTag() string { return "gw-" + strconv.FormatUint(rand.Uint64(), 36) }

// armTimer (re)starts the session timer: RFC 4028 §10 has the side that is
// not the refresher send BYE shortly before expiry, SE − min(32 s, SE/3).
func (d *Dialog) armTimer() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ended {
		return
	}
	se := d.expires
	lead := se / 3
	if lead > 32*time.Second {
		lead = 32 * time.Second
	}
	wait := se - lead
	if d.uasRefresh {
		wait = se / 2 // the refresher refreshes at half the interval
	}
	if d.timer == nil {
		d.timer = time.AfterFunc(wait, d.expired)
		return
	}
	d.timer.Reset(wait)
}

// expired runs when the session interval is (nearly) over: the client
// did not refresh, or, when we are the refresher, it is our turn.
func (d *Dialog) expired() {
	d.mu.Lock()
	uas := d.uasRefresh
	d.mu.Unlock()
	if uas {
		go d.refresh()
		return
	}
	d.s.log.Info().Str("call_id", d.callID).Dur("session_expires", d.SessionExpires()).Msg("session not refreshed in time: ending it")
	d.Bye(EndExpired)
}

// refresh sends our UPDATE refresh. A 2xx starts a new interval; a client
// that does not do UPDATE (405, 501) keeps its session (it cannot be
// refreshed, and requests still flow); no answer, or 481/408, means the
// client is gone: the session ends.
func (d *Dialog) refresh() {
	req := d.newRequest(sip.UPDATE, nil)
	req.AppendHeader(sip.NewHeader("Supported", "timer"))
	req.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(d.SessionExpires()/time.Second))+";refresher=uas"))
	// The answer must come before the interval is over (half of it is
	// left): at most a quarter of it, and never past the transaction's
	// own 64·T1.
	ctx, cancel := context.WithTimeout(context.Background(), min(64*sip.T1, d.SessionExpires()/4))
	defer cancel()
	status := 0
	tx, err := d.s.client.TransactionRequest(ctx, req, sipgo.ClientRequestAddVia)
	if err == nil {
		defer tx.Terminate()
	wait:
		for {
			select {
			case res := <-tx.Responses():
				if !res.IsProvisional() {
					status = res.StatusCode
					break wait
				}
			case <-tx.Done():
				break wait
			case <-ctx.Done():
				break wait
			}
		}
	}
	switch {
	case status >= 200 && status < 300, status == 405, status == 501:
		d.armTimer()
	default:
		d.s.log.Info().Str("call_id", d.callID).Int("status", status).AnErr("error", err).Msg("our session refresh was not answered: ending the session")
		d.Bye(EndExpired)
	}
}

// end marks the dialog over (once) and tells the handler; it reports
// whether it ended an established dialog.
func (d *Dialog) end(reason EndReason) bool {
	d.mu.Lock()
	if d.ended {
		d.mu.Unlock()
		return false
	}
	d.ended = true
	if d.timer != nil {
		d.timer.Stop()
	}
	if d.ackWait != nil {
		close(d.ackWait)
		d.ackWait = nil
	}
	established := d.established
	d.mu.Unlock()
	d.s.dialogs.Delete(d.key)
	if established && d.transport != "udp" {
		d.s.conns.dropDialog(d.source)
	}
	if established {
		d.s.stats.dialogs.Add(-1)
		d.s.handler.Ended(d, reason)
	}
	return established
}

// newRequest builds an in-dialog request along the route set.
func (d *Dialog) newRequest(method sip.RequestMethod, body []byte) *sip.Request {
	d.mu.Lock()
	target := d.remoteTarget
	d.mu.Unlock()
	req := sip.NewRequest(method, *target.Clone())
	for _, r := range d.routeSet {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&maxFwd)
	from := sip.FromHeader{Address: *d.localURI.Clone(), Params: sip.NewParams()}
	from.Params.Add("tag", d.localTag)
	req.AppendHeader(&from)
	to := sip.ToHeader{DisplayName: d.remoteFrom.DisplayName, Address: *d.remoteFrom.Address.Clone(), Params: d.remoteFrom.Params.Clone()}
	req.AppendHeader(&to)
	cid := sip.CallIDHeader(d.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: d.nextCSeq(), MethodName: method})
	req.AppendHeader(d.contact.Clone())
	if body != nil {
		ct := sip.ContentTypeHeader(ContentTypeCSTA)
		req.AppendHeader(&ct)
		req.AppendHeader(sip.NewHeader("Content-Disposition", "signal;handling=required"))
	}
	req.SetBody(body)
	req.SetTransport(d.transport)
	if d.routeDest != "" {
		req.SetDestination(d.routeDest)
	} else {
		req.SetDestination(d.source)
	}
	return req
}

// SendInfo sends one CSTA document (an event) in an INFO and returns once it
// is written, without waiting for the answer: clients such as sipe never
// answer, and events must flow in order without waiting on each other. Call
// it from one goroutine per dialog to keep the order.
func (d *Dialog) SendInfo(body []byte) error {
	if d.Ended() {
		return ErrDialogEnded
	}
	req := d.newRequest(sip.INFO, body)
	if err := d.send(req); err != nil {
		d.s.stats.infoFailed.Add(1)
		return fmt.Errorf("sipstack: INFO to %s: %w", d.callID, err)
	}
	d.s.stats.infoSent.Add(1)
	return nil
}

// send writes an in-dialog request of ours. Over TCP and TLS it is written
// straight to the connection: the transport is reliable, the answer (if the
// client sends one at all) changes nothing, and a client transaction per
// event would cost a timer and a goroutine for 32 s with clients that never
// answer. Over UDP a client transaction retransmits it until answered.
func (d *Dialog) send(req *sip.Request) error {
	if d.transport != "udp" {
		return d.s.client.WriteRequest(req, sipgo.ClientRequestAddVia)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
	tx, err := d.s.client.TransactionRequest(ctx, req, sipgo.ClientRequestAddVia)
	if err != nil {
		cancel()
		return err
	}
	go reap(tx, cancel)
	return nil
}

// reap waits for a client transaction's final answer (or its end) so the
// transaction layer is never blocked on an unread response.
func reap(tx sip.ClientTransaction, cancel context.CancelFunc) {
	defer cancel()
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if !res.IsProvisional() {
				return
			}
		case <-tx.Done():
			return
		}
	}
}

// Bye ends the dialog from our side: it is forgotten at once (the handler is
// told with reason) and a BYE goes to the client in the background.
func (d *Dialog) Bye(reason EndReason) {
	if !d.end(reason) {
		return
	}
	if err := d.send(d.newRequest(sip.BYE, nil)); err != nil {
		d.s.log.Warn().Err(err).Str("call_id", d.callID).Msg("BYE could not be sent")
	}
}

// retransmit2xx resends a 2xx to an INVITE over UDP until the ACK comes
// (RFC 3261 §13.3.1.4): T1, doubling to T2, for 64·T1. Without an ACK the
// dialog is ended with BYE.
func (d *Dialog) retransmit2xx(tx sip.ServerTransaction, res *sip.Response, ack chan struct{}) {
	interval := sip.T1
	deadline := time.NewTimer(64 * sip.T1)
	defer deadline.Stop()
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ack:
			return
		case <-deadline.C:
			d.s.log.Warn().Str("call_id", d.callID).Msg("no ACK for our 200 OK: ending the dialog")
			d.Bye(EndNoAck)
			return
		case <-t.C:
			if err := tx.Respond(res); err != nil {
				d.s.log.Debug().Err(err).Str("call_id", d.callID).Msg("2xx retransmission failed")
			}
			interval *= 2
			if interval > sip.T2 {
				interval = sip.T2
			}
			t.Reset(interval)
		}
	}
}

// awaitAck ends a dialog whose 2xx was sent over a reliable transport and
// never acknowledged within 64·T1.
func (d *Dialog) awaitAck(ack chan struct{}) {
	t := time.NewTimer(64 * sip.T1)
	defer t.Stop()
	select {
	case <-ack:
	case <-t.C:
		d.s.log.Warn().Str("call_id", d.callID).Str("transport", d.transport).Msg("no ACK for our 200 OK: ending the dialog")
		d.Bye(EndNoAck)
	}
}

// Confirmed reports whether the client acknowledged the dialog's 2xx.
func (d *Dialog) Confirmed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.established && d.ackWait == nil
}

// acked stops the 2xx retransmission.
func (d *Dialog) acked() {
	d.mu.Lock()
	if d.ackWait != nil {
		close(d.ackWait)
		d.ackWait = nil
	}
	d.mu.Unlock()
}
