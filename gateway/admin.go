package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/cstagw/cstagw/ctipool"
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
	// Cluster is this node's view of the cluster (cluster mode only).
	Cluster *ClusterStatus `json:"cluster,omitempty"`
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
	if g.cluster != nil {
		st.Cluster = g.cluster.status()
	}
	st.Continuity = ContinuityStatus{FailoverAfter: "off", AfterReconnect: g.conf().CTI.AfterReconnect,
		Fallback: g.conf().CTI.FallbackEnabled(), MovesQueued: g.mover.queued()}
	if d, ok := g.conf().CTI.FailoverDelay(); ok {
		st.Continuity.FailoverAfter = d.String()
	}
	st.Sessions = g.Sessions()
	st.Dialogs = g.sip.Stats().Dialogs
	st.Links = g.linkStatuses()
	return st
}

// linkStatuses is the links part of /status (and of the link metrics).
func (g *Gateway) linkStatuses() []LinkStatus {
	per := g.linkSessions()
	var out []LinkStatus
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
		out = append(out, ls)
	}
	return out
}

func (g *Gateway) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if why := g.notReady(); why != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, why)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(g.Status())
	})
	mux.HandleFunc("GET /metrics", g.serveMetrics)
	mux.HandleFunc("POST /drain", func(w http.ResponseWriter, r *http.Request) {
		// The drain runs after this answer: the process then exits.
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintln(w, "draining")
		g.RequestDrain()
	})
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
	g.metricsHandler.ServeHTTP(w, r)
}
