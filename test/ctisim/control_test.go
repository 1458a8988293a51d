package ctisim

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cstagw/cstagw/csta"
	"github.com/stretchr/testify/require"
)

type api struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newAPI(t *testing.T, s *Sim) *api {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &api{t: t, base: "http://" + s.ControlAddr(), hc: &http.Client{Timeout: wait, Transport: tr}}
}

// do sends a request and returns the status and the decoded JSON object.
func (a *api) do(method, path, body string) (int, map[string]any) {
	a.t.Helper()
	r, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	require.NoError(a.t, err)
	resp, err := a.hc.Do(r)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(a.t, err)
	require.Equal(a.t, "application/json", resp.Header.Get("Content-Type"), string(b))
	var m map[string]any
	require.NoError(a.t, json.Unmarshal(b, &m), string(b))
	return resp.StatusCode, m
}

func (a *api) ok(method, path, body string) map[string]any {
	a.t.Helper()
	code, m := a.do(method, path, body)
	require.Equal(a.t, http.StatusOK, code, "%s %s: %v", method, path, m)
	return m
}

func (a *api) fails(method, path, body string, want int) {
	a.t.Helper()
	code, m := a.do(method, path, body)
	require.Equal(a.t, want, code, "%s %s: %v", method, path, m)
	require.NotEmpty(a.t, m["error"])
}

func (a *api) state() State {
	a.t.Helper()
	resp, err := a.hc.Get(a.base + "/state")
	require.NoError(a.t, err)
	defer resp.Body.Close()
	require.Equal(a.t, http.StatusOK, resp.StatusCode)
	var st State
	require.NoError(a.t, json.NewDecoder(resp.Body).Decode(&st))
	return st
}

func TestControlCalls(t *testing.T) {
	s := startSim(t, nil)
	a := newAPI(t, s)
	mon := dialNode(t, s, 1)
	mon.monitor(A)
	mon.monitor(B)

	// An incoming trunk call rings B; the control API answers it.
	id := a.ok("POST", "/calls", `{"from":"+12065550147","to":"40002"}`)["callID"].(string)
	m := mon.event(csta.KindDeliveredEvent)
	require.Equal(t, conn(id, B), m.Connection)
	require.Equal(t, csta.Dev(X), m.CallingDevice)
	require.Equal(t, "alerting", m.LocalConnectionInfo)
	a.ok("POST", "/calls/"+id+"/answer", `{"device":"40002"}`)
	require.Equal(t, "connected", mon.event(csta.KindEstablishedEvent).LocalConnectionInfo)
	a.fails("POST", "/calls/"+id+"/answer", `{"device":"40002"}`, http.StatusConflict)

	st := a.state()
	require.Equal(t, "40000-40999", st.Stations)
	require.Len(t, st.Calls, 1)
	require.Equal(t, CallState{ID: id, Calling: X, Called: B, Connections: []ConnectionState{
		{Device: X, State: "connected", External: true},
		{Device: B, State: "connected"},
	}}, st.Calls[0])
	require.Len(t, st.Nodes, 2)
	n := st.Nodes[1]
	require.Equal(t, s.Addrs()[1], n.Address)
	require.Equal(t, 1, n.ConnectedClients)
	require.Equal(t, 2, n.Monitors)
	require.Equal(t, uint64(2), n.FramesIn["MonitorStart"])
	require.Equal(t, uint64(2), n.FramesOut["MonitorStartResponse"])
	require.GreaterOrEqual(t, n.FramesOut["EstablishedEvent"], uint64(1))
	require.Len(t, n.Clients[0].Monitors, 2)

	// The far end hangs up.
	a.ok("POST", "/calls/"+id+"/hangup", `{"device":"+12065550147"}`)
	require.Equal(t, "connected", mon.event(csta.KindConnectionClearedEvent).LocalConnectionInfo)
	require.Equal(t, "null", mon.event(csta.KindConnectionClearedEvent).LocalConnectionInfo)
	require.Empty(t, a.state().Calls)

	// A station's user dials; the called station rejects it as busy.
	id = a.ok("POST", "/calls", `{"from":"40001","to":"40002"}`)["callID"].(string)
	for _, k := range []csta.Kind{csta.KindServiceInitiatedEvent, csta.KindOriginatedEvent, csta.KindDeliveredEvent, csta.KindDeliveredEvent} {
		mon.event(k)
	}
	a.ok("POST", "/calls/"+id+"/reject", `{"device":"40002"}`)
	m = mon.event(csta.KindConnectionClearedEvent) // B's monitor... and A's, in device order
	require.Equal(t, "busy", m.Cause)
	mon.event(csta.KindConnectionClearedEvent)
	m = mon.event(csta.KindFailedEvent)
	require.Equal(t, "fail", m.LocalConnectionInfo)
	require.Equal(t, "busy", m.Cause)
	// Hang up the failed caller with no device: the whole call.
	a.ok("POST", "/calls/"+id+"/hangup", ``)
	require.Equal(t, "null", mon.event(csta.KindConnectionClearedEvent).LocalConnectionInfo)

	// Errors.
	a.fails("POST", "/calls", `{"from":"40001"`, http.StatusBadRequest)
	a.fails("POST", "/calls", `{"from":"40001"}`, http.StatusBadRequest)
	a.fails("POST", "/calls", `{"from":"+1","to":"+2"}`, http.StatusBadRequest)
	a.fails("POST", "/calls", `{"from":"40001","to":"4x"}`, http.StatusBadRequest)
	a.fails("POST", "/calls/deadbeef/answer", `{"device":"40002"}`, http.StatusNotFound)
	a.fails("POST", "/calls/deadbeef/hangup", `{}`, http.StatusNotFound)
	a.fails("GET", "/nowhere", ``, http.StatusNotFound)
	a.fails("GET", "/calls", ``, http.StatusMethodNotAllowed)
	a.fails("DELETE", "/state", ``, http.StatusMethodNotAllowed)

	// A busy station cannot dial.
	id = a.ok("POST", "/calls", `{"from":"40001","to":"40003"}`)["callID"].(string)
	a.fails("POST", "/calls", `{"from":"40001","to":"40004"}`, http.StatusConflict)
	a.fails("POST", "/calls/"+id+"/reject", `{"device":"40001"}`, http.StatusConflict)
	a.fails("POST", "/calls/"+id+"/answer", `{"device":"40009"}`, http.StatusNotFound)
}

