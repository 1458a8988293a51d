package gateway_test

// Authority (docs/wire.md §1.8 and §1.9.2): a user drives only
// the line appearances the directory gives them.

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/gateway"
)

func TestInviteAuthority(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.udp()

	d, res := c.invite(inviteOpts{user: userMallory, line: lineAlice})
	assert.Nil(t, d)
	assert.Equal(t, 403, res.StatusCode, "user not in the directory")

	d, res = c.invite(inviteOpts{user: userAlice, line: lineBob})
	assert.Nil(t, d)
	assert.Equal(t, 403, res.StatusCode, "another user's line")

	d, res = c.invite(inviteOpts{user: userErin, line: lineErinOther})
	assert.Nil(t, d)
	assert.Equal(t, 403, res.StatusCode, "same DN in another partition")

	d, res = c.invite(inviteOpts{user: userAlice, line: "tel:not a number!"})
	assert.Nil(t, d)
	assert.Equal(t, 403, res.StatusCode, "a line the gateway cannot resolve")

	assert.Equal(t, 0, e.gw.Sessions(), "a refused INVITE must leave no session")

	// No lcs:line: the Request-URI user part names the line (§1.3).
	bare := doc("RequestSystemStatus", "")
	d, res = c.invite(inviteOpts{user: userAlice, body: bare, requestUser: devBob})
	assert.Nil(t, d)
	assert.Equal(t, 403, res.StatusCode, "Request-URI naming another user's line")
	d, res = c.invite(inviteOpts{user: userAlice, body: bare, requestUser: devAlice})
	require.NotNil(t, d, "Request-URI line fallback answered %d", res.StatusCode)

	// The proper lines are accepted.
	invited(t, c, userAlice, lineAlice)
	invited(t, c, userErin, lineErin)
}

func TestRequestAuthority(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.tcp()
	da := signIn(t, c, userAlice, lineAlice)
	db := signIn(t, e.tcp(), userBob, lineBob)

	// Device-valued fields naming bob's line.
	da.fails(makeCall(lineBob, extOtherT), errPrivCalling)
	da.fails(makeCall(e164Bob, extOtherT), errPrivCalling)
	da.fails(monitorStart(lineBob), errPrivDevice)
	da.fails(setForwarding(lineBob, "forwardImmediate", true, extOtherT), errPrivDevice)
	da.fails(snapshotDevice(lineBob), errPrivDevice)
	da.fails(setDND(lineBob, true), errPrivDevice)
	da.fails(getForwarding(lineBob), errPrivDevice)
	dev := simDevice(e.sim, devBob)
	assert.Equal(t, 1, dev.Monitors, "only bob's own monitor may exist on his line")
	assert.False(t, dev.DND)
	for _, f := range dev.Forwarding {
		assert.False(t, f.Active, "forwarding set on bob's line: %+v", f)
	}

	// Another session's monitorCrossRefID.
	da.fails(monitorStop(db.xref), errInvalidXref)

	// A call on bob's line: alice may neither answer nor clear it, whatever
	// deviceID she names.
	mark := db.mark()
	id, err := e.sim.PlaceCall(extCaller, devBob)
	require.NoError(t, err)
	db.waitEvent(mark, csta.KindDeliveredEvent, id) // bob's monitor is intact
	da.fails(answerCall(id, lineAlice), errInvalidConn)
	da.fails(answerCall(id, lineBob), errInvalidConn)
	da.fails(clearConnection(id, lineAlice), errInvalidConn)
	da.fails(clearConnection(id, lineBob), errInvalidConn)
	da.fails(holdCall(id, extCallerT), errInvalidConn)
	// Nor steer it: deflect (whatever deviceID), transfer, consult, send
	// digits, retrieve.
	da.fails(deflectCall(id, lineBob, extOtherT), errInvalidConn)
	da.fails(deflectCall(id, extCallerT, extOtherT), errInvalidConn)
	da.fails(singleStepTransfer(id, extCallerT, extOtherT), errInvalidConn)
	da.fails(consultationCall(id, extCallerT, extOtherT), errInvalidConn)
	da.fails(generateDigits(id, extCallerT, "1"), errInvalidConn)
	da.fails(retrieveCall(id, extCallerT), errInvalidConn)
	assert.Equal(t, "alerting", connState(e.sim, id, devBob), "bob's call must be untouched")
	assert.Equal(t, "connected", connState(e.sim, id, extCaller))
	assert.Empty(t, da.events(0), "alice must see nothing of bob's call")

	db.ok(answerCall(id, lineBob))
	waitConn(t, e.sim, id, devBob, "connected")
}

func TestPartitionedLine(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := signIn(t, e.tcp(), userErin, lineErin)
	d.fails(monitorStart(lineErinOther), errPrivDevice)
	d.fails(makeCall(lineErinOther, extOtherT), errPrivCalling)
	// The DN without a partition still names the line (§1.8: partitions are
	// compared only when both sides give one).
	mark := d.mark()
	m := d.ok(makeCall(lineErin, extOtherT))
	assert.Equal(t, lineErin, m.Connection.DeviceID)
	d.waitEvent(mark, csta.KindDeliveredEvent, m.Connection.CallID)
	waitConn(t, e.sim, m.Connection.CallID, devErin, "connected")
}

