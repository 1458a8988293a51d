package gateway_test

// Transports: the main flow over UDP and over TCP, and several dialogs
// multiplexed on one TCP connection as an OCS/Lync front end sends them.

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
)

// mainFlow: sign in, make a call, see it through, clear it, sign out.
func mainFlow(t *testing.T, e *testEnv, c *sipClient) {
	d := signIn(t, c, userAlice, lineAlice)
	mark := d.mark()
	m := d.ok(makeCall(lineAlice, e164Bob))
	id := m.Connection.CallID
	d.waitEvent(mark, csta.KindOriginatedEvent, id)
	d.waitEvent(mark, csta.KindDeliveredEvent, id)
	require.NoError(t, e.sim.Answer(id, devBob))
	d.waitEvent(mark, csta.KindEstablishedEvent, id)
	d.ok(holdCall(id, lineAlice))
	d.waitEvent(mark, csta.KindHeldEvent, id)
	d.ok(retrieveCall(id, lineAlice))
	d.waitEvent(mark, csta.KindRetrievedEvent, id)
	d.ok(clearConnection(id, lineAlice))
	d.waitEvent(mark, csta.KindConnectionClearedEvent, id)
	d.ok(monitorStop(d.xref))
	assert.Equal(t, 200, d.bye().StatusCode)
	require.Eventually(t, func() bool { return e.gw.Sessions() == 0 }, waitLong, pollInterval)
	require.Eventually(t, func() bool { return simDevice(e.sim, devAlice).Monitors == 0 }, waitLong, pollInterval,
		"southbound monitor not stopped after sign-out")
}

func TestMainFlowOverUDP(t *testing.T) {
	e := newEnv(t, envOpts{})
	mainFlow(t, e, e.udp())
}

func TestMainFlowOverTCP(t *testing.T) {
	e := newEnv(t, envOpts{})
	mainFlow(t, e, e.tcp())
}

func TestSeveralDialogsOnOneTCPConnection(t *testing.T) {
	e := newEnv(t, envOpts{nodes: 2})
	c := e.tcp() // one user agent, one TCP connection: a proxy
	type user struct {
		uri, line, dev string
		d              *dialog
	}
	users := []*user{
		{uri: userAlice, line: lineAlice, dev: devAlice},
		{uri: userBob, line: lineBob, dev: devBob},
		{uri: userCarol, line: lineShared, dev: devShared},
		{uri: userErin, line: lineErin, dev: devErin},
	}
	for _, u := range users {
		u.d = signIn(t, c, u.uri, u.line)
	}
	marks := map[*user]int{}
	calls := map[*user]string{}
	for _, u := range users {
		marks[u] = u.d.mark()
		id, err := e.sim.PlaceCall(extCaller, u.dev)
		require.NoError(t, err)
		calls[u] = id
	}
	for _, u := range users {
		dl, at := u.d.waitEvent(marks[u], csta.KindDeliveredEvent, calls[u])
		assert.Equal(t, u.line, dl.Connection.DeviceID)
		// It came over the connection the client opened (its remote end is
		// the gateway's listener), not a new one the gateway dialled.
		assert.Equal(t, e.gw.SIPAddr("tcp"), u.d.entries()[at].req.Source())
		u.d.ok(answerCall(calls[u], u.line))
	}
	for _, u := range users {
		u.d.waitEvent(marks[u], csta.KindEstablishedEvent, calls[u])
		waitConn(t, e.sim, calls[u], u.dev, "connected")
		// No dialog saw another's calls.
		for _, m := range u.d.events(0) {
			if id := eventCallID(m); id != "" {
				assert.Equal(t, calls[u], id, "%s got an event of another line's call", u.uri)
			}
		}
	}
	assert.Equal(t, len(users), e.gw.Sessions())
	// Sessions were spread over both links (round robin).
	st := e.gw.Status()
	require.Len(t, st.Links, 2)
	for _, l := range st.Links {
		assert.Equal(t, len(users)/2, l.Sessions, "link %s", l.Name)
	}
}
