package ctisim

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cstagw/cstagw/csta"
	"github.com/stretchr/testify/require"
)

// harness drives the switch directly, without TCP: requests go in, the
// response and every event come out on a transcript in the order the switch
// produced them. Timers are fake: tests fire them.

type fakeTimer struct {
	d       time.Duration
	f       func()
	stopped bool
}

func (t *fakeTimer) Stop() bool { was := !t.stopped; t.stopped = true; return was }

type recSink struct {
	h   *harness
	dev string
}

func (r *recSink) Deliver(m *csta.Message) {
	r.h.log = append(r.h.log, entry{dev: r.dev, msg: m})
}

func (r *recSink) DeliverRaw(name string, doc []byte) {
	m, err := csta.Decode(doc)
	require.NoError(r.h.t, err)
	r.h.log = append(r.h.log, entry{dev: r.dev, msg: m})
}

type entry struct {
	dev string // "" for the response to the request
	msg *csta.Message
}

type harness struct {
	t      *testing.T
	sw     *Switch
	timers []*fakeTimer
	log    []entry
	sinks  map[string]*recSink
	xrefs  map[string]string // device → monitorCrossRefID
	calls  map[string]string // name → call id
}

func newHarness(t *testing.T, mod ...func(*switchConfig)) *harness {
	t.Helper()
	h := &harness{t: t, sinks: map[string]*recSink{}, xrefs: map[string]string{}, calls: map[string]string{}}
	set, err := parseStations("40000-40999")
	require.NoError(t, err)
	cfg := switchConfig{
		num:           numbering{stations: set, trunkPrefix: "9"},
		ringTime:      time.Second,
		ringCount:     3,
		eventsFirst:   true,
		maxConference: 4,
		maxDiversions: 5,
		after: func(d time.Duration, f func()) stopper {
			ft := &fakeTimer{d: d, f: f}
			h.timers = append(h.timers, ft)
			return ft
		},
	}
	for _, m := range mod {
		m(&cfg)
	}
	h.sw = newSwitch(cfg)
	return h
}

// fire runs every pending timer (in creation order) once.
func (h *harness) fire() {
	ts := h.timers
	h.timers = nil
	for _, ft := range ts {
		if !ft.stopped {
			ft.stopped = true
			ft.f()
		}
	}
}

// pendingTimers lists the durations of timers not yet fired or stopped.
func (h *harness) pendingTimers() []time.Duration {
	var out []time.Duration
	for _, ft := range h.timers {
		if !ft.stopped {
			out = append(out, ft.d)
		}
	}
	return out
}

// do sends a request and returns its response (also logged, with dev "").
func (h *harness) do(req *csta.Message) *csta.Message {
	h.t.Helper()
	var resp *csta.Message
	owner := h.sinks["owner"]
	if owner == nil {
		owner = &recSink{h: h, dev: "owner"}
		h.sinks["owner"] = owner
	}
	h.sw.handle(req, owner, func(m *csta.Message) {
		require.Nil(h.t, resp, "second reply")
		resp = m
		h.log = append(h.log, entry{msg: m})
	})
	require.NotNil(h.t, resp, "no reply to %s", req.Kind)
	return resp
}

func (h *harness) ok(req *csta.Message) *csta.Message {
	h.t.Helper()
	r := h.do(req)
	require.NotEqual(h.t, csta.KindCSTAErrorCode, r.Kind, "%s failed: %v", req.Kind, r.Error)
	require.Equal(h.t, req.Kind.Response(), r.Kind)
	return r
}

func (h *harness) monitor(devs ...string) {
	h.t.Helper()
	for _, d := range devs {
		s := &recSink{h: h, dev: d}
		h.sinks[d] = s
		var resp *csta.Message
		h.sw.handle(&csta.Message{Kind: csta.KindMonitorStart, Device: csta.Dev(d)}, s, func(m *csta.Message) { resp = m })
		require.Equal(h.t, csta.KindMonitorStartResponse, resp.Kind, "monitor %s: %v", d, resp.Error)
		require.Len(h.t, resp.MonitorCrossRefID, 8)
		h.xrefs[d] = resp.MonitorCrossRefID
	}
}

func conn(call, dev string) csta.ConnectionID { return csta.ConnectionID{CallID: call, DeviceID: dev} }

func (h *harness) makeCall(from, to string) string {
	h.t.Helper()
	r := h.ok(&csta.Message{Kind: csta.KindMakeCall, CallingDevice: csta.Dev(from), Destination: csta.Dev(to)})
	return r.Connection.CallID
}

func (h *harness) answer(call, dev string) {
	h.t.Helper()
	h.ok(&csta.Message{Kind: csta.KindAnswerCall, Connection: conn(call, dev)})
}

func (h *harness) hold(call, dev string) {
	h.t.Helper()
	h.ok(&csta.Message{Kind: csta.KindHoldCall, Connection: conn(call, dev)})
}

// talk sets up an answered call a → b.
func (h *harness) talk(a, b string) string {
	id := h.makeCall(a, b)
	h.answer(id, b)
	return id
}

// consult sets up: a talks to b (call c1, then held), a consults c (call c2).
func (h *harness) consult(a, b, c string, answered bool) (c1, c2 string) {
	h.t.Helper()
	c1 = h.talk(a, b)
	r := h.ok(&csta.Message{Kind: csta.KindConsultationCall, Connection: conn(c1, a), Destination: csta.Dev(c)})
	c2 = r.Connection.CallID
	if answered {
		h.answer(c2, c)
	}
	return c1, c2
}

// events returns, per monitored device, "Kind lci cause" of each event since
// the last reset.
func (h *harness) events() map[string][]string {
	out := map[string][]string{}
	for _, e := range h.log {
		if e.dev == "" {
			continue
		}
		out[e.dev] = append(out[e.dev], evString(e.msg))
	}
	return out
}

// transcript is the whole log: responses as "RESP Kind", events as
// "dev Kind lci cause".
func (h *harness) transcript() []string {
	var out []string
	for _, e := range h.log {
		if e.dev == "" {
			out = append(out, "RESP "+e.msg.Kind.String())
		} else {
			out = append(out, e.dev+" "+evString(e.msg))
		}
	}
	return out
}

func evString(m *csta.Message) string {
	parts := []string{strings.TrimSuffix(m.Kind.String(), "Event")}
	if m.LocalConnectionInfo != "" {
		parts = append(parts, m.LocalConnectionInfo)
	}
	if m.Cause != "" {
		parts = append(parts, m.Cause)
	}
	return strings.Join(parts, " ")
}

func (h *harness) reset() { h.log = nil }

// callStates renders every call as "dev:state dev:state", sorted, ids left
// out (they are random).
func (h *harness) callStates() []string {
	st := h.sw.state()
	out := []string{}
	for _, c := range st.calls {
		var parts []string
		for _, cn := range c.Connections {
			parts = append(parts, cn.Device+":"+cn.State)
		}
		out = append(out, strings.Join(parts, " "))
	}
	sort.Strings(out)
	return out
}
