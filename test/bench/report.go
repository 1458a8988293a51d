package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"time"
)

// PhaseConfig are the knobs of the cost, latency and recovery phases.
type PhaseConfig struct {
	CostSessions  int           `json:"cost_sessions"`
	CostRate      float64       `json:"cost_rate_per_s"`
	CallRate      float64       `json:"call_rate_per_s"`
	CostWindow    time.Duration `json:"cost_window_ns"`
	LatStep       time.Duration `json:"latency_step_ns"`
	LatWindow     time.Duration `json:"latency_window_ns"`
	RecSessions   int           `json:"recovery_sessions"`
	Heartbeat     time.Duration `json:"heartbeat_interval_ns"`
	Refuse        time.Duration `json:"refuse_ns"`
	Budget        int           `json:"admission_budget"`
	BenchCount    int           `json:"bench_count"`
	BenchTime     string        `json:"bench_time"`
	Kamailio      bool          `json:"kamailio"`
	ContSessions  int           `json:"continuity_sessions"`
	FailoverAfter time.Duration `json:"failover_after"`
	// ClusterSessions is the cluster phase's session count.
	ClusterSessions int `json:"cluster_sessions"`
}

// Row is one line of the table.
type Row struct {
	Phase   string  `json:"phase"`
	Metric  string  `json:"metric"`
	Value   float64 `json:"value"`
	Unit    string  `json:"unit,omitempty"`
	Text    string  `json:"text,omitempty"`
	Target  string  `json:"target,omitempty"`
	Verdict string  `json:"verdict,omitempty"`
}

// Report is results.json.
type Report struct {
	Mode        string         `json:"mode"`
	Args        []string       `json:"args"`
	Started     time.Time      `json:"started"`
	Finished    time.Time      `json:"finished"`
	WallSeconds float64        `json:"wall_seconds"`
	Host        map[string]any `json:"host"`
	Config      PhaseConfig    `json:"config"`
	Rows        []Row          `json:"rows"`
	Method      []string       `json:"method"`
	Problems    []string       `json:"problems"`
	Capacity    []*CapResult   `json:"capacity,omitempty"`
	Cost        *CostResult    `json:"cost,omitempty"`
	Latency     *LatResult     `json:"latency,omitempty"`
	Recovery    *RecResult     `json:"recovery,omitempty"`
	Continuity  *ContResult    `json:"continuity,omitempty"`
	Cluster     *ClusterRun    `json:"cluster,omitempty"`
	GoBench     *GoBenchResult `json:"gobench,omitempty"`
	Profiles    []string       `json:"profiles,omitempty"`
}

func newReport(mode string, args []string) *Report {
	host, _ := os.Hostname()
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	var memKB int64
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &memKB)
	}
	return &Report{Mode: mode, Args: args, Started: time.Now(), Problems: []string{}, Host: map[string]any{
		"hostname": host, "cpus": runtime.NumCPU(), "mem_gb": math.Round(float64(memKB)/1024/1024*10) / 10,
		"kernel": strings.TrimSpace(string(kernel)), "go": goVersion(),
	}}
}

func (r *Report) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

func (r *Report) row(phase, metric string, v float64, unit, target string, pass *bool) {
	row := Row{Phase: phase, Metric: metric, Value: v, Unit: unit, Target: target}
	if pass != nil {
		row.Verdict = "FAIL"
		if *pass {
			row.Verdict = "PASS"
		}
	}
	r.Rows = append(r.Rows, row)
}

func (r *Report) text(phase, metric, text, target string, pass *bool) {
	row := Row{Phase: phase, Metric: metric, Text: text, Target: target}
	if pass != nil {
		row.Verdict = "FAIL"
		if *pass {
			row.Verdict = "PASS"
		}
	}
	r.Rows = append(r.Rows, row)
}

func ptr(b bool) *bool { return &b }

