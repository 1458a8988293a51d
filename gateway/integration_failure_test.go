package gateway_test

// Failure semantics (docs/wire.md §1.9.2, §1.11, docs/failure-policy.md).

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/gateway"
	"github.com/cstagw/cstagw/test/ctisim"
)

// eventsOf returns the events of one kind the gateway sent on d.
func eventsOf(d *dialog, kind csta.Kind) []*csta.Message {
	var out []*csta.Message
	for _, m := range d.events(0) {
		if m.Kind == kind {
			out = append(out, m)
		}
	}
	return out
}

// systemStatusEvents returns the SystemStatus requests the gateway sent.
func systemStatusEvents(d *dialog) []*csta.Message { return eventsOf(d, csta.KindSystemStatus) }

func TestLinkDownAndRecovery(t *testing.T) {
	e := newEnv(t, envOpts{})
	da := signIn(t, e.udp(), userAlice, lineAlice)
	db := signIn(t, e.tcp(), userBob, lineBob)
	invitedBefore := invited(t, e.tcp(), userCarol, lineShared)
	call := incomingAnswered(t, e, da, extCaller, devAlice)
	gen := e.link("cti-a").Generation

	// The link goes down and stays down.
	killNode(t, e, 0)
	require.Eventually(t, func() bool { return e.link("cti-a").State != ctipool.StateUp }, waitLong, pollInterval)

	// The client is told once: SystemStatus disabled.
	require.True(t, da.waitFor(func() bool { return len(systemStatusEvents(da)) > 0 }), "no SystemStatus INFO")
	ss := systemStatusEvents(da)[0]
	assert.Equal(t, "disabled", ss.SystemStatus)
	require.True(t, db.waitFor(func() bool { return len(systemStatusEvents(db)) > 0 }), "no SystemStatus INFO to bob")

	// PBX-bound requests: answered at once with resourceOutOfService.
	start := time.Now()
	m, res := da.cstaRes(makeCall(lineAlice, extOtherT))
	took := time.Since(start)
	assert.Equal(t, csta.KindCSTAErrorCode, m.Kind)
	assert.Equal(t, errOutOfService, m.Error.String())
	assert.Contains(t, string(res.Body()), "<systemResourceAvailibility>", "the schema's spelling")
	assert.Less(t, took, time.Second, "a request on a dead link must be answered at once, not after request_timeout")
	da.fails(holdCall(call, lineAlice), errOutOfService)
	da.fails(monitorStart(lineAlice), errOutOfService)

	// Answered locally meanwhile.
	assert.Equal(t, csta.KindGetCSTAFeaturesResponse, da.ok(getFeatures(lineAlice)).Kind)
	assert.Equal(t, csta.KindMonitorStopResponse, db.ok(monitorStop(db.xref)).Kind, "MonitorStop is answered locally")

	// Refresh: 200 with systemStatus disabled.
	r := da.reinvite(requestSystemStatus(lineAlice))
	require.Equal(t, 200, r.StatusCode)
	rm, err := csta.Decode(r.Body())
	require.NoError(t, err)
	assert.Equal(t, "disabled", rm.SystemStatus)

	// The call ends while the gateway cannot see it.
	require.NoError(t, e.sim.Hangup(call, ""))

	// Several reconnect attempts have failed by now; still one SystemStatus.
	require.Eventually(t, func() bool { return e.link("cti-a").ConsecutiveFails >= 2 }, waitLong, pollInterval)
	assert.Len(t, systemStatusEvents(da), 1, "SystemStatus disabled must be sent once per outage")

	// The link comes back under a new generation.
	e.sim.ClearFaults(0)
	require.Eventually(t, func() bool {
		l := e.link("cti-a")
		return l.State == ctipool.StateUp && l.Generation > gen
	}, waitLong, pollInterval)

	// Stale sessions: their next in-dialog request gets 481, and the next.
	assert.Equal(t, 481, da.info(getFeatures(lineAlice)).StatusCode, "stale session's INFO")
	assert.Equal(t, 481, da.info(getFeatures(lineAlice)).StatusCode, "INFO on a forgotten dialog")
	assert.Equal(t, 481, db.update().StatusCode, "stale session's UPDATE")
	dc := invitedBefore
	assert.Equal(t, 481, dc.reinvite(requestSystemStatus(lineShared)).StatusCode, "stale session's re-INVITE")
	require.Eventually(t, func() bool { return e.gw.Sessions() == 0 }, waitLong, pollInterval)

	// A fresh INVITE works, and the call that ended during the outage is no
	// phantom: not replayed, and cleared on the client after the response.
	c2 := e.tcp()
	d2 := invited(t, c2, userAlice, lineAlice)
	mark := d2.mark()
	n := d2.cseq.Load() + 1
	ms := d2.ok(monitorStart(lineAlice))
	d2.xref = ms.MonitorCrossRefID
	respAt := d2.responseIndex(n)
	// A new call: once its Delivered is in, everything the gateway sent
	// after the MonitorStartResponse (replay, clears) is in too.
	next, err := e.sim.PlaceCall(extThird, devAlice)
	require.NoError(t, err)
	d2.waitEvent(mark, csta.KindDeliveredEvent, next)
	es := d2.entries()
	cleared := false
	for i := mark; i < len(es); i++ {
		if es[i].req == nil || es[i].msg == nil || eventCallID(es[i].msg) != call {
			continue
		}
		switch es[i].msg.Kind {
		case csta.KindConnectionClearedEvent:
			cleared = true
			assert.Greater(t, i, respAt, "ConnectionCleared for the old call before the MonitorStartResponse")
			assert.Equal(t, d2.xref, es[i].msg.MonitorCrossRefID)
		default:
			t.Errorf("phantom call %s replayed as %s", call, es[i].msg.Kind)
		}
	}
	assert.True(t, cleared, "call %s ended during the outage: no ConnectionCleared on the new session", call)
	d2.ok(answerCall(next, lineAlice))
	waitConn(t, e.sim, next, devAlice, "connected")

	metrics := func() string { _, b := httpGet(t, "http://"+e.gw.AdminAddr()+"/metrics"); return b }()
	assert.Contains(t, metrics, "cstagw_stale_481_total 3")
}

