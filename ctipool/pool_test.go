package ctipool

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/test/ctisim"
)

// startSim runs a simulated cluster with n nodes on loopback.
func startSim(t testing.TB, n int, mod func(*ctisim.Config)) *ctisim.Sim {
	t.Helper()
	cfg := ctisim.DefaultConfig()
	cfg.Listen = nil
	for i := 0; i < n; i++ {
		cfg.Listen = append(cfg.Listen, "127.0.0.1:0")
	}
	cfg.Control = ""
	if mod != nil {
		mod(&cfg)
	}
	sim, err := ctisim.New(cfg)
	require.NoError(t, err)
	require.NoError(t, sim.Start())
	t.Cleanup(func() { _ = sim.Close() })
	return sim
}

// testConfig is a pool config with millisecond timers.
func testConfig(sim *ctisim.Sim, appSession bool) Config {
	cfg := Config{
		HeartbeatInterval: 100 * time.Millisecond,
		RequestTimeout:    time.Second,
		Reconnect: ReconnectConfig{
			InitialBackoff: 5 * time.Millisecond,
			MaxBackoff:     20 * time.Millisecond,
			MaxRetries:     3,
			HoldOff:        150 * time.Millisecond,
		},
		AdmissionBudget: 4,
	}
	for i, a := range sim.Addrs() {
		cfg.Links = append(cfg.Links, LinkConfig{Name: fmt.Sprintf("cti-%c", 'a'+i), Address: a, AppSession: appSession})
	}
	return cfg
}

// stateLog records every state change.
type stateLog struct {
	mu sync.Mutex
	ev []LinkState
}

func (s *stateLog) add(ls LinkState) {
	s.mu.Lock()
	s.ev = append(s.ev, ls)
	s.mu.Unlock()
}

func (s *stateLog) saw(name string, st State) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.ev {
		if e.Name == name && e.State == st {
			return true
		}
	}
	return false
}

// silence returns the silence a heartbeat failure reported.
func (s *stateLog) silence(name string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.ev {
		var hb *HeartbeatError
		if e.Name == name && errors.As(e.Err, &hb) {
			return hb.Silence
		}
	}
	return -1
}

func startPool(t testing.TB, cfg Config) (*Pool, *stateLog) {
	t.Helper()
	log := &stateLog{}
	p, err := New(cfg, Options{Logger: zerolog.Nop(), OnState: log.add})
	require.NoError(t, err)
	p.Start()
	t.Cleanup(p.Close)
	return p, log
}

func waitUp(t testing.TB, l *Link, gen uint64) {
	t.Helper()
	require.Eventually(t, func() bool { return l.Up() && l.Generation() >= gen }, 5*time.Second, time.Millisecond,
		"link %s not up with generation >= %d (state %s, gen %d)", l.Name(), gen, l.State(), l.Generation())
}

func TestBootstrapWithAndWithoutSession(t *testing.T) {
	for _, app := range []bool{true, false} {
		t.Run(fmt.Sprintf("app_session=%v", app), func(t *testing.T) {
			sim := startSim(t, 1, func(c *ctisim.Config) { c.SpeakFirst = !app })
			p, _ := startPool(t, testConfig(sim, app))
			l := p.Links()[0]
			waitUp(t, l, 1)
			resp, err := l.Do(context.Background(), &csta.Message{Kind: csta.KindSnapshotDevice, Device: csta.Dev("40001")})
			require.NoError(t, err)
			assert.Equal(t, csta.KindSnapshotDeviceResponse, resp.Kind)
			if app {
				// The switch offers ed3..ed6 and we ask ed6 first.
				assert.Equal(t, csta.NSEd6, l.Namespace())
				assert.Equal(t, 1, sim.State().Nodes[0].Sessions)
			} else {
				assert.Equal(t, csta.NSEd6, l.Namespace(), "without a session the first configured version is used")
				// The switch's speak-first SystemStatus was answered.
				require.Eventually(t, func() bool {
					cs := sim.State().Nodes[0].Clients
					return len(cs) == 1 && !cs[0].AwaitingSystemStatus
				}, time.Second, time.Millisecond)
			}
		})
	}
}

