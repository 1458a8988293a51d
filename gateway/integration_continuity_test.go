package gateway_test

// Continuity: sessions move to another link generation instead of losing
// their dialog (failover, after_reconnect: resume, fallback), and placement
// stays fair over the healthy links.

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/gateway"
	"github.com/cstagw/cstagw/test/ctisim"
)

// sessionsOn returns every link's session count from /status.
func (e *testEnv) sessionsOn() map[string]int {
	out := map[string]int{}
	for _, l := range e.gw.Status().Links {
		out[l.Name] = l.Sessions
	}
	return out
}

// signInOn signs a user in and checks that the session landed on link.
func signInOn(t *testing.T, e *testEnv, c *sipClient, user, line, link string) *dialog {
	t.Helper()
	before := e.sessionsOn()
	d := signIn(t, c, user, line)
	after := e.sessionsOn()
	require.Equal(t, before[link]+1, after[link], "%s expected on %s: %v → %v", user, link, before, after)
	return d
}

// statuses returns the SystemStatus values the client was sent, in order.
func statuses(d *dialog) []string {
	var out []string
	for _, m := range systemStatusEvents(d) {
		out = append(out, m.SystemStatus)
	}
	return out
}

func metricsText(t *testing.T, e *testEnv) string {
	_, b := httpGet(t, "http://"+e.gw.AdminAddr()+"/metrics")
	return b
}

func TestFailoverKeepsDialogs(t *testing.T) {
	const failoverAfter = 300 * time.Millisecond
	e := newEnv(t, envOpts{nodes: 3, gw: func(c *gateway.Config) { c.CTI.FailoverAfter = failoverAfter.String() }})
	c := e.tcp()
	// Round robin: 1st, 4th on cti-a; 2nd, 5th on cti-b; 3rd, 6th on cti-c.
	alice := signInOn(t, e, c, userAlice, lineAlice, "cti-a")
	bob := signInOn(t, e, c, userBob, lineBob, "cti-b")
	carol := signInOn(t, e, c, userCarol, lineShared, "cti-c")
	dave := signInOn(t, e, c, userDave, lineShared, "cti-a")
	erin := signInOn(t, e, c, userErin, lineErin, "cti-b")
	frank := signInOn(t, e, c, userFrank, lineFrankA, "cti-c")

	ended := incomingAnswered(t, e, alice, extCaller, devAlice) // will end during the outage
	live := incomingAnswered(t, e, dave, extOther, devShared)   // will survive it
	carol.waitEvent(0, csta.KindEstablishedEvent, live)

	killed := time.Now()
	daveMark := dave.mark()
	killNode(t, e, 0)
	for _, d := range []*dialog{alice, dave} {
		require.True(t, d.waitFor(func() bool { return len(statuses(d)) > 0 }), "no SystemStatus INFO")
		assert.Equal(t, "disabled", statuses(d)[0])
	}
	require.NoError(t, e.sim.Hangup(ended, ""))
	// Until failover_after: refused at once, as the mission says.
	alice.fails(getDND(lineAlice), errOutOfService)

	// After it: the same dialogs work again, on the surviving nodes.
	for _, d := range []*dialog{alice, dave} {
		require.True(t, d.waitFor(func() bool { return len(statuses(d)) == 2 }), "no SystemStatus normal: %v", statuses(d))
		assert.Equal(t, []string{"disabled", "normal"}, statuses(d))
	}
	took := time.Since(killed)
	assert.Less(t, took, failoverAfter+2*time.Second, "failover took %v", took)
	mc := alice.ok(makeCall(lineAlice, extOtherT))
	require.NotEmpty(t, mc.Connection.CallID)
	waitConn(t, e.sim, mc.Connection.CallID, devAlice, "connected")
	alice.ok(clearConnection(mc.Connection.CallID, lineAlice))
	waitConn(t, e.sim, mc.Connection.CallID, devAlice, "")

	// The call that ended meanwhile is cleared on alice's client, with her
	// monitorCrossRefID; the live call is replayed to dave and still his.
	alice.waitEvent(0, csta.KindConnectionClearedEvent, ended)
	// The replay after the move, not the Established from before it.
	dave.waitEvent(daveMark, csta.KindEstablishedEvent, live)
	dave.ok(holdCall(live, lineShared))
	waitConn(t, e.sim, live, devShared, "hold")
	mark := alice.mark()
	id, err := e.sim.PlaceCall(extThird, devAlice)
	require.NoError(t, err)
	alice.waitEvent(mark, csta.KindDeliveredEvent, id) // same xref (waitEvent checks it)

	// Southbound: the monitors live on the surviving nodes now.
	st := e.sim.State()
	assert.Equal(t, 0, st.Nodes[0].Monitors)
	assert.Equal(t, 1, simDevice(e.sim, devAlice).Monitors, "alice's line monitored once, on a live node")
	// The two moves run side by side: dave went to cti-b or to carol's
	// cti-c, where he joined the monitor of their shared line.
	assert.Contains(t, []int{1, 2}, simDevice(e.sim, devShared).Monitors)

	// Spread evenly: cti-a's two sessions went one to each survivor.
	on := e.sessionsOn()
	assert.Equal(t, map[string]int{"cti-a": 0, "cti-b": 3, "cti-c": 3}, on)
	assert.Equal(t, 6, e.gw.Status().Sessions)

	// The other sessions noticed nothing; nobody got a 481 or a BYE.
	for _, d := range []*dialog{bob, carol, erin, frank} {
		assert.Empty(t, statuses(d))
		assert.False(t, d.byeReceived())
	}
	assert.False(t, alice.byeReceived())
	m := metricsText(t, e)
	assert.Contains(t, m, `cstagw_session_moves_total{reason="failover",result="ok"} 2`)
	assert.Contains(t, m, "cstagw_stale_481_total 0")
}

