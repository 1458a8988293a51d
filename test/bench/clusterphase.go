package main

// Phase 6: cluster takeover. Three cstagw nodes in cluster mode behind
// Kamailio (WITH_REDIS), one redis-server, ctisim with two CTI nodes.
// Only the first gateway runs while N sessions sign in through the proxy,
// so they all land on it; then the two others start, and the first is
// killed with SIGKILL. A prober sends GetDoNotDisturb round robin through
// the proxy (one outstanding per session). Measured: from the kill until
// every session has answered, on its original dialog, a request sent after
// the kill; how the survivors split the sessions; the store's round trips
// and bytes per session (sign-in side and claim side); each node's memory
// per session; the switch's MonitorStart+Snapshot high water. Then a
// rolling upgrade's step: the survivor holding more gets SIGTERM and
// drains its sessions to the other while the prober keeps going;
// measured: how long the drain took, every failed request meanwhile,
// whether every session answers on its dialog afterwards, and beside them
// the receiving node's own answer times, the UDP datagrams the kernel
// dropped at its socket and at Kamailio's, and the CPU of every process.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ClusterRun is phase 6's result.
type ClusterRun struct {
	Sessions       int            `json:"sessions"`
	SignIn         SignInStats    `json:"sign_in"`
	LeaseMs        float64        `json:"lease_ttl_ms"`
	Budget         int            `json:"admission_budget"`
	AllAnsweredMs  float64        `json:"all_answered_after_kill_ms"`
	P50Ms          float64        `json:"p50_answered_after_kill_ms"`
	Answered       int            `json:"sessions_answered"`
	N481           int            `json:"answers_481"`
	Refused        int            `json:"refusals"`
	Timeouts       int            `json:"probe_timeouts"`
	OtherErrors    int            `json:"other_errors"`
	Split          map[string]int `json:"sessions_per_survivor"`
	HighWater      map[string]int `json:"admission_high_water"`
	WriteRTPerSess float64        `json:"store_round_trips_per_session_sign_in"`
	WriteBPerSess  float64        `json:"store_bytes_per_session_written"`
	ClaimRTPerSess float64        `json:"store_round_trips_per_session_takeover"`
	ClaimBPerSess  float64        `json:"store_bytes_per_session_read"`
	MemKBVictim    float64        `json:"rss_kb_per_session_owner"`
	MemKBSurvivor  float64        `json:"rss_kb_per_session_survivor"`
	HeapKBVictim   float64        `json:"heap_live_kb_per_session_owner"`
	HeapKBSurvivor float64        `json:"heap_live_kb_per_session_survivor"`
	Drain          *DrainRun      `json:"drain,omitempty"`
	Problems       []string       `json:"problems,omitempty"`
}

// DrainRun is the drain step of phase 6.
type DrainRun struct {
	Sessions      int     `json:"sessions_drained"`
	ExitMs        float64 `json:"sigterm_to_exit_ms"`
	Sent          int64   `json:"requests_sent"`
	N481          int     `json:"answers_481"`
	Refused       int     `json:"refusals"`
	Timeouts      int     `json:"timeouts"`
	OtherErrors   int     `json:"other_errors"`
	Taken         int     `json:"sessions_on_the_other_node"`
	Answered      int     `json:"sessions_answered_after"`
	AllAnsweredMs float64 `json:"all_answered_after_exit_ms"`
	GWRequests    float64 `json:"receiver_requests"`
	GWSlow        float64 `json:"receiver_requests_over_2s"`
	DropsGW       int64   `json:"udp_drops_receiver"`
	DropsKam      int64   `json:"udp_drops_kamailio"`
	CPU           string  `json:"cpu_percent_of_one_core"`
}

func dispatcherFlags(lab *ClusterLab) string {
	out, _ := exec.Command(findBinary("kamcmd", "/usr/sbin/kamcmd"), "-s", "unix:"+lab.KamCtl, "dispatcher.list").CombinedOutput()
	return string(out)
}

