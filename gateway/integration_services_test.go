package gateway_test

// Every row of the service table (docs/wire.md §1.5.1) over SIP against
// ctisim, with the switch's own state as the judge of what really happened.

import (
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/sipstack"
)

var hex8 = regexp.MustCompile(`^[0-9a-f]{8}$`)

// incomingAnswered places a trunk call to dev, waits for the Delivered at
// the client, answers it at the switch and waits for Established.
func incomingAnswered(t *testing.T, e *testEnv, d *dialog, from, dev string) string {
	t.Helper()
	mark := d.mark()
	id, err := e.sim.PlaceCall(from, dev)
	require.NoError(t, err)
	d.waitEvent(mark, csta.KindDeliveredEvent, id)
	require.NoError(t, e.sim.Answer(id, dev))
	d.waitEvent(mark, csta.KindEstablishedEvent, id)
	waitConn(t, e.sim, id, dev, "connected")
	return id
}

func TestSignInRefreshAndFeatures(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.udp()

	d, res := c.invite(inviteOpts{user: userAlice, line: lineAlice})
	require.NotNil(t, d, "INVITE answered %d", res.StatusCode)
	assert.Equal(t, 200, res.StatusCode)
	assert.Equal(t, "1800;refresher=uac", header(res, "Session-Expires"))
	assert.Contains(t, header(res, "Require"), "timer")
	assert.Equal(t, sipstack.Allowed, header(res, "Allow"))
	assert.NotNil(t, res.Contact(), "200 OK without Contact")
	assert.Equal(t, ctCSTA, header(res, "Content-Type"))
	assert.Equal(t, disposition, header(res, "Content-Disposition"))
	m, err := csta.Decode(res.Body())
	require.NoError(t, err)
	assert.Equal(t, csta.KindRequestSystemStatusResponse, m.Kind)
	assert.Equal(t, "normal", m.SystemStatus)

	// GetCSTAFeatures: exactly what the gateway implements, in schema order.
	f := d.ok(getFeatures(lineAlice))
	services := map[string][]string{}
	var lists []string
	for _, l := range f.SupportedServices {
		services[l.List] = l.Items
		lists = append(lists, l.List)
	}
	schemaOrder := []string{"capExchangeServList", "systemStatServList", "monitoringServList", "snapshotServList",
		"callControlServList", "callAssociatedServList", "mediaAttachementServList", "routeingServList",
		"physDevServList", "ioRegServList", "vendorSpecificServList", "logicalServList"}
	assert.True(t, inOrder(lists, schemaOrder), "service lists out of schema order: %v", lists)
	cc := services["callControlServList"]
	for _, want := range []string{"alternateCall", "answerCall", "clearConnection", "conferenceCall", "consultationCall",
		"deflectCall", "holdCall", "makeCall", "reconnectCall", "retrieveCall", "singleStepTransfer", "transferCall"} {
		assert.Contains(t, cc, want)
	}
	assert.True(t, sort.StringsAreSorted(cc), "callControlServList not alphabetical: %v", cc)
	// Only implemented services: each one advertised is a row of the
	// service table (clearCall is implemented too).
	implemented := map[string]bool{
		"getCSTAFeatures": true, "requestSystemStatus": true, "systemStatus": true,
		"monitorStart": true, "monitorStop": true, "snapshotDevice": true,
		"alternateCall": true, "answerCall": true, "clearCall": true, "clearConnection": true, "conferenceCall": true,
		"consultationCall": true, "deflectCall": true, "holdCall": true, "makeCall": true, "reconnectCall": true,
		"retrieveCall": true, "singleStepTransfer": true, "transferCall": true, "generateDigits": true,
		"getDoNotDisturb": true, "getForwarding": true, "setDoNotDisturb": true, "setForwarding": true,
	}
	for list, items := range services {
		for _, it := range items {
			assert.True(t, implemented[it], "%s/%s is advertised but not implemented", list, it)
		}
	}
	assert.Contains(t, services["monitoringServList"], "monitorStart")
	assert.Contains(t, services["logicalServList"], "setForwarding")
	var evs []string
	for _, l := range f.SupportedEvents {
		if l.List == "callControlEvtsList" {
			evs = l.Items
		}
	}
	for _, want := range []string{"connectionCleared", "delivered", "established", "held", "originated", "retrieved", "transferred"} {
		assert.Contains(t, evs, want)
	}

	// MonitorStart: our own 8-hex monitorCrossRefID, not the PBX's.
	ms := d.ok(monitorStart(lineAlice))
	assert.Regexp(t, hex8, ms.MonitorCrossRefID)
	assert.True(t, ms.MonitorExistingCalls, "monitorExistingCalls must be true (snapshot replay follows)")
	var pbxXrefs []string
	for _, n := range e.sim.State().Nodes {
		for _, cl := range n.Clients {
			for _, mon := range cl.Monitors {
				if mon.Device == devAlice {
					pbxXrefs = append(pbxXrefs, mon.CrossRefID)
				}
			}
		}
	}
	require.Len(t, pbxXrefs, 1, "one southbound monitor on the line")
	assert.NotEqual(t, pbxXrefs[0], ms.MonitorCrossRefID, "northbound monitorCrossRefID must not be the PBX's")

	// Refresh by re-INVITE: normal while the link is up, fresh timer.
	r := d.reinvite(requestSystemStatus(lineAlice))
	require.Equal(t, 200, r.StatusCode)
	assert.NotEmpty(t, header(r, "Session-Expires"))
	rm, err := csta.Decode(r.Body())
	require.NoError(t, err, "re-INVITE 200 body %q", r.Body())
	assert.Equal(t, csta.KindRequestSystemStatusResponse, rm.Kind)
	assert.Equal(t, "normal", rm.SystemStatus)

	// Refresh by UPDATE (OC 2007 R2): 200, Session-Expires, no body.
	u := d.update()
	require.Equal(t, 200, u.StatusCode)
	assert.Contains(t, header(u, "Session-Expires"), "refresher=uac")
	assert.Empty(t, u.Body())

	// The monitor survived the refreshes.
	mark := d.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	d.xref = ms.MonitorCrossRefID
	d.waitEvent(mark, csta.KindDeliveredEvent, id)

	// MonitorStop: answered, the southbound monitor goes once nobody uses it.
	stop := d.ok(monitorStop(ms.MonitorCrossRefID))
	assert.Equal(t, csta.KindMonitorStopResponse, stop.Kind)
	require.Eventually(t, func() bool { return simDevice(e.sim, devAlice).Monitors == 0 }, waitLong, pollInterval,
		"southbound monitor not stopped")
	d.fails(monitorStop(ms.MonitorCrossRefID), errInvalidXref)

	assert.Equal(t, 200, d.bye().StatusCode)
}

