package main

// Phase 5: continuity. Sessions keep their dialogs when their CTI node
// fails (cti.failover_after) or reconnects (cti.after_reconnect: resume).
//
//   - failover: 3 ctisim nodes, 3 links, fallback off. Nodes 1 and 2 refuse
//     connections while every session signs in, so all N land on link 0;
//     then they return, and node 0 is killed for good (refuse + drop). The
//     sessions must move to links 1 and 2 and answer on their original
//     dialogs.
//   - resume: 1 node, 1 link, after_reconnect: resume. Node 0 drops its
//     connections once and accepts again at once; the sessions must follow
//     the link to its new generation without a 481.
//
// A prober sends GetDoNotDisturb to every session round robin (one
// outstanding per session; a 481 is a failure, nobody re-INVITEs).
// Measured: from the fault until every session has answered a request sent
// after its link was seen down (failover) or back up (resume) with a
// GetDoNotDisturbResponse; the admission high-water at the surviving nodes
// against cti.admission_budget; the per-link session counts at the end.

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ContRun is one continuity scenario.
type ContRun struct {
	Mode            string         `json:"mode"`
	Sessions        int            `json:"sessions"`
	SignIn          SignInStats    `json:"sign_in"`
	FailoverAfterMs float64        `json:"failover_after_ms,omitempty"`
	Budget          int            `json:"admission_budget"`
	AllAnsweredMs   float64        `json:"all_answered_after_fault_ms"`
	P50Ms           float64        `json:"p50_answered_after_fault_ms"`
	Answered        int            `json:"sessions_answered"`
	N481            int            `json:"answers_481"`
	Refused         int            `json:"refusals"`
	Timeouts        int            `json:"probe_timeouts"`
	OtherErrors     int            `json:"other_errors"`
	SysStatus       uint64         `json:"system_status_infos"`
	LinkSessions    map[string]int `json:"link_sessions_end"`
	HighWater       map[string]int `json:"admission_high_water"`
	Problems        []string       `json:"problems,omitempty"`
}

// ContResult is phase 5.
type ContResult struct {
	Runs []ContRun `json:"runs"`
}

func (e *Env) continuity(cfg PhaseConfig) (*ContResult, error) {
	runs, err := eachMode([]string{"failover", "resume"}, func(mode string) (*ContRun, error) { return e.continuityRun(cfg, mode) })
	return &ContResult{Runs: runs}, err
}