func TestPBXTimeoutIsResourceBusy(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		// The delay fault delays heartbeat probes too: keep 2×H above it.
		c.CTI.HeartbeatInterval = 2 * time.Second
	}})
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	require.NoError(t, e.sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDelay, Delay: 1300 * time.Millisecond}))
	start := time.Now()
	d.fails(getDND(lineAlice), errResourceBusy)
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, 900*time.Millisecond, "answered before request_timeout")
	assert.Less(t, took, 5*time.Second)
	e.sim.ClearFaults(0)
	// The session is still good afterwards.
	require.Eventually(t, func() bool {
		m := d.csta(getDND(lineAlice))
		return m.Kind == csta.KindGetDoNotDisturbResponse
	}, waitLong, 50*time.Millisecond)
	assert.Equal(t, ctipool.StateUp, e.link("cti-a").State)
}

func TestNoLinkAtInviteIs503(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	e := newEnv(t, envOpts{noWait: true, gw: func(c *gateway.Config) {
		c.CTI.Links = []ctipool.LinkConfig{{Name: "cti-a", Address: dead, AppSession: true}}
	}})
	require.Eventually(t, func() bool { return e.link("cti-a").ConsecutiveFails >= 1 }, waitLong, pollInterval)
	d, res := e.tcp().invite(inviteOpts{user: userAlice, line: lineAlice})
	assert.Nil(t, d)
	assert.Equal(t, 503, res.StatusCode)
	ra := header(res, "Retry-After")
	require.NotEmpty(t, ra, "503 without Retry-After")
	secs, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(ra, ";", 2)[0]))
	require.NoError(t, err)
	assert.Equal(t, 7, secs, "Retry-After from sip.retry_after")
	code, _ := httpGet(t, "http://"+e.gw.AdminAddr()+"/readyz")
	assert.Equal(t, 503, code)
}