// inOrder reports whether got follows the order of ref (items not in ref
// are ignored).
func inOrder(got, ref []string) bool {
	pos := map[string]int{}
	for i, r := range ref {
		pos[r] = i
	}
	last := -1
	for _, g := range got {
		p, ok := pos[g]
		if !ok {
			continue
		}
		if p < last {
			return false
		}
		last = p
	}
	return true
}

func TestMakeCallEventsFollowResponse(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := signIn(t, e.tcp(), userAlice, lineAlice)

	mark := d.mark()
	n := d.cseq.Load() + 1
	m := d.ok(makeCall(lineAlice, e164Bob))
	callID := m.Connection.CallID
	require.NotEmpty(t, callID)
	assert.Equal(t, lineAlice, m.Connection.DeviceID, "MakeCallResponse callingDevice/deviceID must echo the client's string")
	respAt := d.responseIndex(n)
	require.GreaterOrEqual(t, respAt, 0)

	si, siAt := d.waitEvent(mark, csta.KindServiceInitiatedEvent, callID)
	or, orAt := d.waitEvent(mark, csta.KindOriginatedEvent, callID)
	dl, dlAt := d.waitEvent(mark, csta.KindDeliveredEvent, callID)
	// ctisim sends ServiceInitiated and Originated before its response: the
	// gateway must hold them until the 200 OK is out (sipe drops events of
	// calls it does not know yet).
	assert.Greater(t, siAt, respAt, "ServiceInitiatedEvent arrived before the MakeCall 200 OK")
	assert.Greater(t, orAt, respAt, "OriginatedEvent arrived before the MakeCall 200 OK")
	assert.Greater(t, dlAt, orAt)
	assert.Greater(t, orAt, siAt)
	assert.Equal(t, "initiated", si.LocalConnectionInfo)
	assert.Equal(t, lineAlice, si.Connection.DeviceID)
	assert.Equal(t, "connected", or.LocalConnectionInfo)
	assert.Equal(t, lineAlice, or.Connection.DeviceID)
	assert.Equal(t, "connected", dl.LocalConnectionInfo, "outgoing call: the line is connected while the far end rings")
	assert.Equal(t, e164Bob, dl.SubjectDevice.ID, "alertingDevice as tel:+E.164 via the display rules")
	waitConn(t, e.sim, callID, devAlice, "connected")
	waitConn(t, e.sim, callID, devBob, "alerting")

	require.NoError(t, e.sim.Answer(callID, devBob))
	est, _ := d.waitEvent(mark, csta.KindEstablishedEvent, callID)
	assert.Equal(t, "connected", est.LocalConnectionInfo)
	assert.Equal(t, e164Bob, est.SubjectDevice.ID)

	// ClearConnection of the line.
	mark = d.mark()
	d.ok(clearConnection(callID, lineAlice))
	cl, _ := d.waitEvent(mark, csta.KindConnectionClearedEvent, callID)
	assert.Equal(t, lineAlice, cl.Connection.DeviceID)
	assert.Equal(t, "null", cl.LocalConnectionInfo)
	require.Eventually(t, func() bool { _, ok := simCall(e.sim, callID); return !ok }, waitLong, pollInterval, "call not cleared at the switch")

	// Byte-for-byte echo of an odd but valid spelling of the line.
	odd := "tel:4-0001;Phone-Context=dialstring"
	m2 := d.ok(makeCall(odd, extOtherT))
	assert.Equal(t, odd, m2.Connection.DeviceID, "callingDevice not echoed byte for byte")
	waitConn(t, e.sim, m2.Connection.CallID, extOther, "alerting")
	d.ok(clearConnection(m2.Connection.CallID, odd))
}

