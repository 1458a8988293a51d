package main

// Phase 2 (cost per transaction) and phase 3 (latency), on one gateway with
// CostSessions sessions: half over TCP, half over UDP.

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// WindowResult is one steady load window of PBX-bound requests.
type WindowResult struct {
	Name        string         `json:"name"`
	Transport   string         `json:"transport"`
	Kind        string         `json:"request"`
	Offered     float64        `json:"offered_per_s"`
	Achieved    float64        `json:"achieved_per_s"`
	Seconds     float64        `json:"seconds"`
	Completed   int            `json:"completed_in_window"`
	Errors      map[string]int `json:"errors,omitempty"`
	Skipped     int            `json:"not_sent_backlog,omitempty"`
	GWCPUus     float64        `json:"gateway_cpu_us_per_request"`
	GWCPUPct    float64        `json:"gateway_cpu_pct_of_one_core"`
	SimCPUPct   float64        `json:"ctisim_cpu_pct_of_one_core"`
	GenCPUPct   float64        `json:"generator_cpu_pct_of_one_core"`
	SimCPUus    float64        `json:"ctisim_cpu_us_per_request"`
	GenCPUus    float64        `json:"generator_cpu_us_per_request"`
	Latency     Summary        `json:"client_rtt"`
	OtherCPUPct float64        `json:"other_processes_cpu_pct_of_one_core"`
	PendingEnd  int            `json:"pending_at_end"`
}

func classify(r *Response) string {
	switch {
	case r == nil:
		return "timeout"
	case r.Status != 200:
		return "SIP " + strconv.Itoa(r.Status)
	case bytes.Contains(r.Body, []byte("CSTAErrorCode")):
		return "CSTA error " + trunc(between(r.Body, "<CSTAErrorCode", "</CSTAErrorCode>"), 100)
	}
	return ""
}

// requestWindow sends kind INFOs round robin over ss at rate for warm+win
// (+ a short tail) and measures the window [warm, warm+win].
func (e *Env) requestWindow(rig *Rig, cl *Client, ss []*Session, kind string, rate float64, warm, win time.Duration, name string) WindowResult {
	res := WindowResult{Name: name, Transport: cl.opt.Network, Kind: kind, Offered: rate, Seconds: win.Seconds()}
	var t0, t1 atomic.Int64
	var completed atomic.Int64
	var lat Lat
	var errs Counts
	var skipped int
	var g0, g1, s0, s1, m0, m1 ProcStat
	var b0, b1 time.Duration
	var wg sync.WaitGroup
	wg.Add(1)
	time.AfterFunc(warm, func() {
		b0 = sysBusy()
		g0, _ = sample(rig.GW.PID)
		s0, _ = sample(rig.Sim.PID)
		m0, _ = sample(e.selfPID)
		t0.Store(time.Now().UnixNano())
		time.AfterFunc(win, func() {
			t1.Store(time.Now().UnixNano())
			g1, _ = sample(rig.GW.PID)
			s1, _ = sample(rig.Sim.PID)
			m1, _ = sample(e.selfPID)
			b1 = sysBusy()
			wg.Done()
		})
	})
	maxOut := int(math.Max(2000, rate*2))
	i := 0
	tail := 300 * time.Millisecond
	pace(rate, warm+win+tail, nil, func() {
		s := ss[i%len(ss)]
		i++
		if cl.Pending() > maxOut {
			skipped++
			return
		}
		err := s.Request(kind, func(r *Response, rtt time.Duration) {
			now := time.Now().UnixNano()
			a, b := t0.Load(), t1.Load()
			in := a != 0 && now >= a && (b == 0 || now <= b)
			if !in {
				return
			}
			completed.Add(1)
			if c := classify(r); c != "" {
				errs.Inc(c)
				return
			}
			lat.Add(rtt)
		})
		if err != nil {
			errs.Inc("send: " + err.Error())
		}
	})
	wg.Wait()
	_ = waitFor(5*time.Second, "answers", func() bool { return cl.Pending() == 0 })
	res.PendingEnd = cl.Pending()
	res.Completed = int(completed.Load())
	res.Errors = errs.Map()
	res.Skipped = skipped
	el := time.Duration(t1.Load() - t0.Load())
	res.Seconds = el.Seconds()
	res.Achieved = float64(res.Completed) / el.Seconds()
	if res.Completed > 0 {
		n := time.Duration(res.Completed)
		res.GWCPUus = us((g1.CPU - g0.CPU) / n)
		res.SimCPUus = us((s1.CPU - s0.CPU) / n)
		res.GenCPUus = us((m1.CPU - m0.CPU) / n)
	}
	res.GWCPUPct = math.Round(float64(g1.CPU-g0.CPU)/float64(el)*1000) / 10
	res.SimCPUPct = math.Round(float64(s1.CPU-s0.CPU)/float64(el)*1000) / 10
	res.GenCPUPct = math.Round(float64(m1.CPU-m0.CPU)/float64(el)*1000) / 10
	res.OtherCPUPct = math.Round(float64(b1-b0-(g1.CPU-g0.CPU)-(s1.CPU-s0.CPU)-(m1.CPU-m0.CPU))/float64(el)*1000) / 10
	res.Latency = lat.Summary()
	return res
}

