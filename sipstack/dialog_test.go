package sipstack

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// endRecorder is echoHandler that records why dialogs ended and can hold
// in-dialog requests until released.
type endRecorder struct {
	echoHandler
	mu      sync.Mutex
	ends    []EndReason
	hold    chan struct{} // when set, InDialog waits on it
	entered chan struct{}
}

func (h *endRecorder) Ended(d *Dialog, r EndReason) {
	h.mu.Lock()
	h.ends = append(h.ends, r)
	h.mu.Unlock()
}

func (h *endRecorder) InDialog(ctx context.Context, d *Dialog, req *Request) Reply {
	if h.hold != nil {
		h.entered <- struct{}{}
		<-h.hold
	}
	return h.echoHandler.InDialog(ctx, d, req)
}

func (h *endRecorder) ended() []EndReason {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]EndReason(nil), h.ends...)
}

func recorderServer(t *testing.T, h *endRecorder) *Server {
	t.Helper()
	cfg := Config{Listen: []string{"udp:127.0.0.1:0"}, TrustedHosts: []string{"127.0.0.0/8"}, MaxBodyBytes: 4096}
	s, err := New(cfg, h, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// parse reads one of the fuzz seeds as a request from 127.0.0.1 over
// transport.
func parseSeed(t *testing.T, raw, transport string) *sip.Request {
	t.Helper()
	if transport == "UDP" {
		raw = strings.ReplaceAll(raw, "SIP/2.0/TCP", "SIP/2.0/UDP")
		raw = strings.ReplaceAll(raw, ";transport=tcp", "")
	}
	m, err := sip.ParseMessage([]byte(raw))
	require.NoError(t, err)
	req := m.(*sip.Request)
	req.SetSource("127.0.0.1:9")
	req.SetTransport(transport)
	return req
}

// TestMain runs this package's tests with SIP timers 100 times shorter
// than RFC 3261's (T1 5 ms), set before any goroutine reads them, so UDP
// timer behaviour shows in milliseconds. No other test here depends on T1.
func TestMain(m *testing.M) {
	sip.SetTimers(5*time.Millisecond, 40*time.Millisecond, 50*time.Millisecond)
	os.Exit(m.Run())
}

// RFC 3261 §13.3.1.4: over UDP our 2xx to an INVITE is retransmitted
// until the ACK comes; without one the dialog ends (EndNoAck) after 64·T1.
func TestUnacknowledged2xxRetransmittedThenEnded(t *testing.T) {
	h := &endRecorder{}
	s := recorderServer(t, h)
	tx := newFakeTx()
	s.dispatch(parseSeed(t, fuzzSeeds[0], "UDP"), tx)
	require.Eventually(t, func() bool { return len(h.ended()) > 0 }, 2*time.Second, time.Millisecond)
	assert.Equal(t, []EndReason{EndNoAck}, h.ended())
	finals := tx.finals()
	require.GreaterOrEqual(t, len(finals), 4, "the 200 and its retransmissions")
	for _, r := range finals {
		assert.Equal(t, 200, r.StatusCode)
	}
}

// A re-INVITE while another is being handled is answered 491 (RFC 3261
// §14.2), and only that.
func TestReinviteGlare491(t *testing.T) {
	h := &endRecorder{}
	s := recorderServer(t, h)
	inv := parseSeed(t, fuzzSeeds[0], "TCP")
	tx := newFakeTx()
	s.dispatch(inv, tx)
	require.Len(t, tx.finals(), 1)
	res := tx.finals()[0]
	require.Equal(t, 200, res.StatusCode)
	toTag, _ := res.To().Params.Get("tag")

	reinvite := func(cseq uint32) *sip.Request {
		r := inv.Clone()
		r.To().Params.Add("tag", toTag)
		r.CSeq().SeqNo = cseq
		return r
	}
	h.hold, h.entered = make(chan struct{}), make(chan struct{}, 1)
	first := newFakeTx()
	done := make(chan struct{})
	go func() { s.dispatch(reinvite(2), first); close(done) }()
	<-h.entered
	second := newFakeTx()
	s.dispatch(reinvite(3), second)
	require.Len(t, second.finals(), 1)
	assert.Equal(t, 491, second.finals()[0].StatusCode)
	close(h.hold)
	<-done
	require.Len(t, first.finals(), 1)
	assert.Equal(t, 200, first.finals()[0].StatusCode)
}

// Over TCP the 2xx is not retransmitted, but a dialog never acknowledged
// ends all the same after 64·T1 (RFC 3261 §13.3.1.4 applies on every
// transport); an acknowledged one lives on.
func TestUnacknowledged2xxOverTCPEnded(t *testing.T) {
	h := &endRecorder{}
	s := recorderServer(t, h)
	tx := newFakeTx()
	s.dispatch(parseSeed(t, fuzzSeeds[0], "TCP"), tx)
	require.Eventually(t, func() bool { return len(h.ended()) > 0 }, 2*time.Second, time.Millisecond)
	assert.Equal(t, []EndReason{EndNoAck}, h.ended())
	assert.Len(t, tx.finals(), 1, "no retransmission over TCP")

	h2 := &endRecorder{}
	s2 := recorderServer(t, h2)
	tx2 := newFakeTx()
	inv := parseSeed(t, fuzzSeeds[0], "TCP")
	s2.dispatch(inv, tx2)
	require.Len(t, tx2.finals(), 1)
	d := s2.lookupResponse(tx2.finals()[0])
	require.NotNil(t, d)
	assert.False(t, d.Confirmed())
	d.acked()
	assert.True(t, d.Confirmed())
	time.Sleep(64*sip.T1 + 100*time.Millisecond) // the whole ACK timer, to see nothing happen
	assert.Empty(t, h2.ended())
}

// lookupResponse finds the dialog a 2xx established (by its local tag).
func (s *Server) lookupResponse(res *sip.Response) *Dialog {
	local, _ := res.To().Params.Get("tag")
	var found *Dialog
	s.dialogs.Range(func(_, v any) bool {
		if d := v.(*Dialog); d.localTag == local {
			found = d
			return false
		}
		return true
	})
	return found
}

// OPTIONS without Call-ID, From or To is malformed: 400, not a 200
// without them.
func TestOptionsWithoutDialogHeadersIs400(t *testing.T) {
	s := recorderServer(t, &endRecorder{})
	for _, drop := range []string{"Call-ID: c2\r\n", "From: <sip:a@b>;tag=1\r\n", "To: <sip:gw@c>\r\n"} {
		tx := newFakeTx()
		s.dispatch(parseSeed(t, strings.Replace(fuzzSeeds[3], drop, "", 1), "TCP"), tx)
		require.Len(t, tx.finals(), 1, "without %q", drop)
		assert.Equal(t, 400, tx.finals()[0].StatusCode, "without %q", drop)
	}
	tx := newFakeTx()
	s.dispatch(parseSeed(t, fuzzSeeds[3], "TCP"), tx)
	require.Len(t, tx.finals(), 1)
	assert.NotEqual(t, 400, tx.finals()[0].StatusCode, "a whole OPTIONS")
}