func TestAnswerIncomingCall(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := signIn(t, e.tcp(), userAlice, lineAlice)

	mark := d.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	dl, _ := d.waitEvent(mark, csta.KindDeliveredEvent, id)
	assert.Equal(t, "alerting", dl.LocalConnectionInfo)
	assert.Equal(t, extCallerT, dl.CallingDevice.ID, "caller must be shown as tel:+E.164")
	assert.Equal(t, csta.DeviceIdentifier, dl.CallingDevice.Status)
	assert.Equal(t, lineAlice, dl.Connection.DeviceID, "the line as the client spells it")
	assert.Equal(t, lineAlice, dl.SubjectDevice.ID)
	assert.Equal(t, "newCall", dl.Cause)

	d.ok(answerCall(id, lineAlice))
	est, _ := d.waitEvent(mark, csta.KindEstablishedEvent, id)
	assert.Equal(t, "connected", est.LocalConnectionInfo)
	waitConn(t, e.sim, id, devAlice, "connected")

	// Answering a connected call is a state error from the switch, passed
	// through.
	d.fails(answerCall(id, lineAlice), errInvalidConnState)
}

func TestHoldRetrieveAlternateReconnect(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	c1 := incomingAnswered(t, e, d, extCaller, devAlice)

	mark := d.mark()
	d.ok(holdCall(c1, lineAlice))
	h, _ := d.waitEvent(mark, csta.KindHeldEvent, c1)
	assert.Equal(t, "hold", h.LocalConnectionInfo)
	waitConn(t, e.sim, c1, devAlice, "hold")

	d.ok(retrieveCall(c1, lineAlice))
	r, _ := d.waitEvent(mark, csta.KindRetrievedEvent, c1)
	assert.Equal(t, "connected", r.LocalConnectionInfo)
	waitConn(t, e.sim, c1, devAlice, "connected")

	// A second call while the first is held.
	d.ok(holdCall(c1, lineAlice))
	waitConn(t, e.sim, c1, devAlice, "hold")
	mk := d.ok(makeCall(lineAlice, extOtherT))
	c2 := mk.Connection.CallID
	waitConn(t, e.sim, c2, extOther, "alerting")
	mark = d.mark()
	require.NoError(t, e.sim.Answer(c2, extOther))
	d.waitEvent(mark, csta.KindEstablishedEvent, c2)

	// AlternateCall: c2 goes on hold, c1 comes back.
	mark = d.mark()
	d.ok(alternateCall(c1, c2, lineAlice))
	d.waitEvent(mark, csta.KindHeldEvent, c2)
	d.waitEvent(mark, csta.KindRetrievedEvent, c1)
	waitConn(t, e.sim, c1, devAlice, "connected")
	waitConn(t, e.sim, c2, devAlice, "hold")

	// ReconnectCall: drop the active c1, take back c2.
	mark = d.mark()
	d.ok(reconnectCall(c1, c2, lineAlice))
	d.waitEvent(mark, csta.KindConnectionClearedEvent, c1)
	d.waitEvent(mark, csta.KindRetrievedEvent, c2)
	waitConn(t, e.sim, c2, devAlice, "connected")
	require.Eventually(t, func() bool { _, ok := simCall(e.sim, c1); return !ok }, waitLong, pollInterval)
}