// failover_after: off keeps the mission's behaviour: the session waits for
// its own link, refused at once meanwhile, and is stale when it returns.
func TestFailoverOff(t *testing.T) {
	e := newEnv(t, envOpts{nodes: 2, gw: func(c *gateway.Config) { c.CTI.FailoverAfter = "off" }})
	alice := signInOn(t, e, e.tcp(), userAlice, lineAlice, "cti-a")
	gen := e.link("cti-a").Generation
	killNode(t, e, 0)
	require.True(t, alice.waitFor(func() bool { return len(statuses(alice)) > 0 }))
	// Five heartbeat intervals later it is still on its dead link.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		alice.fails(getDND(lineAlice), errOutOfService)
		time.Sleep(100 * time.Millisecond) // pacing the probe, not waiting for a condition
	}
	assert.Equal(t, 1, e.sessionsOn()["cti-a"])
	assert.Equal(t, []string{"disabled"}, statuses(alice))
	e.sim.ClearFaults(0)
	require.Eventually(t, func() bool {
		l := e.link("cti-a")
		return l.State == ctipool.StateUp && l.Generation > gen
	}, waitLong, pollInterval)
	assert.Equal(t, 481, alice.info(getDND(lineAlice)).StatusCode)
}

func TestResumeAfterReconnect(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) { c.CTI.AfterReconnect = "resume" }})
	c := e.tcp()
	bob := signIn(t, c, userBob, lineBob)
	carol := signIn(t, c, userCarol, lineShared)
	dave := signIn(t, c, userDave, lineShared)
	live := incomingAnswered(t, e, bob, extOther, devBob)
	gen := e.link("cti-a").Generation

	require.NoError(t, e.sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDrop}))
	require.Eventually(t, func() bool {
		l := e.link("cti-a")
		return l.State == ctipool.StateUp && l.Generation > gen
	}, waitLong, pollInterval)
	for _, d := range []*dialog{bob, carol, dave} {
		require.True(t, d.waitFor(func() bool { return len(statuses(d)) == 2 }), "statuses %v", statuses(d))
		assert.Equal(t, []string{"disabled", "normal"}, statuses(d), "the client notices only the two SystemStatus INFOs")
	}
	// Same dialog, no 481: requests work, the live call is still his, and
	// events carry the monitorCrossRefIDs the clients already hold.
	assert.Equal(t, csta.KindGetDoNotDisturbResponse, bob.ok(getDND(lineBob)).Kind)
	bob.ok(holdCall(live, lineBob))
	waitConn(t, e.sim, live, devBob, "hold")
	mark, markD := carol.mark(), dave.mark()
	id, err := e.sim.PlaceCall(extCaller, devShared)
	require.NoError(t, err)
	carol.waitEvent(mark, csta.KindDeliveredEvent, id)
	dave.waitEvent(markD, csta.KindDeliveredEvent, id)
	// One southbound monitor for the shared line, on the new generation.
	assert.Equal(t, 1, simDevice(e.sim, devShared).Monitors)
	m := metricsText(t, e)
	assert.Contains(t, m, "cstagw_stale_481_total 0")
	assert.Contains(t, m, `cstagw_session_moves_total{reason="resume",result="ok"} 3`)
	for _, d := range []*dialog{bob, carol, dave} {
		assert.False(t, d.byeReceived())
	}
}