func TestCSTAErrorIsTyped(t *testing.T) {
	sim := startSim(t, 1, nil)
	p, _ := startPool(t, testConfig(sim, true))
	l := p.Links()[0]
	waitUp(t, l, 1)
	_, err := l.Do(context.Background(), &csta.Message{Kind: csta.KindAnswerCall, Connection: csta.ConnectionID{CallID: "nope", DeviceID: "40001"}})
	require.Error(t, err)
	code, ok := csta.CodeOf(err)
	require.True(t, ok, "error %v carries no CSTA code", err)
	assert.Equal(t, csta.CatOperation, code.Category)
}

func TestLoginRefusedIsRetriedNotFatal(t *testing.T) {
	sim := startSim(t, 1, func(c *ctisim.Config) { c.Login = "gw:secret" })
	cfg := testConfig(sim, true)
	cfg.Links[0].Username = "gw"
	cfg.Links[0].Password = "wrong"
	p, log := startPool(t, cfg)
	l := p.Links()[0]
	require.Eventually(t, func() bool { return log.saw(l.Name(), StateDown) }, 5*time.Second, time.Millisecond)
	assert.False(t, l.Up())
	assert.Contains(t, l.Health().LastError, "refused")
	assert.NotContains(t, fmt.Sprint(l.Health()), "wrong", "the password must not show in health")

	// The right password from an environment variable works.
	t.Setenv("CTI_PW", "secret")
	cfg.Links[0].Password = ""
	cfg.Links[0].PasswordEnv = "CTI_PW"
	p2, _ := startPool(t, cfg)
	waitUp(t, p2.Links()[0], 1)
}

func TestHeartbeatKeepsQuietLinkUp(t *testing.T) {
	sim := startSim(t, 1, nil)
	cfg := testConfig(sim, false)
	cfg.HeartbeatInterval = 30 * time.Millisecond
	p, log := startPool(t, cfg)
	l := p.Links()[0]
	waitUp(t, l, 1)
	// No traffic of our own: only the probes keep the link alive, one about
	// every interval.
	require.Eventually(t, func() bool {
		return sim.State().Nodes[0].FramesIn["RequestSystemStatus"] >= 6
	}, 5*time.Second, cfg.HeartbeatInterval/2)
	assert.True(t, l.Up())
	assert.EqualValues(t, 1, l.Generation())
	assert.False(t, log.saw(l.Name(), StateDown), "a quiet but healthy link must not be declared dead")
	assert.Greater(t, l.Health().RTT, time.Duration(0))
}

func TestTickIsCallableDirectly(t *testing.T) {
	sim := startSim(t, 1, nil)
	cfg := testConfig(sim, false)
	cfg.HeartbeatInterval = time.Hour // the link's own ticker never fires in this test
	p, _ := startPool(t, cfg)
	l := p.Links()[0]
	waitUp(t, l, 1)
	before := sim.State().Nodes[0].FramesIn["RequestSystemStatus"]
	l.Tick(time.Now().Add(90 * time.Minute)) // an interval of silence: probe
	require.Eventually(t, func() bool { return sim.State().Nodes[0].FramesIn["RequestSystemStatus"] == before+1 }, time.Second, time.Millisecond)
	l.Tick(time.Now().Add(3 * time.Hour)) // two intervals of silence: dead
	require.Eventually(t, func() bool { return l.Generation() >= 2 }, 5*time.Second, time.Millisecond, "dead link reconnected")
}

func TestSilentLinkDeadWithinTwoIntervals(t *testing.T) {
	sim := startSim(t, 1, nil)
	cfg := testConfig(sim, false)
	p, log := startPool(t, cfg)
	l := p.Links()[0]
	waitUp(t, l, 1)
	// Traffic right up to the fault, so the silence starts with it.
	for range 20 {
		_, err := l.DoGen(context.Background(), 1, &csta.Message{Kind: csta.KindRequestSystemStatus})
		require.NoError(t, err)
	}
	faultAt := time.Now()
	require.NoError(t, sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultSilent, Duration: 2 * time.Second}))
	require.Eventually(t, func() bool { return log.saw(l.Name(), StateDown) }, 5*time.Second, time.Millisecond)
	took := time.Since(faultAt)
	// Traffic ran up to the fault, so the silence starts with it.
	assert.LessOrEqual(t, took, 2*cfg.HeartbeatInterval+100*time.Millisecond, "silent fault → down")
	// The link records how long it had been silent when it gave up: two
	// intervals, plus scheduling slack (the check fires at the deadline itself).
	silence := log.silence(l.Name())
	assert.GreaterOrEqual(t, silence, 2*cfg.HeartbeatInterval)
	assert.LessOrEqual(t, silence, 2*cfg.HeartbeatInterval+cfg.HeartbeatInterval/8+100*time.Millisecond)
	assert.Contains(t, l.Health().LastError, "two heartbeat intervals")
	sim.ClearFaults(0)
	waitUp(t, l, 2)
}