func TestConsultationAndTransfer(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	c1 := incomingAnswered(t, e, d, extCaller, devAlice)

	mark := d.mark()
	n := d.cseq.Load() + 1
	cc := d.ok(consultationCall(c1, lineAlice, e164Bob))
	c2 := cc.Connection.CallID
	respAt := d.responseIndex(n)
	_, siAt := d.waitEvent(mark, csta.KindServiceInitiatedEvent, c2)
	_, heldAt := d.waitEvent(mark, csta.KindHeldEvent, c1)
	assert.Greater(t, siAt, respAt, "ServiceInitiatedEvent of the consultation call before the 200 OK")
	assert.Greater(t, heldAt, respAt, "HeldEvent caused by ConsultationCall before its 200 OK")
	require.NotEmpty(t, c2)
	assert.NotEqual(t, c1, c2)
	assert.Equal(t, lineAlice, cc.Connection.DeviceID, "initiatedCall is the line's connection, in the client's spelling")
	h, _ := d.waitEvent(mark, csta.KindHeldEvent, c1)
	assert.Equal(t, "hold", h.LocalConnectionInfo)
	d.waitEvent(mark, csta.KindDeliveredEvent, c2)
	waitConn(t, e.sim, c2, devBob, "alerting")
	require.NoError(t, e.sim.Answer(c2, devBob))
	d.waitEvent(mark, csta.KindEstablishedEvent, c2)

	mark = d.mark()
	d.ok(transferCall(c1, c2, lineAlice))
	te, at := d.waitEvent(mark, csta.KindTransferedEvent, c1)
	raw := string(d.entries()[at].req.Body())
	assert.Contains(t, raw, "<TransferedEvent", "the event is spelt TransferedEvent (one r)")
	assert.NotContains(t, raw, "TransferredEvent")
	assert.Equal(t, "TransferedEvent", te.Name)
	assert.Equal(t, c2, te.SecondaryOldCall.CallID)
	assert.Equal(t, "null", te.LocalConnectionInfo, "the transferring line leaves the call")

	require.Eventually(t, func() bool {
		return connState(e.sim, c1, devAlice) == "" && connState(e.sim, c1, devBob) == "connected" &&
			connState(e.sim, c1, extCaller) == "connected"
	}, waitLong, pollInterval, "switch state after transfer: %+v", e.sim.State().Calls)
}

