package gateway

import (
	rtmetrics "runtime/metrics"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/sipstack"
)

// Metrics are Prometheus's own (client_golang): its registry, exposition
// and escaping. Each gateway has its own registry (tests run many). The
// hot path never allocates: label children are resolved once and cached
// by their label values (counterVec, histVec), and whatever /status
// already knows (links, SIP counters) is read at scrape time by a
// collector instead of being counted twice.

// childCache caches the children of a metric vector by label values: the
// hot paths look a child up without allocating.
type childCache[T comparable] struct {
	make func(values ...string) T // the vector's WithLabelValues
	mu   sync.RWMutex
	m    map[string]T
}

// With returns the child of a label set (values in label order).
func (v *childCache[T]) With(values ...string) T {
	var buf [96]byte
	k := labelKey(buf[:0], values)
	v.mu.RLock()
	c, ok := v.m[string(k)] // no allocation for the lookup
	v.mu.RUnlock()
	if ok {
		return c
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if c, ok = v.m[string(k)]; !ok {
		c = v.make(boundLabels(append([]string(nil), values...), len(v.m))...)
		v.m[string(k)] = c
	}
	return c
}

// counterVec is a CounterVec whose children are cached by label values.
type counterVec = childCache[prometheus.Counter]

func newCounterVec(reg prometheus.Registerer, name, help string, labels ...string) *counterVec {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	reg.MustRegister(vec)
	return &counterVec{make: func(v ...string) prometheus.Counter { return vec.WithLabelValues(v...) }, m: map[string]prometheus.Counter{}}
}

// histVec is a HistogramVec whose children are cached by label values.
type histVec = childCache[prometheus.Observer]

func newHistVec(reg prometheus.Registerer, name, help string, buckets []float64, labels ...string) *histVec {
	vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	reg.MustRegister(vec)
	return &histVec{make: func(v ...string) prometheus.Observer { return vec.WithLabelValues(v...) }, m: map[string]prometheus.Observer{}}
}

func labelKey(k []byte, values []string) []byte {
	for i, x := range values {
		if i > 0 {
			k = append(k, 0)
		}
		k = append(k, x...)
	}
	return k
}

// boundLabels folds label values into "other" once a vector holds 10,000
// children: a label fed by clients (a service name) must not grow without
// bound.
func boundLabels(vals []string, have int) []string {
	if have < 10000 {
		return vals
	}
	for i := range vals {
		vals[i] = "other"
	}
	return vals
}

// Latency buckets: 0.5 ms to 10 s.
var latencyBuckets = []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10}