func TestDropReconnectsWithNewGeneration(t *testing.T) {
	sim := startSim(t, 1, nil)
	p, log := startPool(t, testConfig(sim, true))
	l := p.Links()[0]
	waitUp(t, l, 1)
	require.NoError(t, sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDrop}))
	require.Eventually(t, func() bool { return log.saw(l.Name(), StateDown) }, 5*time.Second, time.Millisecond)
	waitUp(t, l, 2)
	assert.EqualValues(t, 2, l.Generation())
	assert.EqualValues(t, 1, l.Health().Reconnects)
	// The old generation's pinned requests are refused as stale.
	_, err := l.DoGen(context.Background(), 1, &csta.Message{Kind: csta.KindRequestSystemStatus})
	require.ErrorIs(t, err, ErrStaleGeneration)
	_, err = l.DoGen(context.Background(), 2, &csta.Message{Kind: csta.KindRequestSystemStatus})
	require.NoError(t, err)
}

func TestRefuseBeyondMaxRetriesHoldsOffThenRecovers(t *testing.T) {
	sim := startSim(t, 1, nil)
	cfg := testConfig(sim, true)
	p, log := startPool(t, cfg)
	l := p.Links()[0]
	waitUp(t, l, 1)
	require.NoError(t, sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultRefuse, Duration: 400 * time.Millisecond}))
	require.NoError(t, sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDrop}))
	require.Eventually(t, func() bool { return log.saw(l.Name(), StateHoldoff) }, 2*time.Second, time.Millisecond)
	assert.Equal(t, StateHoldoff, l.State())
	waitUp(t, l, 2)
	assert.Greater(t, sim.State().Nodes[0].Refused, uint64(cfg.Reconnect.MaxRetries))
}

func TestRoundRobinSkipsDeadLinks(t *testing.T) {
	sim := startSim(t, 3, nil)
	cfg := testConfig(sim, true)
	cfg.Reconnect.HoldOff = time.Hour
	cfg.Reconnect.MaxRetries = 1
	p, _ := startPool(t, cfg)
	for _, l := range p.Links() {
		waitUp(t, l, 1)
	}
	seen := map[string]int{}
	for i := 0; i < 6; i++ {
		l, err := p.Place()
		require.NoError(t, err)
		seen[l.Name()]++
	}
	assert.Equal(t, map[string]int{"cti-a": 2, "cti-b": 2, "cti-c": 2}, seen)

	require.NoError(t, sim.SetFault(1, ctisim.Fault{Kind: ctisim.FaultRefuse}))
	require.NoError(t, sim.SetFault(1, ctisim.Fault{Kind: ctisim.FaultDrop}))
	require.Eventually(t, func() bool { return !p.Links()[1].Up() }, time.Second, time.Millisecond)
	seen = map[string]int{}
	for i := 0; i < 6; i++ {
		l, err := p.Place()
		require.NoError(t, err)
		seen[l.Name()]++
	}
	assert.Zero(t, seen["cti-b"])
	assert.Equal(t, 6, seen["cti-a"]+seen["cti-c"])

	// Everything down: a typed error.
	for i := range 3 {
		require.NoError(t, sim.SetFault(i, ctisim.Fault{Kind: ctisim.FaultRefuse}))
		require.NoError(t, sim.SetFault(i, ctisim.Fault{Kind: ctisim.FaultDrop}))
	}
	require.Eventually(t, func() bool { return !p.AnyUp() }, time.Second, time.Millisecond)
	_, err := p.Place()
	require.ErrorIs(t, err, ErrNoLink)
	code, ok := csta.CodeOf(err)
	require.True(t, ok)
	assert.Equal(t, csta.CodeResourceOutOfService, code)
}

