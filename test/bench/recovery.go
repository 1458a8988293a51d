package main

// Phase 4: recovery. N sessions on a gateway with one CTI link; the ctisim
// node behind it fails (drop: every connection closed, or silent: open but
// mute) and refuses reconnection for a while, then returns.
//
// A prober keeps sending GetDoNotDisturb on every session round robin (at
// most one outstanding per session). Measured:
//   - refusal: from the fault to the send time after which every request is
//     answered resourceOutOfService;
//   - recovery: from the node's return until every session has reacted to its
//     481 with a new INVITE + ACK + MonitorStart, like Communicator;
//   - the node's high-water mark of outstanding MonitorStart+SnapshotDevice,
//     against cti.admission_budget.

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// RecRun is one fault scenario.
type RecRun struct {
	Fault          string      `json:"fault"`
	Sessions       int         `json:"sessions"`
	SignIn         SignInStats `json:"sign_in"`
	HeartbeatMs    float64     `json:"heartbeat_interval_ms"`
	Budget         int         `json:"admission_budget"`
	OutageMs       float64     `json:"outage_ms"`
	ProbeRate      float64     `json:"probe_rate_per_s"`
	SweepMs        float64     `json:"probe_sweep_ms"`
	RefusedAfterMs float64     `json:"all_refused_after_ms"`
	// LastAnswerAfterMs: the node's last successful answer after the fault
	// command; RefusedAfterSilenceMs: every request refused, counted from
	// that answer (the silence the heartbeat can see).
	LastAnswerAfterMs     float64 `json:"last_answer_after_fault_ms"`
	RefusedAfterSilenceMs float64 `json:"all_refused_after_last_answer_ms"`
	// FirstRefusalAfterSilenceMs: the link declared dead (first refusal);
	// PiledUp: requests waiting at that moment, all refused then.
	FirstRefusalAfterSilenceMs float64        `json:"first_refusal_after_last_answer_ms"`
	PiledUp                    int            `json:"requests_waiting_at_death"`
	RefusedSessions            int            `json:"sessions_refused_during_outage"`
	NotRefused                 map[string]int `json:"answers_after_fault_before_cutoff,omitempty"`
	DelayedRefusals            int            `json:"refusals_slower_than_100ms"`
	RefusalRTT                 Summary        `json:"refusal_rtt_while_down"`
	SlowestRefusals            []string       `json:"slowest_refusals,omitempty"`
	SlowRefusalSpan            string         `json:"slow_refusal_span,omitempty"`
	Stuck                      int            `json:"probe_timeouts"`
	LinkDownSeenMs             float64        `json:"link_down_seen_in_status_ms"`
	LinkUpSeenMs               float64        `json:"link_up_again_seen_in_status_ms"`
	RecoveredAllMs             float64        `json:"all_recovered_after_return_ms"`
	RecoveredP50Ms             float64        `json:"recovered_p50_after_return_ms"`
	Recovered                  int            `json:"sessions_recovered"`
	Stale481                   int            `json:"answers_481"`
	ReInvites                  int            `json:"re_invites"`
	ReSignInFailures           map[string]int `json:"re_sign_in_failures,omitempty"`
	SysStatusInfos             uint64         `json:"system_status_infos"`
	HWMBefore                  int            `json:"inflight_monitor_snapshot_hwm_after_sign_in"`
	HWMAfter                   int            `json:"inflight_monitor_snapshot_hwm_end"`
	NodeFramesIn               map[string]int `json:"node_frames_in,omitempty"`
	GWSessionsEnd              int            `json:"gateway_sessions_end"`
	Problems                   []string       `json:"problems,omitempty"`
}

// RecResult is phase 4.
type RecResult struct {
	Runs []RecRun `json:"runs"`
}

func (e *Env) recovery(cfg PhaseConfig) (*RecResult, error) {
	runs, err := eachMode([]string{"drop", "silent"}, func(fault string) (*RecRun, error) { return e.recoveryRun(cfg, fault) })
	return &RecResult{Runs: runs}, err
}

// eachMode runs a phase's scenarios in order, stopping at the first error
// (the runs done so far are kept).
func eachMode[R any](modes []string, run func(string) (*R, error)) ([]R, error) {
	var out []R
	for _, m := range modes {
		r, err := run(m)
		if err != nil {
			return out, err
		}
		out = append(out, *r)
	}
	return out, nil
}

