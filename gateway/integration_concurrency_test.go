package gateway_test

// A session has no goroutine of its own: whichever goroutine brings it work
// while it is idle drains it, and the run token passes with a request's
// answer. These tests load one session from every side at once.

import (
	"sync"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/gateway"
)

// Many requests at once on one session while calls on its line produce
// events: every request gets a final answer (its response, or 503 beyond
// gateway.max_in_flight), every call's events arrive, and the session still
// answers at the end: nothing lost, nothing left waiting.
func TestOneSessionUnderConcurrentRequestsAndEvents(t *testing.T) {
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			c := newClient(t, network, e.gw.SIPAddr(network))
			d := signIn(t, c, userAlice, lineAlice)
			from := d.mark()

			const requests, calls = 120, 6
			var wg sync.WaitGroup
			statuses := make([]int, requests)
			kinds := make([]csta.Kind, requests)
			for i := range requests {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := c.do(d.newRequest(sip.INFO, getDND(lineAlice), ctCSTA))
					if err != nil {
						return
					}
					statuses[i] = res.StatusCode
					if m, err := csta.Decode(res.Body()); err == nil {
						kinds[i] = m.Kind
					}
				}()
			}
			// One call after the other (the station takes one alerting call
			// at a time), each offered and cleared while the requests run.
			ids := make([]string, calls)
			for i := range calls {
				id, err := e.sim.PlaceCall(extCaller, devAlice)
				require.NoError(t, err)
				require.NoError(t, e.sim.Hangup(id, extCaller))
				ids[i] = id
			}
			wg.Wait()

			answered, busy := 0, 0
			for i, st := range statuses {
				switch st {
				case 200:
					answered++
					assert.Equal(t, csta.KindGetDoNotDisturbResponse, kinds[i], "request %d", i)
				case 503:
					busy++
				default:
					t.Errorf("request %d: status %d (0: no final answer)", i, st)
				}
			}
			assert.Positive(t, answered)
			t.Logf("%d answered, %d refused 503 (max_in_flight)", answered, busy)
			for _, id := range ids {
				_, delivered := d.waitEvent(from, csta.KindDeliveredEvent, id)
				_, cleared := d.waitEvent(from, csta.KindConnectionClearedEvent, id)
				assert.Less(t, delivered, cleared, "call %s: events out of order", id)
			}
			assert.Equal(t, csta.KindGetDoNotDisturbResponse, d.ok(getDND(lineAlice)).Kind)
			assert.False(t, d.byeReceived(), "the session must survive the load")
		})
	}
}

// Concurrent INVITEs cannot pass the session limits together: the check
// and the count are one step.
func TestConcurrentInvitesRespectLimits(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.Gateway.MaxSessionsPerUser = 3
		c.Gateway.MaxSessions = 5
	}})
	try := func(user, line string, n int) (ok, busy int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, res := e.tcp().invite(inviteOpts{user: user, line: line})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case d != nil:
					ok++
				case res.StatusCode == 503:
					busy++
				}
			}()
		}
		wg.Wait()
		return ok, busy
	}
	ok, busy := try(userAlice, lineAlice, 40)
	assert.Equal(t, 3, ok, "max_sessions_per_user")
	assert.Equal(t, 37, busy)
	ok, busy = try(userBob, lineBob, 40)
	assert.Equal(t, 2, ok, "max_sessions: 5 in all")
	assert.Equal(t, 38, busy)
	assert.Equal(t, 5, e.gw.Sessions())
}
