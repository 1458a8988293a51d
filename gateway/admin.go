package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	rtmetrics "runtime/metrics"
	"time"

	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/sipstack"
)

// LinkStatus is one link in /status.
type LinkStatus struct {
	Name             string        `json:"name"`
	Address          string        `json:"address"`
	State            ctipool.State `json:"state"`
	Generation       uint64        `json:"generation"`
	Sessions         int           `json:"sessions"`
	Since            time.Time     `json:"since"`
	HeartbeatAgeMs   int64         `json:"heartbeat_age_ms"`
	HeartbeatRTTMs   float64       `json:"heartbeat_rtt_ms"`
	MissedBeats      int           `json:"missed_beats"`
	Reconnects       uint64        `json:"reconnects"`
	ConsecutiveFails uint64        `json:"consecutive_failures"`
	Outstanding      int           `json:"outstanding"`
	Monitors         int           `json:"monitors"`
	Namespace        string        `json:"namespace,omitempty"`
	LastError        string        `json:"last_error,omitempty"`
}

// Status is the /status document.
type Status struct {
	Links    []LinkStatus `json:"links"`
	Sessions int          `json:"sessions"`
	Dialogs  int64        `json:"sip_dialogs"`
	Draining bool         `json:"draining"`
	Uptime   string       `json:"uptime"`
	// Continuity is the move policy in force and the moves waiting.
	Continuity ContinuityStatus `json:"continuity"`
	// Config is the running configuration's generation (1 at start, +1
	// per applied reload), when it was loaded, and why the last reload
	// was refused, if it was.
	Config ReloadStatus `json:"config"`
}

// ContinuityStatus is the continuity part of /status.
type ContinuityStatus struct {
	FailoverAfter  string `json:"failover_after"`
	AfterReconnect string `json:"after_reconnect"`
	Fallback       bool   `json:"fallback"`
	MovesQueued    int    `json:"moves_queued"`
}

// Status returns the gateway's status.
func (g *Gateway) Status() Status {
	st := Status{Draining: g.draining.Load(), Uptime: time.Since(g.started).Round(time.Second).String()}
	st.Config = g.reloadStatus()
	st.Continuity = ContinuityStatus{FailoverAfter: "off", AfterReconnect: g.conf().CTI.AfterReconnect,
		Fallback: g.conf().CTI.FallbackEnabled(), MovesQueued: g.mover.queued()}
	if d, ok := g.conf().CTI.FailoverDelay(); ok {
		st.Continuity.FailoverAfter = d.String()
	}
	g.mu.Lock()
	st.Sessions = len(g.sessions)
	per := map[string]int{}
	for l, ss := range g.byLink {
		per[l.Name()] = len(ss)
	}
	g.mu.Unlock()
	st.Dialogs = g.sip.Stats().Dialogs
	for _, h := range g.pool.Health() {
		ls := LinkStatus{
			Name: h.Name, Address: h.Address, State: h.State, Generation: h.Generation, Sessions: per[h.Name],
			Since: h.Since, HeartbeatRTTMs: float64(h.RTT) / 1e6, MissedBeats: h.MissedBeats, Reconnects: h.Reconnects,
			ConsecutiveFails: h.Failures, Outstanding: h.Outstanding, Monitors: h.Monitors, Namespace: h.Namespace,
			LastError: h.LastError,
		}
		if !h.LastRx.IsZero() {
			ls.HeartbeatAgeMs = time.Since(h.LastRx).Milliseconds()
		}
		st.Links = append(st.Links, ls)
	}
	return st
}