// EventWindow is the event cost window.
type EventWindow struct {
	CallRate    float64           `json:"call_rate_per_s"`
	Seconds     float64           `json:"seconds"`
	Calls       int               `json:"calls_placed"`
	CallErrors  map[string]int    `json:"call_errors,omitempty"`
	Events      uint64            `json:"event_infos_in_window"`
	EventsRate  float64           `json:"events_per_s"`
	Kinds       map[string]uint64 `json:"event_kinds_total"`
	PerCall     float64           `json:"event_infos_per_call"`
	GWCPUus     float64           `json:"gateway_cpu_us_per_event"`
	GWCPUPct    float64           `json:"gateway_cpu_pct_of_one_core"`
	SimCPUus    float64           `json:"ctisim_cpu_us_per_event"`
	Answered    bool              `json:"events_answered_200"`
	OtherCPUPct float64           `json:"other_processes_cpu_pct_of_one_core"`
}

// callDriver places calls A→B between pairs of monitored stations through
// ctisim's control API and hangs each up after hold.
type callDriver struct {
	ctl    string
	free   chan [2]int
	jobs   chan func()
	wg     sync.WaitGroup
	placed atomic.Int64
	errs   Counts
	hold   time.Duration
	busy   sync.WaitGroup
}

func newCallDriver(ctl string, pairs [][2]int, hold time.Duration) *callDriver {
	d := &callDriver{ctl: ctl, free: make(chan [2]int, len(pairs)), jobs: make(chan func(), 4096), hold: hold}
	for _, p := range pairs {
		d.free <- p
	}
	for w := 0; w < 16; w++ {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			for j := range d.jobs {
				j()
			}
		}()
	}
	return d
}

// place starts one call (non-blocking).
func (d *callDriver) place() {
	var p [2]int
	select {
	case p = <-d.free:
	default:
		d.errs.Inc("no idle pair")
		return
	}
	d.busy.Add(1)
	job := func() {
		var out struct {
			CallID string `json:"callID"`
		}
		err := httpJSON("POST", "http://"+d.ctl+"/calls", map[string]string{"from": station(p[0]), "to": station(p[1])}, &out)
		if err != nil {
			d.errs.Inc(trunc(err.Error(), 120))
			d.free <- p
			d.busy.Done()
			return
		}
		d.placed.Add(1)
		time.AfterFunc(d.hold, func() {
			d.jobs <- func() {
				if err := httpJSON("POST", "http://"+d.ctl+"/calls/"+out.CallID+"/hangup", map[string]string{}, nil); err != nil {
					d.errs.Inc("hangup: " + trunc(err.Error(), 120))
				}
				d.free <- p
				d.busy.Done()
			}
		})
	}
	select {
	case d.jobs <- job:
	default:
		d.errs.Inc("driver queue full")
		d.free <- p
		d.busy.Done()
	}
}

func (d *callDriver) close() {
	d.busy.Wait()
	close(d.jobs)
	d.wg.Wait()
}