func fmtVal(v float64, unit string) string {
	var s string
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e12:
		s = fmt.Sprintf("%d", int64(v))
	case math.Abs(v) >= 100:
		s = fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		s = fmt.Sprintf("%.1f", v)
	default:
		s = fmt.Sprintf("%.2f", v)
	}
	if unit != "" {
		s += " " + unit
	}
	return s
}

// table renders the rows as one fixed-width table.
func (r *Report) table() string {
	head := []string{"PHASE", "METRIC", "VALUE", "TARGET", ""}
	rows := [][]string{}
	for _, x := range r.Rows {
		v := x.Text
		if v == "" {
			v = fmtVal(x.Value, x.Unit)
		}
		rows = append(rows, []string{x.Phase, x.Metric, v, x.Target, x.Verdict})
	}
	w := make([]int, len(head))
	for i, h := range head {
		w[i] = len(h)
	}
	const maxW = 70
	for _, row := range rows {
		for i, c := range row {
			if n := len([]rune(c)); n > w[i] {
				w[i] = min(n, maxW)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cstagw benchmark (%s run, %s, %d CPUs, Go %s), %s, wall %.0fs\n", r.Mode, r.Host["kernel"], r.Host["cpus"], runtime.Version(), r.Started.Format(time.RFC3339), r.WallSeconds)
	line := func(cells []string) {
		for i, c := range cells {
			rc := []rune(c)
			if len(rc) > maxW {
				c = string(rc[:maxW-1]) + "…"
			}
			pad := w[i] - len([]rune(c))
			b.WriteString(c)
			if i < len(cells)-1 {
				b.WriteString(strings.Repeat(" ", pad+2))
			}
		}
		b.WriteString("\n")
	}
	line(head)
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = strings.Repeat("-", w[i])
	}
	line(sep)
	prev := ""
	for _, row := range rows {
		if row[0] != prev && prev != "" {
			b.WriteString("\n")
		}
		prev = row[0]
		line(row)
	}
	if len(r.Problems) > 0 {
		b.WriteString("\nProblems seen (details in results.json):\n")
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "  - %s\n", trunc(p, 300))
		}
	}
	if len(r.Method) > 0 {
		b.WriteString("\nMethod:\n")
		for _, m := range r.Method {
			fmt.Fprintf(&b, "  - %s\n", m)
		}
	}
	return b.String()
}

