package gateway

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/ctipool"
)

// watchKey names one southbound device monitor: a device on one link
// generation.
type watchKey struct {
	link   *ctipool.Link
	gen    uint64
	device string
}

// deviceWatch is the gateway's view of one monitored PBX device on one link
// generation: the southbound monitor, the device's current calls (kept from
// a snapshot and every event since), and the sessions that monitor it.
type deviceWatch struct {
	g     *Gateway
	key   watchKey
	sub   *ctipool.Subscription
	ready chan struct{}
	err   error

	mu     sync.Mutex
	calls  map[string]*callEntry
	seq    uint64
	seeded bool
	subs   []*monitorRef // copy-on-write fan-out list
	closed bool
}

// callEntry is one call of the device, from the device's side.
type callEntry struct {
	state   string // local connection state: initiated, alerting, connected, hold, fail
	calling csta.Device
	called  csta.Device
	seq     uint64
}

// watch returns the watch of a device on a link generation, starting the
// southbound monitor and taking a snapshot when it is the first.
func (g *Gateway) watch(ctx context.Context, link *ctipool.Link, gen uint64, device string) (*deviceWatch, error) {
	key := watchKey{link: link, gen: gen, device: device}
	for {
		g.mu.Lock()
		w := g.watches[key]
		first := w == nil
		if first {
			w = &deviceWatch{g: g, key: key, ready: make(chan struct{}), calls: map[string]*callEntry{}}
			g.watches[key] = w
		}
		g.mu.Unlock()
		if first {
			w.start(ctx)
		} else {
			select {
			case <-w.ready:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if w.err != nil {
			return nil, w.err
		}
		w.mu.Lock()
		closed := w.closed
		w.mu.Unlock()
		if !closed {
			return w, nil
		}
		// It closed between our lookup and now: make a fresh one.
	}
}

func (w *deviceWatch) start(ctx context.Context) {
	defer close(w.ready)
	k := w.key
	sub, err := k.link.MonitorGen(ctx, k.gen, k.device, w.onEvent, w.onEnd)
	if err != nil {
		w.err = err
		w.g.dropWatch(w)
		return
	}
	w.sub = sub
	// Seed the call table. A failed snapshot leaves it to the events.
	items, err := k.link.Snapshot(ctx, k.gen, k.device)
	if err != nil {
		w.g.log.Warn().Err(err).Str("link", k.link.Name()).Str("device", k.device).Msg("snapshot failed; call table starts empty")
		return
	}
	w.reconcile(items, false)
}

// reconcile merges a snapshot of the device into the call table. When the
// watch starts, events that arrived meanwhile know better, so only unknown
// calls are added; after the switch lost messages (resync) the snapshot is
// the truth: states are overwritten and calls it does not list removed.
func (w *deviceWatch) reconcile(items []csta.SnapshotItem, resync bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	live := make(map[string]bool, len(items))
	for _, it := range items {
		id, st := it.Connection.CallID, it.LocalCallState
		if id == "" || st == "" || st == "null" {
			continue
		}
		live[id] = true
		if e := w.calls[id]; e != nil {
			if resync {
				e.state = st
			}
			continue
		}
		w.seq++
		w.calls[id] = &callEntry{state: st, seq: w.seq}
	}
	if resync {
		for id := range w.calls {
			if !live[id] {
				delete(w.calls, id)
			}
		}
	}
	w.seeded = true
}

// onEvent runs on the link's reader goroutine: update the call table, then
// hand the event to every session without blocking.
func (w *deviceWatch) onEvent(ev *csta.Message) {
	w.mu.Lock()
	w.apply(ev)
	subs := w.subs
	w.mu.Unlock()
	w.g.metrics.eventsIn.Inc()
	for _, m := range subs {
		m.s.deliver(item{kind: itemEvent, ev: ev, mon: m})
	}
}

// onEnd: the southbound monitor is gone (link lost or switch ended it).
func (w *deviceWatch) onEnd(err error) {
	w.mu.Lock()
	w.closed = true
	subs := w.subs
	w.subs = nil
	w.mu.Unlock()
	w.g.dropWatch(w)
	w.g.watchEnded(w.key.device, false)
	// A monitor lost with its link comes back when the session moves; one
	// the switch ended (MonitorEnded, already relayed) does not.
	lost := errors.Is(err, ctipool.ErrLinkDown)
	for _, m := range subs {
		m.s.deliver(item{kind: itemMonitorEnded, mon: m, lost: lost})
	}
}

// releaseIfUnused stops a watch nobody attached to (a move that gave up
// after starting it). A watch with subscribers is left alone.
func (w *deviceWatch) releaseIfUnused() {
	w.mu.Lock()
	unused := len(w.subs) == 0 && !w.closed
	if unused {
		w.closed = true
	}
	w.mu.Unlock()
	if unused {
		w.g.dropWatch(w)
		if w.sub != nil {
			w.sub.Close()
		}
	}
}

// liveCalls returns the number of calls the table knows while the monitor
// runs (an ended watch's table is history).
func (w *deviceWatch) liveCalls() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0
	}
	return len(w.calls)
}

