// Package ctipool keeps the gateway's CTI links: one to eight connections to
// a PBX's CTI servers, in priority order, each with its application session,
// heartbeat, failure detection and reconnect policy, and the southbound
// device monitors shared by the sessions placed on it.
//
// It speaks CSTA through package csta and knows nothing of SIP.
package ctipool

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Options are the pool's collaborators.
type Options struct {
	Logger zerolog.Logger
	// OnState is told every link state change. It runs on the link's own
	// goroutine: keep it short.
	OnState func(LinkState)
	// OnResync is told when a switch reports messagesLost: the callers'
	// view of the devices on that link generation must be re-snapshotted.
	OnResync func(l *Link, gen uint64)
}

// Pool is the set of CTI links.
type Pool struct {
	opts Options
	// links is copied on write (AddLink, RemoveLink): readers take the
	// slice and range over it without a lock.
	links atomic.Pointer[[]*Link]

	rrMu sync.Mutex
	rr   int // index of the link whose turn is next

	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed bool
}

// New builds a pool from a validated configuration; nothing is dialled until
// Start.
func New(cfg Config, opts Options) (*Pool, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate("cti"); err != nil {
		return nil, err
	}
	p := &Pool{opts: opts}
	links := make([]*Link, 0, len(cfg.Links))
	for _, lc := range cfg.Links {
		links = append(links, p.newLink(lc, cfg))
	}
	p.links.Store(&links)
	return p, nil
}

func (p *Pool) newLink(lc LinkConfig, cfg Config) *Link {
	l := &Link{
		pool: p,
		lc:   lc,
		log:  p.opts.Logger.With().Str("link", lc.Name).Logger(),
	}
	l.cfg.Store(&cfg)
	l.state.Store(int32(StateConnecting))
	l.since.Store(time.Now().UnixNano())
	return l
}

// startLink runs a link's loop until the pool closes or the link is
// removed (p.mu held).
func (p *Pool) startLink(ctx context.Context, l *Link) {
	lctx, cancel := context.WithCancel(ctx)
	l.stop = cancel
	l.done = make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(l.done)
		l.run(lctx)
	}()
}

// Reconfigure applies new pool-wide settings (heartbeat, timeouts,
// reconnect policy...) to every link from its next interval, and the link
// settings of links that keep their name and connection settings. Links
// are added and removed with AddLink and RemoveLink.
func (p *Pool) Reconfigure(cfg Config) {
	cfg = cfg.WithDefaults()
	for _, l := range p.Links() {
		c := cfg
		l.cfg.Store(&c)
	}
}

// AddLink adds a link (at the end of the priority order) and dials it at
// once if the pool is running.
func (p *Pool) AddLink(lc LinkConfig, cfg Config) (*Link, error) {
	cfg = cfg.WithDefaults()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	old := p.Links()
	if len(old) >= MaxLinks {
		return nil, fmt.Errorf("ctipool: at most %d links", MaxLinks)
	}
	for _, o := range old {
		if o.lc.Name == lc.Name {
			return nil, fmt.Errorf("ctipool: link %s exists", lc.Name)
		}
	}
	l := p.newLink(lc, cfg)
	links := append(append(make([]*Link, 0, len(old)+1), old...), l)
	p.links.Store(&links)
	if p.ctx != nil {
		p.startLink(p.ctx, l)
	}
	return l, nil
}

// RemoveLink takes a link out of placement at once; CloseLink ends it.
// Callers move its sessions away in between.
func (p *Pool) RemoveLink(l *Link) {
	l.removed.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.Links()
	links := make([]*Link, 0, len(old))
	for _, o := range old {
		if o != l {
			links = append(links, o)
		}
	}
	links = slices.Clip(links) // readers that append get their own array
	p.links.Store(&links)
}

