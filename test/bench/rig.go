package main

// A rig is one ctisim process and one cstagw process with a generated
// configuration: the directory lists users u1..uN, each on its own line
// tel:(100000+i);phone-context=dialstring = PBX station 100000+i, and
// ctisim's station range covers them.

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	stationBase  = 100000
	stationRange = "100000-199999"
	maxUsers     = 99999
	benchDomain  = "bench.cstagw"
)

func userURI(i int) string { return "sip:u" + strconv.Itoa(i) + "@" + benchDomain }
func station(i int) string { return strconv.Itoa(stationBase + i) }
func lineURI(i int) string { return "tel:" + station(i) + ";phone-context=dialstring" }

// RigOptions shape one gateway under test.
type RigOptions struct {
	Name           string
	Users          int
	Links          int           // CTI links = ctisim nodes
	Heartbeat      time.Duration // cti.heartbeat_interval
	Budget         int           // cti.admission_budget
	RequestTimeout time.Duration
	LogLevel       string
	Pprof          bool
	FastReconnect  bool
	ExtraCTI       string // more lines of the cti: section, indented two spaces
}

// Rig is a running ctisim + cstagw pair.
type Rig struct {
	Opt       RigOptions
	Sim       *Proc
	SimCtl    string   // host:port of the control API
	SimNodes  []string // CTI node addresses
	GW        *Proc
	SIPAddr   string // 127.0.0.1:port (UDP and TCP)
	Admin     string
	PprofAddr string
	Config    string
	GWBase    ProcStat // gateway sample once ready, before any session
	SimBase   ProcStat
}