func (e *Env) eventWindow(rig *Rig, clients []*Client, pairs [][2]int, callRate float64, warm, win time.Duration) EventWindow {
	res := EventWindow{CallRate: callRate, Answered: e.AnswerEvents}
	d := newCallDriver(rig.SimCtl, pairs, 300*time.Millisecond)
	evs := func() uint64 {
		var n uint64
		for _, c := range clients {
			n += c.EventsRx.Load()
		}
		return n
	}
	var g0, g1, s0, s1, m0, m1 ProcStat
	var b0, b1 time.Duration
	var e0, e1 uint64
	var t0, t1 time.Time
	var wg sync.WaitGroup
	wg.Add(1)
	time.AfterFunc(warm, func() {
		b0 = sysBusy()
		g0, _ = sample(rig.GW.PID)
		s0, _ = sample(rig.Sim.PID)
		m0, _ = sample(e.selfPID)
		e0 = evs()
		t0 = time.Now()
		time.AfterFunc(win, func() {
			t1 = time.Now()
			g1, _ = sample(rig.GW.PID)
			s1, _ = sample(rig.Sim.PID)
			m1, _ = sample(e.selfPID)
			b1 = sysBusy()
			e1 = evs()
			wg.Done()
		})
	})
	pace(callRate, warm+win+200*time.Millisecond, nil, d.place)
	wg.Wait()
	d.close()
	time.Sleep(500 * time.Millisecond)
	res.Calls = int(d.placed.Load())
	res.CallErrors = d.errs.Map()
	res.Events = e1 - e0
	el := t1.Sub(t0)
	res.Seconds = el.Seconds()
	res.EventsRate = float64(res.Events) / el.Seconds()
	kinds := map[string]uint64{}
	for _, c := range clients {
		for k, v := range c.EventKinds() {
			kinds[k] += v
		}
	}
	res.Kinds = kinds
	var total uint64
	for k, v := range kinds {
		if k != "SystemStatus" {
			total += v
		}
	}
	if res.Calls > 0 {
		res.PerCall = math.Round(float64(total)/float64(res.Calls)*100) / 100
	}
	if res.Events > 0 {
		res.GWCPUus = us((g1.CPU - g0.CPU) / time.Duration(res.Events))
		res.SimCPUus = us((s1.CPU - s0.CPU) / time.Duration(res.Events))
	}
	res.GWCPUPct = math.Round(float64(g1.CPU-g0.CPU)/float64(el)*1000) / 10
	res.OtherCPUPct = math.Round(float64(b1-b0-(g1.CPU-g0.CPU)-(s1.CPU-s0.CPU)-(m1.CPU-m0.CPU))/float64(el)*1000) / 10
	return res
}

// CostResult is phase 2.
type CostResult struct {
	Sessions      int            `json:"sessions"`
	IdleGWCPUPct  float64        `json:"gateway_idle_cpu_pct"`
	Requests      []WindowResult `json:"requests"`
	Events        *EventWindow   `json:"events,omitempty"`
	Kamailio      []KamResult    `json:"kamailio,omitempty"`
	ProfileWindow *WindowResult  `json:"profile_window,omitempty"`
	Problems      []string       `json:"problems,omitempty"`
}