func (e *Env) continuityRun(cfg PhaseConfig, mode string) (*ContRun, error) {
	n := cfg.ContSessions
	links := 3
	extra := fmt.Sprintf("  failover_after: %s\n  fallback:\n    enabled: false\n", cfg.FailoverAfter)
	if mode == "resume" {
		links = 1
		extra = "  failover_after: \"off\"\n  after_reconnect: resume\n"
	}
	e.logf("continuity/%s: starting ctisim and cstagw (%d users, %d links, heartbeat %v, budget %d)", mode, n, links, cfg.Heartbeat, cfg.Budget)
	rig, err := e.startRig(RigOptions{Name: "continuity-" + mode, Users: n, Links: links, Heartbeat: cfg.Heartbeat,
		Budget: cfg.Budget, LogLevel: e.GWLog, FastReconnect: true, ExtraCTI: extra})
	if err != nil {
		return nil, err
	}
	defer rig.Stop()
	ctl := "http://" + rig.SimCtl
	fault := func(i int, kinds ...string) error {
		for _, k := range kinds {
			if err := httpJSON("POST", fmt.Sprintf("%s/nodes/%d/fault", ctl, i), map[string]any{"kind": k}, nil); err != nil {
				return err
			}
		}
		return nil
	}
	linkState := func(name string) (string, uint64) {
		st, err := rig.Status()
		if err != nil {
			return "", 0
		}
		for _, l := range st.Links {
			if l.Name == name {
				return l.State, l.Generation
			}
		}
		return "", 0
	}
	if mode == "failover" {
		for _, i := range []int{1, 2} {
			if err := fault(i, "refuse", "drop"); err != nil {
				return nil, err
			}
		}
		if err := waitFor(30*time.Second, "links b and c down", func() bool {
			b, _ := linkState("cti-b")
			c, _ := linkState("cti-c")
			return b != "up" && c != "up"
		}); err != nil {
			return nil, err
		}
	}
	cl, err := NewClient(ClientOptions{Network: "tcp", Gateway: rig.SIPAddr, Conns: e.Conns, LocalIPs: e.LocalIPs, AnswerEvents: e.AnswerEvents, Timeout: 15 * time.Second})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ss := cl.UserSessions(n)
	run := &ContRun{Mode: mode, Sessions: n, Budget: cfg.Budget}
	if mode == "failover" {
		run.FailoverAfterMs = float64(cfg.FailoverAfter.Milliseconds())
	}
	run.SignIn = signInAll(ss, e.Window, rig.GW.Alive)
	e.logf("continuity/%s: %d/%d signed in (%.0f/s)", mode, run.SignIn.OK, n, run.SignIn.PerSecond)
	if mode == "failover" {
		for _, i := range []int{1, 2} {
			if err := httpJSON("DELETE", fmt.Sprintf("%s/nodes/%d/fault", ctl, i), nil, nil); err != nil {
				return nil, err
			}
		}
		if err := waitFor(30*time.Second, "links b and c back", func() bool {
			b, _ := linkState("cti-b")
			c, _ := linkState("cti-c")
			return b == "up" && c == "up"
		}); err != nil {
			return nil, err
		}
	}

	pr := startProber(ss, math.Max(500, math.Min(5000, float64(n)/2)))
	time.Sleep(2 * time.Second) // a baseline of answered probes
	pr.n481.Store(0)
	t0 := time.Now()
	if mode == "failover" {
		if err := fault(0, "refuse", "drop"); err != nil {
			pr.close()
			return nil, err
		}
		e.logf("continuity/failover: node 0 killed for good; sessions must move after %v", cfg.FailoverAfter)
		_ = waitFor(30*time.Second, "link a down", func() bool { s, _ := linkState("cti-a"); return s != "up" })
	} else {
		_, gen := linkState("cti-a")
		if err := fault(0, "drop"); err != nil {
			pr.close()
			return nil, err
		}
		_ = httpJSON("DELETE", ctl+"/nodes/0/fault", nil, nil)
		e.logf("continuity/resume: node 0 dropped its connections once")
		_ = waitFor(30*time.Second, "link a back on a new generation", func() bool {
			s, g := linkState("cti-a")
			return s == "up" && g > gen
		})
	}
	pr.setMark()
	deadline := cfg.FailoverAfter + 90*time.Second
	pr.waitAll(deadline)
	pr.close()
	_ = waitFor(20*time.Second, "answers", func() bool { return cl.Pending() == 0 })
	run.Answered, run.P50Ms, run.AllAnsweredMs = pr.summary(t0, n)
	if run.Answered < n {
		run.Problems = append(run.Problems, fmt.Sprintf("continuity/%s: only %d of %d sessions answered on their dialog within %v", mode, run.Answered, n, deadline))
	}
	run.N481, run.Refused, run.Timeouts, run.OtherErrors = pr.counts()
	run.SysStatus = cl.SysStatusRx.Load()
	run.LinkSessions = map[string]int{}
	if st, err := rig.Status(); err == nil {
		for _, l := range st.Links {
			run.LinkSessions[l.Name] = l.Sessions
		}
	}
	run.HighWater = map[string]int{}
	if nodes, err := rig.SimState(); err == nil {
		for i, nd := range nodes {
			run.HighWater[fmt.Sprintf("node%d", i)] = nd.InFlightMonitorSnapshotHighWater
		}
	}
	if !rig.GW.Alive() {
		run.Problems = append(run.Problems, fmt.Sprintf("continuity/%s: gateway exited: %v", mode, rig.GW.ExitErr()))
	}
	run.Problems = append(run.Problems, e.scanLogFiltered(rig.GW.Log, "continuity/"+mode)...)
	e.logf("continuity/%s: %d/%d sessions answered on their dialog, the last %.0f ms after the fault (p50 %.0f ms); 481s %d; links %v; high water %v (budget %d)",
		mode, run.Answered, n, run.AllAnsweredMs, run.P50Ms, run.N481, run.LinkSessions, run.HighWater, cfg.Budget)
	return run, nil
}

func (r *Report) addContinuity(x *ContResult, c PhaseConfig) {
	for _, run := range x.Runs {
		ph := "continuity/" + run.Mode
		r.row(ph, "sessions signed in", float64(run.SignIn.OK), "", fmt.Sprint(run.Sessions), ptr(run.SignIn.OK == run.Sessions))
		target := 15000.0
		if run.Mode == "failover" {
			target += run.FailoverAfterMs
		}
		r.answeredRows(ph, "fault", target, run.AllAnsweredMs, run.P50Ms, run.N481, run.Refused, run.Timeouts, run.OtherErrors)
		r.text(ph, "  sessions per link at the end", fmt.Sprint(run.LinkSessions), "", nil)
		hw := 0
		for _, v := range run.HighWater {
			hw = max(hw, v)
		}
		r.row(ph, "MonitorStart+SnapshotDevice high water at any node", float64(hw), "", fmt.Sprintf("≤ %d (budget)", run.Budget), ptr(hw <= run.Budget))
		for _, p := range run.Problems {
			r.problem("%s", p)
		}
	}
}

