package ctipool

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
)

// fakeSwitch is a CTI server that answers the link's bootstrap, heartbeats
// and MonitorStart, records every other frame it is sent, and lets the test
// send raw frames.
type fakeSwitch struct {
	t  *testing.T
	ln net.Listener

	mu  sync.Mutex
	nc  net.Conn
	got []csta.Frame // frames other than heartbeats and bootstrap
}

func startFakeSwitch(t *testing.T) *fakeSwitch {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &fakeSwitch{t: t, ln: ln}
	go f.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		f.mu.Lock()
		if f.nc != nil {
			_ = f.nc.Close()
		}
		f.mu.Unlock()
	})
	return f
}

func (f *fakeSwitch) serve() {
	nc, err := f.ln.Accept()
	if err != nil {
		return
	}
	f.mu.Lock()
	f.nc = nc
	f.mu.Unlock()
	fr := csta.NewFrameReader(nc, csta.FrameOptions{})
	for {
		fm, err := fr.ReadFrame()
		if err != nil {
			return
		}
		m, err := csta.Decode(fm.Payload)
		switch {
		case err != nil:
		case m.Kind == csta.KindRequestSystemStatus:
			f.send(fm.InvokeID, encodeMsg(f.t, &csta.Message{Kind: csta.KindRequestSystemStatusResponse, SystemStatus: "normal"}))
			continue
		case m.Kind == csta.KindSystemRegister:
			f.send(fm.InvokeID, encodeMsg(f.t, &csta.Message{Kind: csta.KindSystemRegisterResponse, SysStatRegisterID: "1"}))
			continue
		case m.Kind == csta.KindMonitorStart:
			f.send(fm.InvokeID, encodeMsg(f.t, &csta.Message{Kind: csta.KindMonitorStartResponse, MonitorCrossRefID: "M1"}))
			continue
		}
		f.mu.Lock()
		f.got = append(f.got, csta.Frame{InvokeID: fm.InvokeID, Payload: append([]byte(nil), fm.Payload...)})
		f.mu.Unlock()
	}
}

func encodeMsg(t *testing.T, m *csta.Message) []byte {
	b, err := csta.Encode(m, csta.NSEd4)
	require.NoError(t, err)
	return b
}

func (f *fakeSwitch) send(id int, doc []byte) {
	b, err := csta.AppendFrame(nil, id, doc, csta.FrameOptions{})
	require.NoError(f.t, err)
	f.mu.Lock()
	nc := f.nc
	f.mu.Unlock()
	_, _ = nc.Write(b)
}

func (f *fakeSwitch) received() []csta.Frame {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]csta.Frame(nil), f.got...)
}

// Events are never answered, modelled or not, for a monitor we hold or not,
// and neither is anything sent with the event invoke id; a request of the
// switch the link does not serve still gets serviceNotSupported.
func TestEventsAreNeverAnswered(t *testing.T) {
	fs := startFakeSwitch(t)
	no := false
	cfg := Config{
		HeartbeatInterval: time.Second,
		RequestTimeout:    time.Second,
		Reconnect:         ReconnectConfig{InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, MaxRetries: 3, HoldOff: 100 * time.Millisecond},
		Links:             []LinkConfig{{Name: "fake", Address: fs.ln.Addr().String(), SystemRegister: &no}},
	}
	p, err := New(cfg, Options{Logger: zerolog.Nop()})
	require.NoError(t, err)
	p.Start()
	t.Cleanup(p.Close)
	l := p.Links()[0]
	waitUp(t, l, 1)

	evs := make(chan *csta.Message, 8)
	sub, err := l.Monitor(context.Background(), "2101", func(ev *csta.Message) { evs <- ev }, nil)
	require.NoError(t, err)
	defer sub.Close()

	const ns = `xmlns="` + csta.NSEd4 + `"`
	queued := `<QueuedEvent ` + ns + `><monitorCrossRefID>M1</monitorCrossRefID><queue><deviceIdentifier>2600</deviceIdentifier></queue></QueuedEvent>`
	for _, doc := range []string{
		queued,
		`<OutOfServiceEvent ` + ns + `><monitorCrossRefID>M1</monitorCrossRefID><device><deviceIdentifier>2101</deviceIdentifier></device></OutOfServiceEvent>`,
		`<QueuedEvent ` + ns + `><monitorCrossRefID>ZZ</monitorCrossRefID></QueuedEvent>`, // not our monitor
		`<DeliveredEvent ` + ns + `><monitorCrossRefID>ZZ</monitorCrossRefID></DeliveredEvent>`,
		`<LampModeNotification ` + ns + `><device>2101</device></LampModeNotification>`, // unsolicited, not named ...Event
	} {
		fs.send(csta.EventInvokeID, []byte(doc))
	}
	fs.send(42, []byte(`<RouteRequest `+ns+`><crossRefIdentifier>7</crossRefIdentifier></RouteRequest>`))

	// Frames come back in the order their causes were read: once the
	// answer to the request is in, any answer to an event would be too.
	require.Eventually(t, func() bool {
		for _, f := range fs.received() {
			if f.InvokeID == 42 {
				return true
			}
		}
		return false
	}, 5*time.Second, time.Millisecond, "the unsupported request was never answered")
	got := fs.received()
	var seen []string
	for _, f := range got {
		seen = append(seen, fmt.Sprintf("%04d %s", f.InvokeID, f.Payload))
	}
	require.Len(t, got, 1, "the switch must receive one answer, to its request, and none to its events: %q", seen)
	assert.Equal(t, 42, got[0].InvokeID)
	m, err := csta.Decode(got[0].Payload)
	require.NoError(t, err)
	assert.Equal(t, csta.CodeServiceNotSupported, m.Error)

	first := <-evs
	assert.Equal(t, csta.KindUnknown, first.Kind)
	assert.Equal(t, "QueuedEvent", first.Name)
	assert.Equal(t, "M1", first.MonitorCrossRefID)
	assert.Equal(t, queued, string(first.Raw))
	second := <-evs
	assert.Equal(t, csta.KindOutOfServiceEvent, second.Kind)
	assert.Equal(t, "2101", second.Device.ID)
	select {
	case ev := <-evs:
		t.Errorf("an event of another monitor reached the subscriber: %s", ev.Name)
	default:
	}
}