func (r *Report) addCapacity(c *CapResult) {
	ph := "capacity/" + c.Network
	for i, s := range c.Steps {
		r.row(ph, fmt.Sprintf("sessions held (step %d)", s.Target), float64(s.GWSessions), "", "", ptr(s.GWSessions == s.Target))
		r.row(ph, fmt.Sprintf("gateway RSS at %d", s.GWSessions), s.GWRSSMB, "MB", "", nil)
		// The target is on the top step: below it the RSS holds garbage
		// the collector (GOGC 400, soft limit) has had no reason to free.
		var perSessOK *bool
		if i == len(c.Steps)-1 {
			perSessOK = ptr(s.GWRSSPerSessKB <= 2*1024*1024/80000.0)
		}
		r.row(ph, fmt.Sprintf("RSS per session at %d", s.GWSessions), s.GWRSSPerSessKB, "KB", "≤ 26 KB (2 GiB/80k)", perSessOK)
		r.row(ph, fmt.Sprintf("  Go live heap at %d", s.GWSessions), s.GWLiveMB, "MB", "", nil)
		r.row(ph, fmt.Sprintf("  Go live heap per session at %d", s.GWSessions), s.GWLivePerSessKB, "KB", "", nil)
		r.row(ph, fmt.Sprintf("sign-in rate, step %d", s.Target), s.SignIn.PerSecond, "/s", "", nil)
		r.row(ph, fmt.Sprintf("gateway CPU per sign-in, step %d", s.Target), s.GWCPUPerSignIn, "µs", "", nil)
	}
	if n := len(c.Steps); n > 0 {
		last := c.Steps[n-1]
		r.row(ph, "sign-in INVITE→200 p99 (last step)", last.SignIn.InviteRTT.P99/1000, "ms", "", nil)
		r.row(ph, "sign-in MonitorStart→200 p99 (last step)", last.SignIn.MonitorRTT.P99/1000, "ms", "", nil)
		r.row(ph, "ctisim RSS (last step)", last.SimRSSMB, "MB", "", nil)
		if c.Reached > 0 {
			proj := c.BaseRSSMB + last.GWRSSPerSessKB*80000/1024
			r.row(ph, "gateway RSS projected at 80k", proj, "MB", "< 2048 MB", ptr(proj < 2048))
		}
	}
	r.row(ph, "gateway baseline RSS (0 sessions)", c.BaseRSSMB, "MB", "", nil)
	if c.Goroutines > 0 && c.Reached > 0 {
		r.row(ph, fmt.Sprintf("gateway goroutines at %d sessions (pprof)", c.Reached), float64(c.Goroutines), "", "", nil)
	}
	r.row(ph, "gateway peak RSS (VmHWM)", c.PeakRSSMB, "MB", "< 2048 MB", ptr(c.PeakRSSMB < 2048))
	if c.SettleSeconds > 0 {
		r.row(ph, fmt.Sprintf("gateway RSS after %.0fs idle", c.SettleSeconds), c.SettledRSSMB, "MB", "", nil)
	}
	r.text(ph, "liveness (GetDoNotDisturb on a sample)", c.Liveness, "all answered", ptr(c.LiveOK == c.LiveChecked && c.LiveChecked > 0))
	if c.Byes > 0 {
		r.row(ph, "BYEs received from the gateway (unexpected)", float64(c.Byes), "", "0", ptr(false))
	}
	if c.ShutdownSeconds != 0 {
		r.row(ph, fmt.Sprintf("SIGTERM → exit with %d sessions", c.Reached), c.ShutdownSeconds, "s", "≤ shutdown_grace (5 s) + 1 s", ptr(c.ShutdownSeconds > 0 && c.ShutdownSeconds <= 6))
		r.row(ph, "  BYEs received during the drain", float64(c.ShutdownByes), "", fmt.Sprint(c.Reached), ptr(int(c.ShutdownByes) == c.Reached))
	}
	if c.Network == "udp" {
		r.row(ph, "generator UDP retransmissions", float64(c.Retransmits), "", "", nil)
		r.row(ph, "datagrams dropped by the gateway's UDP socket (/proc/net/udp)", float64(c.GWUDPDrops), "", "0", ptr(c.GWUDPDrops == 0))
	}
	for _, p := range c.Problems {
		r.problem("%s", p)
	}
}

