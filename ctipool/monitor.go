package ctipool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cstagw/cstagw/csta"
)

// EventFunc receives the events of a monitored device. It is called on the
// link's reader goroutine and must not block: hand the event to a bounded
// queue and drop the subscriber (not the event stream) when it is full. The
// message is shared between subscribers and must not be modified.
type EventFunc func(ev *csta.Message)

// EndFunc is told, once, that a subscription ended without the subscriber
// asking: the link died or a new generation replaced it.
type EndFunc func(err error)

// monitor is one southbound monitor: one per (link generation, device),
// shared by every subscriber.
type monitor struct {
	device string
	xref   string        // the PBX's monitorCrossRefID
	ready  chan struct{} // closed when MonitorStart has been answered
	err    error         // MonitorStart failure, set before ready is closed

	mu   sync.Mutex
	subs []*Subscription // copy-on-write: readers take the slice under mu
}

// end tells every subscriber the monitor is gone.
func (m *monitor) end(err error) {
	m.mu.Lock()
	subs := m.subs
	m.subs = nil
	m.mu.Unlock()
	for _, s := range subs {
		s.ended(err)
	}
}

type monitorTable struct {
	byDevice map[string]*monitor
	byXref   map[string]*monitor
}

func newMonitorTable() monitorTable {
	return monitorTable{byDevice: map[string]*monitor{}, byXref: map[string]*monitor{}}
}

func (t *monitorTable) takeAll() []*monitor {
	out := make([]*monitor, 0, len(t.byDevice))
	for _, m := range t.byDevice {
		out = append(out, m)
	}
	t.byDevice = map[string]*monitor{}
	t.byXref = map[string]*monitor{}
	return out
}

// Subscription is one subscriber's share of a device monitor.
type Subscription struct {
	c      *conn
	mon    *monitor
	fn     EventFunc
	onEnd  EndFunc
	once   sync.Once
	closed bool
}

// Generation is the link generation the subscription belongs to.
func (s *Subscription) Generation() uint64 { return s.c.gen }

// CrossRefID is the PBX's monitorCrossRefID (never shown to clients).
func (s *Subscription) CrossRefID() string { return s.mon.xref }

func (s *Subscription) ended(err error) {
	s.once.Do(func() {
		if s.onEnd != nil {
			s.onEnd(err)
		}
	})
}

// Close leaves the monitor; the last subscriber to leave stops it on the
// switch. Close is idempotent and never calls the EndFunc.
func (s *Subscription) Close() {
	s.once.Do(func() {})
	c, m := s.c, s.mon
	c.mu.Lock()
	if s.closed {
		c.mu.Unlock()
		return
	}
	s.closed = true
	m.mu.Lock()
	subs := make([]*Subscription, 0, len(m.subs))
	for _, x := range m.subs {
		if x != s {
			subs = append(subs, x)
		}
	}
	m.subs = subs
	last := len(subs) == 0
	m.mu.Unlock()
	stop := false
	if last && c.mons.byDevice[m.device] == m {
		delete(c.mons.byDevice, m.device)
		if m.xref != "" {
			delete(c.mons.byXref, m.xref)
			stop = !c.dead
		}
	}
	c.mu.Unlock()
	if stop {
		// Best effort, off the caller's path: the monitor is already gone
		// from our tables, so a late event for it is dropped.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), c.link.conf().RequestTimeout)
			defer cancel()
			_, _ = c.request(ctx, &csta.Message{Kind: csta.KindMonitorStop, MonitorCrossRefID: m.xref})
		}()
	}
}

// Monitor subscribes to the events of a PBX device on the link's current
// generation, starting the southbound monitor if this is its first
// subscriber (through the admission budget). fn receives every event; onEnd
// is called if the monitor ends because the link died.
func (l *Link) Monitor(ctx context.Context, device string, fn EventFunc, onEnd EndFunc) (*Subscription, error) {
	return l.MonitorGen(ctx, 0, device, fn, onEnd)
}

// MonitorGen is Monitor pinned to a generation: it fails with
// ErrStaleGeneration when the link has moved on.
func (l *Link) MonitorGen(ctx context.Context, gen uint64, device string, fn EventFunc, onEnd EndFunc) (*Subscription, error) {
	c, err := l.conn(gen)
	if err != nil {
		return nil, err
	}
	return c.monitor(ctx, device, fn, onEnd)
}