func (e *Env) costAndLatency(cfg PhaseConfig, doCost, doLat bool) error {
	n := cfg.CostSessions
	e.logf("cost: starting ctisim and cstagw (%d users, 2 CTI links)", n)
	rig, err := e.startRig(RigOptions{Name: "cost", Users: n, Links: 2, LogLevel: e.GWLog, Pprof: e.Pprof})
	if err != nil {
		return err
	}
	defer rig.Stop()
	tcp, err := NewClient(ClientOptions{Network: "tcp", Gateway: rig.SIPAddr, Conns: e.Conns, LocalIPs: e.LocalIPs, AnswerEvents: e.AnswerEvents})
	if err != nil {
		return err
	}
	defer tcp.Close()
	udp, err := NewClient(ClientOptions{Network: "udp", Gateway: rig.SIPAddr, Conns: e.Conns, LocalIPs: e.LocalIPs, AnswerEvents: e.AnswerEvents})
	if err != nil {
		return err
	}
	defer udp.Close()
	half := n / 2
	var tss, uss []*Session
	for i := 1; i <= n; i++ {
		if i <= half {
			tss = append(tss, tcp.NewSession(i, userURI(i), lineURI(i)))
		} else {
			uss = append(uss, udp.NewSession(i, userURI(i), lineURI(i)))
		}
	}
	st := signInAll(tss, e.Window, rig.GW.Alive)
	su := signInAll(uss, e.Window, rig.GW.Alive)
	if st.OK != len(tss) || su.OK != len(uss) {
		e.report.problem("cost: sign-in failures: tcp %s; udp %s", fmtCounts(st.Failed), fmtCounts(su.Failed))
	}
	e.logf("cost: %d TCP + %d UDP sessions signed in", st.OK, su.OK)
	res := &CostResult{Sessions: st.OK + su.OK}
	// Idle CPU: what the gateway spends with nothing to do.
	i0, _ := sample(rig.GW.PID)
	time.Sleep(2 * time.Second)
	i1, _ := sample(rig.GW.PID)
	res.IdleGWCPUPct = math.Round(float64(i1.CPU-i0.CPU)/float64(i1.At.Sub(i0.At))*1000) / 10
	warm := 2 * time.Second
	if e.Quick {
		warm = time.Second
	}
	window := func(cl *Client, ss []*Session, kind string) {
		name := kind + "/" + cl.opt.Network
		e.logf("cost: %s at %.0f/s for %v", name, cfg.CostRate, cfg.CostWindow)
		r := e.requestWindow(rig, cl, ss, kind, cfg.CostRate, warm, cfg.CostWindow, name)
		e.logf("cost: %s: %.0f/s achieved, gateway %.1f µs CPU/request (%.0f%% of a core), ctisim %.1f µs, p50 %.2f ms p99 %.2f ms, errors %s",
			name, r.Achieved, r.GWCPUus, r.GWCPUPct, r.SimCPUus, r.Latency.P50/1000, r.Latency.P99/1000, fmtCounts(r.Errors))
		res.Requests = append(res.Requests, r)
		time.Sleep(time.Second)
	}
	// TCP first; the UDP window comes last, since sipgo keeps every UDP
	// transaction 32 s and the heap it holds would weigh on what follows.
	if doCost {
		window(tcp, tss, "GetDoNotDisturb")
		if !e.Quick {
			window(tcp, tss, "SnapshotDevice")
		}
		// Events: calls between pairs of monitored stations (TCP and UDP
		// sessions alike).
		var pairs [][2]int
		for i := 1; i+1 <= n; i += 2 {
			pairs = append(pairs, [2]int{i, i + 1})
		}
		e.logf("cost: events from %.0f calls/s between %d pairs of monitored stations for %v", cfg.CallRate, len(pairs), cfg.CostWindow)
		ev := e.eventWindow(rig, []*Client{tcp, udp}, pairs, cfg.CallRate, warm, cfg.CostWindow)
		res.Events = &ev
		e.logf("cost: events: %d calls, %.0f event INFOs/s (%.1f per call), gateway %.1f µs CPU/event (%.0f%% of a core), call errors %s",
			ev.Calls, ev.EventsRate, ev.PerCall, ev.GWCPUus, ev.GWCPUPct, fmtCounts(ev.CallErrors))
		if e.Pprof {
			e.profile(rig, tcp, tss, pairs, cfg, res)
		}
	}
	var lat *LatResult
	if doLat {
		lat = e.latency(rig, tcp, tss, cfg)
		e.report.Latency = lat
	}
	if doCost {
		window(udp, uss, "GetDoNotDisturb")
	}
	res.Problems = append(res.Problems, e.scanLog(rig.GW.Log, "cost")...)
	if !rig.GW.Alive() {
		res.Problems = append(res.Problems, fmt.Sprintf("cost: gateway exited: %v", rig.GW.ExitErr()))
	}
	tcp.Close()
	udp.Close()
	rig.Stop()
	if doCost && cfg.Kamailio {
		for _, tr := range []string{"udp", "tcp"} {
			e.logf("cost: Kamailio (stateful, -x tlsf) relaying the same INFO at %.0f/s over %s to a sipp UAS", cfg.CostRate, tr)
			k := e.kamailio(tr, cfg.CostRate, cfg.CostWindow+warm, warm)
			if k.Err != "" {
				e.logf("cost: Kamailio %s: %s", tr, k.Err)
			} else {
				e.logf("cost: Kamailio %s: %.1f µs CPU per transaction (%d transactions)", tr, k.CPUus, k.Transactions)
			}
			res.Kamailio = append(res.Kamailio, k)
		}
	}
	if doCost {
		e.report.Cost = res
		e.report.addCost(res)
	}
	if lat != nil {
		e.report.addLatency(lat)
	}
	return nil
}