func TestSessionTimerHeaders(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.tcp()
	d, res := c.invite(inviteOpts{user: userAlice, line: lineAlice,
		headers: []sip.Header{sip.NewHeader("Session-Expires", "120;refresher=uac")}})
	require.NotNil(t, d, "INVITE answered %d", res.StatusCode)
	assert.Equal(t, "120;refresher=uac", header(res, "Session-Expires"), "the smaller interval the client asked for")
	assert.Contains(t, header(res, "Require"), "timer")

	u := d.update(sip.NewHeader("Session-Expires", "100"))
	assert.Equal(t, 200, u.StatusCode)
	assert.Equal(t, "100;refresher=uac", header(u, "Session-Expires"))
	assert.Contains(t, header(u, "Require"), "timer")

	u = d.update()
	assert.Equal(t, 200, u.StatusCode)
	assert.NotEmpty(t, header(u, "Session-Expires"))

	u = d.update(sip.NewHeader("Session-Expires", "30"))
	assert.Equal(t, 422, u.StatusCode, "an UPDATE below Min-SE")
	assert.Equal(t, "90", header(u, "Min-SE"))

	r := d.reinvite(requestSystemStatus(lineAlice), sip.NewHeader("Session-Expires", "95"))
	assert.Equal(t, 200, r.StatusCode)
	assert.Equal(t, "95;refresher=uac", header(r, "Session-Expires"))

	// An UPDATE carrying a RequestSystemStatus is answered like a re-INVITE.
	u = d.request(sip.UPDATE, requestSystemStatus(lineAlice), ctCSTA, sip.NewHeader("Supported", "timer"))
	require.Equal(t, 200, u.StatusCode)
	um, err := csta.Decode(u.Body())
	require.NoError(t, err, "UPDATE with RequestSystemStatus: 200 body %q", u.Body())
	assert.Equal(t, "normal", um.SystemStatus)
}

// No refresh within Session-Expires: the gateway sends BYE (at SE − SE/3
// for short intervals, RFC 4028 §10) and stops the session's monitors; a
// refreshed dialog lives on.
func TestSessionExpiry(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.SIP.SessionExpires = 3 * time.Second
		c.SIP.MinSE = time.Second
	}})
	start := time.Now()
	idle := signIn(t, e.tcp(), userAlice, lineAlice)
	busy := signIn(t, e.tcp(), userBob, lineBob)
	assert.Equal(t, "3;refresher=uac", header(idle.inviteRes, "Session-Expires"))

	// bob refreshes every second with UPDATE; alice does nothing.
	for i := 0; i < 3; i++ {
		time.Sleep(time.Second) // the refresh interval itself, not a wait for a condition
		require.Equal(t, 200, busy.update().StatusCode)
	}
	require.True(t, waitUntil(3*time.Second, idle.byeReceived), "no BYE after Session-Expires without refresh")
	assert.Greater(t, time.Since(start), 1500*time.Millisecond, "BYE too early")
	require.Eventually(t, func() bool { return e.gw.Sessions() == 1 }, waitLong, pollInterval)
	require.Eventually(t, func() bool { return simDevice(e.sim, devAlice).Monitors == 0 }, waitLong, pollInterval,
		"expired session's monitor not stopped")
	assert.False(t, busy.byeReceived(), "a refreshed session must not expire")
	assert.Equal(t, 481, idle.info(getFeatures(lineAlice)).StatusCode, "expired dialog")
	mark := busy.mark()
	id, err := e.sim.PlaceCall(extCaller, devBob)
	require.NoError(t, err)
	busy.waitEvent(mark, csta.KindDeliveredEvent, id)
}