// invites signs n bare sessions (INVITE only) in as user and returns them.
func invites(t *testing.T, c *sipClient, user, line string, n int) []*dialog {
	t.Helper()
	var out []*dialog
	for i := 0; i < n; i++ {
		out = append(out, invited(t, c, user, line))
	}
	return out
}

// Round robin over the healthy links: a down link's turn passes on and the
// cursor moves past the link chosen.
func TestPlacementFairness(t *testing.T) {
	off := false
	cfg := func(c *gateway.Config) {
		c.Gateway.MaxSessionsPerUser = 100
		c.CTI.Fallback.Enabled = &off
	}
	t.Run("three links, one down", func(t *testing.T) {
		e := newEnv(t, envOpts{nodes: 3, gw: cfg})
		c := e.tcp()
		invites(t, c, userAlice, lineAlice, 6)
		assert.Equal(t, map[string]int{"cti-a": 2, "cti-b": 2, "cti-c": 2}, e.sessionsOn())
		killNode(t, e, 0)
		require.Eventually(t, func() bool { return e.link("cti-a").State != ctipool.StateUp }, waitLong, pollInterval)
		invites(t, c, userBob, lineBob, 4)
		assert.Equal(t, map[string]int{"cti-a": 2, "cti-b": 4, "cti-c": 4}, e.sessionsOn(), "2/2, not 3/1")
	})
	t.Run("eight links, one then two down", func(t *testing.T) {
		e := newEnv(t, envOpts{nodes: 8, gw: cfg})
		c := e.tcp()
		invites(t, c, userAlice, lineAlice, 16)
		for name, n := range e.sessionsOn() {
			assert.Equal(t, 2, n, name)
		}
		spread := func(before map[string]int, healthy []string, n int) {
			t.Helper()
			after := e.sessionsOn()
			lo, hi := n, 0
			for _, name := range healthy {
				d := after[name] - before[name]
				lo, hi = min(lo, d), max(hi, d)
			}
			assert.LessOrEqual(t, hi-lo, 1, "new sessions over the healthy links: %v → %v", before, after)
		}
		names := func(skip ...string) []string {
			var out []string
			for i := 0; i < 8; i++ {
				n := fmt.Sprintf("cti-%c", 'a'+i)
				if !strings.Contains(strings.Join(skip, ","), n) {
					out = append(out, n)
				}
			}
			return out
		}
		killNode(t, e, 2)
		require.Eventually(t, func() bool { return e.link("cti-c").State != ctipool.StateUp }, waitLong, pollInterval)
		for _, n := range []int{3, 7, 14} {
			before := e.sessionsOn()
			invites(t, c, userBob, lineBob, n)
			spread(before, names("cti-c"), n)
			assert.Equal(t, before["cti-c"], e.sessionsOn()["cti-c"])
		}
		killNode(t, e, 5)
		require.Eventually(t, func() bool { return e.link("cti-f").State != ctipool.StateUp }, waitLong, pollInterval)
		for _, n := range []int{5, 6, 12} {
			before := e.sessionsOn()
			invites(t, c, userErin, lineErin, n)
			spread(before, names("cti-c", "cti-f"), n)
		}
	})
}