func (e *Env) clusterPhase(cfg PhaseConfig) (*ClusterRun, error) {
	n := cfg.ClusterSessions
	const lease = 3 * time.Second
	e.logf("cluster: starting ctisim, redis-server, Kamailio and gateway 1 of 3 (%d users, budget %d)", n, cfg.Budget)
	lab, err := startClusterLab(ClusterOptions{Dir: filepath.Join(e.Out, "rigs", "cluster"), Root: e.Root, GWBin: e.GWBin,
		SimBin: e.SimBin, Nodes: 3, Users: n, Links: 2, Lease: lease, Budget: cfg.Budget, LogLevel: e.GWLog, KamailioMB: 1024,
		// The default DLG_FR_TIMER (6 s, above cti.request_timeout): a
		// request sent to the killed node in its last instant is retried
		// after 6 s; on this saturated machine a shorter timer also gives
		// up on requests a live node answers late (its UDP socket drops
		// datagrams when the CPU starves its reader, and Kamailio's
		// retransmissions at 0.5, 1.5 and 3.5 s are what recover them).
		KamailioDefines: []string{"DLG_FR_TIMER=6000"},
		// Gateways 2 and 3 are started later: out of rotation until then.
		DispatcherFlags: 8}, true)
	if err != nil {
		return nil, err
	}
	defer lab.Stop()
	victim, b, c := lab.Nodes[0], lab.Nodes[1], lab.Nodes[2]
	if err := victim.Start(); err != nil {
		return nil, err
	}
	if err := waitFor(20*time.Second, "Kamailio using gateway 1 only", func() bool {
		f := dispatcherFlags(lab)
		return strings.Count(f, "FLAGS: AP") == 1 && strings.Count(f, "FLAGS: IP") == 2
	}); err != nil {
		return nil, err
	}
	run := &ClusterRun{Sessions: n, LeaseMs: float64(lease.Milliseconds()), Budget: cfg.Budget}
	base, _ := sample(victim.Proc.PID)
	st0, _ := victim.Status()
	heap := func(n *ClusterNode) float64 {
		m, _ := fetchMetrics(n.Admin)
		return m["go_gc_heap_live_bytes"]
	}
	heap0 := heap(victim)
	// Clients reach the proxy over TCP (as Lync and most softphones do):
	// no client retransmissions while a request waits for its new owner.
	cl, err := NewClient(ClientOptions{Network: "tcp", Gateway: lab.KamAddr, Conns: e.Conns, LocalIPs: e.LocalIPs,
		AnswerEvents: e.AnswerEvents, Timeout: 15 * time.Second, Domain: benchDomain})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ss := cl.UserSessions(n)
	run.SignIn = signInAll(ss, e.Window, victim.Proc.Alive)
	e.logf("cluster: %d/%d signed in through Kamailio (%.0f/s)", run.SignIn.OK, n, run.SignIn.PerSecond)
	if err := waitFor(30*time.Second, "gateway 1 holding every session", func() bool {
		st, err := victim.Status()
		return err == nil && st.Sessions == run.SignIn.OK
	}); err != nil {
		return nil, err
	}
	time.Sleep(2 * time.Second) // the store writes are asynchronous: let them land
	st1, _ := victim.Status()
	after, _ := sample(victim.Proc.PID)
	if ok := float64(run.SignIn.OK); ok > 0 {
		run.WriteRTPerSess = float64(st1.Cluster.RoundTrips-st0.Cluster.RoundTrips) / ok
		run.WriteBPerSess = float64(st1.Cluster.BytesOut-st0.Cluster.BytesOut) / ok
		run.MemKBVictim = float64(after.RSSKB-base.RSSKB) / ok
		run.HeapKBVictim = (heap(victim) - heap0) / 1024 / ok
	}
	for _, s := range []*ClusterNode{b, c} {
		if err := s.Start(); err != nil {
			return nil, err
		}
	}
	if err := waitFor(20*time.Second, "Kamailio using all three gateways", func() bool {
		return strings.Count(dispatcherFlags(lab), "FLAGS: AP") == 3
	}); err != nil {
		return nil, err
	}
	sb := map[string]ProcStat{}
	stb := map[string]ClusterNodeStatus{}
	hb := map[string]float64{}
	for _, s := range []*ClusterNode{b, c} {
		sb[s.ID], _ = sample(s.Proc.PID)
		stb[s.ID], _ = s.Status()
		hb[s.ID] = heap(s)
	}

	// 2000 requests a second through Kamailio: each transaction stays in
	// its shared memory for tm's wait timer (5 s) after it ends.
	pr := startProber(ss, 2000)
	time.Sleep(2 * time.Second) // a baseline of answered probes
	pr.n481.Store(0)
	t0 := time.Now()
	victim.Kill()
	pr.setMark()
	e.logf("cluster: gateway 1 killed (SIGKILL); the survivors take over once its lease (%v) expires", lease)
	deadline := 90 * time.Second
	pr.waitAll(deadline)
	pr.close()
	_ = waitFor(20*time.Second, "answers", func() bool { return cl.Pending() == 0 })
	run.Answered, run.P50Ms, run.AllAnsweredMs = pr.summary(t0, run.SignIn.OK)
	if run.Answered < run.SignIn.OK {
		run.Problems = append(run.Problems, fmt.Sprintf("cluster: only %d of %d sessions answered on their dialog within %v", run.Answered, run.SignIn.OK, deadline))
	}
	run.N481, run.Refused, run.Timeouts, run.OtherErrors = pr.counts()
	run.Split = map[string]int{}
	var adopted float64
	var rt, bin uint64
	var mem, heapGrowth float64
	time.Sleep(2 * time.Second) // a collection after the takeover's garbage
	for _, s := range []*ClusterNode{b, c} {
		st, err := s.Status()
		if err != nil {
			continue
		}
		run.Split[s.ID] = st.Sessions
		adopted += float64(st.Sessions)
		rt += st.Cluster.RoundTrips - stb[s.ID].Cluster.RoundTrips
		bin += st.Cluster.BytesIn - stb[s.ID].Cluster.BytesIn
		if now, err := sample(s.Proc.PID); err == nil {
			mem += float64(now.RSSKB - sb[s.ID].RSSKB)
		}
		heapGrowth += heap(s) - hb[s.ID]
	}
	if adopted > 0 {
		run.ClaimRTPerSess = float64(rt) / adopted
		run.ClaimBPerSess = float64(bin) / adopted
		run.MemKBSurvivor = mem / adopted
		run.HeapKBSurvivor = heapGrowth / 1024 / adopted
	}
	run.HighWater = map[string]int{}
	if nodes, err := lab.SimState(); err == nil {
		for i, nd := range nodes {
			run.HighWater[fmt.Sprintf("node%d", i)] = nd.InFlightMonitorSnapshotHighWater
		}
	}
	for _, s := range []*ClusterNode{b, c} {
		if !s.Proc.Alive() {
			run.Problems = append(run.Problems, fmt.Sprintf("cluster: %s exited: %v", s.ID, s.Proc.ExitErr()))
		}
		run.Problems = append(run.Problems, e.scanLogFiltered(s.Proc.Log, "cluster/"+s.ID)...)
	}
	e.logf("cluster: %d/%d sessions answered on their dialog, the last %.0f ms after the kill (p50 %.0f ms); 481s %d; split %v; high water %v; store %.1f round trips and %.0f B per session written, %.2f round trips and %.0f B per session claimed; RSS %.1f KB/session (owner), %.1f KB/session (survivors); live heap %.1f KB/session (owner), %.1f KB/session (survivors)",
		run.Answered, run.SignIn.OK, run.AllAnsweredMs, run.P50Ms, run.N481, run.Split, run.HighWater,
		run.WriteRTPerSess, run.WriteBPerSess, run.ClaimRTPerSess, run.ClaimBPerSess, run.MemKBVictim, run.MemKBSurvivor,
		run.HeapKBVictim, run.HeapKBSurvivor)
	if b.Proc.Alive() && c.Proc.Alive() {
		from, to := b, c // the bigger half goes
		if run.Split[c.ID] > run.Split[b.ID] {
			from, to = c, b
		}
		run.Drain = drainStep(e, ss, from, to, cl, lab)
		if d := run.Drain; d.Taken != run.SignIn.OK || d.Answered < run.SignIn.OK || d.N481+d.Timeouts+d.OtherErrors+d.Refused > 0 {
			run.Problems = append(run.Problems, fmt.Sprintf("cluster drain: %d of %d sessions on %s after, %d answered; failed requests: %d 481, %d refused, %d timeouts, %d other",
				d.Taken, run.SignIn.OK, to.ID, d.Answered, d.N481, d.Refused, d.Timeouts, d.OtherErrors))
		}
	}
	return run, nil
}

