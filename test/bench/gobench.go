package main

// Phase 5: the Go benchmarks of the hot paths, run with go test and kept
// raw (benchstat-comparable) in out/gobench.txt and a timestamped copy.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// BenchStat is the median of one benchmark's runs.
type BenchStat struct {
	Name     string             `json:"name"`
	Pkg      string             `json:"pkg"`
	Runs     int                `json:"runs"`
	NsOp     float64            `json:"ns_per_op"`
	BOp      float64            `json:"bytes_per_op"`
	AllocsOp float64            `json:"allocs_per_op"`
	Extra    map[string]float64 `json:"extra,omitempty"`
}

// GoBenchResult is phase 5.
type GoBenchResult struct {
	Command string      `json:"command"`
	Raw     string      `json:"raw_output"`
	Copy    string      `json:"raw_output_copy"`
	Benches []BenchStat `json:"benchmarks"`
	Err     string      `json:"error,omitempty"`
}

var goBenchPkgs = []string{"./csta", "./ctipool", "./sipstack", "./gateway", "./test/bench"}

func (e *Env) goBench(cfg PhaseConfig) (*GoBenchResult, error) {
	args := []string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-count", strconv.Itoa(cfg.BenchCount), "-benchtime", cfg.BenchTime, "-timeout", "30m"}
	args = append(args, goBenchPkgs...)
	res := &GoBenchResult{Command: "go " + strings.Join(args, " ")}
	e.logf("gobench: %s", res.Command)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = e.Root
	out, err := cmd.CombinedOutput()
	res.Raw = filepath.Join(e.Out, "gobench.txt")
	res.Copy = filepath.Join(e.Out, "gobench-"+time.Now().Format("20060102-150405")+".txt")
	_ = os.WriteFile(res.Raw, out, 0o644)
	_ = os.WriteFile(res.Copy, out, 0o644)
	if err != nil {
		res.Err = fmt.Sprintf("%v: %s", err, trunc(string(out), 500))
	}
	res.Benches = parseBench(string(out))
	return res, nil
}

func parseBench(out string) []BenchStat {
	type acc struct {
		pkg   string
		ns    []float64
		b, al []float64
		extra map[string][]float64
	}
	m := map[string]*acc{}
	var order []string
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "pkg: ") {
			pkg = strings.TrimPrefix(line, "pkg: ")
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		key := pkg + " " + name
		a := m[key]
		if a == nil {
			a = &acc{pkg: pkg, extra: map[string][]float64{}}
			m[key] = a
			order = append(order, key)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				a.ns = append(a.ns, v)
			case "B/op":
				a.b = append(a.b, v)
			case "allocs/op":
				a.al = append(a.al, v)
			default:
				a.extra[f[i+1]] = append(a.extra[f[i+1]], v)
			}
		}
	}
	med := func(v []float64) float64 {
		if len(v) == 0 {
			return 0
		}
		v = slices.Clone(v)
		slices.Sort(v)
		return v[len(v)/2]
	}
	var res []BenchStat
	for _, k := range order {
		a := m[k]
		bs := BenchStat{Name: strings.TrimPrefix(k, a.pkg+" "), Pkg: a.pkg, Runs: len(a.ns), NsOp: med(a.ns), BOp: med(a.b), AllocsOp: med(a.al)}
		for x, v := range a.extra {
			if bs.Extra == nil {
				bs.Extra = map[string]float64{}
			}
			bs.Extra[x] = med(v)
		}
		res = append(res, bs)
	}
	return res
}