// attach adds a session's monitor to the fan-out and returns the replay of
// the device's current state (see replay), atomically: every later event
// reaches the session, every earlier one is in the replay. Every path that
// attaches a session to a watch sends it this replay.
func (w *deviceWatch) attach(m *monitorRef) ([]*csta.Message, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, false
	}
	w.subs = append(w.subs[:len(w.subs):len(w.subs)], m)
	return w.replay(), true
}

// current is the replay of the device's state now (calls, service).
func (w *deviceWatch) current() []*csta.Message {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.replay()
}

// detach removes a session's monitor; the last one out stops the
// southbound monitor.
func (w *deviceWatch) detach(m *monitorRef) {
	w.mu.Lock()
	subs := make([]*monitorRef, 0, len(w.subs))
	for _, x := range w.subs {
		if x != m {
			subs = append(subs, x)
		}
	}
	w.subs = subs
	last := len(subs) == 0 && !w.closed
	if last {
		w.closed = true
	}
	w.mu.Unlock()
	if last {
		w.g.dropWatch(w)
		w.g.watchEnded(w.key.device, true)
		if w.sub != nil && !w.g.draining.Load() {
			// (While draining the application sessions are about to be
			// stopped, which ends every monitor: no MonitorStop storm.)
			w.sub.Close()
		}
	}
}

// callIDs returns the calls the table knows.
func (w *deviceWatch) callIDs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.calls))
	for id := range w.calls {
		out = append(out, id)
	}
	return out
}

// hasCall reports whether the device is in a call, and whether the table
// can be trusted to say no.
func (w *deviceWatch) hasCall(callID string) (known, authoritative bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, known = w.calls[callID]
	return known, w.seeded
}

func (g *Gateway) dropWatch(w *deviceWatch) {
	g.mu.Lock()
	if g.watches[w.key] == w {
		delete(g.watches, w.key)
	}
	g.mu.Unlock()
}

// kindState is the device's connection state an event implies when the
// switch leaves localConnectionInfo out and the event's connection is the
// device's own.
func kindState(k csta.Kind) string {
	switch k {
	case csta.KindServiceInitiatedEvent:
		return "initiated"
	case csta.KindDeliveredEvent:
		return "alerting"
	case csta.KindEstablishedEvent, csta.KindOriginatedEvent, csta.KindRetrievedEvent:
		return "connected"
	case csta.KindHeldEvent:
		return "hold"
	case csta.KindConnectionClearedEvent, csta.KindDivertedEvent:
		return "null"
	case csta.KindFailedEvent:
		return "fail"
	}
	return ""
}