func TestSingleStepTransfer(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	c1 := incomingAnswered(t, e, d, extCaller, devAlice)

	mark := d.mark()
	r := d.ok(singleStepTransfer(c1, lineAlice, e164Bob))
	assert.Equal(t, c1, r.Connection.CallID)
	te, _ := d.waitEvent(mark, csta.KindTransferedEvent, c1)
	assert.Equal(t, "singleStepTransfer", te.Cause)
	waitConn(t, e.sim, c1, devBob, "alerting")
	assert.Equal(t, "", connState(e.sim, c1, devAlice))
}

func TestConferenceCall(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	c1 := incomingAnswered(t, e, d, extCaller, devAlice)
	mark := d.mark()
	c2 := d.ok(consultationCall(c1, lineAlice, e164Bob)).Connection.CallID
	d.waitEvent(mark, csta.KindDeliveredEvent, c2)
	require.NoError(t, e.sim.Answer(c2, devBob))
	d.waitEvent(mark, csta.KindEstablishedEvent, c2)

	mark = d.mark()
	r := d.ok(conferenceCall(c1, c2, lineAlice))
	assert.Equal(t, c1, r.Connection.CallID)
	ce, _ := d.waitEvent(mark, csta.KindConferencedEvent, c1)
	assert.Equal(t, "connected", ce.LocalConnectionInfo)
	for _, dev := range []string{devAlice, devBob, extCaller} {
		waitConn(t, e.sim, c1, dev, "connected")
	}
}

func TestDeflectCall(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	mark := d.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	d.waitEvent(mark, csta.KindDeliveredEvent, id)

	d.ok(deflectCall(id, lineAlice, e164Bob))
	dv, _ := d.waitEvent(mark, csta.KindDivertedEvent, id)
	assert.Equal(t, "null", dv.LocalConnectionInfo, "the call left the line")
	assert.Equal(t, e164Bob, dv.Destination.ID)
	waitConn(t, e.sim, id, devBob, "alerting")
	assert.Equal(t, "", connState(e.sim, id, devAlice))
}

func TestGenerateDigits(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	c1 := incomingAnswered(t, e, d, extCaller, devAlice)
	d.ok(generateDigits(c1, lineAlice, "12*#"))
	c, ok := simCall(e.sim, c1)
	require.True(t, ok)
	var digits string
	for _, cn := range c.Connections {
		if cn.Device == devAlice {
			digits = cn.Digits
		}
	}
	assert.Equal(t, "12*#", digits, "the switch must have received the digits")
}

func TestForwardingAndDoNotDisturb(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := signIn(t, e.tcp(), userAlice, lineAlice)

	mark := d.mark()
	d.ok(setForwarding(lineAlice, "forwardImmediate", true, e164Bob))
	fe, _ := d.waitEvent(mark, csta.KindForwardingEvent, "")
	assert.Equal(t, "forwardImmediate", fe.ForwardingType)
	assert.True(t, fe.ForwardStatus)
	assert.Equal(t, lineAlice, fe.Device.ID)
	assert.Equal(t, e164Bob, fe.Destination.ID)
	require.Eventually(t, func() bool {
		for _, f := range simDevice(e.sim, devAlice).Forwarding {
			if f.Type == "forwardImmediate" {
				return f.Active && f.DN == devBob
			}
		}
		return false
	}, waitLong, pollInterval, "switch forwarding: %+v", simDevice(e.sim, devAlice))

	g := d.ok(getForwarding(lineAlice))
	found := false
	for _, it := range g.ForwardingList {
		if it.ForwardingType == "forwardImmediate" {
			found = true
			assert.True(t, it.ForwardStatus)
			assert.Equal(t, e164Bob, it.ForwardDN, "forwardDN shown as tel:+E.164")
		}
	}
	assert.True(t, found, "GetForwardingResponse lacks forwardImmediate: %+v", g.ForwardingList)

	d.ok(setForwarding(lineAlice, "forwardImmediate", false, ""))
	require.Eventually(t, func() bool {
		for _, f := range simDevice(e.sim, devAlice).Forwarding {
			if f.Type == "forwardImmediate" {
				return !f.Active
			}
		}
		return true
	}, waitLong, pollInterval)

	mark = d.mark()
	d.ok(setDND(lineAlice, true))
	de, _ := d.waitEvent(mark, csta.KindDoNotDisturbEvent, "")
	assert.True(t, de.DoNotDisturbOn)
	assert.True(t, simDevice(e.sim, devAlice).DND)
	assert.True(t, d.ok(getDND(lineAlice)).DoNotDisturbOn)
	d.ok(setDND(lineAlice, false))
	assert.False(t, simDevice(e.sim, devAlice).DND)
	assert.False(t, d.ok(getDND(lineAlice)).DoNotDisturbOn)
}

