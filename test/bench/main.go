// Command bench is cstagw's performance harness: capacity, cost per
// transaction (side by side with Kamailio), latency, recovery and the Go
// hot-path benchmarks, printed as one table and written as JSON.
//
//	go run ./test/bench -quick     # smoke run, 1-2 minutes
//	go run ./test/bench            # full run (80,000 sessions), ~15-25 minutes
//
// See test/bench/README.md.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Env is the harness's configuration and shared state.
type Env struct {
	Root, Out     string
	GWBin, SimBin string
	Quick         bool
	Conns         int
	LocalIPs      []string
	Window        int
	AnswerEvents  bool
	GWLog         string
	Pprof         bool
	GWEnv         []string
	selfPID       int
	start         time.Time
	report        *Report
}

func (e *Env) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(e.start).Seconds(), fmt.Sprintf(format, args...))
}

func main() {
	var (
		quick      = flag.Bool("quick", false, "smoke run (1-2 minutes): small loads, short windows")
		phases     = flag.String("phases", "capacity,cost,latency,recovery,continuity,cluster,gobench", "phases to run, comma-separated (cost includes the Kamailio comparison)")
		steps      = flag.String("steps", "", "capacity steps over TCP (default 10000,40000,80000; -quick 2000)")
		udpSteps   = flag.String("udp-steps", "", "capacity steps over UDP (default 10000,40000,80000; -quick 2000; \"0\" skips UDP)")
		settle     = flag.Duration("udp-settle", -1, "after the UDP capacity run, wait this long (sipgo keeps UDP transactions 32 s) and sample RSS again (default 35s; -quick 0)")
		conns      = flag.Int("conns", 4, "TCP connections / UDP sockets of the load generator (as a proxy would use)")
		window     = flag.Int("window", 200, "sign-ins in flight at once")
		answer     = flag.Bool("answer-events", true, "answer the gateway's event INFOs 200 (Communicator); false behaves like sipe (never answers)")
		costN      = flag.Int("cost-sessions", 0, "sessions signed in for the cost and latency phases, half TCP, half UDP (default 4000; -quick 2000)")
		costRate   = flag.Float64("cost-rate", 0, "PBX-bound requests per second in the cost window, gateway and Kamailio alike (default 3000; -quick 1000)")
		callRate   = flag.Float64("call-rate", 0, "calls per second placed through ctisim's control API in the event cost window (default 200; -quick 100)")
		costWin    = flag.Duration("cost-window", 0, "steady measurement window of the cost phase (default 15s; -quick 3s)")
		latStep    = flag.Duration("latency-step", 0, "length of one step of the rate ramp (default 3s; -quick 1s)")
		latWin     = flag.Duration("latency-window", 0, "window at 50 % and 90 % of the highest sustained rate (default 10s; -quick 2s)")
		recN       = flag.Int("recovery-sessions", 0, "sessions pinned to the dropped link (default 10000; -quick 1000)")
		hb         = flag.Duration("heartbeat", time.Second, "cti.heartbeat_interval of the recovery gateway")
		refuse     = flag.Duration("refuse", 0, "how long the dropped ctisim node refuses connections (default 10s; -quick 2s)")
		budget     = flag.Int("budget", 32, "cti.admission_budget of the recovery and continuity gateways")
		contN      = flag.Int("continuity-sessions", 0, "sessions on the node that fails in the continuity phase (default 10000; -quick 1000)")
		failAfter  = flag.Duration("failover-after", 5*time.Second, "cti.failover_after of the continuity phase's failover run")
		clusterN   = flag.Int("cluster-sessions", 0, "sessions on the gateway killed in the cluster phase (default 10000; -quick 1000)")
		benchCount = flag.Int("bench-count", 0, "go test -count for the Go benchmarks (default 5; -quick 1)")
		benchTime  = flag.String("bench-time", "", "go test -benchtime (default 1s; -quick 200ms)")
		pprof      = flag.Bool("pprof", false, "capture pprof CPU and heap profiles of the gateway during the cost phase (builds the gateway with a pprof overlay, see README)")
		cpuprofile = flag.Bool("cpuprofile", false, "same as -pprof")
		out        = flag.String("out", "", "output directory (default test/bench/out)")
		gwlog      = flag.String("gateway-log-level", "info", "log.level of the gateways under test")
		noKamailio = flag.Bool("no-kamailio", false, "skip the Kamailio comparison")
		gwEnv      = flag.String("gateway-env", "", "extra environment of the gateways under test, comma-separated (e.g. GODEBUG=gctrace=1,GOGC=200)")
	)
	flag.Parse()
	e := &Env{GWEnv: splitList(*gwEnv), Quick: *quick, Conns: *conns, Window: *window, AnswerEvents: *answer, GWLog: *gwlog, Pprof: *pprof || *cpuprofile, selfPID: os.Getpid(), start: time.Now()}
	for i := 2; i < 2+*conns; i++ {
		e.LocalIPs = append(e.LocalIPs, "127.0.0."+strconv.Itoa(i))
	}
	root, err := findRoot()
	if err != nil {
		fatal(err)
	}
	e.Root = root
	e.Out = *out
	if e.Out == "" {
		e.Out = filepath.Join(root, "test", "bench", "out")
	}
	if err := os.MkdirAll(e.Out, 0o755); err != nil {
		fatal(err)
	}
	defSteps := "10000,40000,80000"
	if e.Quick {
		defSteps = "2000"
	}
	tcpSteps := parseSteps(*steps, defSteps)
	uSteps := parseSteps(*udpSteps, defSteps)
	udpSettle := *settle
	if udpSettle < 0 {
		udpSettle = 35 * time.Second
		if e.Quick {
			udpSettle = 0
		}
	}
	cfg := PhaseConfig{
		CostSessions:    pick(e.Quick, *costN, 4000, 2000),
		CostRate:        pick(e.Quick, *costRate, 3000, 1000),
		CallRate:        pick(e.Quick, *callRate, 200, 100),
		CostWindow:      pick(e.Quick, *costWin, 15*time.Second, 3*time.Second),
		LatStep:         pick(e.Quick, *latStep, 3*time.Second, time.Second),
		LatWindow:       pick(e.Quick, *latWin, 10*time.Second, 2*time.Second),
		RecSessions:     pick(e.Quick, *recN, 10000, 1000),
		Heartbeat:       *hb,
		Refuse:          pick(e.Quick, *refuse, 10*time.Second, 3*time.Second),
		Budget:          *budget,
		ContSessions:    pick(e.Quick, *contN, 10000, 1000),
		FailoverAfter:   *failAfter,
		ClusterSessions: pick(e.Quick, *clusterN, 10000, 1000),
		BenchCount:      pick(e.Quick, *benchCount, 5, 1),
		BenchTime:       *benchTime,
		Kamailio:        !*noKamailio,
	}
	if cfg.BenchTime == "" {
		cfg.BenchTime = "1s"
		if e.Quick {
			cfg.BenchTime = "200ms"
		}
	}
	mode := "full"
	if e.Quick {
		mode = "quick"
	}
	e.report = newReport(mode, os.Args[1:])
	e.report.Config = cfg
	want := map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		want[strings.TrimSpace(p)] = true
	}
	other, busiest := machineCheck()
	e.report.Host["other_cpu_pct_at_start"] = other
	e.report.Host["busiest_other_processes_at_start"] = busiest
	e.logf("machine check: other processes use %.0f%% of a core %v", other, busiest)
	if other > 10 {
		e.report.problem("machine not quiet at start: other processes used %.0f%% of a core (%s); CPU and latency figures are inflated", other, strings.Join(busiest, "; "))
	}
	e.logf("building cstagw and ctisim (pprof overlay: %v)", e.Pprof)
	e.GWBin, e.SimBin, err = build(root, e.Out, e.Pprof)
	if err != nil {
		fatal(err)
	}
	rep := e.report
	if want["capacity"] {
		for _, n := range []struct {
			net   string
			steps []int
			set   time.Duration
		}{{"tcp", tcpSteps, 0}, {"udp", uSteps, udpSettle}} {
			if len(n.steps) == 0 {
				continue
			}
			r, err := e.capacity(n.net, n.steps, n.set)
			if err != nil {
				rep.problem("capacity/%s: %v", n.net, err)
				continue
			}
			rep.Capacity = append(rep.Capacity, r)
			rep.addCapacity(r)
		}
	}
	if want["cost"] || want["latency"] {
		if err := e.costAndLatency(cfg, want["cost"], want["latency"]); err != nil {
			rep.problem("cost/latency: %v", err)
		}
	}
	if want["recovery"] {
		r, err := e.recovery(cfg)
		if err != nil {
			rep.problem("recovery: %v", err)
		}
		if r != nil {
			rep.Recovery = r
			rep.addRecovery(r, cfg)
		}
	}
	if want["continuity"] {
		r, err := e.continuity(cfg)
		if err != nil {
			rep.problem("continuity: %v", err)
		}
		if r != nil {
			rep.Continuity = r
			rep.addContinuity(r, cfg)
		}
	}
	if want["cluster"] {
		r, err := e.clusterPhase(cfg)
		if err != nil {
			rep.problem("cluster: %v", err)
		}
		if r != nil {
			rep.Cluster = r
			rep.addCluster(r)
		}
	}
	if want["gobench"] {
		r, err := e.goBench(cfg)
		if err != nil {
			rep.problem("gobench: %v", err)
		}
		if r != nil {
			rep.GoBench = r
			rep.addGoBench(r)
		}
	}
	rep.Method = methodNotes(cfg, e)
	rep.Finished = time.Now()
	rep.WallSeconds = time.Since(e.start).Seconds()
	table := rep.table()
	fmt.Println(table)
	path := filepath.Join(e.Out, "results.json")
	b, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		fatal(err)
	}
	_ = os.WriteFile(filepath.Join(e.Out, "results.txt"), []byte(table+"\n"), 0o644)
	stamp := rep.Started.Format("20060102-150405")
	_ = os.WriteFile(filepath.Join(e.Out, "results-"+mode+"-"+stamp+".json"), b, 0o644)
	_ = os.WriteFile(filepath.Join(e.Out, "results-"+mode+"-"+stamp+".txt"), []byte(table+"\n"), 0o644)
	fmt.Printf("JSON: %s\nTable: %s\n", path, filepath.Join(e.Out, "results.txt"))
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/cstagw/cstagw") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("run from inside the cstagw module (no go.mod above %s)", dir)
		}
	}
}

