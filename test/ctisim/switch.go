package ctisim

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/cstagw/cstagw/csta"
)

// This file holds the switching function: devices, calls, connections and
// monitors, all guarded by one mutex. The services (services.go) change this
// state and emit events (events.go) to every monitor of every device involved.

// connState is a connection's state in the ECMA-269 connection state model.
type connState uint8

const (
	stNull connState = iota
	stInitiated
	stAlerting
	stConnected
	stHold
	stFail
)

var connStateNames = [...]string{"null", "initiated", "alerting", "connected", "hold", "fail"}

func (s connState) String() string {
	if int(s) < len(connStateNames) {
		return connStateNames[s]
	}
	return "null"
}

// Forwarding types the switch implements, in the order GetForwarding lists
// them.
const (
	fwdImmediate = iota
	fwdBusy
	fwdNoAns
	fwdDND
	fwdCount
)

var fwdTypeNames = [fwdCount]string{"forwardImmediate", "forwardBusy", "forwardNoAns", "forwardDND"}

// otherFwdTypes are valid ECMA-323 forwarding types this switch does not
// implement (SetForwarding answers parameterNotSupported).
var otherFwdTypes = map[string]bool{
	"forwardBusyInt": true, "forwardBusyExt": true, "forwardNoAnsInt": true, "forwardNoAnsExt": true,
	"forwardImmInt": true, "forwardImmExt": true, "forwardDNDInt": true, "forwardDNDExt": true,
}

type forwarding struct {
	active    bool
	dn        string
	ringCount int
}

// device is a station of the switch or an external party met through the
// trunk. Devices are created when first used and forgotten when they hold
// nothing any more.
type device struct {
	id      string
	station bool
	dnd     bool
	// outOfService: the control API took the station out of service; it
	// cannot place or receive calls until it is back.
	outOfService bool
	fwd          [fwdCount]forwarding
	conns        []*connection // live connections, oldest first
	monitors     []*monitor
}

// busy reports whether the device is in use: a connection initiated,
// alerting, connected or failed (a held call alone does not make it busy).
func (d *device) busy() bool { return d.activeConn(nil) != nil }

// activeConn returns a connection of the device other than except that is
// initiated, alerting, connected or failed.
func (d *device) activeConn(except *connection) *connection {
	for _, cn := range d.conns {
		if cn == except {
			continue
		}
		switch cn.state {
		case stInitiated, stAlerting, stConnected, stFail:
			return cn
		}
	}
	return nil
}

// talking returns a connection of the device other than except in which it
// is off-hook (initiated, connected or failed).
func (d *device) talking(except *connection) *connection {
	for _, cn := range d.conns {
		if cn != except && (cn.state == stInitiated || cn.state == stConnected || cn.state == stFail) {
			return cn
		}
	}
	return nil
}

func (d *device) idle() bool {
	if len(d.conns) > 0 || len(d.monitors) > 0 || d.dnd || d.outOfService {
		return false
	}
	for _, f := range d.fwd {
		if f.active || f.dn != "" {
			return false
		}
	}
	return true
}

// connection is one device's leg in one call.
type connection struct {
	call   *call
	dev    *device
	state  connState
	timer  *swTimer // ring-no-answer or auto-answer
	digits string   // what GenerateDigits sent on it
	live   bool
}

// call is a call with its connections in the order they joined.
type call struct {
	id    string
	seq   uint64
	conns []*connection
	// origin is the connection that placed the call (or, after a
	// single-step transfer, the party transferred): it is the one that fails
	// when the call cannot be delivered.
	origin *connection
	// calling, called and lastRedirect feed the device fields of events.
	calling, called, lastRedirect string
	diversions                    int
	live                          bool
}

func (c *call) conn(d *device) *connection {
	for _, cn := range c.conns {
		if cn.dev == d {
			return cn
		}
	}
	return nil
}

func (c *call) stateOf(d *device) connState {
	if cn := c.conn(d); cn != nil {
		return cn.state
	}
	return stNull
}