// CloseLink ends a removed link: StopApplicationSession, close, and its
// loop stops for good. It waits for the loop (bounded by its shutdown).
func (p *Pool) CloseLink(l *Link) {
	p.mu.Lock()
	stop, done := l.stop, l.done
	p.mu.Unlock()
	if stop == nil {
		return
	}
	stop()
	<-done
}

// Start dials every link at once and keeps them up until Close.
func (p *Pool) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil || p.closed {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.ctx = ctx
	for _, l := range p.Links() {
		p.startLink(ctx, l)
	}
}

// Close ends every application session (StopApplicationSession), closes the
// links and waits for their goroutines.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	cancel := p.cancel
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	p.wg.Wait()
}

// Links returns the links in priority order.
func (p *Pool) Links() []*Link { return *p.links.Load() }

// Link returns the link with this name, or nil.
func (p *Pool) Link(name string) *Link {
	for _, l := range p.Links() {
		if l.lc.Name == name {
			return l
		}
	}
	return nil
}

// Place returns the next healthy link in round-robin order over the priority
// list, or ErrNoLink. A link that is not up passes its turn to the next
// healthy one and the cursor moves past the link chosen, so the healthy
// links share new sessions evenly (a down link's share is not handed to
// its successor as a double turn).
func (p *Pool) Place() (*Link, error) { return p.PlaceWhere(nil) }

// PlaceWhere is Place over the links ok accepts (nil: all).
func (p *Pool) PlaceWhere(ok func(*Link) bool) (*Link, error) {
	p.rrMu.Lock()
	defer p.rrMu.Unlock()
	links := p.Links()
	n := len(links)
	for i := 0; i < n; i++ {
		idx := (p.rr + i) % n
		l := links[idx]
		if l.Up() && (ok == nil || ok(l)) {
			p.rr = (idx + 1) % n
			return l, nil
		}
	}
	return nil, ErrNoLink
}

// AnyUp reports whether at least one link is up (readiness).
func (p *Pool) AnyUp() bool {
	for _, l := range p.Links() {
		if l.Up() {
			return true
		}
	}
	return false
}

// LinkHealth is one link's health, as /status and metrics show it. It holds
// no credentials.
type LinkHealth struct {
	Name        string        `json:"name"`
	Address     string        `json:"address"`
	State       State         `json:"state"`
	Generation  uint64        `json:"generation"`
	Since       time.Time     `json:"since"`
	LastRx      time.Time     `json:"last_rx,omitzero"`
	RTT         time.Duration `json:"rtt_ns"`
	MissedBeats int           `json:"missed_beats"`
	Reconnects  uint64        `json:"reconnects"`
	Failures    uint64        `json:"consecutive_failures"`
	Outstanding int           `json:"outstanding"`
	Monitors    int           `json:"monitors"`
	Namespace   string        `json:"namespace,omitempty"`
	LastError   string        `json:"last_error,omitempty"`
}

// Health returns every link's health in priority order.
func (p *Pool) Health() []LinkHealth {
	links := p.Links()
	out := make([]LinkHealth, len(links))
	for i, l := range links {
		out[i] = l.Health()
	}
	return out
}

// Health returns the link's health.
func (l *Link) Health() LinkHealth {
	h := LinkHealth{
		Name:       l.lc.Name,
		Address:    l.lc.Address,
		State:      l.State(),
		Generation: l.Generation(),
		Since:      time.Unix(0, l.since.Load()),
		Reconnects: l.reconnects.Load(),
		Failures:   l.failures.Load(),
	}
	l.mu.Lock()
	if h.State != StateUp {
		h.LastError = l.lastErr
	}
	l.mu.Unlock()
	if c := l.current(); c != nil {
		h.LastRx = time.Unix(0, c.lastRx.Load())
		h.RTT = time.Duration(c.rtt.Load())
		h.MissedBeats = int(c.missed.Load())
		h.Outstanding = c.outstandingCount()
		h.Monitors = c.monitorCount()
		h.Namespace = c.ns
	}
	return h
}
