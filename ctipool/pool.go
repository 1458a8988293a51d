// Package ctipool keeps the gateway's CTI links: one to eight connections to
// a PBX's CTI servers, in priority order, each with its application session,
// heartbeat, failure detection and reconnect policy, and the southbound
// device monitors shared by the sessions placed on it.
//
// It speaks CSTA through package csta and knows nothing of SIP.
package ctipool

import (
	"context"
	"sync"
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
	opts  Options
	links []*Link

	rrMu sync.Mutex
	rr   int // index of the link whose turn is next

	mu     sync.Mutex
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
	for _, lc := range cfg.Links {
		l := &Link{
			pool: p,
			lc:   lc,
			cfg:  cfg,
			log:  opts.Logger.With().Str("link", lc.Name).Logger(),
		}
		l.state.Store(int32(StateConnecting))
		l.since.Store(time.Now().UnixNano())
		p.links = append(p.links, l)
	}
	return p, nil
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
	for _, l := range p.links {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			l.run(ctx)
		}()
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
func (p *Pool) Links() []*Link { return p.links }

// Link returns the link with this name, or nil.
func (p *Pool) Link(name string) *Link {
	for _, l := range p.links {
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
	n := len(p.links)
	for i := 0; i < n; i++ {
		idx := (p.rr + i) % n
		l := p.links[idx]
		if l.Up() && (ok == nil || ok(l)) {
			p.rr = (idx + 1) % n
			return l, nil
		}
	}
	return nil, ErrNoLink
}

// AnyUp reports whether at least one link is up (readiness).
func (p *Pool) AnyUp() bool {
	for _, l := range p.links {
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
	out := make([]LinkHealth, len(p.links))
	for i, l := range p.links {
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