func (r *Report) addCost(c *CostResult) {
	ph := "cost"
	r.row(ph, "sessions signed in (half TCP, half UDP)", float64(c.Sessions), "", "", nil)
	r.row(ph, "gateway idle CPU", c.IdleGWCPUPct, "% of a core", "", nil)
	perUDP := 0.0
	perTCP := 0.0
	for _, w := range c.Requests {
		target, pass := "", (*bool)(nil)
		if w.Kind == "GetDoNotDisturb" {
			target, pass = "≤ 150 µs", ptr(w.GWCPUus <= 150 && w.GWCPUus > 0)
			if w.Transport == "udp" {
				perUDP = w.GWCPUus
			} else {
				perTCP = w.GWCPUus
			}
		}
		r.row(ph, fmt.Sprintf("gateway CPU per PBX-bound request, %s @ %.0f/s", w.Name, w.Offered), w.GWCPUus, "µs", target, pass)
		r.text(ph, fmt.Sprintf("  %s: achieved, load, client RTT p50/p99, others' CPU", w.Name), fmt.Sprintf("%.0f/s, %.0f%% of a core, %.2f/%.2f ms, %.0f%%", w.Achieved, w.GWCPUPct, w.Latency.P50/1000, w.Latency.P99/1000, w.OtherCPUPct), "", nil)
		if w.OtherCPUPct > 10 {
			r.problem("cost %s: other processes used %.0f%% of a core during the window", w.Name, w.OtherCPUPct)
		}
		if len(w.Errors) > 0 || w.Skipped > 0 {
			txt := fmtCounts(w.Errors)
			if w.Skipped > 0 {
				txt = fmt.Sprintf("%d not sent (more than %d outstanding: the gateway fell behind); %s", w.Skipped, int(max(2000, w.Offered*2)), txt)
			}
			r.text(ph, fmt.Sprintf("  %s: errors", w.Name), txt, "none", ptr(false))
		}
		if w.Achieved < 0.97*w.Offered {
			r.problem("cost %s: only %.0f of %.0f requests/s were achieved; its CPU per request is not comparable with Kamailio's at %.0f/s", w.Name, w.Achieved, w.Offered, w.Offered)
		}
	}
	if ev := c.Events; ev != nil {
		r.row(ph, fmt.Sprintf("gateway CPU per delivered event INFO @ %.0f events/s", ev.EventsRate), ev.GWCPUus, "µs", "≤ 100 µs", ptr(ev.GWCPUus <= 100 && ev.GWCPUus > 0))
		r.text(ph, "  events: calls, INFOs per call, load, others' CPU", fmt.Sprintf("%d calls (%.0f/s), %.1f INFOs/call, %.0f%% of a core, answered 200: %v, %.0f%%", ev.Calls, ev.CallRate, ev.PerCall, ev.GWCPUPct, ev.Answered, ev.OtherCPUPct), "", nil)
		if ev.OtherCPUPct > 10 {
			r.problem("cost events: other processes used %.0f%% of a core during the window", ev.OtherCPUPct)
		}
		if len(ev.CallErrors) > 0 {
			r.text(ph, "  events: call errors", fmtCounts(ev.CallErrors), "none", ptr(false))
		}
	}
	for _, k := range c.Kamailio {
		if k.Err != "" && k.Transactions == 0 {
			r.text(ph, "Kamailio "+k.Transport, "failed: "+k.Err, "", ptr(false))
			continue
		}
		r.row(ph, fmt.Sprintf("Kamailio CPU per stateful INFO transaction, %s @ %.0f/s", k.Transport, k.Rate), k.CPUus, "µs", "", nil)
		gw := perTCP
		if k.Transport == "udp" {
			gw = perUDP
		}
		if gw > 0 && k.CPUus > 0 {
			ratio := gw / k.CPUus
			r.row(ph, fmt.Sprintf("ratio gateway / Kamailio (%s)", k.Transport), ratio, "×", "≤ 3×", ptr(ratio <= 3))
		}
	}
	if w := c.ProfileWindow; w != nil {
		r.row(ph, "profiled window (pprof on): CPU per request+events", w.GWCPUus, "µs", "", nil)
	}
	for _, p := range c.Problems {
		r.problem("%s", p)
	}
}

func (r *Report) addLatency(l *LatResult) {
	ph := "latency"
	r.row(ph, "highest sustained rate, GetDoNotDisturb over TCP", l.MaxSustained, "/s", "", nil)
	for _, s := range l.Ramp {
		if s.OtherPct > 10 {
			r.problem("latency ramp @ %.0f/s: other processes used %.0f%% of a core", s.Offered, s.OtherPct)
		}
		if s.Offered == l.MaxSustained {
			r.text(ph, "  at that rate: CPU % of a core (gateway / ctisim / generator)", fmt.Sprintf("%.0f / %.0f / %.0f; gateway %.0f µs per request", s.GWCPUPct, s.SimCPUPct, s.GenCPUPct, s.GWCPUus), "", nil)
		}
	}
	for _, p := range l.Points {
		lbl := fmt.Sprintf("%.0f%% (%.0f/s)", p.Fraction*100, p.Rate)
		r.text(ph, "client RTT p50/p99/p99.9 @ "+lbl, fmt.Sprintf("%.0f / %.0f / %.0f µs", p.Client.P50, p.Client.P99, p.Client.P999), "", nil)
		r.text(ph, "ctisim alone p50/p99/p99.9 @ "+lbl, fmt.Sprintf("%.0f / %.0f / %.0f µs", p.CTI.P50, p.CTI.P99, p.CTI.P999), "", nil)
		added := func(v float64) string {
			if v < 0 {
				return "<0 (noise)"
			}
			return fmt.Sprintf("%.0f", v)
		}
		r.text(ph, "gateway adds p50/p99/p99.9 @ "+lbl, fmt.Sprintf("%s / %s / %s µs", added(p.AddedP50), added(p.AddedP99), added(p.AddedP999)), "", nil)
		if p.OtherPct > 10 {
			r.problem("latency @ %s: other processes used %.0f%% of a core during the window", lbl, p.OtherPct)
		}
		if p.Fraction == 0.5 {
			r.row(ph, "gateway-added p99 @ "+lbl, p.AddedP99/1000, "ms", "≤ 2 ms", ptr(p.AddedP99 <= 2000))
		}
		if len(p.Errors) > 0 {
			r.text(ph, "errors @ "+lbl, fmtCounts(p.Errors), "none", ptr(false))
		}
	}
}

