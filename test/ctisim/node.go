package ctisim

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"
)

// FaultKind names a fault a node can be given.
type FaultKind string

// The faults of the control API.
const (
	// FaultDrop closes every connection of the node once; new ones are
	// accepted as usual.
	FaultDrop FaultKind = "drop"
	// FaultSilent keeps connections open but writes and answers nothing:
	// requests are read and discarded, events and responses are not sent.
	FaultSilent FaultKind = "silent"
	// FaultRefuse closes every new connection as soon as it is accepted.
	// Connections already open are left alone (add a drop to cut them).
	FaultRefuse FaultKind = "refuse"
	// FaultDelay holds every request for Delay before it is executed and
	// answered; held requests count as in flight.
	FaultDelay FaultKind = "delay"
)

// Fault is a failure injected into one node.
type Fault struct {
	Kind FaultKind
	// Duration is how long silent, refuse or delay last; zero means until
	// cleared.
	Duration time.Duration
	// Delay is the response delay of a delay fault.
	Delay time.Duration
}

// node is one CTI server: a listener and its client connections.
type node struct {
	sim  *Sim
	idx  int
	ln   net.Listener
	addr string

	mu      sync.Mutex
	clients map[*client]struct{}
	closed  bool

	silent, refuse, delayOn              bool
	silentUntil, refuseUntil, delayUntil time.Time
	delay                                time.Duration

	framesIn, framesOut                  map[string]uint64
	inFlight                             map[string]int
	inFlightAll, inFlightMS              int
	hwmAll, hwmMS                        int
	accepted, refused, dropped, discWent uint64
}

func newNode(s *Sim, idx int) *node {
	return &node{
		sim: s, idx: idx,
		clients:   make(map[*client]struct{}),
		framesIn:  make(map[string]uint64),
		framesOut: make(map[string]uint64),
		inFlight:  make(map[string]int),
	}
}

func active(on bool, until time.Time, now time.Time) bool {
	return on && (until.IsZero() || now.Before(until))
}

func (n *node) isSilent() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return active(n.silent, n.silentUntil, time.Now())
}

func (n *node) isRefusing() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return active(n.refuse, n.refuseUntil, time.Now())
}

func (n *node) currentDelay() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	if active(n.delayOn, n.delayUntil, time.Now()) {
		return n.delay
	}
	return 0
}

func until(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

func (n *node) setFault(f Fault) error {
	switch f.Kind {
	case FaultDrop:
		n.dropAll("drop fault")
	case FaultSilent:
		n.mu.Lock()
		n.silent, n.silentUntil = true, until(f.Duration)
		n.mu.Unlock()
	case FaultRefuse:
		n.mu.Lock()
		n.refuse, n.refuseUntil = true, until(f.Duration)
		n.mu.Unlock()
	case FaultDelay:
		if f.Delay <= 0 {
			return fmt.Errorf("%w: delay fault needs a positive delay", ErrInvalid)
		}
		n.mu.Lock()
		n.delayOn, n.delay, n.delayUntil = true, f.Delay, until(f.Duration)
		n.mu.Unlock()
	default:
		return fmt.Errorf("%w: unknown fault kind %q (drop, silent, refuse, delay)", ErrInvalid, f.Kind)
	}
	n.sim.logf("node %d: fault %s (duration %v, delay %v)", n.idx, f.Kind, f.Duration, f.Delay)
	return nil
}

func (n *node) clearFaults() {
	n.mu.Lock()
	n.silent, n.refuse, n.delayOn = false, false, false
	n.silentUntil, n.refuseUntil, n.delayUntil = time.Time{}, time.Time{}, time.Time{}
	n.delay = 0
	n.mu.Unlock()
}

func (n *node) dropAll(why string) {
	n.mu.Lock()
	cs := make([]*client, 0, len(n.clients))
	for c := range n.clients {
		cs = append(cs, c)
	}
	n.mu.Unlock()
	for _, c := range cs {
		c.kill(why)
	}
}

// serve accepts connections until the listener is closed.
func (n *node) serve() {
	defer n.sim.wg.Done()
	var backoff time.Duration
	for {
		nc, err := n.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || n.sim.isClosed() {
				return
			}
			// A transient accept failure (out of descriptors...): back off
			// a little, as net/http does, rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			n.sim.logf("node %d: accept: %v", n.idx, err)
			select {
			case <-time.After(backoff):
			case <-n.sim.closedCh:
				return
			}
			continue
		}
		backoff = 0
		if n.isRefusing() {
			n.mu.Lock()
			n.refused++
			n.mu.Unlock()
			_ = nc.Close()
			continue
		}
		n.sim.startClient(n, nc)
	}
}

