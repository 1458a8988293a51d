package main

// Phase 3: latency. Find the highest sustained rate of PBX-bound requests
// (GetDoNotDisturb over TCP) by ramping, then measure the round trip at 50 %
// and 90 % of it, and subtract the CTI server's own round trip measured
// straight against ctisim at the same rates.

import (
	"fmt"
	"math"
	"time"
)

// RampStep is one step of the rate ramp.
type RampStep struct {
	Offered   float64        `json:"offered_per_s"`
	Achieved  float64        `json:"achieved_per_s"`
	P50us     float64        `json:"p50_us"`
	P99us     float64        `json:"p99_us"`
	Errors    map[string]int `json:"errors,omitempty"`
	Skipped   int            `json:"not_sent_backlog,omitempty"`
	GWCPUPct  float64        `json:"gateway_cpu_pct_of_one_core"`
	GWCPUus   float64        `json:"gateway_cpu_us_per_request"`
	SimCPUPct float64        `json:"ctisim_cpu_pct_of_one_core"`
	GenCPUPct float64        `json:"generator_cpu_pct_of_one_core"`
	OtherPct  float64        `json:"other_processes_cpu_pct_of_one_core"`
	Sustained bool           `json:"sustained"`
	Why       string         `json:"why,omitempty"`
}

// LatPoint is the latency at one rate.
type LatPoint struct {
	Fraction  float64        `json:"fraction_of_max"`
	Rate      float64        `json:"rate_per_s"`
	Achieved  float64        `json:"achieved_per_s"`
	Client    Summary        `json:"client_rtt_via_gateway"`
	CTI       Summary        `json:"cti_rtt_direct"`
	AddedP50  float64        `json:"gateway_added_p50_us"`
	AddedP99  float64        `json:"gateway_added_p99_us"`
	AddedP999 float64        `json:"gateway_added_p999_us"`
	Errors    map[string]int `json:"errors,omitempty"`
	GWCPUPct  float64        `json:"gateway_cpu_pct_of_one_core"`
	OtherPct  float64        `json:"other_processes_cpu_pct_of_one_core"`
}

// LatResult is phase 3.
type LatResult struct {
	Criteria     string     `json:"sustained_criteria"`
	Ramp         []RampStep `json:"ramp"`
	MaxSustained float64    `json:"max_sustained_per_s"`
	Points       []LatPoint `json:"points"`
	Method       string     `json:"method"`
}

const latCriteria = "achieved ≥ 97 % of offered, errors+timeouts ≤ 0.1 %, client p99 ≤ 50 ms, no backlog"

func judge(r WindowResult) (bool, string) {
	errs := 0
	for _, v := range r.Errors {
		errs += v
	}
	switch {
	case r.Skipped > 0:
		return false, fmt.Sprintf("backlog: %d not sent", r.Skipped)
	case r.Achieved < 0.97*r.Offered:
		return false, fmt.Sprintf("achieved %.0f/s < 97%% of offered", r.Achieved)
	case r.Completed == 0 || float64(errs) > 0.001*float64(r.Completed):
		return false, fmt.Sprintf("errors: %s", fmtCounts(r.Errors))
	case r.Latency.P99 > 50000:
		return false, fmt.Sprintf("p99 %.1f ms > 50 ms", r.Latency.P99/1000)
	}
	return true, ""
}