// drainStep drains from (SIGTERM) under continuous probing of every
// session; its sessions go to to.
func drainStep(e *Env, ss []*Session, from, to *ClusterNode, cl *Client, lab *ClusterLab) *DrainRun {
	kam := lab.KamAddr
	d := &DrainRun{}
	if st, err := from.Status(); err == nil {
		d.Sessions = st.Sessions
	}
	m0, _ := fetchMetrics(to.Admin)
	drops := func(addr string) int64 {
		_, port, _ := strings.Cut(addr, ":")
		p, _ := strconv.Atoi(port)
		return udpDrops(p)
	}
	dropsTo0, dropsKam0 := drops(to.SIPAddr), drops(kam)
	// No mark: the prober keeps sending to every session until it is told
	// to count (after the exit), then once more to each.
	pr := startProber(ss, 2000)
	time.Sleep(2 * time.Second)
	e.logf("cluster: draining %s (SIGTERM, %d sessions) under requests at 2000/s", from.ID, d.Sessions)
	cpu := func() map[string]time.Duration {
		out := map[string]time.Duration{"machine": sysBusy()}
		for name, pid := range map[string]int{to.ID: to.Proc.PID, "kamailio": lab.Kam.PID, "ctisim": lab.Sim.PID, "bench": os.Getpid()} {
			out[name], _ = treeCPU(pid)
		}
		return out
	}
	cpu0 := cpu()
	t0 := time.Now()
	if err := from.Drain(60 * time.Second); err != nil {
		e.logf("cluster: %v", err)
	}
	d.ExitMs = float64(time.Since(t0).Microseconds()) / 1000
	d.Sent = pr.sent.Load()
	took := time.Since(t0)
	var use []string
	for name, v := range cpu() {
		use = append(use, fmt.Sprintf("%s %.0f", name, 100*float64(v-cpu0[name])/float64(took)))
	}
	sort.Strings(use)
	d.CPU = strings.Join(use, ", ")
	t1 := time.Now()
	pr.setMark()
	pr.waitAll(30 * time.Second)
	pr.close()
	_ = waitFor(20*time.Second, "answers", func() bool { return cl.Pending() == 0 })
	d.Answered, _, d.AllAnsweredMs = pr.summary(t1, len(ss))
	d.N481, d.Refused, d.Timeouts, d.OtherErrors = pr.counts()
	if st, err := to.Status(); err == nil {
		d.Taken = st.Sessions
	}
	if m1, err := fetchMetrics(to.Admin); err == nil {
		all, slow := slowerThan(m1, "cstagw_request_duration_seconds", "2")
		all0, slow0 := slowerThan(m0, "cstagw_request_duration_seconds", "2")
		d.GWRequests, d.GWSlow = all-all0, slow-slow0
	}
	d.DropsGW, d.DropsKam = drops(to.SIPAddr)-dropsTo0, drops(kam)-dropsKam0
	e.logf("cluster: %s drained %d sessions and exited %.0f ms after SIGTERM; %d requests meanwhile: %d 481, %d refused, %d timeouts, %d other; %s holds %d, %d answered after (the last %.0f ms after the exit); %s answered %.0f requests, %.0f over 2 s; UDP drops %d at %s, %d at Kamailio; CPU %% of one core: %s",
		from.ID, d.Sessions, d.ExitMs, d.Sent, d.N481, d.Refused, d.Timeouts, d.OtherErrors, to.ID, d.Taken, d.Answered, d.AllAnsweredMs,
		to.ID, d.GWRequests, d.GWSlow, d.DropsGW, to.ID, d.DropsKam, d.CPU)
	return d
}