func (n *node) addClient(c *client) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.accepted++
	n.clients[c] = struct{}{}
	return true
}

// removeClient forgets a finished client and whatever it left in flight.
func (n *node) removeClient(c *client) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.clients[c]; !ok {
		return
	}
	delete(n.clients, c)
	n.discWent++
	for name, k := range c.inFlight {
		n.addInFlightLocked(c, name, -k)
	}
}

func (n *node) countIn(name string) {
	n.mu.Lock()
	n.framesIn[name]++
	n.mu.Unlock()
}

func (n *node) countOut(name string) {
	n.mu.Lock()
	n.framesOut[name]++
	n.mu.Unlock()
}

func (n *node) countDropped() {
	n.mu.Lock()
	n.dropped++
	n.mu.Unlock()
}

func (n *node) addInFlight(c *client, name string, delta int) {
	n.mu.Lock()
	n.addInFlightLocked(c, name, delta)
	n.mu.Unlock()
}

func (n *node) addInFlightLocked(c *client, name string, delta int) {
	if delta == 0 {
		return
	}
	c.inFlight[name] += delta
	if c.inFlight[name] <= 0 {
		delete(c.inFlight, name)
	}
	n.inFlight[name] += delta
	if n.inFlight[name] <= 0 {
		delete(n.inFlight, name)
	}
	n.inFlightAll += delta
	n.hwmAll = max(n.hwmAll, n.inFlightAll)
	if name == "MonitorStart" || name == "SnapshotDevice" {
		n.inFlightMS += delta
		n.hwmMS = max(n.hwmMS, n.inFlightMS)
	}
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func (n *node) state(mons map[Sink][]MonitorState) NodeState {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	ns := NodeState{
		Index: n.idx, Address: n.addr,
		ConnectedClients:                 len(n.clients),
		Clients:                          []ClientState{},
		FramesIn:                         copyMap(n.framesIn),
		FramesOut:                        copyMap(n.framesOut),
		InFlight:                         copyMap(n.inFlight),
		InFlightMonitorSnapshot:          n.inFlightMS,
		InFlightMonitorSnapshotHighWater: n.hwmMS,
		InFlightHighWater:                n.hwmAll,
		Accepted:                         n.accepted,
		Refused:                          n.refused,
		Dropped:                          n.dropped,
		Disconnected:                     n.discWent,
	}
	if active(n.silent, n.silentUntil, now) {
		ns.Faults.Silent, ns.Faults.SilentUntil = true, rfc3339(n.silentUntil)
	}
	if active(n.refuse, n.refuseUntil, now) {
		ns.Faults.Refuse, ns.Faults.RefuseUntil = true, rfc3339(n.refuseUntil)
	}
	if active(n.delayOn, n.delayUntil, now) {
		ns.Faults.Delay, ns.Faults.DelayUntil = n.delay.String(), rfc3339(n.delayUntil)
	}
	cs := make([]*client, 0, len(n.clients))
	for c := range n.clients {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].id < cs[j].id })
	for _, c := range cs {
		st := c.state()
		st.Monitors = mons[c]
		if st.Monitors == nil {
			st.Monitors = []MonitorState{}
		}
		ns.Monitors += len(st.Monitors)
		if st.Session != "" {
			ns.Sessions++
		}
		ns.Clients = append(ns.Clients, st)
	}
	return ns
}

func copyMap[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
