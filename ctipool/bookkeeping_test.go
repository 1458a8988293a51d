package ctipool

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/test/ctisim"
)

// An abandoned budgeted request is forgotten one request timeout later. If
// its late answer came first and freed the id, and a newer request took
// that id, the clean-up must not drop the newer request's entry.
func TestAbandonedRequestDoesNotForgetANewerOne(t *testing.T) {
	p, err := New(Config{RequestTimeout: 20 * time.Millisecond, Links: []LinkConfig{{Name: "x", Address: "127.0.0.1:1"}}},
		Options{Logger: zerolog.Nop()})
	require.NoError(t, err)
	l := p.Links()[0]
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := newConn(l, a, l.lc.frameOptions(DefaultSendQueue))
	const id = 7
	c.budget <- struct{}{}
	old := &pending{ch: make(chan reply, 1), release: func() {}}
	c.outstanding[id] = old
	c.abandon(id, old)                                                      // the caller gave up
	c.complete(id, &csta.Message{Kind: csta.KindMonitorStartResponse}, nil) // its late answer
	newer := &pending{ch: make(chan reply, 1)}
	c.mu.Lock()
	c.outstanding[id] = newer // the id, free again, is reused
	c.mu.Unlock()
	time.Sleep(60 * time.Millisecond) // past the abandoned request's clean-up
	c.mu.Lock()
	defer c.mu.Unlock()
	assert.Same(t, newer, c.outstanding[id], "the clean-up of an old request removed a newer one")
}

// A switch that accepts the connection and drops it at once is not
// redialled in a tight loop: a link must stay up a heartbeat interval
// before its backoff starts over.
func TestFlappingLinkBacksOff(t *testing.T) {
	sim := startSim(t, 1, nil)
	cfg := testConfig(sim, true)
	cfg.HeartbeatInterval = time.Second // a good connection lasts this long
	cfg.Reconnect = ReconnectConfig{InitialBackoff: 5 * time.Millisecond, MaxBackoff: 40 * time.Millisecond, MaxRetries: 1000, HoldOff: time.Second}
	p, _ := startPool(t, cfg)
	l := p.Links()[0]
	waitUp(t, l, 1)
	start := time.Now()
	const flaps = 50
	for gen := uint64(1); gen <= flaps; gen++ {
		waitUp(t, l, gen)
		require.NoError(t, sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDrop}))
		require.Eventually(t, func() bool { return l.Generation() > gen || !l.Up() }, 5*time.Second, time.Millisecond)
	}
	took := time.Since(start)
	// 50 failures in a row back off 5, 10, 20, then 40 ms (half of it
	// jittered): at least ~0.9 s in all. Without backoff the 50 flaps took
	// a few tens of milliseconds.
	assert.Greater(t, took, 900*time.Millisecond, "%d flaps in %v: the link was redialled without backing off", flaps, took)
}

// Profile B against ctisim's Profile B: replies matched to their callers
// with no invoke ids on the wire, several requests in flight.
func TestProfileBAgainstCtisim(t *testing.T) {
	sim := startSim(t, 1, func(c *ctisim.Config) { c.Profile = csta.ProfileB })
	cfg := testConfig(sim, true)
	cfg.Links[0].Framing = "b"
	p, _ := startPool(t, cfg)
	l := p.Links()[0]
	waitUp(t, l, 1)
	type res struct {
		want csta.Kind
		got  *csta.Message
		err  error
	}
	out := make(chan res, 40)
	for i := 0; i < 20; i++ {
		dev := fmt.Sprintf("4%04d", i)
		go func() {
			m, err := l.Do(context.Background(), &csta.Message{Kind: csta.KindGetDoNotDisturb, Device: csta.Dev(dev)})
			out <- res{csta.KindGetDoNotDisturbResponse, m, err}
		}()
		go func() {
			items, err := l.Snapshot(context.Background(), 0, dev)
			var m *csta.Message
			if err == nil {
				m = &csta.Message{Kind: csta.KindSnapshotDeviceResponse, Snapshot: items}
			}
			out <- res{csta.KindSnapshotDeviceResponse, m, err}
		}()
	}
	for i := 0; i < 40; i++ {
		r := <-out
		require.NoError(t, r.err)
		assert.Equal(t, r.want, r.got.Kind)
	}
}

// A Profile B switch that never answers one request: the reply of the
// next goes to its own caller, and the skipped request fails at once
// instead of taking someone else's answer.
func TestProfileBSkippedAnswerResynchronises(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	opts := csta.FrameOptions{Profile: csta.ProfileB, MaxFrame: 1 << 20}
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		fr := csta.NewFrameReader(nc, opts)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			m, err := csta.Decode(f.Payload)
			if err != nil || m.Kind == csta.KindGetDoNotDisturb {
				continue // this one the switch never answers
			}
			if m.Kind == csta.KindGetForwarding {
				out, _ := csta.AppendFrameWith(nil, 0, opts, func(b []byte) ([]byte, error) {
					return csta.AppendEncode(b, &csta.Message{Kind: csta.KindGetForwardingResponse}, csta.NSEd3)
				})
				_, _ = nc.Write(out)
			}
		}
	}()
	off := false
	cfg := Config{HeartbeatInterval: 10 * time.Second, RequestTimeout: 3 * time.Second,
		Links: []LinkConfig{{Name: "b", Address: ln.Addr().String(), Framing: "b", SystemRegister: &off}}}
	p, _ := startPool(t, cfg)
	l := p.Links()[0]
	waitUp(t, l, 1)
	skipped := make(chan error, 1)
	go func() {
		_, err := l.Do(context.Background(), &csta.Message{Kind: csta.KindGetDoNotDisturb, Device: csta.Dev("40001")})
		skipped <- err
	}()
	require.Eventually(t, func() bool { return l.Health().Outstanding == 1 }, 5*time.Second, time.Millisecond)
	start := time.Now()
	m, err := l.Do(context.Background(), &csta.Message{Kind: csta.KindGetForwarding, Device: csta.Dev("40001")})
	require.NoError(t, err)
	assert.Equal(t, csta.KindGetForwardingResponse, m.Kind, "the reply went to its own caller")
	select {
	case err := <-skipped:
		assert.ErrorIs(t, err, ErrProtocol)
		assert.Less(t, time.Since(start), time.Second, "the skipped request failed at once, not at its timeout")
	case <-time.After(5 * time.Second):
		t.Fatal("the skipped request was never answered")
	}
}