// A request waiting for the PBX when the link drops is failed at once
// (§2.7 step 1), not left to its timeout.
func TestInFlightRequestFailsOnLinkLoss(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.CTI.RequestTimeout = 4 * time.Second
		c.CTI.HeartbeatInterval = 5 * time.Second
	}})
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	require.NoError(t, e.sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDelay, Delay: 3 * time.Second}))
	done := make(chan *csta.Message, 1)
	go func() {
		m, _ := d.cstaRes(getDND(lineAlice))
		done <- m
	}()
	require.Eventually(t, func() bool { return e.sim.State().Nodes[0].InFlight["GetDoNotDisturb"] > 0 }, waitLong, time.Millisecond)
	dropped := time.Now()
	killNode(t, e, 0)
	select {
	case m := <-done:
		took := time.Since(dropped)
		assert.Equal(t, csta.KindCSTAErrorCode, m.Kind)
		assert.Equal(t, errOutOfService, m.Error.String())
		assert.Less(t, took, time.Second, "an outstanding request must fail as soon as the link is lost")
	case <-time.After(waitLong):
		t.Fatal("no answer")
	}
	e.sim.ClearFaults(0)
}

// Sessions are placed on healthy links only. With fallback off (the
// mission's pinning), sessions stay where they were placed.
func TestPlacementSkipsDeadLink(t *testing.T) {
	off := false
	e := newEnv(t, envOpts{nodes: 2, gw: func(c *gateway.Config) { c.CTI.Fallback.Enabled = &off }})
	killNode(t, e, 0)
	require.Eventually(t, func() bool { return e.link("cti-a").State != ctipool.StateUp }, waitLong, pollInterval)
	c := e.tcp()
	for _, u := range []struct{ user, line string }{{userAlice, lineAlice}, {userBob, lineBob}, {userCarol, lineShared}} {
		d := signIn(t, c, u.user, u.line)
		assert.Equal(t, csta.KindGetDoNotDisturbResponse, d.ok(getDND(u.line)).Kind)
	}
	assert.Equal(t, 0, e.link("cti-a").Sessions)
	assert.Equal(t, 3, e.link("cti-b").Sessions)

	// cti-a returns: the sessions stay pinned to cti-b and keep working,
	// and new sessions go round robin over both links again.
	e.sim.ClearFaults(0)
	require.Eventually(t, func() bool { return e.link("cti-a").State == ctipool.StateUp }, waitLong, pollInterval)
	for _, u := range []struct{ user, line string }{{userDave, lineShared}, {userErin, lineErin}} {
		d := signIn(t, c, u.user, u.line)
		assert.Equal(t, csta.KindGetDoNotDisturbResponse, d.ok(getDND(u.line)).Kind)
	}
	assert.Equal(t, 1, e.link("cti-a").Sessions, "one of the two new sessions on the link that came back")
	assert.Equal(t, 4, e.link("cti-b").Sessions, "the three pinned sessions stay where they are")
}

// A client that comes back after a failover is given the line's current
// calls: a call that survived the outage is replayed after the
// MonitorStartResponse and can be controlled.
func TestReplayAfterFailover(t *testing.T) {
	e := newEnv(t, envOpts{})
	db := signIn(t, e.tcp(), userBob, lineBob)
	live := incomingAnswered(t, e, db, extOther, devBob)
	gen := e.link("cti-a").Generation
	require.NoError(t, e.sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDrop}))
	require.Eventually(t, func() bool {
		l := e.link("cti-a")
		return l.State == ctipool.StateUp && l.Generation > gen
	}, waitLong, pollInterval)
	require.Equal(t, 481, db.info(getDND(lineBob)).StatusCode, "the stale session's next request")

	d2 := invited(t, e.tcp(), userBob, lineBob)
	mark, n := d2.mark(), d2.cseq.Load()+1
	d2.xref = d2.ok(monitorStart(lineBob)).MonitorCrossRefID
	_, at := d2.waitEvent(mark, csta.KindEstablishedEvent, live)
	assert.Greater(t, at, d2.responseIndex(n), "the replay comes after the MonitorStartResponse")
	d2.ok(holdCall(live, lineBob))
	waitConn(t, e.sim, live, devBob, "hold")
}