// answeredRows are the rows of a prober's figures after an event (a
// fault, a kill): when every session had answered on its original dialog
// (target in ms), the median, the 481s and the other failures meanwhile.
func (r *Report) answeredRows(ph, event string, target, allMs, p50Ms float64, n481, refused, timeouts, other int) {
	r.row(ph, event+" → every session answers on its original dialog", allMs, "ms",
		fmt.Sprintf("≤ %.0f ms", target), ptr(allMs >= 0 && allMs <= target))
	r.row(ph, "  median session answering after", p50Ms, "ms", "", nil)
	r.row(ph, "481 answers (a lost dialog)", float64(n481), "", "0", ptr(n481 == 0))
	r.text(ph, "  refusals / timeouts / other errors meanwhile", fmt.Sprintf("%d / %d / %d", refused, timeouts, other), "", nil)
}

// prober sends GetDoNotDisturb to every session round robin, one request
// outstanding per session, and records when each session first answered,
// with a GetDoNotDisturbResponse, a request sent after the mark. Once the
// mark is set, a session that has answered is not probed again: the
// rate goes to the sessions still waiting, so the figure is the time to
// recover, not the time a probe round takes.
type prober struct {
	ss       []*Session
	mu       sync.Mutex
	mark     atomic.Int64 // requests sent after this (unix ns) count
	answered []int64
	finished []atomic.Bool // answered[j] != 0, read without the lock
	n481     atomic.Int64
	ref      atomic.Int64 // refused resourceOutOfService
	tmo      atomic.Int64
	oth      atomic.Int64
	sent     atomic.Int64
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startProber(ss []*Session, rate float64) *prober {
	p := &prober{ss: ss, answered: make([]int64, len(ss)), finished: make([]atomic.Bool, len(ss)), stop: make(chan struct{})}
	p.mark.Store(math.MaxInt64)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		i := 0
		n := len(ss)
		pace(rate, time.Hour, p.stop, func() {
			for k := 0; k < n; k++ {
				j := (i + k) % n
				s := ss[j]
				if s.Inflight() > 0 || !s.IsSigned() || p.done(j) {
					continue
				}
				i = j + 1
				sent := time.Now().UnixNano()
				if s.Request("GetDoNotDisturb", func(r *Response, _ time.Duration) { p.record(j, sent, r) }) == nil {
					p.sent.Add(1)
				}
				return
			}
		})
	}()
	return p
}

func (p *prober) record(j int, sent int64, r *Response) {
	switch {
	case r == nil:
		p.tmo.Add(1)
	case r.Status == 481:
		p.n481.Add(1)
	case r.Status != 200:
		p.oth.Add(1)
	case bytes.Contains(r.Body, []byte("resourceOutOfService")):
		p.ref.Add(1)
	case bytes.Contains(r.Body, []byte("CSTAErrorCode")):
		p.oth.Add(1)
	default:
		if sent >= p.mark.Load() {
			p.mu.Lock()
			if p.answered[j] == 0 {
				p.answered[j] = time.Now().UnixNano()
				p.finished[j].Store(true)
			}
			p.mu.Unlock()
		}
	}
}

// done reports whether session j has answered since the mark.
func (p *prober) done(j int) bool { return p.finished[j].Load() }

// setMark starts counting: only answers to requests sent from now on count.
func (p *prober) setMark() { p.mark.Store(time.Now().UnixNano()) }

// waitAll waits until every session has answered since the mark.
func (p *prober) waitAll(limit time.Duration) {
	_ = waitFor(limit, "every session answering on its dialog", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, t := range p.answered {
			if t == 0 {
				return false
			}
		}
		return true
	})
}

func (p *prober) close() {
	close(p.stop)
	p.wg.Wait()
}

// times returns, sorted, when each session answered, in ms after t0.
func (p *prober) times(t0 time.Time) []float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ts []float64
	for _, t := range p.answered {
		if t != 0 {
			ts = append(ts, float64(t-t0.UnixNano())/1e6)
		}
	}
	slices.Sort(ts)
	return ts
}

// summary returns how many sessions answered since the mark, and the
// median and last of those times in ms after t0 (last -1 when fewer than
// want answered).
func (p *prober) summary(t0 time.Time, want int) (answered int, p50, last float64) {
	ts := p.times(t0)
	if len(ts) > 0 {
		p50, last = ts[len(ts)/2], ts[len(ts)-1]
	}
	if len(ts) < want {
		last = -1
	}
	return len(ts), p50, last
}

// counts returns the 481s, refusals, timeouts and other errors seen.
func (p *prober) counts() (n481, refused, timeouts, other int) {
	return int(p.n481.Load()), int(p.ref.Load()), int(p.tmo.Load()), int(p.oth.Load())
}