type metrics struct {
	reg *prometheus.Registry

	sessionsOpened prometheus.Counter
	sessionsClosed *counterVec
	requests       *counterVec
	badRequests    *counterVec
	refusals       *counterVec
	linkChanges    *counterVec
	passedThrough  *counterVec
	moves          *counterVec
	reloads        *counterVec
	eventsIn       prometheus.Counter
	eventsOut      prometheus.Counter
	slowClients    prometheus.Counter
	sendFailed     prometheus.Counter
	stale481       prometheus.Counter
	monitors       prometheus.Gauge
	// Cluster mode (cluster.go).
	storeUp     prometheus.Gauge
	storeWrites prometheus.Counter
	clusterLost prometheus.Counter
	released    prometheus.Counter
	adopted     *counterVec
	fencedDrops prometheus.Counter

	requestTime  *histVec            // client request → answer, by service and result
	ctiTime      *histVec            // CTI round trip, by link
	eventLatency prometheus.Observer // PBX frame in → INFO out
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	m := &metrics{
		reg:            reg,
		sessionsOpened: counter("cstagw_sessions_opened_total", "RCC sessions placed."),
		sessionsClosed: newCounterVec(reg, "cstagw_sessions_closed_total", "RCC sessions closed, by reason.", "reason"),
		requests:       newCounterVec(reg, "cstagw_requests_total", "CSTA requests from clients, by service and result.", "service", "result"),
		badRequests:    newCounterVec(reg, "cstagw_bad_requests_total", "SIP requests refused for their CSTA body, by SIP status.", "status"),
		refusals:       newCounterVec(reg, "cstagw_refusals_total", "Requests refused by policy (user, line, call, monitor, limits, no link).", "kind"),
		linkChanges:    newCounterVec(reg, "cstagw_link_state_changes_total", "CTI link state changes.", "link", "state"),
		passedThrough:  newCounterVec(reg, "cstagw_events_passed_through_total", "Event INFOs sent to clients for events the gateway does not model, by event.", "event"),
		moves:          newCounterVec(reg, "cstagw_session_moves_total", "Sessions moved to another CTI link generation, by reason (failover, resume, fallback, removed) and result.", "reason", "result"),
		reloads:        newCounterVec(reg, "cstagw_config_reloads_total", "Configuration reloads (SIGHUP, POST /reload), by result.", "result"),
		eventsIn:       counter("cstagw_events_received_total", "CSTA events received from the CTI links."),
		eventsOut:      counter("cstagw_events_sent_total", "CSTA events sent to clients (INFO)."),
		slowClients:    counter("cstagw_slow_clients_total", "Sessions closed because their event queue overflowed."),
		sendFailed:     counter("cstagw_event_send_failures_total", "Event INFOs that could not be written."),
		stale481:       counter("cstagw_stale_481_total", "481 answers to stale sessions after a link reconnect."),
		requestTime: newHistVec(reg, "cstagw_request_duration_seconds", "Client CSTA requests, from the INFO to its answer, by service and result.",
			latencyBuckets, "service", "result"),
		ctiTime: newHistVec(reg, "cstagw_cti_request_duration_seconds", "CTI requests, from sending to the PBX's answer, by link.", latencyBuckets, "link"),
	}
	m.monitors = prometheus.NewGauge(prometheus.GaugeOpts{Name: "cstagw_monitors", Help: "Northbound monitors open."})
	reg.MustRegister(m.monitors)
	m.storeUp = prometheus.NewGauge(prometheus.GaugeOpts{Name: "cstagw_cluster_store_up", Help: "Whether the cluster store answered the last round trip (cluster mode)."})
	reg.MustRegister(m.storeUp)
	m.storeWrites = counter("cstagw_cluster_store_writes_total", "Session states written to the cluster store.")
	m.clusterLost = counter("cstagw_cluster_sessions_lost_total", "Sessions let go (no BYE) because another node had claimed them.")
	m.released = counter("cstagw_cluster_sessions_released_total", "Sessions handed to the other nodes by a drain.")
	m.adopted = newCounterVec(reg, "cstagw_cluster_sessions_adopted_total", "Sessions taken over from other nodes, by how (takeover, on_demand, drained, restart, orphan).", "how")
	m.fencedDrops = counter("cstagw_cluster_fenced_events_total", "Events not sent because the node did not hold its lease.")
	ev := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cstagw_event_delivery_seconds",
		Help: "Events, from the PBX's frame in to the client's INFO out.", Buckets: latencyBuckets})
	reg.MustRegister(ev)
	m.eventLatency = ev
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), runtimeCollector{})
	return m
}

// since observes the time from start (unix nanoseconds; 0: unknown).
func since(o prometheus.Observer, start int64) {
	if start > 0 {
		o.Observe(float64(time.Now().UnixNano()-start) / 1e9)
	}
}

// statusCollector reads at scrape time what /status already knows: the
// sessions, the links, the SIP side's counters.
type statusCollector struct{ g *Gateway }

var (
	descSessions       = prometheus.NewDesc("cstagw_sessions", "RCC sessions open.", nil, nil)
	descDialogs        = prometheus.NewDesc("cstagw_sip_dialogs", "SIP dialogs established.", nil, nil)
	descInfoSent       = prometheus.NewDesc("cstagw_sip_info_sent_total", "In-dialog INFO requests sent.", nil, nil)
	descInfoFailed     = prometheus.NewDesc("cstagw_sip_info_failed_total", "In-dialog INFO requests that could not be sent.", nil, nil)
	descParseErrors    = prometheus.NewDesc("cstagw_sip_parse_errors_total", "SIP messages that could not be parsed, by transport.", []string{"transport"}, nil)
	descAuthFailures   = prometheus.NewDesc("cstagw_auth_failures_total", "Digest authentications that failed (wrong credentials).", nil, nil)
	descAuthLockouts   = prometheus.NewDesc("cstagw_auth_lockouts_total", "Lockouts of a (source, user) pair or a source after repeated digest failures.", nil, nil)
	descLinkUp         = prometheus.NewDesc("cstagw_link_up", "Whether a CTI link is up.", []string{"link"}, nil)
	descLinkState      = prometheus.NewDesc("cstagw_link_state", "CTI link state (1 for the current one).", []string{"link", "state"}, nil)
	descLinkGeneration = prometheus.NewDesc("cstagw_link_generation", "CTI link generation (successful connections).", []string{"link"}, nil)
	descLinkRTT        = prometheus.NewDesc("cstagw_link_heartbeat_rtt_seconds", "Last heartbeat round trip.", []string{"link"}, nil)
	descLinkReconnects = prometheus.NewDesc("cstagw_link_reconnects_total", "Reconnections of a CTI link.", []string{"link"}, nil)
	descLinkSessions   = prometheus.NewDesc("cstagw_link_sessions", "Sessions pinned to a CTI link.", []string{"link"}, nil)
	descLinkOutstand   = prometheus.NewDesc("cstagw_link_outstanding", "CTI requests awaiting an answer.", []string{"link"}, nil)
	descDirUp          = prometheus.NewDesc("cstagw_directory_source_up", "Whether a directory source's last load succeeded.", []string{"source"}, nil)
	descDirLast        = prometheus.NewDesc("cstagw_directory_last_success_timestamp_seconds", "When a directory source last loaded (Unix time).", []string{"source"}, nil)
)