func (r *Report) addRecovery(x *RecResult, c PhaseConfig) {
	for _, run := range x.Runs {
		ph := "recovery/" + run.Fault
		r.row(ph, "sessions on the one link", float64(run.SignIn.OK), "", fmt.Sprint(run.Sessions), ptr(run.SignIn.OK == run.Sessions))
		hb := run.HeartbeatMs
		if run.Fault == "silent" {
			// A mute node is only silent from its last answer on: judge the
			// heartbeat from there, show the fault-command figure beside it.
			r.row(ph, "node's last answer → every PBX-bound request refused", run.RefusedAfterSilenceMs, "ms", fmt.Sprintf("≤ %.0f ms (2 heartbeats)", 2*hb), ptr(run.RefusedAfterSilenceMs <= 2*hb))
			r.row(ph, "  node's last answer → link dead (first refusal)", run.FirstRefusalAfterSilenceMs, "ms", "", nil)
			r.row(ph, "  requests waiting at that moment, refused together", float64(run.PiledUp), "", "", nil)
			r.row(ph, "  fault command → every request refused (node answered until +N ms)", run.RefusedAfterMs, "ms", fmt.Sprintf("+%.0f ms", run.LastAnswerAfterMs), nil)
		} else {
			r.row(ph, "fault → every PBX-bound request refused", run.RefusedAfterMs, "ms", fmt.Sprintf("≤ %.0f ms (2 heartbeats)", 2*hb), ptr(run.RefusedAfterMs <= 2*hb))
		}
		r.row(ph, "sessions answered resourceOutOfService during the outage", float64(run.RefusedSessions), "", fmt.Sprint(run.Sessions), ptr(run.RefusedSessions == run.Sessions))
		r.row(ph, "  fault → link down in /status", run.LinkDownSeenMs, "ms", "", nil)
		r.text(ph, "  refusal RTT once down p50/p99/max", fmt.Sprintf("%.1f / %.1f / %.1f ms (%d requests)", run.RefusalRTT.P50/1000, run.RefusalRTT.P99/1000, run.RefusalRTT.Max/1000, run.RefusalRTT.N), "", nil)
		if run.Stuck > 0 {
			r.row(ph, "probe requests never answered (timeouts)", float64(run.Stuck), "", "0", ptr(false))
		}
		r.row(ph, "node back → CTI link up (seen in /status)", run.LinkUpSeenMs, "ms", "", nil)
		r.row(ph, "node back → every session re-INVITEd + re-monitored", run.RecoveredAllMs, "ms", "≤ 30000 ms", ptr(run.RecoveredAllMs >= 0 && run.RecoveredAllMs <= 30000))
		r.row(ph, "  median session recovered after", run.RecoveredP50Ms, "ms", "", nil)
		r.text(ph, "  481s / re-INVITEs / re-sign-in failures", fmt.Sprintf("%d / %d / %s", run.Stale481, run.ReInvites, fmtCounts(run.ReSignInFailures)), "", nil)
		r.row(ph, "ctisim outstanding MonitorStart+SnapshotDevice high water", float64(run.HWMAfter), "", fmt.Sprintf("≤ %d (budget)", run.Budget), ptr(run.HWMAfter <= run.Budget))
		for _, p := range run.Problems {
			r.problem("%s", p)
		}
	}
}