func TestSnapshotDevice(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	c1 := incomingAnswered(t, e, d, extCaller, devAlice)
	s := d.ok(snapshotDevice(lineAlice))
	require.Len(t, s.Snapshot, 1, "%+v", s.Snapshot)
	assert.Equal(t, c1, s.Snapshot[0].Connection.CallID)
	assert.Equal(t, lineAlice, s.Snapshot[0].Connection.DeviceID)
	assert.Equal(t, "connected", s.Snapshot[0].LocalCallState)
}

// callID-first resolution (§1.5.1): a ClearConnection naming the line in
// another spelling, or the far party, clears the line's own connection.
func TestClearConnectionResolvesByCallID(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := signIn(t, e.tcp(), userAlice, lineAlice)

	for _, dev := range []string{e164Alice, extCallerT} {
		c := incomingAnswered(t, e, d, extCaller, devAlice)
		mark := d.mark()
		d.ok(clearConnection(c, dev))
		cl, _ := d.waitEvent(mark, csta.KindConnectionClearedEvent, c)
		assert.Equal(t, lineAlice, cl.Connection.DeviceID,
			"ClearConnection with deviceID %s must clear the line's connection first", dev)
		require.Eventually(t, func() bool { return connState(e.sim, c, devAlice) == "" }, waitLong, pollInterval)
	}
}

// Snapshot replay (docs/wire.md §1.3) and a shared line.
func TestSnapshotReplayOnSignIn(t *testing.T) {
	e := newEnv(t, envOpts{nodes: 2})
	d1 := signIn(t, e.udp(), userAlice, lineAlice)
	held := incomingAnswered(t, e, d1, extCaller, devAlice)
	mark := d1.mark()
	d1.ok(holdCall(held, lineAlice))
	d1.waitEvent(mark, csta.KindHeldEvent, held)
	alerting, err := e.sim.PlaceCall(extOther, devAlice)
	require.NoError(t, err)
	d1.waitEvent(mark, csta.KindDeliveredEvent, alerting)

	// Sign out, so the next session's watch starts from a snapshot.
	d1.ok(monitorStop(d1.xref))
	require.Equal(t, 200, d1.bye().StatusCode)
	require.Eventually(t, func() bool { return simDevice(e.sim, devAlice).Monitors == 0 }, waitLong, pollInterval)

	d2 := invited(t, e.tcp(), userAlice, lineAlice)
	mark = d2.mark()
	n := d2.cseq.Load() + 1
	ms := d2.ok(monitorStart(lineAlice))
	assert.True(t, ms.MonitorExistingCalls)
	d2.xref = ms.MonitorCrossRefID
	respAt := d2.responseIndex(n)
	require.GreaterOrEqual(t, respAt, 0)

	dl, dlAt := d2.waitEvent(mark, csta.KindDeliveredEvent, alerting)
	assert.Equal(t, "alerting", dl.LocalConnectionInfo)
	assert.Equal(t, lineAlice, dl.Connection.DeviceID)
	es, esAt := d2.waitEvent(mark, csta.KindEstablishedEvent, held)
	assert.Equal(t, lineAlice, es.Connection.DeviceID)
	hd, hdAt := d2.waitEvent(mark, csta.KindHeldEvent, held)
	assert.Equal(t, "hold", hd.LocalConnectionInfo)
	assert.Greater(t, dlAt, respAt, "replay before the MonitorStartResponse")
	assert.Greater(t, esAt, respAt, "replay before the MonitorStartResponse")
	assert.Greater(t, hdAt, esAt, "HeldEvent must follow the EstablishedEvent of the held call")

	// The replayed calls can be driven.
	d2.ok(answerCall(alerting, lineAlice))
	waitConn(t, e.sim, alerting, devAlice, "connected")
}