func TestDeviceSelection(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.tcp()
	d := invited(t, c, userFrank, lineFrankB)
	ms := d.ok(monitorStart(lineFrankB))
	d.xref = ms.MonitorCrossRefID
	assert.Equal(t, 1, simDevice(e.sim, devFrankB).Monitors, "device=B must monitor B's PBX device")
	assert.Equal(t, 0, simDevice(e.sim, devFrankA).Monitors)

	mark := d.mark()
	id, err := e.sim.PlaceCall(extCaller, devFrankB)
	require.NoError(t, err)
	dl, _ := d.waitEvent(mark, csta.KindDeliveredEvent, id)
	assert.Equal(t, lineFrankB, dl.Connection.DeviceID)
	d.ok(answerCall(id, lineFrankB))
	waitConn(t, e.sim, id, devFrankB, "connected")

	// MakeCall from appearance A goes out on A's device.
	m := d.ok(makeCall(lineFrankA, extOtherT))
	assert.Equal(t, lineFrankA, m.Connection.DeviceID)
	waitConn(t, e.sim, m.Connection.CallID, devFrankA, "connected")

	// A device= that is not one of frank's appearances is refused.
	d.fails(monitorStart("tel:40005;phone-context=dialstring;device=SEPCCCC00000003"), errPrivDevice)

	// An INVITE naming a foreign device on the DN is refused too.
	d2, res := c.invite(inviteOpts{user: userFrank, line: "tel:40005;phone-context=dialstring;device=SEPCCCC00000003"})
	assert.Nil(t, d2)
	assert.Equal(t, 403, res.StatusCode)
}

// The CSTA error of each failure (docs/wire.md §1.9.2).
func TestErrorMapping(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.Gateway.MaxMonitorsPerSession = 1
		c.Gateway.MaxSessionsPerUser = 1
	}})
	d := signIn(t, e.tcp(), userAlice, lineAlice)

	// Per-user session cap: 503 with Retry-After.
	d2, res := e.tcp().invite(inviteOpts{user: userAlice, line: lineAlice})
	assert.Nil(t, d2)
	assert.Equal(t, 503, res.StatusCode)
	assert.NotEmpty(t, header(res, "Retry-After"))

	d.fails(clearConnection("deadbeef", lineAlice), errInvalidConn)
	d.fails(answerCall("deadbeef", lineAlice), errInvalidConn)
	d.fails(makeCall(lineAlice, "tel:call-me-maybe"), "operation/invalidDestination")
	d.fails(setForwarding(lineAlice, "forwardImmediate", true, "tel:nowhere"), "operation/invalidForwardingDestination")
	d.fails(monitorStop("00000000"), errInvalidXref)
	d.fails(monitorStart(lineAlice), "subscribedResourceAvailability/objectMonitorLimitExceeded")

	// A PBX CSTAErrorCode is passed through, re-emitted in ed3.
	mark := d.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	d.waitEvent(mark, csta.KindDeliveredEvent, id)
	var m *csta.Message
	m, res = d.cstaRes(holdCall(id, lineAlice))
	assert.Equal(t, csta.KindCSTAErrorCode, m.Kind)
	assert.Equal(t, errInvalidConnState, m.Error.String(), "HoldCall on an alerting call")
	assert.Contains(t, string(res.Body()), csta.NSEd3)
	assert.NotContains(t, string(res.Body()), "ed6", "the switch's namespace must not leak north")
}

// The monitored line is shown as the client spelled it in MonitorStart, the
// MakeCall response as spelled in MakeCall (§1.7, §1.8).
func TestLineSpellingEchoed(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := invited(t, e.tcp(), userAlice, lineAlice)
	d.xref = d.ok(monitorStart(e164Alice)).MonitorCrossRefID
	mark := d.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	dl, _ := d.waitEvent(mark, csta.KindDeliveredEvent, id)
	assert.Equal(t, e164Alice, dl.Connection.DeviceID)
	assert.Equal(t, e164Alice, dl.SubjectDevice.ID)
	assert.Equal(t, e164Alice, dl.CalledDevice.ID)
	d.ok(clearConnection(id, e164Alice))
	mark = d.mark()
	m := d.ok(makeCall(lineAlice, extOtherT))
	assert.Equal(t, lineAlice, m.Connection.DeviceID)
	or, _ := d.waitEvent(mark, csta.KindOriginatedEvent, m.Connection.CallID)
	assert.Equal(t, e164Alice, or.Connection.DeviceID)
	assert.Equal(t, extOtherT, or.CalledDevice.ID)
}

// A call on one of the user's own appearances that the session does not
// monitor (frank monitors B, calls from A) is still the user's call: the
// gateway cannot know it from a call table, so the PBX must judge it, as it
// does for a session with no monitor at all.
func TestCallOnUnmonitoredOwnAppearance(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := invited(t, e.tcp(), userFrank, lineFrankB)
	d.xref = d.ok(monitorStart(lineFrankB)).MonitorCrossRefID
	m := d.ok(makeCall(lineFrankA, extOtherT))
	id := m.Connection.CallID
	waitConn(t, e.sim, id, devFrankA, "connected")
	d.ok(clearConnection(id, lineFrankA))
	require.Eventually(t, func() bool { return connState(e.sim, id, devFrankA) == "" }, waitLong, pollInterval)
}

// An unknown user and a line the user may not control get the same answer:
// the answers must not tell an attacker which users exist.
func TestRefusalsDoNotTellUsersApart(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.tcp()
	_, unknown := c.invite(inviteOpts{user: userMallory, line: lineAlice})
	_, notHers := c.invite(inviteOpts{user: userBob, line: lineAlice})
	require.Equal(t, 403, unknown.StatusCode)
	assert.Equal(t, unknown.StatusCode, notHers.StatusCode)
	assert.Equal(t, unknown.Reason, notHers.Reason)
	assert.Equal(t, string(unknown.Body()), string(notHers.Body()))
}
