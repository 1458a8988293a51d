package sipstack

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"

	"github.com/cstagw/cstagw/csta"
)

// fakeTx is a server transaction that records what is answered.
type fakeTx struct {
	mu   sync.Mutex
	res  []*sip.Response
	done chan struct{}
}

func newFakeTx() *fakeTx                               { return &fakeTx{done: make(chan struct{})} }
func (t *fakeTx) Terminate()                           {}
func (t *fakeTx) OnTerminate(f sip.FnTxTerminate) bool { return true }
func (t *fakeTx) Done() <-chan struct{}                { return t.done }
func (t *fakeTx) Err() error                           { return nil }
func (t *fakeTx) Acks() <-chan *sip.Request            { return nil }
func (t *fakeTx) OnCancel(f sip.FnTxCancel) bool       { return true }
func (t *fakeTx) Respond(r *sip.Response) error {
	t.mu.Lock()
	t.res = append(t.res, r)
	t.mu.Unlock()
	return nil
}

func (t *fakeTx) finals() []*sip.Response {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*sip.Response
	for _, r := range t.res {
		if r.StatusCode >= 200 {
			out = append(out, r)
		}
	}
	return out
}

// echoHandler decodes the CSTA body as the gateway would and answers with
// its re-encoding; it accepts every INVITE whose body decodes.
type echoHandler struct{}

func (echoHandler) reply(req *Request) Reply {
	if len(req.Body) == 0 {
		return Reply{Status: 200}
	}
	m, err := csta.Decode(req.Body)
	if err != nil {
		return Reply{Status: 400}
	}
	if m.Kind == csta.KindUnknown {
		m = csta.ErrorMessage(csta.CodeServiceNotSupported)
	}
	body, err := csta.Encode(m, csta.NSEd3)
	if err != nil {
		return Reply{Status: 500}
	}
	return Reply{Status: 200, Body: body}
}

func (h echoHandler) Invite(ctx context.Context, d *Dialog, req *Request) Reply { return h.reply(req) }
func (h echoHandler) InDialog(ctx context.Context, d *Dialog, req *Request) Reply {
	return h.reply(req)
}
func (echoHandler) Ended(d *Dialog, reason EndReason) {}

func fuzzServer(t testing.TB) *Server {
	t.Helper()
	cfg := Config{Listen: []string{"tcp:127.0.0.1:0"}, TrustedHosts: []string{"127.0.0.0/8"}, MaxBodyBytes: 4096}
	s, err := New(cfg, echoHandler{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// dispatch routes a request the way sipgo's server does.
func (s *Server) dispatch(req *sip.Request, tx sip.ServerTransaction) {
	switch req.Method {
	case sip.INVITE:
		s.onInvite(req, tx)
	case sip.ACK:
		s.onAck(req, tx)
	case sip.BYE:
		s.onBye(req, tx)
	case sip.INFO, sip.UPDATE:
		s.onInDialog(req, tx)
	case sip.OPTIONS:
		s.onOptions(req, tx)
	case sip.CANCEL:
		s.onCancel(req, tx)
	default:
		s.onNoRoute(req, tx)
	}
}

var fuzzSeeds = []string{
	"INVITE sip:2101@cstagw.example.com;transport=tcp SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP 10.1.1.20:5061;branch=z9hG4bK1f3a09c2\r\n" +
		"Max-Forwards: 69\r\n" +
		"From: <sip:alice@example.com>;tag=8d0c4e1f2a;epid=3c9e1b7a52\r\n" +
		"To: <sip:2101@cstagw.example.com>\r\n" +
		"Call-ID: 6f1e2d3c4b5a49788796a5b4c3d2e1f0\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Record-Route: <sip:ocspool.example.com:5061;transport=tls;lr;ms-route-sig=aa1bc2dd3e>\r\n" +
		"Contact: <sip:alice@example.com;opaque=user:epid:Xk2mQpRzV1aBcDeFgHiJkA;gruu>\r\n" +
		"Supported: timer\r\nSession-Expires: 1800\r\n" +
		"Content-Disposition: signal;handling=required\r\n" +
		"Content-Type: application/csta+xml\r\n" +
		"Content-Length: 347\r\n\r\n" +
		`<?xml version="1.0"?><RequestSystemStatus xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed3"><extensions><privateData><private><lcs:line xmlns:lcs="http://schemas.microsoft.com/Lcs/2005/04/RCCExtension">tel:2101;phone-context=dialstring;partition=Internal_PT</lcs:line></private></privateData></extensions></RequestSystemStatus>`,
	"INFO sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5061;branch=z9hG4bK-1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:gw@c>;tag=gw-x\r\n" +
		"Call-ID: c1\r\nCSeq: 2 INFO\r\nContent-Type: application/csta+xml\r\nContent-Length: 10\r\n\r\n<a></a>xx",
	"BYE sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5061\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:gw@c>;tag=2\r\nCall-ID: c1\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n",
	"OPTIONS sip:gw@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5061;branch=z9hG4bK-2\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:gw@c>\r\nCall-ID: c2\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
	"MESSAGE sip:gw@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5061;branch=z9hG4bK-3\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:gw@c>\r\nCall-ID: c3\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
}

// FuzzRequest drives whole SIP requests (start line, headers, body) through
// the request-handling path: sipgo's parser, trust and limit checks, body
// extraction, the handler's CSTA decoding, and the response. Every request
// but ACK must get exactly one final answer with a status from docs/wire.md
// §1.9.3, and nothing may panic. Two requests are sent per input: the input
// itself, then the same input as an in-dialog request of a dialog the first
// one may have created.
func FuzzRequest(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	s := fuzzServer(f)
	allowed := map[int]bool{200: true, 400: true, 401: true, 403: true, 405: true, 413: true, 415: true,
		420: true, 422: true, 481: true, 488: true, 491: true, 500: true, 503: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := sip.ParseMessage(data)
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		// Keep every answer on loopback and off UDP retransmission timers.
		req.SetSource("127.0.0.1:9")
		req.SetTransport("TCP")
		tx := newFakeTx()
		s.dispatch(req, tx)
		finals := tx.finals()
		if req.IsAck() {
			if len(finals) != 0 {
				t.Fatalf("ACK answered: %v", finals[0].StatusCode)
			}
		} else {
			if len(finals) != 1 {
				t.Fatalf("%s got %d final answers", req.Method, len(finals))
			}
			if !allowed[finals[0].StatusCode] {
				t.Fatalf("%s answered %d", req.Method, finals[0].StatusCode)
			}
			if finals[0].StatusCode == 200 && len(finals[0].Body()) > 0 {
				if ct := finals[0].ContentType(); ct == nil || !strings.Contains(ct.Value(), ContentTypeCSTA) {
					t.Fatalf("200 with a body that is not application/csta+xml")
				}
			}
		}
		s.Dialogs(func(d *Dialog) { d.end(EndShutdown) })
	})
}