func (e *Env) startRig(o RigOptions) (*Rig, error) {
	if o.Users > maxUsers {
		return nil, fmt.Errorf("at most %d users", maxUsers)
	}
	if o.Links <= 0 {
		o.Links = 1
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 10 * time.Second
	}
	if o.Budget <= 0 {
		o.Budget = 32
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	r := &Rig{Opt: o}
	dir := filepath.Join(e.Out, "rigs", o.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var nodes []string
	for i := 0; i < o.Links; i++ {
		nodes = append(nodes, fmt.Sprintf("127.0.0.1:%d", freePort()))
	}
	r.SimNodes = nodes
	r.SimCtl = fmt.Sprintf("127.0.0.1:%d", freePort())
	var err error
	r.Sim, err = startProc("ctisim", e.SimBin, []string{"-listen", strings.Join(nodes, ","), "-control", r.SimCtl,
		"-stations", stationRange, "-quiet"}, nil, filepath.Join(dir, "ctisim.log"))
	if err != nil {
		return nil, err
	}
	if err := waitFor(15*time.Second, "ctisim control API", func() bool {
		c, err := net.DialTimeout("tcp", r.SimCtl, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}); err != nil {
		r.Stop()
		return nil, err
	}
	r.SIPAddr = fmt.Sprintf("127.0.0.1:%d", freePort())
	r.Admin = fmt.Sprintf("127.0.0.1:%d", freePort())
	r.Config = filepath.Join(dir, "gateway.yaml")
	if err := writeGatewayConfig(r.Config, r, o); err != nil {
		r.Stop()
		return nil, err
	}
	env := append([]string(nil), e.GWEnv...)
	if o.Pprof {
		r.PprofAddr = fmt.Sprintf("127.0.0.1:%d", freePort())
		env = append(env, "CSTAGW_BENCH_PPROF="+r.PprofAddr)
	}
	r.GW, err = startProc("cstagw", e.GWBin, []string{"-config", r.Config}, env, filepath.Join(dir, "gateway.log"))
	if err != nil {
		r.Stop()
		return nil, err
	}
	if err := waitFor(60*time.Second, "gateway /readyz with every link up", func() bool {
		if !r.GW.Alive() {
			return false
		}
		var st struct {
			Links []struct {
				State string `json:"state"`
			} `json:"links"`
		}
		if httpJSON("GET", "http://"+r.Admin+"/status", nil, &st) != nil || len(st.Links) != o.Links {
			return false
		}
		for _, l := range st.Links {
			if l.State != "up" {
				return false
			}
		}
		return true
	}); err != nil {
		r.Stop()
		return nil, fmt.Errorf("%w (gateway log: %s)", err, r.GW.Log)
	}
	time.Sleep(500 * time.Millisecond)
	r.GWBase, _ = sample(r.GW.PID)
	r.SimBase, _ = sample(r.Sim.PID)
	return r, nil
}

// Stop ends both processes.
func (r *Rig) Stop() {
	if r == nil {
		return
	}
	if r.GW != nil {
		// Shutdown is measured by the capacity phase; here only the
		// process's end matters.
		r.GW.Stop(2 * time.Second)
	}
	if r.Sim != nil {
		r.Sim.Stop(5 * time.Second)
	}
}

// GWStatus is the part of the gateway's /status the harness reads.
type GWStatus struct {
	Sessions int   `json:"sessions"`
	Dialogs  int64 `json:"sip_dialogs"`
	Links    []struct {
		Name        string `json:"name"`
		State       string `json:"state"`
		Generation  uint64 `json:"generation"`
		Sessions    int    `json:"sessions"`
		Monitors    int    `json:"monitors"`
		Outstanding int    `json:"outstanding"`
		Reconnects  uint64 `json:"reconnects"`
		LastError   string `json:"last_error"`
	} `json:"links"`
}

func (r *Rig) Status() (GWStatus, error) {
	var st GWStatus
	err := httpJSON("GET", "http://"+r.Admin+"/status", nil, &st)
	return st, err
}

// Metrics returns the gateway's /metrics as name{labels} → value.
func (r *Rig) Metrics() (map[string]float64, error) { return fetchMetrics(r.Admin) }

// fetchMetrics reads a gateway's /metrics (admin is host:port).
func fetchMetrics(admin string) (map[string]float64, error) {
	res, err := httpc.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// NodeState is the part of ctisim's GET /state node the harness reads.
type NodeState struct {
	Index                            int            `json:"index"`
	ConnectedClients                 int            `json:"connectedClients"`
	Monitors                         int            `json:"monitors"`
	InFlightMonitorSnapshot          int            `json:"inFlightMonitorSnapshot"`
	InFlightMonitorSnapshotHighWater int            `json:"inFlightMonitorSnapshotHighWater"`
	InFlightHighWater                int            `json:"inFlightHighWater"`
	Accepted                         uint64         `json:"accepted"`
	Refused                          uint64         `json:"refused"`
	Disconnected                     uint64         `json:"disconnected"`
	FramesIn                         map[string]int `json:"framesIn"`
}

// SimNodes reads ctisim's GET /state (heavy with many monitors: call it
// rarely).
func (r *Rig) SimState() ([]NodeState, error) {
	var st struct {
		Nodes []NodeState `json:"nodes"`
	}
	err := httpJSON("GET", "http://"+r.SimCtl+"/state", nil, &st)
	return st.Nodes, err
}

func writeGatewayConfig(path string, r *Rig, o RigOptions) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintf(w, "# Generated by test/bench (%s): %d users, %d CTI link(s).\n", o.Name, o.Users, o.Links)
	fmt.Fprintf(w, "sip:\n  listen: [\"udp:%s\", \"tcp:%s\"]\n  trusted_hosts: [\"127.0.0.0/8\"]\n", r.SIPAddr, r.SIPAddr)
	fmt.Fprintf(w, "cti:\n  heartbeat_interval: %s\n  request_timeout: %s\n  admission_budget: %d\n", o.Heartbeat, o.RequestTimeout, o.Budget)
	if o.FastReconnect {
		fmt.Fprintf(w, "  reconnect:\n    initial_backoff: 100ms\n    max_backoff: 500ms\n    max_retries: 10000\n    hold_off: 1s\n")
	}
	fmt.Fprint(w, o.ExtraCTI)
	fmt.Fprintf(w, "  links:\n")
	for i, a := range r.SimNodes {
		fmt.Fprintf(w, "    - {name: cti-%c, address: \"%s\", app_session: true}\n", 'a'+i, a)
	}
	fmt.Fprintf(w, "admin:\n  listen: \"%s\"\nlog:\n  level: %s\n  format: json\n", r.Admin, o.LogLevel)
	fmt.Fprintf(w, "gateway:\n  max_sessions: 200000\n")
	return finishConfig(f, w, o.Users)
}

// finishConfig writes the directory of users u1..uN and closes the file.
func finishConfig(f *os.File, w *bufio.Writer, users int) error {
	fmt.Fprintf(w, "directory:\n  users:\n")
	for i := 1; i <= users; i++ {
		fmt.Fprintf(w, "    - {uri: \"%s\", lines: [{line: \"%s\", device: \"%s\"}]}\n", userURI(i), lineURI(i), station(i))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