type probeRec struct {
	sent, answered int64
	outcome        uint8
}

const (
	outOK uint8 = iota
	outRefused
	outOtherErr
	out481
	outTimeout
	outSIP
)

func (e *Env) recoveryRun(cfg PhaseConfig, fault string) (*RecRun, error) {
	n := cfg.RecSessions
	e.logf("recovery/%s: starting ctisim and cstagw (%d users, ONE CTI link, heartbeat %v, admission budget %d)", fault, n, cfg.Heartbeat, cfg.Budget)
	rig, err := e.startRig(RigOptions{Name: "recovery-" + fault, Users: n, Links: 1, Heartbeat: cfg.Heartbeat, Budget: cfg.Budget, LogLevel: e.GWLog, FastReconnect: true})
	if err != nil {
		return nil, err
	}
	defer rig.Stop()
	cl, err := NewClient(ClientOptions{Network: "tcp", Gateway: rig.SIPAddr, Conns: e.Conns, LocalIPs: e.LocalIPs, AnswerEvents: e.AnswerEvents, Timeout: 15 * time.Second})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ss := cl.UserSessions(n)
	run := &RecRun{Fault: fault, Sessions: n, HeartbeatMs: float64(cfg.Heartbeat.Milliseconds()), Budget: cfg.Budget, OutageMs: float64(cfg.Refuse.Milliseconds())}
	run.SignIn = signInAll(ss, e.Window, rig.GW.Alive)
	e.logf("recovery/%s: %d/%d signed in (%.0f/s)", fault, run.SignIn.OK, n, run.SignIn.PerSecond)
	if nodes, err := rig.SimState(); err == nil && len(nodes) > 0 {
		run.HWMBefore = nodes[0].InFlightMonitorSnapshotHighWater
	}

	// The prober.
	run.ProbeRate = math.Max(500, math.Min(5000, float64(n)/2))
	run.SweepMs = float64(n) / run.ProbeRate * 1000
	var (
		mu        sync.Mutex
		recs      []probeRec
		t1        atomic.Int64 // node return time (unix ns), 0 before
		recovered = make([]int64, n)
		refused   = make([]bool, n)
		resigning = make([]atomic.Bool, n)
		reinv     atomic.Int64
		n481      atomic.Int64
		refails   Counts
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
	var resign func(i int)
	resign = func(i int) {
		reinv.Add(1)
		ss[i].SignIn(func(r SignInResult) {
			if r.Err != nil {
				refails.Inc(r.Err.Error())
				time.AfterFunc(200*time.Millisecond, func() {
					select {
					case <-stop:
					default:
						resign(i)
					}
				})
				return
			}
			mu.Lock()
			recovered[i] = time.Now().UnixNano()
			mu.Unlock()
			resigning[i].Store(false)
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		i := 0
		pace(run.ProbeRate, time.Hour, stop, func() {
			// Next session that is idle.
			for k := 0; k < n; k++ {
				j := (i + k) % n
				s := ss[j]
				if resigning[j].Load() || s.Inflight() > 0 || !s.IsSigned() {
					continue
				}
				i = j + 1
				sent := time.Now().UnixNano()
				idx := j
				_ = s.Request("GetDoNotDisturb", func(r *Response, _ time.Duration) {
					o := outOK
					switch {
					case r == nil:
						o = outTimeout
					case r.Status == 481:
						o = out481
					case r.Status != 200:
						o = outSIP
					case bytes.Contains(r.Body, []byte("resourceOutOfService")):
						o = outRefused
					case bytes.Contains(r.Body, []byte("CSTAErrorCode")):
						o = outOtherErr
					}
					mu.Lock()
					recs = append(recs, probeRec{sent: sent, answered: time.Now().UnixNano(), outcome: o})
					if o == outRefused {
						refused[idx] = true
					}
					mu.Unlock()
					if o == out481 {
						n481.Add(1)
						if t1.Load() != 0 && resigning[idx].CompareAndSwap(false, true) {
							resign(idx)
						}
					}
				})
				return
			}
		})
	}()
	// Watch the link in /status.
	var downSeen, upSeen atomic.Int64
	var gen0 uint64
	if st, err := rig.Status(); err == nil && len(st.Links) > 0 {
		gen0 = st.Links[0].Generation
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				st, err := rig.Status()
				if err != nil || len(st.Links) == 0 {
					continue
				}
				now := time.Now().UnixNano()
				if st.Links[0].State != "up" && downSeen.Load() == 0 {
					downSeen.Store(now)
				}
				if st.Links[0].State == "up" && st.Links[0].Generation > gen0 && upSeen.Load() == 0 {
					upSeen.Store(now)
				}
			}
		}
	}()
	time.Sleep(2 * time.Second) // a baseline of successful probes
	ctl := "http://" + rig.SimCtl
	if err := httpJSON("POST", ctl+"/nodes/0/fault", map[string]any{"kind": "refuse"}, nil); err != nil {
		close(stop)
		wg.Wait()
		return nil, err
	}
	t0 := time.Now()
	if err := httpJSON("POST", ctl+"/nodes/0/fault", map[string]any{"kind": fault}, nil); err != nil {
		close(stop)
		wg.Wait()
		return nil, err
	}
	e.logf("recovery/%s: node 0 %s + refusing connections for %v", fault, fault, cfg.Refuse)
	time.Sleep(cfg.Refuse)
	ret := time.Now()
	t1.Store(ret.UnixNano())
	if err := httpJSON("DELETE", ctl+"/nodes/0/fault", nil, nil); err != nil {
		close(stop)
		wg.Wait()
		return nil, err
	}
	e.logf("recovery/%s: node 0 back; waiting for every session to re-INVITE and re-monitor", fault)
	// Sessions that got their 481 before the node returned (none expected)
	// are re-signed now.
	for i := range ss {
		if !ss[i].IsSigned() && ss[i].Inflight() == 0 && resigning[i].CompareAndSwap(false, true) {
			resign(i)
		}
	}
	deadline := 120 * time.Second
	_ = waitFor(deadline, "every session recovered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, t := range recovered {
			if t == 0 {
				return false
			}
		}
		return true
	})
	close(stop)
	wg.Wait()
	_ = waitFor(20*time.Second, "answers", func() bool { return cl.Pending() == 0 })

	mu.Lock()
	defer mu.Unlock()
	t0n, t1n := t0.UnixNano(), ret.UnixNano()
	// Refusal: the moment R after which every request is refused at once,
	// and every request still outstanding from before has been refused:
	// R = max(send time of any probe sent during the outage that was not
	// refused, answer time of any refusal that took longer than 100 ms).
	var cutoff int64 = t0n
	notRefused := map[string]int{}
	names := map[uint8]string{outOK: "ok", outRefused: "refused", outOtherErr: "other CSTA error", out481: "481", outTimeout: "timeout", outSIP: "other SIP status"}
	const prompt = int64(100 * time.Millisecond)
	var slow []probeRec
	for _, r := range recs {
		if r.outcome == outTimeout {
			run.Stuck++
		}
		if r.answered < t0n || r.sent >= t1n {
			continue // answered before the fault, or sent after the return
		}
		switch {
		case r.outcome != outRefused:
			notRefused[names[r.outcome]]++
			cutoff = max(cutoff, r.sent)
		case r.answered-r.sent > prompt:
			run.DelayedRefusals++
			cutoff = max(cutoff, r.answered)
			slow = append(slow, r)
		}
	}
	run.NotRefused = notRefused
	slices.SortFunc(slow, func(a, b probeRec) int { return int((b.answered - b.sent) - (a.answered - a.sent)) })
	for _, r := range slow[:min(len(slow), 5)] {
		run.SlowestRefusals = append(run.SlowestRefusals, fmt.Sprintf("sent at fault+%.0f ms, refused after %.0f ms", float64(r.sent-t0n)/1e6, float64(r.answered-r.sent)/1e6))
	}
	if len(slow) > 0 {
		first, last := slow[0].sent, slow[0].sent
		for _, r := range slow {
			first, last = min(first, r.sent), max(last, r.sent)
		}
		run.SlowRefusalSpan = fmt.Sprintf("slow refusals were sent between fault+%.0f ms and fault+%.0f ms", float64(first-t0n)/1e6, float64(last-t0n)/1e6)
	}
	run.RefusedAfterMs = float64(cutoff-t0n) / 1e6
	// The silence as the gateway sees it starts with the node's last
	// answer, not with the fault command: a node with a backlog keeps
	// answering for a while after it is told to go mute.
	lastAnswer := t0n
	for _, r := range recs {
		if r.outcome == outOK && r.answered >= t0n && r.answered < t1n {
			lastAnswer = max(lastAnswer, r.answered)
		}
	}
	run.LastAnswerAfterMs = float64(lastAnswer-t0n) / 1e6
	run.RefusedAfterSilenceMs = float64(cutoff-lastAnswer) / 1e6
	// The first refusal marks the link's death; from there to the cutoff
	// the gateway answers the requests that piled up during the silence.
	var firstRefusal int64
	for _, r := range recs {
		if r.outcome == outRefused && r.answered >= t0n && (firstRefusal == 0 || r.answered < firstRefusal) {
			firstRefusal = r.answered
		}
	}
	if firstRefusal != 0 {
		run.FirstRefusalAfterSilenceMs = float64(firstRefusal-lastAnswer) / 1e6
	}
	for _, r := range recs {
		if r.outcome == outRefused && r.sent < firstRefusal && r.answered >= firstRefusal {
			run.PiledUp++
		}
	}
	for i := range refused {
		if refused[i] {
			run.RefusedSessions++
		}
	}
	var recT []float64
	for _, t := range recovered {
		if t != 0 {
			run.Recovered++
			recT = append(recT, float64(t-t1n)/1e6)
		}
	}
	if len(recT) > 0 {
		slices.Sort(recT)
		run.RecoveredP50Ms = recT[len(recT)/2]
		run.RecoveredAllMs = recT[len(recT)-1]
	}
	if run.Recovered < n {
		run.RecoveredAllMs = -1
		run.Problems = append(run.Problems, fmt.Sprintf("recovery/%s: only %d of %d sessions recovered within %v of the node's return", fault, run.Recovered, n, deadline))
	}
	if d := downSeen.Load(); d != 0 {
		run.LinkDownSeenMs = float64(d-t0n) / 1e6
		// How fast a request is refused once the link is known to be down.
		var rt []time.Duration
		for _, r := range recs {
			if r.sent >= d && r.sent < t1n && r.outcome == outRefused {
				rt = append(rt, time.Duration(r.answered-r.sent))
			}
		}
		run.RefusalRTT = summarize(rt)
	}
	if u := upSeen.Load(); u != 0 {
		run.LinkUpSeenMs = float64(u-t1n) / 1e6
	}
	run.Stale481 = int(n481.Load())
	run.ReInvites = int(reinv.Load())
	run.ReSignInFailures = refails.Map()
	run.SysStatusInfos = cl.SysStatusRx.Load()
	if nodes, err := rig.SimState(); err == nil && len(nodes) > 0 {
		run.HWMAfter = nodes[0].InFlightMonitorSnapshotHighWater
		run.NodeFramesIn = nodes[0].FramesIn
	}
	if st, err := rig.Status(); err == nil {
		run.GWSessionsEnd = st.Sessions
	}
	if !rig.GW.Alive() {
		run.Problems = append(run.Problems, fmt.Sprintf("recovery/%s: gateway exited: %v", fault, rig.GW.ExitErr()))
	}
	run.Problems = append(run.Problems, e.scanLogFiltered(rig.GW.Log, "recovery/"+fault)...)
	e.logf("recovery/%s: every request refused %.0f ms after the fault (link down in /status after %.0f ms); all %d sessions re-monitored %.0f ms after the node's return (p50 %.0f ms; link up after %.0f ms); MonitorStart+SnapshotDevice high water %d (budget %d)",
		fault, run.RefusedAfterMs, run.LinkDownSeenMs, run.Recovered, run.RecoveredAllMs, run.RecoveredP50Ms, run.LinkUpSeenMs, run.HWMAfter, cfg.Budget)
	return run, nil
}

// scanLogFiltered is scanLog without the warnings a recovery is expected to
// produce (link lost, connect failed while refusing).
func (e *Env) scanLogFiltered(path, phase string) []string {
	var out []string
	for _, p := range e.scanLog(path, phase) {
		if bytes.Contains([]byte(p), []byte("CTI link lost")) || bytes.Contains([]byte(p), []byte("CTI link connect failed")) {
			continue
		}
		out = append(out, p)
	}
	return out
}
