package main

// Phase 1: capacity. Signed-in, monitored sessions held by one gateway
// process, with its RSS per session.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// SignInStats summarise one batch of sign-ins.
type SignInStats struct {
	Attempted  int            `json:"attempted"`
	OK         int            `json:"ok"`
	Failed     map[string]int `json:"failed,omitempty"`
	Seconds    float64        `json:"seconds"`
	PerSecond  float64        `json:"per_second"`
	InviteRTT  Summary        `json:"invite_rtt"`
	MonitorRTT Summary        `json:"monitor_start_rtt"`
}

// signInAll signs every session in, at most window at a time. When alive
// is given and reports false, the rest are not attempted.
func signInAll(ss []*Session, window int, alive ...func() bool) SignInStats {
	start := time.Now()
	sem := make(chan struct{}, window)
	var wg sync.WaitGroup
	var ok atomic.Int64
	var fails Counts
	var inv, mon Lat
	for i, s := range ss {
		sem <- struct{}{}
		if i%100 == 0 && len(alive) > 0 && !alive[0]() {
			<-sem
			fails.Inc("not attempted: the gateway process is gone")
			continue
		}
		wg.Add(1)
		s.SignIn(func(r SignInResult) {
			if r.Err != nil {
				fails.Inc(r.Err.Error())
			} else {
				ok.Add(1)
				inv.Add(r.InviteRTT)
				mon.Add(r.MonitorRTT)
			}
			<-sem
			wg.Done()
		})
	}
	wg.Wait()
	el := time.Since(start)
	return SignInStats{Attempted: len(ss), OK: int(ok.Load()), Failed: fails.Map(), Seconds: el.Seconds(),
		PerSecond: float64(ok.Load()) / el.Seconds(), InviteRTT: inv.Summary(), MonitorRTT: mon.Summary()}
}

// CapStep is the state after one capacity step.
type CapStep struct {
	Target         int         `json:"target_sessions"`
	SignIn         SignInStats `json:"sign_in"`
	GWSessions     int         `json:"gateway_sessions"`
	GWMonitors     int         `json:"gateway_link_monitors"`
	GWRSSMB        float64     `json:"gateway_rss_mb"`
	GWRSSPerSessKB float64     `json:"gateway_rss_per_session_kb"`
	// GWLiveMB is the Go heap live at the gateway's last collection
	// (go_gc_heap_live_bytes): the sessions' own cost, without the garbage
	// a GOGC of 400 lets accumulate between collections.
	GWLiveMB        float64 `json:"gateway_live_heap_mb"`
	GWLivePerSessKB float64 `json:"gateway_live_heap_per_session_kb"`
	GWThreads       int     `json:"gateway_threads"`
	GWCPUPerSignIn  float64 `json:"gateway_cpu_us_per_sign_in"`
	SimRSSMB        float64 `json:"ctisim_rss_mb"`
	GenRSSMB        float64 `json:"generator_rss_mb"`
}

// CapResult is one transport's capacity run.
type CapResult struct {
	Network         string    `json:"network"`
	Conns           int       `json:"connections"`
	BaseRSSMB       float64   `json:"gateway_baseline_rss_mb"`
	BaseLiveMB      float64   `json:"gateway_baseline_live_heap_mb"`
	Steps           []CapStep `json:"steps"`
	Reached         int       `json:"sessions_reached"`
	SettledRSSMB    float64   `json:"gateway_rss_after_settle_mb,omitempty"`
	SettleSeconds   float64   `json:"settle_seconds,omitempty"`
	PeakRSSMB       float64   `json:"gateway_peak_rss_mb"`
	Liveness        string    `json:"liveness_check"`
	Goroutines      int       `json:"gateway_goroutines,omitempty"`
	HeapProfile     string    `json:"heap_profile,omitempty"`
	LiveOK          int       `json:"liveness_ok"`
	LiveChecked     int       `json:"liveness_checked"`
	Events          uint64    `json:"unsolicited_infos_received"`
	Byes            uint64    `json:"byes_received"`
	GatewayExit     string    `json:"gateway_exit,omitempty"`
	Problems        []string  `json:"problems,omitempty"`
	Retransmits     uint64    `json:"generator_udp_retransmits"`
	GWUDPDrops      int64     `json:"gateway_udp_socket_drops"`
	ShutdownSeconds float64   `json:"shutdown_seconds"`
	ShutdownByes    uint64    `json:"shutdown_byes_received"`
	Timeouts        uint64    `json:"generator_timeouts"`
}