// A returned link gets idle sessions back, paced, never one in a call.
func TestFallbackPaced(t *testing.T) {
	const perSecond = 4
	e := newEnv(t, envOpts{nodes: 2, gw: func(c *gateway.Config) {
		c.CTI.FailoverAfter = "off"
		c.CTI.Fallback.PerSecond = perSecond
		c.Gateway.MaxSessionsPerUser = 100
	}})
	killNode(t, e, 0)
	require.Eventually(t, func() bool { return e.link("cti-a").State != ctipool.StateUp }, waitLong, pollInterval)
	c := e.tcp()
	var ds []*dialog
	for i := 0; i < 20; i++ {
		ds = append(ds, signIn(t, c, userAlice, lineAlice))
	}
	// Two sessions on a line with a call: never moved.
	busy := signIn(t, c, userBob, lineBob)
	busy2 := signIn(t, c, userBob, lineBob)
	call := incomingAnswered(t, e, busy, extCaller, devBob)
	require.Equal(t, 22, e.sessionsOn()["cti-b"])

	e.sim.ClearFaults(0)
	// Balanced: within max(1, 5 %) of the mean of 11, so ten moves or
	// more, which takes over two seconds at 4 a second.
	require.Eventually(t, func() bool { return e.sessionsOn()["cti-a"] >= 10 }, waitLong, pollInterval)
	on := e.sessionsOn()
	assert.Equal(t, 22, on["cti-a"]+on["cti-b"], "per-link counts add up")
	require.GreaterOrEqual(t, on["cti-a"], perSecond+1, "enough moves to judge the pace")

	// The moved sessions were told SystemStatus normal; when each was told
	// gives the pace: never more than perSecond in one second.
	// (A session is re-pinned before its INFO goes out: wait for them.)
	var at []time.Time
	require.Eventually(t, func() bool {
		at = at[:0]
		for _, d := range ds {
			for _, e := range d.entries() {
				if e.req != nil && e.msg != nil && e.msg.Kind == csta.KindSystemStatus && e.msg.SystemStatus == "normal" {
					at = append(at, e.at)
				}
			}
		}
		return len(at) == on["cti-a"]
	}, waitLong, pollInterval, "one SystemStatus normal per moved session")
	sortTimes(at)
	for i := 0; i+perSecond < len(at); i++ {
		assert.GreaterOrEqual(t, at[i+perSecond].Sub(at[i]), 900*time.Millisecond, "more than %d moves in a second", perSecond)
	}
	// The session in a call stayed where it was, and its call works.
	assert.Empty(t, statuses(busy))
	assert.Empty(t, statuses(busy2))
	busy.ok(holdCall(call, lineBob))
	// Moved sessions work on their new link.
	for _, d := range ds {
		assert.Equal(t, csta.KindGetDoNotDisturbResponse, d.ok(getDND(lineAlice)).Kind)
	}
}

func sortTimes(ts []time.Time) {
	for i := 1; i < len(ts); i++ {
		for k := i; k > 0 && ts[k].Before(ts[k-1]); k-- {
			ts[k], ts[k-1] = ts[k-1], ts[k]
		}
	}
}

// A client that keeps sending requests while its session fails over gets
// an answer to every one: the PBX's, or resourceOutOfService; never a 481,
// a 503 or silence.
func TestFailoverWhileClientSends(t *testing.T) {
	e := newEnv(t, envOpts{nodes: 2, gw: func(c *gateway.Config) { c.CTI.FailoverAfter = "300ms" }})
	alice := signInOn(t, e, e.tcp(), userAlice, lineAlice, "cti-a")
	var stop atomic.Bool
	var wg sync.WaitGroup
	var mu sync.Mutex
	answers := map[string]int{}
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				res := alice.info(getDND(lineAlice))
				key := fmt.Sprint(res.StatusCode)
				if res.StatusCode == 200 {
					m, err := csta.Decode(res.Body())
					if err == nil {
						key = m.Kind.String()
						if m.Kind == csta.KindCSTAErrorCode {
							key = m.Error.String()
						}
					}
				}
				mu.Lock()
				answers[key]++
				mu.Unlock()
			}
		}()
	}
	time.Sleep(100 * time.Millisecond) // let the load run before the fault
	killNode(t, e, 0)
	require.True(t, alice.waitFor(func() bool { return len(statuses(alice)) == 2 }), "statuses %v", statuses(alice))
	time.Sleep(200 * time.Millisecond) // and after the move
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for k := range answers {
		assert.Contains(t, []string{csta.KindGetDoNotDisturbResponse.String(), errOutOfService}, k, "answers: %v", answers)
	}
	assert.Positive(t, answers[errOutOfService], "answers: %v", answers)
	assert.Equal(t, csta.KindGetDoNotDisturbResponse, alice.ok(getDND(lineAlice)).Kind)
}