func (e *Env) latency(rig *Rig, cl *Client, ss []*Session, cfg PhaseConfig) *LatResult {
	res := &LatResult{Criteria: latCriteria}
	rate, factor := 1000.0, 1.4
	if e.Quick {
		rate, factor = 2000, 1.6
	}
	best, fail := 0.0, 0.0
	step := func(r float64) bool {
		w := e.requestWindow(rig, cl, ss, "GetDoNotDisturb", r, 500*time.Millisecond, cfg.LatStep, "ramp")
		ok, why := judge(w)
		res.Ramp = append(res.Ramp, RampStep{Offered: r, Achieved: math.Round(w.Achieved), P50us: w.Latency.P50, P99us: w.Latency.P99,
			Errors: w.Errors, Skipped: w.Skipped, GWCPUPct: w.GWCPUPct, GWCPUus: w.GWCPUus, SimCPUPct: w.SimCPUPct, GenCPUPct: w.GenCPUPct, OtherPct: w.OtherCPUPct, Sustained: ok, Why: why})
		e.logf("latency: ramp %.0f/s → %.0f/s achieved, p50 %.2f ms, p99 %.2f ms, CPU %% of a core: gateway %.0f (%.0f µs/req), ctisim %.0f, generator %.0f, other processes %.0f: %v %s",
			r, w.Achieved, w.Latency.P50/1000, w.Latency.P99/1000, w.GWCPUPct, w.GWCPUus, w.SimCPUPct, w.GenCPUPct, w.OtherCPUPct, ok, why)
		// Let any backlog drain before the next step.
		_ = waitFor(10*time.Second, "drain", func() bool { return cl.Pending() == 0 })
		time.Sleep(500 * time.Millisecond)
		return ok
	}
	for rate <= 50000 {
		if !step(rate) {
			fail = rate
			break
		}
		best = rate
		rate = math.Round(rate * factor)
	}
	// Refine once between the last sustained and the first failed rate.
	if best > 0 && fail > 0 {
		mid := math.Round((best + fail) / 2)
		if step(mid) {
			best = mid
		}
	}
	res.MaxSustained = best
	if best == 0 {
		e.report.problem("latency: not even %.0f requests/s were sustained", rate)
		return res
	}
	stations := make([]string, 0, len(ss))
	for _, s := range ss {
		stations = append(stations, station(s.Idx))
	}
	for _, f := range []float64{0.5, 0.9} {
		r := math.Round(best * f)
		e.logf("latency: %.0f%% of %.0f/s = %.0f/s for %v through the gateway", f*100, best, r, cfg.LatWindow)
		w := e.requestWindow(rig, cl, ss, "GetDoNotDisturb", r, time.Second, cfg.LatWindow, fmt.Sprintf("latency %.0f%%", f*100))
		_ = waitFor(10*time.Second, "drain", func() bool { return cl.Pending() == 0 })
		time.Sleep(500 * time.Millisecond)
		e.logf("latency: %.0f/s straight to ctisim for %v (the CTI server's own round trip)", r, cfg.LatWindow)
		cti, cerrs, err := measureCTI(rig.SimNodes[0], stations, r, cfg.LatWindow)
		if err != nil {
			e.report.problem("latency: direct CTI measurement: %v", err)
		}
		if cerrs > 0 {
			e.report.problem("latency: %d direct CTI requests were not answered GetDoNotDisturbResponse", cerrs)
		}
		p := LatPoint{Fraction: f, Rate: r, Achieved: math.Round(w.Achieved), Client: w.Latency, CTI: cti, Errors: w.Errors, GWCPUPct: w.GWCPUPct, OtherPct: w.OtherCPUPct,
			AddedP50: math.Round((w.Latency.P50-cti.P50)*10) / 10, AddedP99: math.Round((w.Latency.P99-cti.P99)*10) / 10, AddedP999: math.Round((w.Latency.P999-cti.P999)*10) / 10}
		e.logf("latency: at %.0f/s: via gateway p50 %.0f µs p99 %.0f µs p99.9 %.0f µs; ctisim alone p50 %.0f p99 %.0f p99.9 %.0f; gateway adds p50 %.0f p99 %.0f p99.9 %.0f µs",
			r, w.Latency.P50, w.Latency.P99, w.Latency.P999, cti.P50, cti.P99, cti.P999, p.AddedP50, p.AddedP99, p.AddedP999)
		res.Points = append(res.Points, p)
	}
	res.Method = "client round trip = generator write of the INFO → read of its final response (TCP, loopback); CTI round trip = the same GetDoNotDisturb written straight to the ctisim node by a bare CSTA client at the same rate; gateway-added pX = client pX − CTI pX (a difference of percentiles, not a percentile of differences). Both include loopback and the load generator's own scheduling."
	return res
}
