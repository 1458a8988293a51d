package gateway_test

// A session has no goroutine of its own: whichever goroutine brings it work
// while it is idle drains it, and the run token passes with a request's
// answer. These tests load one session from every side at once.

import (
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/gateway"
	"github.com/cstagw/cstagw/test/ctisim"
)

// Many requests at once on one session while calls on its line produce
// events: with max_in_flight above the load, every request gets exactly
// one final answer, its own response (the run token is handed from
// goroutine to goroutine 120 times), every call's events arrive in order,
// and the session still answers at the end: nothing lost, nothing left
// waiting.
func TestOneSessionUnderConcurrentRequestsAndEvents(t *testing.T) {
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			e := newEnv(t, envOpts{gw: func(c *gateway.Config) { c.Gateway.MaxInFlight = 200 }})
			c := newClient(t, network, e.gw.SIPAddr(network))
			d := signIn(t, c, userAlice, lineAlice)
			from := d.mark()

			const requests, calls = 120, 6
			var wg sync.WaitGroup
			statuses := make([]int, requests)
			kinds := make([]csta.Kind, requests)
			cseqs := make([]uint32, requests)
			for i := range requests {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req := d.newRequest(sip.INFO, getDND(lineAlice), ctCSTA)
					cseqs[i] = req.CSeq().SeqNo
					res, err := c.do(req)
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
			assert.Equal(t, requests, answered, "every request answered 200 (max_in_flight is above the load)")
			assert.Zero(t, busy)
			// Exactly one final answer per request on the wire (UDP may
			// repeat an answer for a retransmitted request, never change it).
			// (The wire log may lag the transaction by a moment: wait.)
			finals := map[uint32][]int{}
			require.Eventually(t, func() bool {
				finals = map[uint32][]int{}
				for _, en := range d.entries() {
					if en.res != nil && en.res.CSeq().MethodName == sip.INFO {
						finals[en.cseq] = append(finals[en.cseq], en.res.StatusCode)
					}
				}
				for _, n := range cseqs {
					if len(finals[n]) == 0 {
						return false
					}
				}
				return true
			}, waitLong, pollInterval, "every request's answer on the wire")
			for i, n := range cseqs {
				got := finals[n]
				if network == "tcp" {
					assert.Len(t, got, 1, "request %d (CSeq %d): answers %v", i, n, got)
				} else {
					require.NotEmpty(t, got, "request %d (CSeq %d) has no answer on the wire", i, n)
					for _, st := range got {
						assert.Equal(t, got[0], st, "request %d: two different answers", i)
					}
				}
			}
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

// A request whose CTI answer takes longer than sip.handler_timeout: the
// client gets 503 with Retry-After at the bound, the late answer is
// dropped, and the session serves the next request normally.
func TestAbandonedRequestLeavesSessionUsable(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.SIP.HandlerTimeout = 400 * time.Millisecond
		c.CTI.RequestTimeout = 3 * time.Second
		c.CTI.HeartbeatInterval = 3 * time.Second // outlives the delay
	}})
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	require.NoError(t, e.sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDelay, Delay: time.Second}))
	start := time.Now()
	res := d.info(getDND(lineAlice))
	took := time.Since(start)
	assert.Equal(t, 503, res.StatusCode, "past sip.handler_timeout: %d %s %s", res.StatusCode, res.Reason, res.Body())
	assert.NotEmpty(t, header(res, "Retry-After"))
	assert.Less(t, took, 900*time.Millisecond, "answered at the handler bound, not the CTI answer")
	e.sim.ClearFaults(0)
	// The late answer arrives meanwhile; the session is unaffected.
	time.Sleep(800 * time.Millisecond) // let the late CTI answer come back
	assert.Equal(t, csta.KindGetDoNotDisturbResponse, d.ok(getDND(lineAlice)).Kind)
	assert.Equal(t, csta.KindGetForwardingResponse, d.ok(getForwarding(lineAlice)).Kind)
	assert.False(t, d.byeReceived())
}
