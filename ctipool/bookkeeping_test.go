package ctipool

import (
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