func TestRoundRobinReturnsToRecoveredLink(t *testing.T) {
	sim := startSim(t, 2, nil)
	p, _ := startPool(t, testConfig(sim, true))
	a, b := p.Links()[0], p.Links()[1]
	waitUp(t, a, 1)
	waitUp(t, b, 1)
	require.NoError(t, sim.SetFault(1, ctisim.Fault{Kind: ctisim.FaultRefuse}))
	require.NoError(t, sim.SetFault(1, ctisim.Fault{Kind: ctisim.FaultDrop}))
	require.Eventually(t, func() bool { return !b.Up() }, time.Second, time.Millisecond)
	for i := 0; i < 4; i++ {
		l, err := p.Place()
		require.NoError(t, err)
		require.Equal(t, a, l, "a down link is skipped")
	}
	sim.ClearFaults(1)
	waitUp(t, b, 2)
	got := map[string]bool{}
	for i := 0; i < 4; i++ {
		l, err := p.Place()
		require.NoError(t, err)
		got[l.Name()] = true
	}
	assert.True(t, got["cti-b"], "recovered link is placed on again")
}

func TestInFlightRequestsFailAtOnceWhenLinkDies(t *testing.T) {
	sim := startSim(t, 1, nil)
	cfg := testConfig(sim, true)
	cfg.RequestTimeout = 5 * time.Second
	p, _ := startPool(t, cfg)
	l := p.Links()[0]
	waitUp(t, l, 1)
	require.NoError(t, sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDelay, Delay: 3 * time.Second}))
	const n = 5
	errs := make(chan error, n)
	var sent atomic.Int32
	for i := 0; i < n; i++ {
		go func() {
			sent.Add(1)
			_, err := l.Do(context.Background(), &csta.Message{Kind: csta.KindGetDoNotDisturb, Device: csta.Dev("40001")})
			errs <- err
		}()
	}
	require.Eventually(t, func() bool { return l.Health().Outstanding == n }, time.Second, time.Millisecond)
	start := time.Now()
	require.NoError(t, sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultRefuse}))
	require.NoError(t, sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDrop}))
	for i := 0; i < n; i++ {
		err := <-errs
		require.ErrorIs(t, err, ErrLinkDown)
		code, _ := csta.CodeOf(err)
		assert.Equal(t, csta.CodeResourceOutOfService, code)
	}
	assert.Less(t, time.Since(start), time.Second, "in-flight requests must fail at once, not time out")
	// And a request on the dead link fails at once too.
	start = time.Now()
	_, err := l.Do(context.Background(), &csta.Message{Kind: csta.KindGetDoNotDisturb, Device: csta.Dev("40001")})
	require.ErrorIs(t, err, ErrLinkDown)
	assert.Less(t, time.Since(start), 100*time.Millisecond)
	sim.ClearFaults(0)
}

func TestSessionTimerResetWhateverTheTraffic(t *testing.T) {
	sim := startSim(t, 1, func(c *ctisim.Config) { c.MaxSessionDuration = time.Second })
	cfg := testConfig(sim, true)
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.Links[0].SessionDuration = time.Second // the switch grants 1 s: reset about every 333 ms
	p, log := startPool(t, cfg)
	l := p.Links()[0]
	waitUp(t, l, 1)
	// Keep traffic flowing, so heartbeats alone would never be sent: the
	// session must still be reset, or the switch ends it after 1 s.
	deadline := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(deadline) {
		_, err := l.Do(context.Background(), &csta.Message{Kind: csta.KindGetDoNotDisturb, Device: csta.Dev("40001")})
		require.NoError(t, err)
		time.Sleep(20 * time.Millisecond)
	}
	assert.GreaterOrEqual(t, sim.State().Nodes[0].FramesIn["ResetApplicationSessionTimer"], uint64(4))
	assert.EqualValues(t, 1, l.Generation(), "the application session must have survived")
	assert.False(t, log.saw(l.Name(), StateDown))
}

func TestRequestTimeoutIsTyped(t *testing.T) {
	sim := startSim(t, 1, nil)
	cfg := testConfig(sim, false)
	cfg.RequestTimeout = 50 * time.Millisecond
	cfg.HeartbeatInterval = time.Hour
	p, _ := startPool(t, cfg)
	l := p.Links()[0]
	waitUp(t, l, 1)
	require.NoError(t, sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDelay, Delay: 500 * time.Millisecond}))
	_, err := l.Do(context.Background(), &csta.Message{Kind: csta.KindGetDoNotDisturb, Device: csta.Dev("40001")})
	require.ErrorIs(t, err, ErrTimeout)
	code, _ := csta.CodeOf(err)
	assert.Equal(t, csta.CodeResourceBusy, code)
}

