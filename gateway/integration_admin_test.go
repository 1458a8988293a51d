package gateway_test

// Admin HTTP (/healthz, /readyz, /status, /metrics) and the SIGTERM path.

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/gateway"
)

func TestAdminEndpoints(t *testing.T) {
	e := newEnv(t, envOpts{})
	base := "http://" + e.gw.AdminAddr()
	d := signIn(t, e.tcp(), userAlice, lineAlice)

	code, _ := httpGet(t, base+"/healthz")
	assert.Equal(t, 200, code)
	code, _ = httpGet(t, base+"/readyz")
	assert.Equal(t, 200, code)

	code, body := httpGet(t, base+"/status")
	require.Equal(t, 200, code)
	var st map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &st), body)
	assert.EqualValues(t, 1, st["sessions"])
	links, ok := st["links"].([]any)
	require.True(t, ok, "/status has no links list: %s", body)
	require.Len(t, links, 1)
	l := links[0].(map[string]any)
	assert.Equal(t, "cti-a", l["name"])
	assert.Equal(t, "up", l["state"])
	assert.EqualValues(t, 1, l["generation"])
	assert.EqualValues(t, 1, l["sessions"])

	code, body = httpGet(t, base+"/metrics")
	require.Equal(t, 200, code)
	for _, re := range []string{
		`(?m)^cstagw_sessions 1$`,
		`(?m)^cstagw_requests_total\{result="ok",service="GetCSTAFeatures"\} 1$`,
		`(?m)^cstagw_requests_total\{result="ok",service="MonitorStart"\} 1$`,
		`(?m)^cstagw_link_up\{link="cti-a"\} 1$`,
		`(?m)^cstagw_stale_481_total 0$`,
		`(?m)^cstagw_monitors 1$`,
		`(?m)^go_goroutines [1-9][0-9]*$`,
		`(?m)^go_gc_heap_live_bytes [0-9.e+]+$`,
		`(?m)^go_gc_gogc_percent [0-9]+$`,
	} {
		assert.Regexp(t, regexp.MustCompile(re), body)
	}

	// No link up: not ready, link_up 0.
	killNode(t, e, 0)
	require.Eventually(t, func() bool { c, _ := httpGet(t, base+"/readyz"); return c == 503 }, waitLong, pollInterval)
	_, body = httpGet(t, base+"/metrics")
	assert.Regexp(t, regexp.MustCompile(`(?m)^cstagw_link_up\{link="cti-a"\} 0$`), body)
	code, _ = httpGet(t, base+"/healthz")
	assert.Equal(t, 200, code, "liveness does not depend on the CTI link")

	e.sim.ClearFaults(0)
	e.waitLinks(ctipool.StateUp)
	code, _ = httpGet(t, base+"/readyz")
	assert.Equal(t, 200, code)
	_, body = httpGet(t, base+"/status")
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	assert.EqualValues(t, 2, st["links"].([]any)[0].(map[string]any)["generation"])

	// The session ends (stale after the reconnect): its monitor is no
	// longer counted.
	assert.Equal(t, 481, d.info(getDND(lineAlice)).StatusCode)
	require.Eventually(t, func() bool { return e.gw.Sessions() == 0 }, waitLong, pollInterval)
	_, body = httpGet(t, base+"/metrics")
	assert.Regexp(t, regexp.MustCompile(`(?m)^cstagw_monitors 0$`), body)
}

func TestShutdownSendsByeAndRefusesInvites(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) { c.Gateway.ShutdownGrace = 5 * time.Second }})
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	late := e.tcp()

	e.shutdown = true
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.gw.Shutdown(context.Background())
	}()
	require.Eventually(t, func() bool { return e.gw.Status().Draining }, waitLong, time.Millisecond)
	// During the drain new INVITEs get 503 (the gateway gives the BYEs up to
	// 500 ms before closing its listeners).
	d2, res := late.invite(inviteOpts{user: userBob, line: lineBob})
	assert.Nil(t, d2)
	assert.Equal(t, 503, res.StatusCode, "INVITE during the drain")
	assert.NotEmpty(t, header(res, "Retry-After"))

	byeSeen := waitUntil(2*time.Second, d.byeReceived)
	assert.True(t, byeSeen, "Shutdown must send BYE to every client")
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Error("Gateway.Shutdown did not return with a session open")
	}
	d.ended.Store(true)
}

// waitUntil polls cond for up to d.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// /metrics is what Prometheus's own parser reads, with the latency
// histograms after some traffic.
func TestMetricsParseWithPrometheusParser(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	d.ok(getDND(lineAlice))
	mark := d.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	d.waitEvent(mark, csta.KindDeliveredEvent, id)
	// The event's latency is observed just after its INFO is written:
	// scrape until it is in.
	var fams map[string]*dto.MetricFamily
	scrape := func() {
		_, body := httpGet(t, "http://"+e.gw.AdminAddr()+"/metrics")
		p := expfmt.NewTextParser(model.LegacyValidation)
		var err error
		fams, err = p.TextToMetricFamilies(strings.NewReader(body))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		scrape()
		f := fams["cstagw_event_delivery_seconds"]
		return f != nil && len(f.GetMetric()) > 0 && f.GetMetric()[0].GetHistogram().GetSampleCount() > 0
	}, waitLong, pollInterval)
	for _, name := range []string{"cstagw_sessions", "cstagw_requests_total", "cstagw_link_up", "go_goroutines",
		"process_cpu_seconds_total", "cstagw_request_duration_seconds", "cstagw_cti_request_duration_seconds",
		"cstagw_event_delivery_seconds"} {
		require.Contains(t, fams, name)
	}
	count := func(name string) uint64 {
		var n uint64
		for _, m := range fams[name].GetMetric() {
			n += m.GetHistogram().GetSampleCount()
		}
		return n
	}
	assert.Positive(t, count("cstagw_request_duration_seconds"))
	assert.Positive(t, count("cstagw_cti_request_duration_seconds"))
	assert.Positive(t, count("cstagw_event_delivery_seconds"))
}