// BYE while the session's monitors are being started on the target: the
// BYE is answered at once, the session ends and the half-made move leaves
// no monitor behind.
func TestByeDuringMove(t *testing.T) {
	e := newEnv(t, envOpts{nodes: 2, gw: func(c *gateway.Config) {
		c.CTI.FailoverAfter = "200ms"
		c.CTI.HeartbeatInterval = time.Second // outlives the delay below
		c.CTI.RequestTimeout = 2 * time.Second
	}})
	alice := signInOn(t, e, e.tcp(), userAlice, lineAlice, "cti-a")
	require.NoError(t, e.sim.SetFault(1, ctisim.Fault{Kind: ctisim.FaultDelay, Delay: 700 * time.Millisecond}))
	killNode(t, e, 0)
	require.Eventually(t, func() bool { return e.sim.State().Nodes[1].InFlight["MonitorStart"] > 0 }, waitLong, time.Millisecond)
	start := time.Now()
	assert.Equal(t, 200, alice.bye().StatusCode)
	assert.Less(t, time.Since(start), 500*time.Millisecond, "BYE waited for the move")
	require.Eventually(t, func() bool { return e.gw.Sessions() == 0 }, waitLong, pollInterval)
	e.sim.ClearFaults(1)
	require.Eventually(t, func() bool { return simDevice(e.sim, devAlice).Monitors == 0 }, waitLong, pollInterval,
		"the monitor the aborted move started is still on the switch")
	assert.Zero(t, e.sessionsOn()["cti-b"])
}

// The target dies while the session moves to it: the move fails, and the
// session moves to the next healthy link instead.
func TestTargetDiesDuringMove(t *testing.T) {
	e := newEnv(t, envOpts{nodes: 3, gw: func(c *gateway.Config) {
		c.CTI.FailoverAfter = "200ms"
		c.CTI.HeartbeatInterval = time.Second
		c.CTI.RequestTimeout = 2 * time.Second
	}})
	alice := signInOn(t, e, e.tcp(), userAlice, lineAlice, "cti-a") // the cursor is on cti-b next
	require.NoError(t, e.sim.SetFault(1, ctisim.Fault{Kind: ctisim.FaultDelay, Delay: 800 * time.Millisecond}))
	killNode(t, e, 0)
	require.Eventually(t, func() bool { return e.sim.State().Nodes[1].InFlight["MonitorStart"] > 0 }, waitLong, time.Millisecond)
	killNode(t, e, 1)
	require.True(t, alice.waitFor(func() bool {
		ss := statuses(alice)
		return len(ss) > 0 && ss[len(ss)-1] == "normal"
	}), "statuses %v", statuses(alice))
	assert.Equal(t, 1, e.sessionsOn()["cti-c"])
	assert.Equal(t, csta.KindGetDoNotDisturbResponse, alice.ok(getDND(lineAlice)).Kind)
	mark := alice.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	alice.waitEvent(mark, csta.KindDeliveredEvent, id)
	assert.False(t, alice.byeReceived())
	assert.Contains(t, metricsText(t, e), `cstagw_session_moves_total{reason="failover",result="failed"}`)
}

// A session moved while its phone is out of service is told so again on
// the new link, before the SystemStatus normal that ends the move.
func TestFailoverReplaysOutOfService(t *testing.T) {
	e := newEnv(t, envOpts{nodes: 2, gw: func(c *gateway.Config) { c.CTI.FailoverAfter = "300ms" }})
	alice := signInOn(t, e, e.tcp(), userAlice, lineAlice, "cti-a")
	require.NoError(t, e.sim.SetInService(devAlice, false))
	alice.waitEvent(0, csta.KindOutOfServiceEvent, "")
	mark := alice.mark()
	killNode(t, e, 0)
	require.True(t, alice.waitFor(func() bool { return len(statuses(alice)) == 2 }), "statuses %v", statuses(alice))
	oos, at := alice.waitEvent(mark, csta.KindOutOfServiceEvent, "")
	assert.Equal(t, alice.xref, oos.MonitorCrossRefID)
	_, normalAt := alice.find(mark, func(m *csta.Message) bool {
		return m.Kind == csta.KindSystemStatus && m.SystemStatus == "normal"
	})
	assert.Less(t, at, normalAt, "the replay comes before SystemStatus normal")
	require.NoError(t, e.sim.SetInService(devAlice, true))
	alice.waitEvent(mark, csta.KindBackInServiceEvent, "")
}