func (c statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessions, descDialogs, descInfoSent, descInfoFailed, descParseErrors, descAuthFailures,
		descAuthLockouts, descLinkUp, descLinkState, descLinkGeneration, descLinkRTT, descLinkReconnects, descLinkSessions, descLinkOutstand,
		descDirUp, descDirLast} {
		ch <- d
	}
}

// Collect reads the live figures only: no store round trip, no reload or
// continuity status (what /status adds).
func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	count := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descSessions, float64(c.g.Sessions()))
	ss := c.g.sip.Stats()
	gauge(descDialogs, float64(ss.Dialogs))
	count(descInfoSent, float64(ss.InfoSent))
	count(descInfoFailed, float64(ss.InfoFailed))
	count(descAuthFailures, float64(ss.AuthFailures))
	count(descAuthLockouts, float64(ss.AuthLockouts))
	gauge(descDirUp, 1, "file")
	gauge(descDirLast, float64(c.g.configLoaded().Unix()), "file")
	if src := c.g.ldapSrc; src != nil {
		up := 0.0
		if src.Up() {
			up = 1
		}
		gauge(descDirUp, up, src.Name())
		if t := src.LastSuccess(); !t.IsZero() {
			gauge(descDirLast, float64(t.Unix()), src.Name())
		}
	}
	for tr, n := range sipstack.ParseErrors() {
		count(descParseErrors, float64(n), tr)
	}
	for _, l := range c.g.linkStatuses() {
		up := 0.0
		if l.State == ctipool.StateUp {
			up = 1
		}
		gauge(descLinkUp, up, l.Name)
		for _, s := range []ctipool.State{ctipool.StateConnecting, ctipool.StateUp, ctipool.StateDown, ctipool.StateHoldoff} {
			v := 0.0
			if l.State == s {
				v = 1
			}
			gauge(descLinkState, v, l.Name, s.String())
		}
		gauge(descLinkGeneration, float64(l.Generation), l.Name)
		gauge(descLinkRTT, l.HeartbeatRTTMs/1000, l.Name)
		count(descLinkReconnects, float64(l.Reconnects), l.Name)
		gauge(descLinkSessions, float64(l.Sessions), l.Name)
		gauge(descLinkOutstand, float64(l.Outstanding), l.Name)
	}
}

// runtimeCollector keeps the Go runtime figures an operator sizes memory
// with under the names the README has always listed, read through
// runtime/metrics (no stop-the-world). The standard Go collector adds the
// rest (go_goroutines, go_gc_gogc_percent, go_gc_gomemlimit_bytes,
// go_memstats_*, GC pauses...).
type runtimeCollector struct{}

var goMetrics = []struct {
	desc    *prometheus.Desc
	sample  string
	counter bool
}{
	{prometheus.NewDesc("go_gc_heap_live_bytes", "Heap memory occupied by live objects at the last collection.", nil, nil), "/gc/heap/live:bytes", false},
	{prometheus.NewDesc("go_memory_total_bytes", "All memory mapped by the Go runtime (an upper bound on RSS).", nil, nil), "/memory/classes/total:bytes", false},
	{prometheus.NewDesc("go_gc_cycles_total", "Completed garbage collection cycles.", nil, nil), "/gc/cycles/total:gc-cycles", true},
}

func (runtimeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range goMetrics {
		ch <- m.desc
	}
}

func (runtimeCollector) Collect(ch chan<- prometheus.Metric) {
	samples := make([]rtmetrics.Sample, len(goMetrics))
	for i, m := range goMetrics {
		samples[i].Name = m.sample
	}
	rtmetrics.Read(samples)
	for i, m := range goMetrics {
		var v float64
		switch samples[i].Value.Kind() {
		case rtmetrics.KindUint64:
			v = float64(samples[i].Value.Uint64())
		case rtmetrics.KindFloat64:
			v = samples[i].Value.Float64()
		default:
			continue // not in this Go version
		}
		t := prometheus.GaugeValue
		if m.counter {
			t = prometheus.CounterValue
		}
		ch <- prometheus.MustNewConstMetric(m.desc, t, v)
	}
}