func TestMonitorsAreSharedAndRouted(t *testing.T) {
	sim := startSim(t, 1, nil)
	p, _ := startPool(t, testConfig(sim, true))
	l := p.Links()[0]
	waitUp(t, l, 1)
	ctx := context.Background()
	var got1, got2 atomic.Int32
	s1, err := l.Monitor(ctx, "40001", func(ev *csta.Message) { got1.Add(1) }, nil)
	require.NoError(t, err)
	s2, err := l.Monitor(ctx, "40001", func(ev *csta.Message) { got2.Add(1) }, nil)
	require.NoError(t, err)
	assert.EqualValues(t, 1, sim.State().Nodes[0].FramesIn["MonitorStart"], "one southbound monitor per device")
	assert.Equal(t, s1.CrossRefID(), s2.CrossRefID())

	_, err = sim.PlaceCall("+12065550147", "40001")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return got1.Load() > 0 && got2.Load() > 0 }, time.Second, time.Millisecond)

	s1.Close()
	s1.Close() // idempotent
	assert.EqualValues(t, 0, sim.State().Nodes[0].FramesIn["MonitorStop"], "still one subscriber")
	s2.Close()
	require.Eventually(t, func() bool { return sim.State().Nodes[0].FramesIn["MonitorStop"] == 1 }, time.Second, time.Millisecond)
	assert.Equal(t, 0, l.Health().Monitors)
}

func TestNewGenerationEndsMonitors(t *testing.T) {
	sim := startSim(t, 1, nil)
	p, _ := startPool(t, testConfig(sim, true))
	l := p.Links()[0]
	waitUp(t, l, 1)
	ended := make(chan error, 1)
	s, err := l.Monitor(context.Background(), "40002", func(*csta.Message) {}, func(err error) { ended <- err })
	require.NoError(t, err)
	assert.EqualValues(t, 1, s.Generation())
	require.NoError(t, sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDrop}))
	select {
	case err := <-ended:
		require.ErrorIs(t, err, ErrLinkDown)
	case <-time.After(2 * time.Second):
		t.Fatal("subscriber not told its monitor ended")
	}
	waitUp(t, l, 2)
	_, err = l.MonitorGen(context.Background(), 1, "40002", func(*csta.Message) {}, nil)
	require.ErrorIs(t, err, ErrStaleGeneration)
}

func TestAdmissionBudgetNeverExceeded(t *testing.T) {
	sim := startSim(t, 1, nil)
	cfg := testConfig(sim, true)
	cfg.AdmissionBudget = 3
	cfg.RequestTimeout = 5 * time.Second
	cfg.HeartbeatInterval = time.Second
	p, _ := startPool(t, cfg)
	l := p.Links()[0]
	waitUp(t, l, 1)
	require.NoError(t, sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDelay, Delay: 20 * time.Millisecond}))
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dev := fmt.Sprintf("%d", 40100+i)
			var err error
			if i%2 == 0 {
				_, err = l.Monitor(context.Background(), dev, func(*csta.Message) {}, nil)
			} else {
				_, err = l.Snapshot(context.Background(), l.Generation(), dev)
			}
			if err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	assert.Zero(t, failed.Load())
	hw := sim.State().Nodes[0].InFlightMonitorSnapshotHighWater
	assert.LessOrEqual(t, hw, 3, "ctisim saw more outstanding MonitorStart/SnapshotDevice than the budget")
	assert.GreaterOrEqual(t, hw, 2, "requests should have overlapped up to the budget")
}

func TestNoGoroutineLeakAfterManyReconnects(t *testing.T) {
	if testing.Short() {
		t.Skip("100 reconnect cycles")
	}
	sim := startSim(t, 1, nil)
	base := runtime.NumGoroutine()
	cfg := testConfig(sim, true)
	p, err := New(cfg, Options{Logger: zerolog.Nop()})
	require.NoError(t, err)
	p.Start()
	l := p.Links()[0]
	waitUp(t, l, 1)
	for i := 1; i <= 100; i++ {
		_, err := l.Monitor(context.Background(), "40001", func(*csta.Message) {}, nil)
		require.NoError(t, err)
		require.NoError(t, sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDrop}))
		waitUp(t, l, uint64(i+1))
	}
	p.Close()
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= base+2 }, 5*time.Second, 10*time.Millisecond,
		"goroutines: %d before, %d after", base, runtime.NumGoroutine())
}

