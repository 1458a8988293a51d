package gateway

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// A small Prometheus text-format registry: a handful of counters and
// gauges, lock-free on the hot path. (The client library would add a dozen
// modules for what fits in this file.)

type counter struct{ v atomic.Uint64 }

func (c *counter) Inc()         { c.v.Add(1) }
func (c *counter) Load() uint64 { return c.v.Load() }

type gauge struct{ v atomic.Int64 }

func (g *gauge) Inc()        { g.v.Add(1) }
func (g *gauge) Dec()        { g.v.Add(-1) }
func (g *gauge) Load() int64 { return g.v.Load() }

type counterVec struct {
	name, help string
	labels     []string
	mu         sync.RWMutex
	m          map[string]*counter
}

func newCounterVec(name, help string, labels ...string) *counterVec {
	return &counterVec{name: name, help: help, labels: labels, m: map[string]*counter{}}
}

// With returns the counter of a label set (values in label order).
func (v *counterVec) With(values ...string) *counter {
	var buf [96]byte
	k := buf[:0]
	for i, x := range values {
		if i > 0 {
			k = append(k, 0)
		}
		k = append(k, x...)
	}
	v.mu.RLock()
	c := v.m[string(k)] // no allocation for the lookup
	v.mu.RUnlock()
	if c != nil {
		return c
	}
	key := string(k)
	v.mu.Lock()
	defer v.mu.Unlock()
	if c = v.m[key]; c == nil {
		if len(v.m) >= 10000 {
			// Bound label cardinality: fold the rest into "other".
			key = strings.Repeat("other\x00", len(values))[:len(values)*6-1]
			if c = v.m[key]; c != nil {
				return c
			}
		}
		c = &counter{}
		v.m[key] = c
	}
	return c
}

func (v *counterVec) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", v.name, v.help, v.name)
	v.mu.RLock()
	keys := make([]string, 0, len(v.m))
	for k := range v.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vals := strings.Split(k, "\x00")
		fmt.Fprintf(w, "%s{%s} %d\n", v.name, labelPairs(v.labels, vals), v.m[k].Load())
	}
	v.mu.RUnlock()
}

func labelPairs(names, values []string) string {
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		val := ""
		if i < len(values) {
			val = values[i]
		}
		fmt.Fprintf(&b, "%s=%q", n, val)
	}
	return b.String()
}

type metrics struct {
	sessionsOpened counter
	sessionsClosed *counterVec
	requests       *counterVec
	badRequests    *counterVec
	refusals       *counterVec
	linkChanges    *counterVec
	moves          *counterVec
	reloads        *counterVec
	passedThrough  *counterVec
	eventsIn       counter
	eventsOut      counter
	slowClients    counter
	sendFailed     counter
	stale481       counter
	monitors       gauge
}

func newMetrics() *metrics {
	return &metrics{
		sessionsClosed: newCounterVec("cstagw_sessions_closed_total", "RCC sessions closed, by reason.", "reason"),
		requests:       newCounterVec("cstagw_requests_total", "CSTA requests from clients, by service and result.", "service", "result"),
		badRequests:    newCounterVec("cstagw_bad_requests_total", "SIP requests refused for their CSTA body, by SIP status.", "status"),
		refusals:       newCounterVec("cstagw_refusals_total", "Requests refused by policy (user, line, call, monitor, limits, no link).", "kind"),
		linkChanges:    newCounterVec("cstagw_link_state_changes_total", "CTI link state changes.", "link", "state"),
		reloads:        newCounterVec("cstagw_config_reloads_total", "Configuration reloads (SIGHUP, POST /reload), by result.", "result"),
		moves:          newCounterVec("cstagw_session_moves_total", "Sessions moved to another CTI link generation, by reason (failover, resume, fallback) and result.", "reason", "result"),
		passedThrough:  newCounterVec("cstagw_events_passed_through_total", "Event INFOs sent to clients for events the gateway does not model, by event.", "event"),
	}
}

func writeCounter(w io.Writer, name, help string, v uint64) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
}

func writeGauge(w io.Writer, name, help string, v float64) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n", name, help, name, name, v)
}