// A switch that stops talking (TCP open, nothing answered) is found dead by
// the heartbeat within about two intervals.
func TestHeartbeatDetectsSilentSwitch(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	gen := e.link("cti-a").Generation
	silenced := time.Now()
	require.NoError(t, e.sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultSilent}))
	require.True(t, d.waitFor(func() bool { return len(systemStatusEvents(d)) > 0 }), "no SystemStatus INFO")
	took := time.Since(silenced)
	assert.Less(t, took, 3*time.Second, "silence noticed after %v (heartbeat 200 ms)", took)
	assert.Equal(t, "disabled", systemStatusEvents(d)[0].SystemStatus)
	d.fails(getDND(lineAlice), errOutOfService)
	e.sim.ClearFaults(0)
	require.Eventually(t, func() bool {
		l := e.link("cti-a")
		return l.State == ctipool.StateUp && l.Generation > gen
	}, waitLong, pollInterval)
	assert.Equal(t, 481, d.info(getDND(lineAlice)).StatusCode)
}

// BYE while a request waits for the PBX: BYE wins at once, the pending
// INFO gets a final answer (481 or its 200), nothing hangs (§1.12).
func TestByeWhilePbxRequestPending(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) { c.CTI.HeartbeatInterval = 2 * time.Second }})
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	require.NoError(t, e.sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDelay, Delay: 800 * time.Millisecond}))
	done := make(chan int, 1)
	go func() { done <- d.info(getDND(lineAlice)).StatusCode }()
	require.Eventually(t, func() bool { return e.sim.State().Nodes[0].InFlight["GetDoNotDisturb"] > 0 }, waitLong, time.Millisecond)
	start := time.Now()
	assert.Equal(t, 200, d.bye().StatusCode)
	assert.Less(t, time.Since(start), 600*time.Millisecond, "BYE waited for the PBX")
	select {
	case st := <-done:
		assert.Contains(t, []int{200, 481}, st)
	case <-time.After(waitLong):
		t.Fatal("the pending INFO never got a final response")
	}
	require.Eventually(t, func() bool { return e.gw.Sessions() == 0 }, waitLong, pollInterval)
	e.sim.ClearFaults(0)
}

// A client that does not say Supported: timer is not required to refresh
// (RFC 4028 §9): refresher=uas, no Require: timer, and the gateway
// refreshes with UPDATE; a client that stops answering is ended.
func TestSessionTimerWithoutClientSupport(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.SIP.SessionExpires = 2 * time.Second
		c.SIP.MinSE = time.Second
	}})
	c := e.tcp()
	d, res := c.invite(inviteOpts{user: userAlice, line: lineAlice, noSupported: true})
	require.NotNil(t, d, "INVITE answered %d", res.StatusCode)
	assert.Equal(t, "2;refresher=uas", header(res, "Session-Expires"))
	assert.NotContains(t, header(res, "Require"), "timer")
	updates := func(d *dialog) int {
		n := 0
		for _, en := range d.entries() {
			if en.req != nil && en.req.Method == sip.UPDATE {
				n++
			}
		}
		return n
	}
	require.True(t, d.waitFor(func() bool { return updates(d) >= 3 }), "the gateway did not refresh")
	assert.False(t, d.byeReceived(), "an answered refresh keeps the session")
	assert.Equal(t, 1, e.gw.Sessions())

	gone, res := c.invite(inviteOpts{user: userBob, line: lineBob, noSupported: true})
	require.NotNil(t, gone, "INVITE answered %d", res.StatusCode)
	gone.silent.Store(true)
	require.Eventually(t, func() bool { return e.gw.Sessions() == 1 }, waitLong, pollInterval, "an unanswered refresh must end the session")
	assert.True(t, gone.waitFor(gone.byeReceived), "the ended session got no BYE")
	assert.False(t, d.byeReceived())
}