// others returns the connections of the call other than cn.
func (c *call) others(cn *connection) []*connection {
	out := make([]*connection, 0, len(c.conns))
	for _, x := range c.conns {
		if x != cn {
			out = append(out, x)
		}
	}
	return out
}

// Sink receives the events of the monitors it owns. Deliver and DeliverRaw
// are called with the switch locked: they must not block and must not call
// into the switch.
type Sink interface {
	Deliver(m *csta.Message)
	// DeliverRaw sends an event document as it is (SendEvent); name is its
	// root element, for the frame counters.
	DeliverRaw(name string, doc []byte)
}

type monitor struct {
	xref string
	dev  *device
	sink Sink
	seq  uint64
}

// stopper is what a scheduled function returns (a *time.Timer).
type stopper interface{ Stop() bool }

type afterFunc func(d time.Duration, f func()) stopper

func realAfter(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) }

// swTimer is a timer owned by the switch: its function runs with the switch
// locked, never after Close or after it was cancelled.
type swTimer struct {
	t         stopper
	cancelled bool
}

// switchConfig is the part of Config the switch needs.
type switchConfig struct {
	num           numbering
	autoAnswer    time.Duration
	ringTime      time.Duration
	ringCount     int
	eventsFirst   bool
	maxConference int
	maxDiversions int
	after         afterFunc
}

// Switch is the switching function shared by every CTI node of a Sim.
type Switch struct {
	mu  sync.Mutex
	cfg switchConfig

	devices  map[string]*device
	calls    map[string]*call
	monitors map[string]*monitor
	timers   map[*swTimer]struct{}
	closed   bool

	seq     uint64 // orders calls and monitors
	callCtr uint32
	monCtr  uint32
	salt    uint32
}

func newSwitch(cfg switchConfig) *Switch {
	if cfg.after == nil {
		cfg.after = realAfter
	}
	return &Switch{
		cfg:      cfg,
		devices:  make(map[string]*device),
		calls:    make(map[string]*call),
		monitors: make(map[string]*monitor),
		timers:   make(map[*swTimer]struct{}),
		salt:     rand.Uint32(),
	}
}

// mint turns a counter into an 8-hex-digit id. Multiplying by an odd
// constant and adding a salt are bijections on 32 bits, so ids never repeat
// within 2^32 uses, yet do not look sequential.
func mint(ctr, mul, salt uint32) string {
	return fmt.Sprintf("%08x", ctr*mul+salt)
}

func (sw *Switch) newCall(calling, called string) *call {
	sw.callCtr++
	sw.seq++
	c := &call{id: mint(sw.callCtr, 0x9E3779B1, sw.salt), seq: sw.seq, calling: calling, called: called, live: true}
	sw.calls[c.id] = c
	return c
}

func (sw *Switch) endCall(c *call) {
	for _, cn := range append([]*connection(nil), c.conns...) {
		sw.detach(cn)
	}
	c.live = false
	delete(sw.calls, c.id)
}

// device returns the device, creating it.
func (sw *Switch) device(id string, station bool) *device {
	d := sw.devices[id]
	if d == nil {
		d = &device{id: id, station: station}
		sw.devices[id] = d
	}
	return d
}

// tidy forgets a device that holds nothing.
func (sw *Switch) tidy(d *device) {
	if d.idle() {
		delete(sw.devices, d.id)
	}
}

func (sw *Switch) attach(c *call, d *device, st connState) *connection {
	cn := &connection{call: c, dev: d, state: st, live: true}
	c.conns = append(c.conns, cn)
	d.conns = append(d.conns, cn)
	return cn
}

// detach removes a connection from its call and device.
func (sw *Switch) detach(cn *connection) {
	if !cn.live {
		return
	}
	cn.live = false
	sw.cancel(cn.timer)
	cn.timer = nil
	cn.call.conns = removeConn(cn.call.conns, cn)
	cn.dev.conns = removeConn(cn.dev.conns, cn)
	sw.tidy(cn.dev)
}

