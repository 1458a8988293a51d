package main

// Processes under test: building, starting, stopping, and reading their CPU
// time and memory from /proc.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clkTck is USER_HZ: the unit of utime/stime in /proc/PID/stat (100 on
// every Linux this runs on; read from getconf when available).
var clkTck = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && v > 0 {
			return float64(v)
		}
	}
	return 100
}()

// Proc is a child process.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	PID  int
	Log  string
	done chan struct{}
	err  error
}

func startProc(name, bin string, args, env []string, logPath string) (*Proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, PID: cmd.Process.Pid, Log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Alive reports whether the process still runs.
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM, then SIGKILL to the process group after grace.
func (p *Proc) Stop(grace time.Duration) {
	if p == nil || !p.Alive() {
		return
	}
	_ = syscall.Kill(-p.PID, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.PID, syscall.SIGKILL)
	<-p.done
}

// ExitErr is the process's exit error once it has ended.
func (p *Proc) ExitErr() error { return p.err }

// ProcStat is a sample of one process's counters.
type ProcStat struct {
	At      time.Time
	CPU     time.Duration // utime + stime
	RSSKB   int64
	HWMKB   int64
	Threads int
}

func readStat(pid int) (utime, stime float64, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, 0, errors.New("short /proc stat")
	}
	ppid, _ = strconv.Atoi(f[1])
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return u, s, ppid, nil
}

// sample reads /proc/PID/stat and /proc/PID/status.
func sample(pid int) (ProcStat, error) {
	st := ProcStat{At: time.Now()}
	u, s, _, err := readStat(pid)
	if err != nil {
		return st, err
	}
	st.CPU = time.Duration((u + s) / clkTck * float64(time.Second))
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		switch k {
		case "VmRSS":
			st.RSSKB, _ = strconv.ParseInt(v, 10, 64)
		case "VmHWM":
			st.HWMKB, _ = strconv.ParseInt(v, 10, 64)
		case "Threads":
			st.Threads, _ = strconv.Atoi(v)
		}
	}
	return st, nil
}

// treeCPU sums utime+stime of a process and all its live descendants
// (Kamailio forks its workers).
func treeCPU(root int) (time.Duration, int) {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	cpu := map[int]float64{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		u, s, pp, err := readStat(pid)
		if err != nil {
			continue
		}
		parent[pid] = pp
		cpu[pid] = u + s
	}
	var total float64
	n := 0
	for pid, c := range cpu {
		for p := pid; p > 1; p = parent[p] {
			if p == root {
				total += c
				n++
				break
			}
		}
	}
	return time.Duration(total / clkTck * float64(time.Second)), n
}

// freePort returns a port free for both TCP and UDP on 127.0.0.1.
func freePort() int {
	for i := 0; i < 50; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			continue
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return port
	}
	panic("no free port")
}

var httpc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func httpJSON(method, url string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return err
	}
	res, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, url, res.StatusCode, trunc(strings.TrimSpace(string(b)), 200))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// waitFor polls cond every 50 ms until it holds or timeout.
func waitFor(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
}

// build compiles the gateway and ctisim binaries; with pprof, the gateway
// gets an extra file through a build overlay (see overlay/pprof.go.txt).
func build(root, outDir string, pprof bool) (gw, sim string, err error) {
	bin := filepath.Join(outDir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", "", err
	}
	gw = filepath.Join(bin, "cstagw")
	sim = filepath.Join(bin, "ctisim")
	run := func(args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("build", "-o", sim, "./cmd/ctisim"); err != nil {
		return "", "", err
	}
	if pprof {
		ov := map[string]map[string]string{"Replace": {
			filepath.Join(root, "cmd", "cstagw", "zz_bench_pprof.go"): filepath.Join(root, "test", "bench", "overlay", "pprof.go.txt"),
		}}
		b, _ := json.Marshal(ov)
		ovPath := filepath.Join(outDir, "overlay.json")
		if err := os.WriteFile(ovPath, b, 0o644); err != nil {
			return "", "", err
		}
		if err := run("build", "-overlay", ovPath, "-o", gw, "./cmd/cstagw"); err != nil {
			return "", "", err
		}
	} else if err := run("build", "-o", gw, "./cmd/cstagw"); err != nil {
		return "", "", err
	}
	return gw, sim, nil
}

// udpDrops returns the kernel's drop counter of the UDP socket bound to
// 127.0.0.1:port (datagrams lost because its receive buffer was full), or
// -1 when there is none.
func udpDrops(port int) int64 {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return -1
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 13 || f[1] != want {
			continue
		}
		n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	return -1
}

// sysBusy is the machine's busy CPU time (all CPUs) from /proc/stat.
func sysBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already in user
			break
		}
		x, _ := strconv.ParseFloat(v, 64)
		busy += x
	}
	return time.Duration(busy / clkTck * float64(time.Second))
}

// machineCheck measures, for a second, the CPU used by processes that are
// not this harness, and names the busiest of them.
func machineCheck() (otherPct float64, busiest []string) {
	snap := func() map[int]float64 {
		m := map[int]float64{}
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			u, s, _, err := readStat(pid)
			if err == nil {
				m[pid] = u + s
			}
		}
		return m
	}
	self := os.Getpid()
	b0, s0, t0 := sysBusy(), snap(), time.Now()
	time.Sleep(time.Second)
	b1, s1, el := sysBusy(), snap(), time.Since(t0)
	mine := float64(0)
	if a, ok := s1[self]; ok {
		mine = (a - s0[self]) / clkTck
	}
	otherPct = (float64(b1-b0)/float64(time.Second) - mine) / el.Seconds() * 100
	type pc struct {
		pid int
		pct float64
	}
	var top []pc
	for pid, v := range s1 {
		if old, ok := s0[pid]; ok && pid != self && v > old {
			top = append(top, pc{pid, (v - old) / clkTck / el.Seconds() * 100})
		}
	}
	sort.Slice(top, func(i, j int) bool { return top[i].pct > top[j].pct })
	for _, p := range top[:min(3, len(top))] {
		if p.pct < 5 {
			break
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.pid))
		name := strings.ReplaceAll(strings.TrimRight(string(cmd), "\x00"), "\x00", " ")
		busiest = append(busiest, fmt.Sprintf("pid %d %.0f%%: %s", p.pid, p.pct, trunc(name, 90)))
	}
	return math.Round(otherPct*10) / 10, busiest
}