func (r *Report) addCluster(x *ClusterRun) {
	const ph = "cluster"
	r.row(ph, "sessions signed in (through Kamailio, all on node 1)", float64(x.SignIn.OK), "", fmt.Sprint(x.Sessions), ptr(x.SignIn.OK == x.Sessions))
	r.answeredRows(ph, "SIGKILL", 15000, x.AllAnsweredMs, x.P50Ms, x.N481, x.Refused, x.Timeouts, x.OtherErrors)
	r.text(ph, "  sessions per survivor", fmt.Sprint(x.Split), "", nil)
	hw := 0
	for _, v := range x.HighWater {
		hw = max(hw, v)
	}
	r.row(ph, "MonitorStart+SnapshotDevice high water at any switch node", float64(hw), "", fmt.Sprintf("≤ %d (budget × 2 survivors)", 2*x.Budget), ptr(hw <= 2*x.Budget))
	r.row(ph, "store round trips per session (sign-in, monitor)", x.WriteRTPerSess, "", "", nil)
	r.row(ph, "store bytes written per session", x.WriteBPerSess, "B", "", nil)
	r.row(ph, "store round trips per session (takeover)", x.ClaimRTPerSess, "", "", nil)
	r.row(ph, "store bytes read per session (takeover)", x.ClaimBPerSess, "B", "", nil)
	r.row(ph, "memory per session, owner (Go live heap)", x.HeapKBVictim, "KB", "≤ 20 KB", ptr(x.HeapKBVictim <= 20))
	r.row(ph, "memory per session, survivors (Go live heap)", x.HeapKBSurvivor, "KB", "≤ 20 KB", ptr(x.HeapKBSurvivor <= 20))
	r.row(ph, "  RSS growth per session, owner / survivors", x.MemKBVictim, "KB", "", nil)
	r.text(ph, "  RSS growth per session, survivors", fmt.Sprintf("%.1f KB", x.MemKBSurvivor), "", nil)
	if d := x.Drain; d != nil {
		r.row(ph, "SIGTERM drain of a survivor: sessions handed over", float64(d.Sessions), "", "", nil)
		r.row(ph, "  SIGTERM → process exited", d.ExitMs, "ms", "", nil)
		r.text(ph, "  requests meanwhile: sent / 481 / refused / timeouts / other", fmt.Sprintf("%d / %d / %d / %d / %d", d.Sent, d.N481, d.Refused, d.Timeouts, d.OtherErrors), "",
			ptr(d.N481+d.Refused+d.Timeouts+d.OtherErrors == 0))
		r.row(ph, "  sessions on the remaining node", float64(d.Taken), "", fmt.Sprint(x.SignIn.OK), ptr(d.Taken == x.SignIn.OK))
		r.row(ph, "  every session answering on its dialog after the exit", d.AllAnsweredMs, "ms", "", ptr(d.Answered == x.SignIn.OK))
		r.text(ph, "  receiving node: requests answered / over 2 s", fmt.Sprintf("%.0f / %.0f", d.GWRequests, d.GWSlow), "", nil)
		r.text(ph, "  UDP datagrams dropped: receiving node / Kamailio", fmt.Sprintf("%d / %d", d.DropsGW, d.DropsKam), "", nil)
		r.text(ph, "  CPU during the drain, % of one core", d.CPU, "", nil)
	}
	for _, p := range x.Problems {
		r.problem("%s", p)
	}
}

// slowerThan sums a histogram's count and the observations above bucket
// le over all its label sets.
func slowerThan(m map[string]float64, name, le string) (all, slow float64) {
	for k, v := range m {
		switch {
		case strings.HasPrefix(k, name+"_count"):
			all += v
			slow += v
		case strings.HasPrefix(k, name+"_bucket{") && strings.Contains(k, `le="`+le+`"`):
			slow -= v
		}
	}
	return all, slow
}