func (g *Gateway) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		switch {
		case g.draining.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "draining")
		case !g.pool.AnyUp():
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "no CTI link up")
		default:
			fmt.Fprintln(w, "ready")
		}
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(g.Status())
	})
	mux.HandleFunc("GET /metrics", g.serveMetrics)
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		res, err := g.Reload()
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(res)
	})
	if g.conf().Admin.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func (g *Gateway) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	m := g.metrics
	st := g.Status()
	writeGauge(w, "cstagw_sessions", "RCC sessions open.", float64(st.Sessions))
	writeCounter(w, "cstagw_sessions_opened_total", "RCC sessions placed.", m.sessionsOpened.Load())
	m.sessionsClosed.write(w)
	m.requests.write(w)
	m.badRequests.write(w)
	m.refusals.write(w)
	writeCounter(w, "cstagw_events_received_total", "CSTA events received from the CTI links.", m.eventsIn.Load())
	writeCounter(w, "cstagw_events_sent_total", "CSTA events sent to clients (INFO).", m.eventsOut.Load())
	m.passedThrough.write(w)
	writeCounter(w, "cstagw_slow_clients_total", "Sessions closed because their event queue overflowed.", m.slowClients.Load())
	writeCounter(w, "cstagw_event_send_failures_total", "Event INFOs that could not be written.", m.sendFailed.Load())
	writeCounter(w, "cstagw_stale_481_total", "481 answers to stale sessions after a link reconnect.", m.stale481.Load())
	writeGauge(w, "cstagw_monitors", "Northbound monitors open.", float64(m.monitors.Load()))
	ss := g.sip.Stats()
	writeGauge(w, "cstagw_sip_dialogs", "SIP dialogs established.", float64(ss.Dialogs))
	writeCounter(w, "cstagw_sip_info_sent_total", "In-dialog INFO requests sent.", ss.InfoSent)
	writeCounter(w, "cstagw_sip_info_failed_total", "In-dialog INFO requests that could not be sent.", ss.InfoFailed)
	fmt.Fprintf(w, "# HELP cstagw_sip_parse_errors_total SIP messages that could not be parsed, by transport.\n# TYPE cstagw_sip_parse_errors_total counter\n")
	pe := sipstack.ParseErrors()
	for _, tr := range []string{"udp", "tcp", "tls", "other"} {
		fmt.Fprintf(w, "cstagw_sip_parse_errors_total{transport=%q} %d\n", tr, pe[tr])
	}
	writeCounter(w, "cstagw_auth_failures_total", "Digest authentications that failed (wrong credentials).", ss.AuthFailures)
	writeCounter(w, "cstagw_auth_lockouts_total", "Lockouts of a (source, user) pair or a source after repeated digest failures.", ss.AuthLockouts)
	m.linkChanges.write(w)
	m.moves.write(w)
	m.reloads.write(w)
	fmt.Fprintf(w, "# HELP cstagw_link_up Whether a CTI link is up.\n# TYPE cstagw_link_up gauge\n")
	for _, l := range st.Links {
		up := 0
		if l.State == ctipool.StateUp {
			up = 1
		}
		fmt.Fprintf(w, "cstagw_link_up{link=%q} %d\n", l.Name, up)
	}
	fmt.Fprintf(w, "# HELP cstagw_link_state CTI link state (1 for the current one).\n# TYPE cstagw_link_state gauge\n")
	for _, l := range st.Links {
		for _, s := range []ctipool.State{ctipool.StateConnecting, ctipool.StateUp, ctipool.StateDown, ctipool.StateHoldoff} {
			v := 0
			if l.State == s {
				v = 1
			}
			fmt.Fprintf(w, "cstagw_link_state{link=%q,state=%q} %d\n", l.Name, s.String(), v)
		}
	}
	fmt.Fprintf(w, "# HELP cstagw_link_generation CTI link generation (successful connections).\n# TYPE cstagw_link_generation gauge\n")
	for _, l := range st.Links {
		fmt.Fprintf(w, "cstagw_link_generation{link=%q} %d\n", l.Name, l.Generation)
	}
	fmt.Fprintf(w, "# HELP cstagw_link_heartbeat_rtt_seconds Last heartbeat round trip.\n# TYPE cstagw_link_heartbeat_rtt_seconds gauge\n")
	for _, l := range st.Links {
		fmt.Fprintf(w, "cstagw_link_heartbeat_rtt_seconds{link=%q} %g\n", l.Name, l.HeartbeatRTTMs/1000)
	}
	fmt.Fprintf(w, "# HELP cstagw_link_reconnects_total Reconnections of a CTI link.\n# TYPE cstagw_link_reconnects_total counter\n")
	for _, l := range st.Links {
		fmt.Fprintf(w, "cstagw_link_reconnects_total{link=%q} %d\n", l.Name, l.Reconnects)
	}
	fmt.Fprintf(w, "# HELP cstagw_link_sessions Sessions pinned to a CTI link.\n# TYPE cstagw_link_sessions gauge\n")
	for _, l := range st.Links {
		fmt.Fprintf(w, "cstagw_link_sessions{link=%q} %d\n", l.Name, l.Sessions)
	}
	fmt.Fprintf(w, "# HELP cstagw_link_outstanding CTI requests awaiting an answer.\n# TYPE cstagw_link_outstanding gauge\n")
	for _, l := range st.Links {
		fmt.Fprintf(w, "cstagw_link_outstanding{link=%q} %d\n", l.Name, l.Outstanding)
	}
	writeRuntimeMetrics(w)
}

// goMetrics are the Go runtime figures an operator sizes memory with, read
// through runtime/metrics (no stop-the-world, unlike ReadMemStats).
var goMetrics = []struct {
	name, sample, help string
	counter            bool
}{
	{"go_goroutines", "/sched/goroutines:goroutines", "Goroutines that currently exist.", false},
	{"go_gc_heap_live_bytes", "/gc/heap/live:bytes", "Heap memory occupied by live objects at the last collection.", false},
	{"go_memory_total_bytes", "/memory/classes/total:bytes", "All memory mapped by the Go runtime (an upper bound on RSS).", false},
	{"go_gc_cycles_total", "/gc/cycles/total:gc-cycles", "Completed garbage collection cycles.", true},
	{"go_gc_gogc_percent", "/gc/gogc:percent", "GOGC in force (runtime.gc_percent).", false},
	{"go_gc_gomemlimit_bytes", "/gc/gomemlimit:bytes", "GOMEMLIMIT in force (runtime.memory_limit).", false},
}

func writeRuntimeMetrics(w io.Writer) {
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
		if m.counter {
			writeCounter(w, m.name, m.help, uint64(v))
		} else {
			writeGauge(w, m.name, m.help, v)
		}
	}
}