func mb(kb int64) float64 { return float64(kb) / 1024 }

func (e *Env) capacity(network string, steps []int, settle time.Duration) (*CapResult, error) {
	maxN := steps[len(steps)-1]
	e.logf("capacity/%s: starting ctisim and cstagw (directory of %d users, 2 CTI links)", network, maxN)
	rig, err := e.startRig(RigOptions{Name: "capacity-" + network, Users: maxN, Links: 2, LogLevel: e.GWLog, Pprof: e.Pprof})
	if err != nil {
		return nil, err
	}
	defer rig.Stop()
	res := &CapResult{Network: network, Conns: e.Conns, BaseRSSMB: mb(rig.GWBase.RSSKB)}
	liveMB := func() float64 {
		m, err := rig.Metrics()
		if err != nil {
			return 0
		}
		return m["go_gc_heap_live_bytes"] / (1 << 20)
	}
	res.BaseLiveMB = liveMB()
	cl, err := NewClient(ClientOptions{Network: network, Gateway: rig.SIPAddr, Conns: e.Conns, LocalIPs: e.LocalIPs, AnswerEvents: e.AnswerEvents})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ss := cl.UserSessions(maxN)
	done := 0
	for _, target := range steps {
		before, _ := sample(rig.GW.PID)
		e.logf("capacity/%s: signing in sessions %d..%d", network, done+1, target)
		st := signInAll(ss[done:target], e.Window, rig.GW.Alive)
		after, _ := sample(rig.GW.PID)
		done = target
		time.Sleep(2 * time.Second)
		gw, _ := sample(rig.GW.PID)
		sim, _ := sample(rig.Sim.PID)
		gen, _ := sample(e.selfPID)
		step := CapStep{Target: target, SignIn: st, GWRSSMB: mb(gw.RSSKB), GWThreads: gw.Threads, SimRSSMB: mb(sim.RSSKB), GenRSSMB: mb(gen.RSSKB)}
		if st.OK > 0 {
			step.GWCPUPerSignIn = us((after.CPU - before.CPU) / time.Duration(st.OK))
		}
		if s, err := rig.Status(); err == nil {
			step.GWSessions = s.Sessions
			for _, l := range s.Links {
				step.GWMonitors += l.Monitors
			}
		}
		step.GWLiveMB = liveMB()
		if step.GWSessions > 0 {
			step.GWRSSPerSessKB = float64(gw.RSSKB-rig.GWBase.RSSKB) / float64(step.GWSessions)
			step.GWLivePerSessKB = (step.GWLiveMB - res.BaseLiveMB) * 1024 / float64(step.GWSessions)
		}
		res.Steps = append(res.Steps, step)
		res.Reached = step.GWSessions
		e.logf("capacity/%s: %d sessions held (%d signed in now, %d failed: %s), gateway RSS %.0f MB (%.1f KB/session), live heap %.0f MB (%.1f KB/session), %.0f sign-ins/s, %.0f µs CPU per sign-in",
			network, step.GWSessions, st.OK, st.Attempted-st.OK, fmtCounts(st.Failed), step.GWRSSMB, step.GWRSSPerSessKB, step.GWLiveMB, step.GWLivePerSessKB, st.PerSecond, step.GWCPUPerSignIn)
		if !rig.GW.Alive() {
			res.Problems = append(res.Problems, fmt.Sprintf("gateway exited during the %d step: %v", target, rig.GW.ExitErr()))
			break
		}
		if st.OK < st.Attempted/2 {
			res.Problems = append(res.Problems, fmt.Sprintf("step %d: more than half the sign-ins failed; stopping", target))
			break
		}
	}
	if e.Pprof && rig.GW.Alive() {
		res.Goroutines, res.HeapProfile = e.heapProfile(rig, "capacity-"+network)
	}
	if settle > 0 && rig.GW.Alive() {
		e.logf("capacity/%s: waiting %v for transaction state to expire, then sampling RSS again", network, settle)
		time.Sleep(settle)
		gw, _ := sample(rig.GW.PID)
		res.SettledRSSMB = mb(gw.RSSKB)
		res.SettleSeconds = settle.Seconds()
	}
	if gw, err := sample(rig.GW.PID); err == nil {
		res.PeakRSSMB = mb(gw.HWMKB)
	}
	// Liveness: a PBX-bound request on a random sample of the sessions must
	// still be answered (no stuck or forgotten sessions).
	if rig.GW.Alive() {
		n := 0 // sessions probed: a sampled one that is not signed in is not asked
		var okN atomic.Int64
		var bad Counts
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for _, i := range rand.Perm(done)[:min(1000, done)] {
			s := ss[i]
			if !s.IsSigned() {
				continue
			}
			n++
			sem <- struct{}{}
			wg.Add(1)
			err := s.Request("GetDoNotDisturb", func(r *Response, _ time.Duration) {
				switch {
				case r == nil:
					bad.Inc("timeout")
				case r.Status != 200:
					bad.Inc(fmt.Sprintf("SIP %d", r.Status))
				case !containsStr(r.Body, "GetDoNotDisturbResponse"):
					bad.Inc("CSTA " + rootElement(r.Body) + " " + trunc(between(r.Body, "<", "</"), 60))
				default:
					okN.Add(1)
				}
				<-sem
				wg.Done()
			})
			if err != nil {
				bad.Inc(err.Error())
				<-sem
				wg.Done()
			}
		}
		wg.Wait()
		res.LiveChecked = n
		res.LiveOK = int(okN.Load())
		res.Liveness = fmt.Sprintf("%d/%d answered (%s)", res.LiveOK, n, fmtCounts(bad.Map()))
	}
	res.Events = cl.EventsRx.Load() + cl.SysStatusRx.Load()
	res.Byes = cl.ByeRx.Load()
	res.Problems = append(res.Problems, e.scanLog(rig.GW.Log, "capacity/"+network)...)
	if network == "udp" {
		// Before the shutdown: the socket goes with the process.
		_, ps, _ := strings.Cut(rig.SIPAddr, ":")
		port, _ := strconv.Atoi(ps)
		res.GWUDPDrops = udpDrops(port)
	}
	// Graceful shutdown with every session open: SIGTERM, then how long
	// until the process is gone and how many BYEs reached the clients.
	if rig.GW.Alive() && !(e.Quick && network == "udp") {
		t := time.Now()
		_ = syscall.Kill(rig.GW.PID, syscall.SIGTERM)
		const limit = 10 * time.Second // shutdown_grace is 5 s
		select {
		case <-rig.GW.done:
			res.ShutdownSeconds = time.Since(t).Seconds()
		case <-time.After(limit):
			res.ShutdownSeconds = -1
			// SIGQUIT makes the Go runtime dump every goroutine into the log.
			_ = syscall.Kill(rig.GW.PID, syscall.SIGQUIT)
			select {
			case <-rig.GW.done:
			case <-time.After(5 * time.Second):
			}
			res.Problems = append(res.Problems, fmt.Sprintf("capacity/%s: the gateway did not exit within %v of SIGTERM with %d sessions (SIGQUIT goroutine dump in %s)", network, limit, done, rig.GW.Log))
		}
		time.Sleep(200 * time.Millisecond)
		res.ShutdownByes = cl.ByeRx.Load() - res.Byes
		e.logf("capacity/%s: SIGTERM → exit in %.1fs, %d BYEs received", network, res.ShutdownSeconds, res.ShutdownByes)
	}
	res.Retransmits = cl.Retransmits.Load()
	res.Timeouts = cl.Timeouts.Load()
	return res, nil
}

// heapProfile saves the gateway's heap profile and its top, and returns the
// goroutine count (pprof overlay only).
func (e *Env) heapProfile(rig *Rig, name string) (int, string) {
	dir := filepath.Join(e.Out, "pprof")
	_ = os.MkdirAll(dir, 0o755)
	path := filepath.Join(dir, name+"-heap.pb.gz")
	if err := fetch("http://"+rig.PprofAddr+"/debug/pprof/heap?gc=1", path); err != nil {
		e.report.problem("pprof %s: %v", name, err)
		return 0, ""
	}
	if out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=30", "-sample_index=inuse_space", e.GWBin, path).CombinedOutput(); err == nil {
		_ = os.WriteFile(filepath.Join(dir, name+"-heap-top.txt"), out, 0o644)
	}
	gpath := filepath.Join(dir, name+"-goroutines.txt")
	n := 0
	if err := fetch("http://"+rig.PprofAddr+"/debug/pprof/goroutine?debug=1", gpath); err == nil {
		if b, err := os.ReadFile(gpath); err == nil {
			fmt.Sscanf(string(b), "goroutine profile: total %d", &n)
		}
	}
	e.report.Profiles = append(e.report.Profiles, path, gpath)
	return n, path
}