func (c *conn) monitor(ctx context.Context, device string, fn EventFunc, onEnd EndFunc) (*Subscription, error) {
	s := &Subscription{c: c, fn: fn, onEnd: onEnd}
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return nil, fmt.Errorf("link %s: %w", c.link.lc.Name, ErrLinkDown)
	}
	m := c.mons.byDevice[device]
	first := m == nil
	if first {
		m = &monitor{device: device, ready: make(chan struct{})}
		c.mons.byDevice[device] = m
	}
	s.mon = m
	m.mu.Lock()
	m.subs = append(m.subs[:len(m.subs):len(m.subs)], s)
	m.mu.Unlock()
	c.mu.Unlock()

	if first {
		resp, err := c.request(ctx, &csta.Message{Kind: csta.KindMonitorStart, Device: csta.Dev(device), MonitorType: "device"})
		if err == nil && resp.Kind != csta.KindMonitorStartResponse {
			err = fmt.Errorf("%w: MonitorStart answered with %s", ErrProtocol, resp.Name)
		}
		if err == nil && resp.MonitorCrossRefID == "" {
			err = fmt.Errorf("%w: MonitorStartResponse without monitorCrossRefID", ErrProtocol)
		}
		c.mu.Lock()
		if err != nil {
			m.err = err
			if c.mons.byDevice[device] == m {
				delete(c.mons.byDevice, device)
			}
		} else {
			m.xref = resp.MonitorCrossRefID
			if c.dead {
				m.err = fmt.Errorf("link %s: %w", c.link.lc.Name, ErrLinkDown)
			} else {
				c.mons.byXref[m.xref] = m
			}
		}
		close(m.ready)
		c.mu.Unlock()
	} else {
		select {
		case <-m.ready:
		case <-ctx.Done():
			s.Close()
			return nil, ctx.Err()
		}
	}
	if m.err != nil {
		s.Close()
		return nil, m.err
	}
	return s, nil
}

// routeEvent hands an event to the subscribers of its monitor, never
// blocking: subscribers queue or drop themselves. Events the codec does not
// model are routed too (their document is in Raw).
func (c *conn) routeEvent(ev *csta.Message) {
	ev.Received = time.Now().UnixNano() // a message just decoded from the wire
	c.mu.Lock()
	m := c.mons.byXref[ev.MonitorCrossRefID]
	if m == nil {
		_, seen := c.unknownXref[ev.MonitorCrossRefID]
		if !seen && len(c.unknownXref) < 1024 {
			c.unknownXref[ev.MonitorCrossRefID] = struct{}{}
		}
		c.mu.Unlock()
		if !seen {
			c.log.Warn().Str("pbx_xref", ev.MonitorCrossRefID).Str("kind", ev.Name).Msg("event for an unknown monitor dropped")
		}
		return
	}
	c.mu.Unlock()
	m.mu.Lock()
	subs := m.subs
	m.mu.Unlock()
	for _, s := range subs {
		s.fn(ev)
	}
	if ev.Kind == csta.KindMonitorEndedEvent {
		c.mu.Lock()
		if c.mons.byXref[m.xref] == m {
			delete(c.mons.byXref, m.xref)
			delete(c.mons.byDevice, m.device)
		}
		c.mu.Unlock()
		m.end(errors.New("ctipool: the switch ended the monitor"))
	}
}

// Snapshot asks the switch for a device's current calls, through the
// admission budget.
func (l *Link) Snapshot(ctx context.Context, gen uint64, device string) ([]csta.SnapshotItem, error) {
	resp, err := l.DoGen(ctx, gen, &csta.Message{Kind: csta.KindSnapshotDevice, Device: csta.Dev(device)})
	if err != nil {
		return nil, err
	}
	if resp.Kind != csta.KindSnapshotDeviceResponse {
		return nil, fmt.Errorf("%w: SnapshotDevice answered with %s", ErrProtocol, resp.Name)
	}
	return resp.Snapshot, nil
}

// monitorCount returns the number of live southbound monitors.
func (c *conn) monitorCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.mons.byDevice)
}