// move re-homes a live connection into another call (transfer, conference).
func (sw *Switch) move(cn *connection, to *call) {
	cn.call.conns = removeConn(cn.call.conns, cn)
	cn.call = to
	to.conns = append(to.conns, cn)
}

func removeConn(s []*connection, cn *connection) []*connection {
	for i, x := range s {
		if x == cn {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}

// schedule runs f with the switch locked after d, unless cancelled or closed.
func (sw *Switch) schedule(d time.Duration, f func(o *op)) *swTimer {
	st := &swTimer{}
	sw.timers[st] = struct{}{}
	st.t = sw.cfg.after(d, func() {
		sw.mu.Lock()
		defer sw.mu.Unlock()
		if sw.closed || st.cancelled {
			return
		}
		delete(sw.timers, st)
		f(&op{sw: sw})
	})
	return st
}

func (sw *Switch) cancel(st *swTimer) {
	if st == nil {
		return
	}
	st.cancelled = true
	if st.t != nil {
		st.t.Stop()
	}
	delete(sw.timers, st)
}

// close stops every timer; later requests are refused.
func (sw *Switch) close() {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.closed = true
	for st := range sw.timers {
		sw.cancel(st)
	}
}

// removeSink drops every monitor a sink owns (its connection went away).
func (sw *Switch) removeSink(s Sink) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	for x, m := range sw.monitors {
		if m.sink == s {
			sw.dropMonitor(x, m)
		}
	}
}

func (sw *Switch) dropMonitor(xref string, m *monitor) {
	delete(sw.monitors, xref)
	d := m.dev
	for i, x := range d.monitors {
		if x == m {
			d.monitors = append(d.monitors[:i], d.monitors[i+1:]...)
			break
		}
	}
	sw.tidy(d)
}

// op is one switching operation: a request or a control action, or a timer
// firing. It delivers events as they happen and calls reply exactly once,
// at the point the configured ordering asks for.
type op struct {
	sw      *Switch
	reply   func(*csta.Message)
	replied bool
}

func (o *op) respond(m *csta.Message) {
	if o.replied {
		return
	}
	o.replied = true
	if o.reply != nil {
		o.reply(m)
	}
}

// emit sends m to every monitor of the extra devices and of every device with
// a connection in c, each copy carrying that monitor's monitorCrossRefID and
// the monitored device's own connection state as localConnectionInfo.
func (o *op) emit(c *call, m *csta.Message, extra ...*device) {
	var seen [8]*device
	devs := seen[:0]
	add := func(d *device) {
		for _, x := range devs {
			if x == d {
				return
			}
		}
		devs = append(devs, d)
	}
	for _, d := range extra {
		add(d)
	}
	for _, cn := range c.conns {
		add(cn.dev)
	}
	for _, d := range devs {
		lci := c.stateOf(d).String()
		for _, mon := range d.monitors {
			cp := *m
			cp.MonitorCrossRefID = mon.xref
			cp.LocalConnectionInfo = lci
			mon.sink.Deliver(&cp)
		}
	}
}

// emitDevice sends a device event (forwarding, DND) to the device's monitors.
func (o *op) emitDevice(d *device, m *csta.Message) {
	for _, mon := range d.monitors {
		cp := *m
		cp.MonitorCrossRefID = mon.xref
		mon.sink.Deliver(&cp)
	}
}

// handle executes one CSTA request for owner (the connection that sent it)
// and answers through reply, exactly once.
func (sw *Switch) handle(req *csta.Message, owner Sink, reply func(*csta.Message)) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	o := &op{sw: sw, reply: reply}
	if sw.closed {
		o.respond(csta.ErrorMessage(csta.CodeResourceOutOfService))
		return
	}
	var err *csta.Error
	switch req.Kind {
	case csta.KindMakeCall:
		err = o.makeCall(req)
	case csta.KindAnswerCall:
		err = o.answerCall(req)
	case csta.KindClearConnection:
		err = o.clearConnection(req)
	case csta.KindClearCall:
		err = o.clearCall(req)
	case csta.KindHoldCall:
		err = o.holdCall(req)
	case csta.KindRetrieveCall:
		err = o.retrieveCall(req)
	case csta.KindAlternateCall:
		err = o.alternateCall(req)
	case csta.KindReconnectCall:
		err = o.reconnectCall(req)
	case csta.KindConsultationCall:
		err = o.consultationCall(req)
	case csta.KindTransferCall:
		err = o.transferCall(req)
	case csta.KindSingleStepTransferCall:
		err = o.singleStepTransfer(req)
	case csta.KindConferenceCall:
		err = o.conferenceCall(req)
	case csta.KindDeflectCall:
		err = o.deflectCall(req)
	case csta.KindGenerateDigits:
		err = o.generateDigits(req)
	case csta.KindSetForwarding:
		err = o.setForwarding(req)
	case csta.KindGetForwarding:
		err = o.getForwarding(req)
	case csta.KindSetDoNotDisturb:
		err = o.setDoNotDisturb(req)
	case csta.KindGetDoNotDisturb:
		err = o.getDoNotDisturb(req)
	case csta.KindSnapshotDevice:
		err = o.snapshotDevice(req)
	case csta.KindMonitorStart:
		err = o.monitorStart(req, owner)
	case csta.KindMonitorStop:
		err = o.monitorStop(req, owner)
	default:
		err = csta.NewError(csta.CodeServiceNotSupported, "%s", req.Name)
	}
	if err != nil {
		o.respond(csta.ErrorMessage(err.Code))
		return
	}
	o.respond(&csta.Message{Kind: req.Kind.Response()})
}