func parseSteps(s, def string) []int {
	if s == "" {
		s = def
	}
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err == nil && n > 0 {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}

// scanLog summarises the warn/error lines of a gateway's JSON log.
func (e *Env) scanLog(path, phase string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	type entry struct {
		n     int
		first string
	}
	seen := map[string]*entry{}
	var order []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var m map[string]any
		if json.Unmarshal(line, &m) != nil {
			if len(line) > 0 && !strings.HasPrefix(string(line), "{") {
				// A panic or runtime message on stderr.
				k := "stderr: " + trunc(string(line), 160)
				if seen[k] == nil {
					seen[k] = &entry{first: string(line)}
					order = append(order, k)
				}
				seen[k].n++
			}
			continue
		}
		lvl, _ := m["level"].(string)
		if lvl != "warn" && lvl != "error" && lvl != "fatal" && lvl != "panic" {
			continue
		}
		msg, _ := m["message"].(string)
		k := lvl + ": " + msg
		if seen[k] == nil {
			seen[k] = &entry{first: trunc(string(line), 400)}
			order = append(order, k)
		}
		seen[k].n++
	}
	var out []string
	for _, k := range order {
		out = append(out, fmt.Sprintf("%s gateway log: %d× %q (first: %s)", phase, seen[k].n, k, seen[k].first))
	}
	return out
}

func goVersion() string {
	out, err := exec.Command("go", "version").Output()
	if err != nil {
		return runtime.Version()
	}
	return strings.TrimSpace(string(out))
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// pick is a knob's value: the flag when given, else the quick or full
// default.
func pick[T int | float64 | time.Duration](quick bool, v, full, q T) T {
	if v > 0 {
		return v
	}
	if quick {
		return q
	}
	return full
}