func TestControlDevicesInState(t *testing.T) {
	s := startSim(t, nil)
	a := newAPI(t, s)
	c := dialNode(t, s, 0)
	startSession(c, csta.NSEd6)
	c.ok(fwdReq(B, "forwardNoAns", true, C, 3))
	c.ok(&csta.Message{Kind: csta.KindSetDoNotDisturb, Device: csta.Dev(D), DoNotDisturbOn: true})
	st := a.state()
	require.Equal(t, []DeviceState{
		{ID: B, Station: true, Forwarding: []ForwardingState{{Type: "forwardNoAns", Active: true, DN: C, RingCount: 3}}},
		{ID: D, Station: true, DND: true, Forwarding: []ForwardingState{}},
	}, st.Devices)
	require.Equal(t, 1, st.Nodes[0].Sessions)
	require.Equal(t, csta.NSEd6, st.Nodes[0].Clients[0].Namespace)
	require.NotEmpty(t, st.Nodes[0].Clients[0].SessionEnd)
}

func TestControlFaults(t *testing.T) {
	s := startSim(t, nil)
	a := newAPI(t, s)
	c := dialNode(t, s, 0)

	f := a.ok("POST", "/nodes/0/fault", `{"kind":"delay","delay":"50ms"}`)
	require.Equal(t, "50ms", f["delay"])
	require.Equal(t, "50ms", a.state().Nodes[0].Faults.Delay)
	start := time.Now()
	require.Equal(t, "normal", c.call(req(csta.KindRequestSystemStatus)).SystemStatus)
	require.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
	f = a.ok("DELETE", "/nodes/0/fault", ``)
	require.Nil(t, f["delay"])
	require.Empty(t, a.state().Nodes[0].Faults.Delay)

	f = a.ok("POST", "/nodes/0/fault", `{"kind":"silent","seconds":0.5}`)
	require.Equal(t, true, f["silent"])
	require.NotEmpty(t, f["silentUntil"])
	c.send(req(csta.KindRequestSystemStatus))
	c.silentFor(50 * time.Millisecond)
	require.Eventually(t, func() bool { return !a.state().Nodes[0].Faults.Silent }, wait, 10*time.Millisecond)

	f = a.ok("POST", "/nodes/1/fault", `{"kind":"refuse","seconds":30}`)
	require.Equal(t, true, f["refuse"])
	dialNode(t, s, 1).closed()
	a.ok("DELETE", "/nodes/1/fault", ``)
	require.Equal(t, "normal", dialNode(t, s, 1).call(req(csta.KindRequestSystemStatus)).SystemStatus)

	a.ok("POST", "/nodes/0/fault", `{"kind":"drop"}`)
	c.closed()

	a.fails("POST", "/nodes/2/fault", `{"kind":"drop"}`, http.StatusNotFound)
	a.fails("POST", "/nodes/x/fault", `{"kind":"drop"}`, http.StatusNotFound)
	a.fails("DELETE", "/nodes/-1/fault", ``, http.StatusNotFound)
	a.fails("POST", "/nodes/0/fault", `{"kind":"bogus"}`, http.StatusBadRequest)
	a.fails("POST", "/nodes/0/fault", `{"kind":"delay"}`, http.StatusBadRequest)
	a.fails("POST", "/nodes/0/fault", `{"kind":"delay","delay":"soon"}`, http.StatusBadRequest)
	a.fails("POST", "/nodes/0/fault", `{"kind":"silent","seconds":-1}`, http.StatusBadRequest)
}
