package gateway_test

// Device out of service and back (issue 17): relayed to every session of
// the line, remembered for the sessions that attach later, advertised in
// GetCSTAFeatures.

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
)

// nextAfter waits for the wire entry that follows index i in the dialog's
// log and returns its decoded CSTA body.
func nextAfter(t *testing.T, d *dialog, i int) *csta.Message {
	t.Helper()
	require.True(t, d.waitFor(func() bool { return len(d.entries()) > i+1 }), "nothing after entry %d", i)
	e := d.entries()[i+1]
	require.NotNil(t, e.req, "entry %d is not a request from the gateway", i+1)
	require.NotNil(t, e.msg, "entry %d has no CSTA body", i+1)
	return e.msg
}

// monitorStartAt sends MonitorStart on a signed-in dialog and returns the
// wire index of its 200 OK.
func monitorStartAt(t *testing.T, d *dialog, line string) int {
	t.Helper()
	n := d.cseq.Load() + 1
	ms := d.ok(monitorStart(line))
	d.xref = ms.MonitorCrossRefID
	at := d.responseIndex(n)
	require.GreaterOrEqual(t, at, 0)
	return at
}

func TestOutOfServiceAndBack(t *testing.T) {
	e := newEnv(t, envOpts{nodes: 2})
	dc := signIn(t, e.tcp(), userCarol, lineShared)
	require.Eventually(t, func() bool { return simDevice(e.sim, devShared).Monitors == 1 }, waitLong, pollInterval)

	m := dc.mark()
	require.NoError(t, e.sim.SetInService(devShared, false))
	ev, _ := dc.waitEvent(m, csta.KindOutOfServiceEvent, "")
	assert.Equal(t, csta.Dev(lineShared), ev.Device, "the device as the client spells its line")

	// dave signs in on the other link (round robin): its southbound
	// monitor of the line starts after the switch said so, and the
	// switch does not say it again. The gateway tells him, right after
	// his MonitorStartResponse.
	dd := invited(t, e.tcp(), userDave, lineShared)
	at := monitorStartAt(t, dd, lineShared)
	require.Eventually(t, func() bool { return simDevice(e.sim, devShared).Monitors == 2 }, waitLong, pollInterval,
		"the second session should be on the other link, with its own southbound monitor")
	oos := nextAfter(t, dd, at)
	require.Equal(t, csta.KindOutOfServiceEvent, oos.Kind, "the event right after the MonitorStartResponse")
	assert.Equal(t, dd.xref, oos.MonitorCrossRefID)
	assert.Equal(t, csta.Dev(lineShared), oos.Device)
	// A sign-in on the link that heard it gets it from the same replay.
	dk := invited(t, e.tcp(), userCarol, lineShared)
	at = monitorStartAt(t, dk, lineShared)
	require.Equal(t, csta.KindOutOfServiceEvent, nextAfter(t, dk, at).Kind)

	// The switch refuses calls from it; the gateway passes its error on.
	dc.fails(makeCall(lineShared, e164Bob), "systemResourceAvailibility/deviceOutOfService")

	all := []*dialog{dc, dd, dk}
	marks := func() map[*dialog]int {
		out := map[*dialog]int{}
		for _, d := range all {
			out[d] = d.mark()
		}
		return out
	}
	// Back in service, out again, back again: every session of the shared
	// line hears each one live, with its own monitorCrossRefID (waitEvent
	// checks it) and its own spelling of the line.
	for _, step := range []struct {
		in   bool
		kind csta.Kind
	}{{true, csta.KindBackInServiceEvent}, {false, csta.KindOutOfServiceEvent}, {true, csta.KindBackInServiceEvent}} {
		ms := marks()
		require.NoError(t, e.sim.SetInService(devShared, step.in))
		for _, d := range all {
			ev, _ := d.waitEvent(ms[d], step.kind, "")
			assert.Equal(t, csta.Dev(lineShared), ev.Device)
		}
	}
	assert.NotEqual(t, dc.xref, dd.xref)
	assert.NotEqual(t, dc.xref, dk.xref)

	m = dc.mark()
	id := dc.ok(makeCall(lineShared, e164Bob)).Connection.CallID
	dc.waitEvent(m, csta.KindOriginatedEvent, id)

	// A sign-in now is not told the line is out of service: its replay
	// is the call, nothing before it.
	dn := invited(t, e.tcp(), userDave, lineShared)
	at = monitorStartAt(t, dn, lineShared)
	first := nextAfter(t, dn, at)
	assert.NotEqual(t, csta.KindOutOfServiceEvent, first.Kind)
	assert.Equal(t, id, eventCallID(first))

	noRepliesToEvents(t, e)
}

// The last session leaving a line makes the gateway stop watching it and
// forget its service state (nothing would tell it the line came back); a
// session that remains keeps it for the next sign-in.
func TestOutOfServiceForgottenWhenUnwatched(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	m := d.mark()
	require.NoError(t, e.sim.SetInService(devAlice, false))
	d.waitEvent(m, csta.KindOutOfServiceEvent, "")
	require.Equal(t, 200, d.bye().StatusCode)
	require.Eventually(t, func() bool { return simDevice(e.sim, devAlice).Monitors == 0 }, waitLong, pollInterval)

	// It comes back while nobody watches it, and the switch tells nobody.
	require.NoError(t, e.sim.SetInService(devAlice, true))
	d2 := invited(t, e.tcp(), userAlice, lineAlice)
	monitorStartAt(t, d2, lineAlice)
	m2 := d2.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	d2.waitEvent(m2, csta.KindDeliveredEvent, id)
	for _, ev := range d2.events(0) {
		assert.NotEqual(t, csta.KindOutOfServiceEvent, ev.Kind, "stale out-of-service replayed")
	}
}

// GetCSTAFeatures lists the device maintenance events, after the logical
// ones (schema order), since the gateway sends them.
func TestFeaturesListDeviceMaintenanceEvents(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := invited(t, e.tcp(), userAlice, lineAlice)
	f := d.ok(getFeatures(lineAlice))
	var lists []string
	for _, l := range f.SupportedEvents {
		lists = append(lists, l.List)
		if l.List == "deviceMaintEvtsList" {
			assert.Equal(t, []string{"backInService", "outOfService"}, l.Items)
		}
	}
	assert.Equal(t, []string{"callControlEvtsList", "logicalEvtsList", "deviceMaintEvtsList"}, lists)
}