// profile captures pprof CPU, heap and mutex profiles of the gateway while
// it serves requests and events at the cost rates.
func (e *Env) profile(rig *Rig, cl *Client, ss []*Session, pairs [][2]int, cfg PhaseConfig, res *CostResult) {
	dir := filepath.Join(e.Out, "pprof")
	_ = os.MkdirAll(dir, 0o755)
	secs := int(cfg.CostWindow.Seconds())
	if secs < 3 {
		secs = 3
	}
	e.logf("pprof: profiling the gateway for %ds under %.0f req/s + %.0f calls/s", secs, cfg.CostRate, cfg.CallRate)
	var wg sync.WaitGroup
	var cpuErr error
	cpuPath := filepath.Join(dir, "gateway-cpu.pb.gz")
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(time.Second)
		cpuErr = fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", rig.PprofAddr, secs), cpuPath)
	}()
	d := newCallDriver(rig.SimCtl, pairs, 300*time.Millisecond)
	stop := make(chan struct{})
	go func() {
		pace(cfg.CallRate, time.Duration(secs+2)*time.Second, stop, d.place)
	}()
	w := e.requestWindow(rig, cl, ss, "GetDoNotDisturb", cfg.CostRate, time.Second, time.Duration(secs)*time.Second, "profile")
	close(stop)
	wg.Wait()
	d.close()
	res.ProfileWindow = &w

	// Events alone: the fan-out path without requests beside it.
	evPath := filepath.Join(dir, "gateway-cpu-events.pb.gz")
	e.logf("pprof: profiling the gateway for %ds under %.0f calls/s alone", secs, cfg.CallRate)
	d = newCallDriver(rig.SimCtl, pairs, 300*time.Millisecond)
	var evErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(time.Second)
		evErr = fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", rig.PprofAddr, secs), evPath)
	}()
	pace(cfg.CallRate, time.Duration(secs+1)*time.Second, nil, d.place)
	wg.Wait()
	d.close()
	heapPath := filepath.Join(dir, "gateway-heap.pb.gz")
	allocsPath := filepath.Join(dir, "gateway-allocs.pb.gz")
	mutexPath := filepath.Join(dir, "gateway-mutex.pb.gz")
	goPath := filepath.Join(dir, "gateway-goroutines.txt")
	errs := []error{cpuErr, evErr,
		fetch("http://"+rig.PprofAddr+"/debug/pprof/heap", heapPath),
		fetch("http://"+rig.PprofAddr+"/debug/pprof/allocs", allocsPath),
		fetch("http://"+rig.PprofAddr+"/debug/pprof/mutex", mutexPath),
		fetch("http://"+rig.PprofAddr+"/debug/pprof/goroutine?debug=1", goPath)}
	for _, err := range errs {
		if err != nil {
			e.report.problem("pprof: %v", err)
		}
	}
	for _, p := range []struct{ prof, opt, out string }{
		{cpuPath, "", "gateway-cpu-top.txt"},
		{cpuPath, "-cum", "gateway-cpu-cum.txt"},
		{evPath, "-cum", "gateway-cpu-events-cum.txt"},
		{allocsPath, "-sample_index=alloc_space", "gateway-allocs-top.txt"},
		{heapPath, "-sample_index=inuse_space", "gateway-heap-top.txt"},
		{mutexPath, "", "gateway-mutex-top.txt"},
	} {
		args := []string{"tool", "pprof", "-top", "-nodecount=40"}
		if p.opt != "" {
			args = append(args, p.opt)
		}
		args = append(args, e.GWBin, p.prof)
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			e.report.problem("pprof %s: %v: %s", p.out, err, trunc(string(out), 200))
			continue
		}
		path := filepath.Join(dir, p.out)
		_ = os.WriteFile(path, out, 0o644)
		e.report.Profiles = append(e.report.Profiles, path)
	}
	e.report.Profiles = append(e.report.Profiles, cpuPath, evPath, heapPath, allocsPath, mutexPath, goPath)
	e.logf("pprof: profiles in %s (go tool pprof %s %s)", dir, e.GWBin, cpuPath)
}

func fetch(url, path string) error {
	c := *httpc
	c.Timeout = 2 * time.Minute
	res, err := c.Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", url, res.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadFrom(res.Body)
	return err
}
