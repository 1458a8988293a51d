package gateway

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
)

// RuntimeConfig tunes Go's garbage collector for the process. A gateway's
// heap is mostly long-lived session state with a stream of short-lived
// message garbage on top; collecting at Go's default (every time the heap
// doubles) spends a large share of the CPU and of the latency tail on
// re-marking the same sessions. So the gateway collects less often and
// bounds its memory with a soft limit instead.
type RuntimeConfig struct {
	// GCPercent is GOGC: the heap may grow this many percent over the live
	// heap before a collection (Go's default is 100).
	GCPercent int `yaml:"gc_percent"`
	// MemoryLimit is GOMEMLIMIT, a soft limit on the memory the Go runtime
	// holds: the collector works harder as the heap nears it. "auto" (the
	// default) is 80 % of the container's memory limit (cgroup v2
	// memory.max) when there is one, else 1536MiB; "none" disables it.
	// Sizes take B, KiB, MiB, GiB (or KB, MB, GB).
	MemoryLimit string `yaml:"memory_limit"`
}

// Runtime defaults.
const (
	DefaultGCPercent   = 400
	DefaultMemoryLimit = 1536 << 20
)

func (r RuntimeConfig) withDefaults() RuntimeConfig {
	if r.GCPercent == 0 {
		r.GCPercent = DefaultGCPercent
	}
	if r.MemoryLimit == "" {
		r.MemoryLimit = "auto"
	}
	return r
}

func (r RuntimeConfig) validate() error {
	if r.GCPercent < 0 {
		return fmt.Errorf("runtime.gc_percent: %d: must be positive", r.GCPercent)
	}
	if _, err := r.memoryLimit(""); err != nil {
		return fmt.Errorf("runtime.memory_limit: %w", err)
	}
	return nil
}

// memoryLimit resolves MemoryLimit to bytes (0: none). cgroupMax is the
// content of the cgroup's memory.max file ("" when there is none).
func (r RuntimeConfig) memoryLimit(cgroupMax string) (int64, error) {
	switch v := strings.TrimSpace(strings.ToLower(r.MemoryLimit)); v {
	case "none", "off", "0":
		return 0, nil
	case "", "auto":
		if n, err := strconv.ParseInt(strings.TrimSpace(cgroupMax), 10, 64); err == nil && n > 0 {
			return n / 10 * 8, nil
		}
		return DefaultMemoryLimit, nil
	default:
		return parseSize(r.MemoryLimit)
	}
}

var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"b", 1},
}

// parseSize reads "1536MiB", "1.5GiB", "2GB" or a number of bytes.
func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q: expected a size such as 1536MiB or 2GiB, or auto or none", s)
	}
	return int64(f * mult), nil
}

// ApplyRuntime sets the process's GC knobs from the configuration, unless
// the GOGC or GOMEMLIMIT environment variables set them (they win). It
// returns what is in force, for the start-up log.
func ApplyRuntime(r RuntimeConfig) (gcPercent int, memoryLimit int64) {
	r = r.withDefaults()
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(r.GCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		cg, _ := os.ReadFile("/sys/fs/cgroup/memory.max")
		if n, err := r.memoryLimit(string(cg)); err == nil && n > 0 {
			debug.SetMemoryLimit(n)
		}
	}
	// Read back what is in force (the environment may have set it); a
	// negative limit only reads.
	s := []rtmetrics.Sample{{Name: "/gc/gogc:percent"}}
	rtmetrics.Read(s)
	return int(s[0].Value.Uint64()), debug.SetMemoryLimit(-1)
}