// apply updates the call table from one event (w.mu held).
func (w *deviceWatch) apply(ev *csta.Message) {
	dev := w.key.device
	lci := ev.LocalConnectionInfo
	switch ev.Kind {
	case csta.KindTransferedEvent, csta.KindConferencedEvent:
		var prev *callEntry
		for _, id := range []string{ev.PrimaryOldCall.CallID, ev.SecondaryOldCall.CallID} {
			if e := w.calls[id]; e != nil && prev == nil {
				prev = e
			}
			delete(w.calls, id)
		}
		if lci == "null" || (lci == "" && ev.SubjectDevice.ID == dev && ev.Kind == csta.KindTransferedEvent) {
			return
		}
		newCall := ev.PrimaryOldCall.CallID
		for _, it := range ev.Connections {
			if it.NewConnection.DeviceID == dev || it.Endpoint == dev {
				if it.NewConnection.CallID != "" {
					newCall = it.NewConnection.CallID
				}
			}
		}
		if newCall == "" {
			return
		}
		state := lci
		if state == "" {
			state = "connected"
		}
		w.seq++
		e := &callEntry{state: state, seq: w.seq}
		if prev != nil {
			e.calling, e.called = prev.calling, prev.called
		}
		w.calls[newCall] = e
		return
	case csta.KindOutOfServiceEvent:
		if w.g.service.markOut(dev, ev.Cause) {
			w.g.log.Info().Str("device", dev).Str("link", w.key.link.Name()).Str("cause", ev.Cause).Msg("device out of service")
		}
		return
	case csta.KindBackInServiceEvent:
		if w.g.service.markIn(dev) {
			w.g.log.Info().Str("device", dev).Str("link", w.key.link.Name()).Msg("device back in service")
		}
		return
	case csta.KindMonitorEndedEvent, csta.KindForwardingEvent, csta.KindDoNotDisturbEvent, csta.KindUnknown:
		return
	}
	callID := ev.Connection.CallID
	if callID == "" {
		return
	}
	state := lci
	if state == "" && ev.Connection.DeviceID == dev {
		state = kindState(ev.Kind)
	}
	if state == "" {
		return
	}
	if state == "null" {
		delete(w.calls, callID)
		return
	}
	e := w.calls[callID]
	if e == nil {
		w.seq++
		e = &callEntry{seq: w.seq}
		w.calls[callID] = e
	}
	e.state = state
	if ev.CallingDevice.Known() {
		e.calling = ev.CallingDevice
	}
	if ev.CalledDevice.Known() {
		e.called = ev.CalledDevice
	}
}

// replay builds the events that tell a newly attached client the device's
// current state, in PBX terms (the session translates them like any event):
// first an OutOfServiceEvent if the gateway holds the device out of service
// (whichever watch heard it, see devicestate.go), then the calls: Delivered
// for alerting calls, Established for connected ones, then Held for held
// ones (w.mu held).
func (w *deviceWatch) replay() []*csta.Message {
	entries := make([]struct {
		id string
		e  *callEntry
	}, 0, len(w.calls))
	for id, e := range w.calls {
		entries = append(entries, struct {
			id string
			e  *callEntry
		}{id, e})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].e.seq < entries[j].e.seq })
	dev := w.key.device
	var out, held []*csta.Message
	if cause, oos := w.g.service.replay(dev, time.Now()); oos {
		out = append(out, &csta.Message{Kind: csta.KindOutOfServiceEvent, Device: csta.Dev(dev), Cause: cause})
	}
	for _, x := range entries {
		conn := csta.ConnectionID{CallID: x.id, DeviceID: dev}
		calling, called := x.e.calling, x.e.called
		switch x.e.state {
		case "alerting":
			if called.IsZero() {
				called = csta.Dev(dev)
			}
			out = append(out, &csta.Message{Kind: csta.KindDeliveredEvent, Connection: conn, SubjectDevice: csta.Dev(dev),
				CallingDevice: calling, CalledDevice: called, LastRedirectionDevice: csta.Device{Status: csta.DeviceNotKnown},
				LocalConnectionInfo: "alerting", Cause: "newCall"})
		case "initiated":
			out = append(out, &csta.Message{Kind: csta.KindServiceInitiatedEvent, Connection: conn, SubjectDevice: csta.Dev(dev),
				LocalConnectionInfo: "initiated", Cause: "newCall"})
		case "connected", "hold", "queued":
			out = append(out, &csta.Message{Kind: csta.KindEstablishedEvent, Connection: conn, SubjectDevice: csta.Device{Status: csta.DeviceNotKnown},
				CallingDevice: calling, CalledDevice: called, LastRedirectionDevice: csta.Device{Status: csta.DeviceNotKnown},
				LocalConnectionInfo: "connected", Cause: "normal"})
			if x.e.state == "hold" {
				held = append(held, &csta.Message{Kind: csta.KindHeldEvent, Connection: conn, SubjectDevice: csta.Dev(dev),
					LocalConnectionInfo: "hold", Cause: "normal"})
			}
		case "fail":
			out = append(out, &csta.Message{Kind: csta.KindFailedEvent, Connection: conn, SubjectDevice: csta.Dev(dev),
				CallingDevice: calling, CalledDevice: called, LocalConnectionInfo: "fail", Cause: "normal"})
		}
	}
	return append(out, held...)
}