func (r *Report) addGoBench(g *GoBenchResult) {
	ph := "gobench"
	if g.Err != "" {
		r.problem("gobench: %s", g.Err)
	}
	for _, b := range g.Benches {
		short := b.Pkg[strings.LastIndexByte(b.Pkg, '/')+1:]
		txt := fmt.Sprintf("%s ns/op, %s B/op, %s allocs/op", fmtVal(b.NsOp, ""), fmtVal(b.BOp, ""), fmtVal(b.AllocsOp, ""))
		for k, v := range b.Extra {
			txt += fmt.Sprintf(", %s %s", fmtVal(v, ""), k)
		}
		r.text(ph, fmt.Sprintf("%s %s (median of %d)", short, strings.TrimPrefix(b.Name, "Benchmark"), b.Runs), txt, "", nil)
	}
	r.text(ph, "raw output (benchstat)", g.Raw, "", nil)
}

// methodNotes explain, under the table, how each figure is obtained.
func methodNotes(c PhaseConfig, e *Env) []string {
	return []string{
		fmt.Sprintf("processes: cstagw (built from ./cmd/cstagw, generated config) and ctisim (./cmd/ctisim) run as separate processes; CPU = utime+stime from /proc/PID/stat (USER_HZ %.0f), RSS = VmRSS from /proc/PID/status. The load generator is this process: raw SIP over %d TCP connections / UDP sockets from 127.0.0.2.., answering event INFOs 200: %v.", clkTck, e.Conns, e.AnswerEvents),
		"capacity: a session = INVITE (RequestSystemStatus with lcs:line) + ACK + MonitorStart INFO, one user per line/station; RSS per session = (RSS − RSS before any session) / sessions held (gateway /status); the baseline includes the generated directory. The gateway runs with its default runtime.gc_percent 400 and a 1536 MiB soft memory limit, so below the top step the RSS also holds garbage not yet collected: the pass/fail is on the top step, and the Go live heap at the last collection (go_gc_heap_live_bytes from /metrics) gives the sessions' own cost at every step.",
		fmt.Sprintf("cost: gateway CPU delta over a steady %v window (after a warm-up) ÷ requests completed (or event INFOs received) in that window; requests at %.0f/s round robin over the sessions; events from %.0f calls/s placed and hung up through ctisim's control API between pairs of monitored stations.", c.CostWindow, c.CostRate, c.CallRate),
		fmt.Sprintf("Kamailio: the same GetDoNotDisturb INFO at the same rate, sipp UAC → Kamailio 5.6 (stateful t_relay, -x tlsf, minimal config) → sipp UAS answering 200 with a GetDoNotDisturbResponse body; CPU of the main process and every forked worker, idle consumption subtracted, ÷ sipp's successful transactions."),
		"latency: ramp GetDoNotDisturb over TCP ×1.4 per step until a step fails (" + latCriteria + "), one refinement step; then windows at 50 % and 90 % of the highest sustained rate. Gateway-added = client RTT percentile − the percentile of the same request written straight to ctisim at the same rate.",
		"recovery: one CTI link; a prober sends GetDoNotDisturb round robin (≤ 1 outstanding per session); 'every request refused' = the moment after which every request is answered resourceOutOfService within 100 ms and every earlier one has been refused; for the silent fault the target is judged from the node's last successful answer (a node with a backlog answers for a while after the fault command; the heartbeat can only count silence from the last frame), the figure from the fault command is shown beside it; on 481 a session re-INVITEs and re-sends MonitorStart (503 → retry in 200 ms); the high water is ctisim's inFlightMonitorSnapshotHighWater of the node.",
	}
}