// Snapshot of the switch for State.

type switchState struct {
	calls    []CallState
	devices  []DeviceState
	monitors map[Sink][]MonitorState
}

func (sw *Switch) state() switchState {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	st := switchState{calls: []CallState{}, devices: []DeviceState{}, monitors: map[Sink][]MonitorState{}}
	calls := make([]*call, 0, len(sw.calls))
	for _, c := range sw.calls {
		calls = append(calls, c)
	}
	sort.Slice(calls, func(i, j int) bool { return calls[i].seq < calls[j].seq })
	for _, c := range calls {
		cs := CallState{ID: c.id, Calling: c.calling, Called: c.called, LastRedirection: c.lastRedirect, Connections: []ConnectionState{}}
		for _, cn := range c.conns {
			cs.Connections = append(cs.Connections, ConnectionState{Device: cn.dev.id, State: cn.state.String(), External: !cn.dev.station, Digits: cn.digits})
		}
		st.calls = append(st.calls, cs)
	}
	ids := make([]string, 0, len(sw.devices))
	for id := range sw.devices {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		d := sw.devices[id]
		ds := DeviceState{ID: d.id, Station: d.station, DND: d.dnd, OutOfService: d.outOfService, Monitors: len(d.monitors), Forwarding: []ForwardingState{}}
		for i, f := range d.fwd {
			if f.active || f.dn != "" {
				fs := ForwardingState{Type: fwdTypeNames[i], Active: f.active, DN: f.dn}
				if i == fwdNoAns {
					fs.RingCount = sw.ringCount(f)
				}
				ds.Forwarding = append(ds.Forwarding, fs)
			}
		}
		for _, cn := range d.conns {
			ds.Calls = append(ds.Calls, cn.call.id)
		}
		st.devices = append(st.devices, ds)
	}
	mons := make([]*monitor, 0, len(sw.monitors))
	for _, m := range sw.monitors {
		mons = append(mons, m)
	}
	sort.Slice(mons, func(i, j int) bool { return mons[i].seq < mons[j].seq })
	for _, m := range mons {
		st.monitors[m.sink] = append(st.monitors[m.sink], MonitorState{CrossRefID: m.xref, Device: m.dev.id})
	}
	return st
}

func (sw *Switch) ringCount(f forwarding) int {
	if f.ringCount > 0 {
		return f.ringCount
	}
	return sw.cfg.ringCount
}
