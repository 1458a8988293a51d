package main

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Lat collects durations (safe for concurrent use).
type Lat struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *Lat) Add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// Summary are percentiles in microseconds.
type Summary struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p999_us"`
	Max  float64 `json:"max_us"`
	Mean float64 `json:"mean_us"`
}

func (l *Lat) Summary() Summary {
	l.mu.Lock()
	d := slices.Clone(l.d)
	l.mu.Unlock()
	return summarize(d)
}

func summarize(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(d)))) - 1
		if i < 0 {
			i = 0
		}
		if i >= len(d) {
			i = len(d) - 1
		}
		return us(d[i])
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return Summary{N: len(d), P50: q(0.50), P90: q(0.90), P99: q(0.99), P999: q(0.999), Max: us(d[len(d)-1]), Mean: us(sum / time.Duration(len(d)))}
}

func us(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)*10) / 10 }

// Counts is a concurrent string counter.
type Counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *Counts) Inc(k string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[k]++
	c.mu.Unlock()
}

func (c *Counts) Map() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

func fmtCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d× %s", m[k], k))
	}
	return strings.Join(parts, "; ")
}

// pace calls fire at rate per second for dur (open loop: the schedule does
// not wait for answers). It returns how many fires happened.
func pace(rate float64, dur time.Duration, stop <-chan struct{}, fire func()) int {
	start := time.Now()
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	sent := 0
	for {
		select {
		case <-stop:
			return sent
		case now := <-t.C:
			el := now.Sub(start)
			if el >= dur {
				return sent
			}
			due := int(rate * el.Seconds())
			for sent < due {
				fire()
				sent++
			}
		}
	}
}

func containsStr(b []byte, s string) bool { return strings.Contains(string(b), s) }