func TestSharedLineBothSessions(t *testing.T) {
	e := newEnv(t, envOpts{})
	dc := signIn(t, e.udp(), userCarol, lineShared)
	dd := signIn(t, e.tcp(), userDave, lineShared)
	assert.NotEqual(t, dc.xref, dd.xref, "each session gets its own monitorCrossRefID")

	mc, md := dc.mark(), dd.mark()
	id, err := e.sim.PlaceCall(extCaller, devShared)
	require.NoError(t, err)
	ec, _ := dc.waitEvent(mc, csta.KindDeliveredEvent, id)
	ed, _ := dd.waitEvent(md, csta.KindDeliveredEvent, id)
	assert.Equal(t, dc.xref, ec.MonitorCrossRefID)
	assert.Equal(t, dd.xref, ed.MonitorCrossRefID)

	// A third session on the line while the call rings gets it replayed.
	d3 := signIn(t, e.tcp(), userCarol, lineShared)
	d3.waitEvent(0, csta.KindDeliveredEvent, id)

	dd.ok(answerCall(id, lineShared))
	dc.waitEvent(mc, csta.KindEstablishedEvent, id)
	dd.waitEvent(md, csta.KindEstablishedEvent, id)
	d3.waitEvent(0, csta.KindEstablishedEvent, id)

	// One session stopping its monitor does not stop the others'.
	dc.ok(monitorStop(dc.xref))
	md = dd.mark()
	require.NoError(t, e.sim.Hangup(id, ""))
	dd.waitEvent(md, csta.KindConnectionClearedEvent, id)
}

// The gateway's event INFOs follow §1.2: Request-URI = our Contact, Route =
// the recorded route, To = our From with every parameter (epid), From =
// the gateway's tag, CSTA content headers.
func TestEventRequestHeaders(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.udp()
	rr := "<sip:" + c.laddr + ";lr;ms-route-sig=aa1bc2dd3e>"
	d, res := c.invite(inviteOpts{user: userAlice, line: lineAlice, recordRoute: rr})
	require.NotNil(t, d, "INVITE answered %d", res.StatusCode)
	assert.Equal(t, rr, header(res, "Record-Route"), "200 OK must copy Record-Route")
	ms := d.ok(monitorStart(lineAlice))
	d.xref = ms.MonitorCrossRefID

	mark := d.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	_, at := d.waitEvent(mark, csta.KindDeliveredEvent, id)
	req := d.entries()[at].req
	assert.Equal(t, rr, header(req, "Route"))
	to := req.To()
	require.NotNil(t, to)
	assert.Equal(t, d.from.Params.GetOr("tag", "?"), to.Params.GetOr("tag", ""))
	assert.Equal(t, d.from.Params.GetOr("epid", "?"), to.Params.GetOr("epid", ""), "To must carry the client's epid")
	assert.Equal(t, d.to.Params.GetOr("tag", "?"), req.From().Params.GetOr("tag", ""))
	assert.Equal(t, d.callID, string(*req.CallID()))
	assert.Equal(t, sip.INFO, req.CSeq().MethodName)
	assert.Equal(t, "itest", req.Recipient.User, "Request-URI must be the client's Contact")
	assert.Equal(t, ctCSTA, header(req, "Content-Type"))
	assert.Equal(t, disposition, header(req, "Content-Disposition"))
	assert.True(t, strings.HasPrefix(string(req.Body()), "<?xml") || strings.HasPrefix(string(req.Body()), "<"))
}