func TestConfigValidate(t *testing.T) {
	cfg := Config{Links: []LinkConfig{
		{Name: "a", Address: "nohostport"},
		{Name: "a", Address: "127.0.0.1:1", Password: "x", PasswordEnv: "Y", Framing: "c"},
	}}
	err := cfg.Validate("cti")
	require.Error(t, err)
	for _, want := range []string{"cti.links[0].address", "cti.links[1].name", "cti.links[1]: set only one", "cti.links[1].framing"} {
		assert.Contains(t, err.Error(), want)
	}
	many := Config{}
	for i := 0; i < 9; i++ {
		many.Links = append(many.Links, LinkConfig{Address: "127.0.0.1:1"})
	}
	require.ErrorContains(t, many.Validate("cti"), "at most 8")
	require.ErrorContains(t, Config{}.Validate("cti"), "at least one")
}

func TestBackoffPolicy(t *testing.T) {
	b := newBackoff(ReconnectConfig{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 400 * time.Millisecond, MaxRetries: 4, HoldOff: 6 * time.Minute})
	b.rnd = func() float64 { return 1 }
	var got []time.Duration
	var holds []bool
	for i := 0; i < 6; i++ {
		d, h := b.next()
		got = append(got, d)
		holds = append(holds, h)
	}
	assert.Equal(t, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 6 * time.Minute, 100 * time.Millisecond}, got)
	assert.Equal(t, []bool{false, false, false, false, true, false}, holds)
	b.rnd = func() float64 { return 0 }
	d, _ := b.next()
	assert.Equal(t, 100*time.Millisecond, d, "jitter keeps at least half")
}

func TestAdmissionBudgetHeldUntilTheSwitchAnswers(t *testing.T) {
	sim := startSim(t, 1, nil)
	cfg := testConfig(sim, true)
	cfg.AdmissionBudget = 2
	cfg.RequestTimeout = 100 * time.Millisecond
	cfg.HeartbeatInterval = 5 * time.Second
	p, _ := startPool(t, cfg)
	l := p.Links()[0]
	waitUp(t, l, 1)
	// The switch answers after 150 ms, later than our request timeout:
	// callers give up, but their places stay taken until the answers come.
	require.NoError(t, sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDelay, Delay: 150 * time.Millisecond}))
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = l.Snapshot(context.Background(), l.Generation(), fmt.Sprintf("%d", 40200+i))
		}()
	}
	wg.Wait()
	sim.ClearFaults(0)
	_, err := l.Snapshot(context.Background(), l.Generation(), "40300")
	require.NoError(t, err, "places come back after the late answers")
	assert.LessOrEqual(t, sim.State().Nodes[0].InFlightMonitorSnapshotHighWater, 2)
}

// syncBuf is a goroutine-safe log sink.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestConnectFailuresLoggedFirstAndEveryNth(t *testing.T) {
	sim := startSim(t, 1, nil)
	require.NoError(t, sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultRefuse}))
	cfg := testConfig(sim, true)
	cfg.Reconnect = ReconnectConfig{InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, MaxRetries: 100, HoldOff: time.Hour, LogEvery: 3}
	var out syncBuf
	p, err := New(cfg, Options{Logger: zerolog.New(&out).Level(zerolog.DebugLevel)})
	require.NoError(t, err)
	p.Start()
	t.Cleanup(p.Close)
	count := func(level string) int {
		n := 0
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.Contains(line, "CTI link connect failed") && strings.Contains(line, `"level":"`+level+`"`) {
				n++
			}
		}
		return n
	}
	require.Eventually(t, func() bool { return count("error")+count("debug") >= 10 }, 5*time.Second, time.Millisecond)
	p.Close()
	errs, dbg := count("error"), count("debug")
	total := errs + dbg
	// Failures 1, 3, 6, 9...: 1 + total/3 at error level.
	assert.Equal(t, 1+total/3, errs, "%d error and %d debug lines", errs, dbg)
	assert.Greater(t, dbg, errs)
}
