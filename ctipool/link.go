package ctipool

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/cstagw/cstagw/csta"
)

// State is a link's state.
type State int

const (
	StateConnecting State = iota // dialling or bootstrapping
	StateUp                      // bootstrapped; requests flow
	StateDown                    // dead, waiting to retry
	StateHoldoff                 // max_retries failed in a row: waiting hold_off
)

var stateNames = [...]string{"connecting", "up", "down", "holdoff"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// MarshalText makes State read as its name in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// LinkState is what the state callback is told.
type LinkState struct {
	Name       string
	State      State
	Generation uint64
	Err        error // why the link is not up, when it is not
	Link       *Link // the link itself (also once a reload removed it)
}

// Link is one CTI server connection with its reconnect loop. Every
// successful bootstrap starts a new generation.
type Link struct {
	pool *Pool
	lc   LinkConfig
	cfg  atomic.Pointer[Config] // replaced by Pool.Reconfigure; read through conf
	log  zerolog.Logger
	// removed: taken out of placement by a reload; stop/done end its loop
	// (set under Pool.mu).
	removed atomic.Bool
	stop    context.CancelFunc
	done    chan struct{}

	cur        atomic.Pointer[conn]
	state      atomic.Int32
	gen        atomic.Uint64
	reconnects atomic.Uint64
	failures   atomic.Uint64 // consecutive
	since      atomic.Int64

	mu      sync.Mutex
	lastErr string

	wg sync.WaitGroup // the current conn's reader goroutine (writes need none: a write token)
}

// conf returns the settings in force.
func (l *Link) conf() *Config { return l.cfg.Load() }

// Removed reports whether a reload took the link out of the pool.
func (l *Link) Removed() bool { return l.removed.Load() }

// Name is the link's configured name.
func (l *Link) Name() string { return l.lc.Name }

// Generation is the current (or last) generation; 0 before the first
// successful bootstrap.
func (l *Link) Generation() uint64 { return l.gen.Load() }

// State returns the link's state.
func (l *Link) State() State { return State(l.state.Load()) }

// Up reports whether requests can flow.
func (l *Link) Up() bool { return l.State() == StateUp }

// Namespace is the CSTA namespace negotiated on the current generation.
func (l *Link) Namespace() string {
	if c := l.current(); c != nil {
		return c.ns
	}
	return ""
}

// current returns the live connection, or nil.
func (l *Link) current() *conn {
	c := l.cur.Load()
	if c == nil || c.isDead() {
		return nil
	}
	return c
}

// Do sends a CSTA request on the current generation and returns its
// positive response. A CSTAErrorCode answer is returned as a *csta.Error; a
// dead link fails at once with ErrLinkDown.
func (l *Link) Do(ctx context.Context, m *csta.Message) (*csta.Message, error) {
	return l.DoGen(ctx, 0, m)
}

// DoGen is Do pinned to a generation: ErrStaleGeneration when the link has
// reconnected since, ErrLinkDown when it is down.
func (l *Link) DoGen(ctx context.Context, gen uint64, m *csta.Message) (*csta.Message, error) {
	c, err := l.conn(gen)
	if err != nil {
		return nil, err
	}
	return c.request(ctx, m)
}

// conn returns the live connection, which must be generation gen unless
// gen is 0 (generations start at 1).
func (l *Link) conn(gen uint64) (*conn, error) {
	c := l.current()
	if c == nil {
		return nil, fmt.Errorf("link %s: %w", l.lc.Name, ErrLinkDown)
	}
	if gen != 0 && c.gen != gen {
		return nil, fmt.Errorf("link %s: %w", l.lc.Name, ErrStaleGeneration)
	}
	return c, nil
}

func (l *Link) setState(s State, err error) {
	old := State(l.state.Swap(int32(s)))
	if err != nil {
		l.mu.Lock()
		l.lastErr = err.Error()
		l.mu.Unlock()
	}
	if old != s {
		l.since.Store(time.Now().UnixNano())
		if fn := l.pool.opts.OnState; fn != nil {
			fn(LinkState{Name: l.lc.Name, State: s, Generation: l.gen.Load(), Err: err, Link: l})
		}
	}
}

// run dials, bootstraps and serves the link until ctx ends, reconnecting
// per the policy.
func (l *Link) run(ctx context.Context) {
	b := newBackoff(l.conf().Reconnect)
	for ctx.Err() == nil {
		l.setState(StateConnecting, nil)
		c, err := l.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			n := l.failures.Add(1)
			ev := l.log.Debug()
			if n == 1 || n%uint64(l.conf().Reconnect.LogEvery) == 0 {
				ev = l.log.Error()
			}
			wait, hold := b.next()
			ev.Err(err).Uint64("failures", n).Dur("retry_in", wait).Bool("hold_off", hold).Msg("CTI link connect failed")
			if hold {
				l.setState(StateHoldoff, err)
			} else {
				l.setState(StateDown, err)
			}
			if !sleepCtx(ctx, wait) {
				return
			}
			continue
		}
		upAt := time.Now()
		l.serve(ctx, c)
		l.wg.Wait()
		if ctx.Err() != nil {
			return
		}
		// A connection that stayed up a heartbeat interval was good: the
		// next one is tried at once and the backoff starts over. One the
		// switch dropped sooner counts as a failure: a switch that
		// accepts and drops at once must not be redialled in a tight loop
		// (each new generation costs every session on the link).
		if time.Since(upAt) >= l.conf().HeartbeatInterval {
			b.reset()
			l.failures.Store(0)
			continue
		}
		wait, _ := b.next()
		l.log.Warn().Dur("up_for", time.Since(upAt)).Dur("retry_in", wait).Msg("CTI link dropped right after it came up: backing off")
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

// connect dials and bootstraps one connection. On success the connection
// is installed as a new generation and the link is up.
func (l *Link) connect(ctx context.Context) (*conn, error) {
	d := net.Dialer{Timeout: l.conf().DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", l.lc.Address)
	if err != nil {
		return nil, err
	}
	if l.lc.TLS != nil {
		// Built per connection so that replaced CA or client certificate
		// files take effect at the next reconnect, without a restart.
		tcfg, err := l.lc.TLS.build()
		if err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("cti link %s tls: %w", l.lc.Name, err)
		}
		tc := tls.Client(nc, tcfg)
		hctx, cancel := context.WithTimeout(ctx, l.conf().DialTimeout)
		err = tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("TLS handshake with %s (%s): %s: %w", l.lc.Name, l.lc.Address, explainTLS(err, l.lc.TLS), err)
		}
		nc = tc
	}
	c := newConn(l, nc, l.lc.frameOptions(l.conf().MaxFrame))
	c.gen = l.gen.Load() + 1
	c.log = l.log.With().Uint64("generation", c.gen).Logger()
	c.start(&l.wg)
	if err := l.bootstrap(ctx, c); err != nil {
		c.fail(err)
		l.wg.Wait()
		return nil, err
	}
	l.gen.Store(c.gen)
	if c.gen > 1 {
		l.reconnects.Add(1)
	}
	c.lastRx.Store(time.Now().UnixNano())
	l.cur.Store(c)
	l.setState(StateUp, nil)
	l.log.Info().Uint64("generation", c.gen).Str("namespace", c.ns).Str("session_id", c.sessionID).Msg("CTI link up")
	return c, nil
}

// bootstrap opens the application session (or registers for system status
// without one).
func (l *Link) bootstrap(ctx context.Context, c *conn) error {
	ctx, cancel := context.WithTimeout(ctx, l.conf().RequestTimeout)
	defer cancel()
	if l.lc.AppSession {
		req := &csta.Message{
			Kind:             csta.KindStartApplicationSession,
			ApplicationID:    l.lc.ApplicationID,
			ProtocolVersions: l.lc.ProtocolVersions,
			SessionDuration:  int(l.lc.SessionDuration / time.Second),
		}
		if l.lc.Username != "" {
			pw, err := l.lc.password()
			if err != nil {
				return err
			}
			req.LoginUser, req.LoginPassword, req.LoginNamespace = l.lc.Username, pw, l.lc.LoginNamespace
		}
		resp, err := c.request(ctx, req)
		if err != nil {
			return err
		}
		if resp.Kind != csta.KindStartApplicationSessionPosResponse {
			return fmt.Errorf("%w: answered %s", ErrSessionRefused, resp.Name)
		}
		if v := resp.ProtocolVersion; v != "" {
			if !csta.IsCSTANamespace(v) {
				return fmt.Errorf("%w: switch chose %q, not a CSTA namespace", ErrSessionRefused, v)
			}
			c.ns = v
		}
		c.sessionID = resp.SessionID
		d := time.Duration(resp.SessionDuration) * time.Second
		if d <= 0 {
			d = l.lc.SessionDuration
		}
		c.sessDur.Store(int64(d))
		return nil
	}
	if l.lc.SystemRegister == nil || *l.lc.SystemRegister {
		// Register for system status reports. A switch that does not
		// offer the service answers an error; that is fine.
		_, err := c.request(ctx, &csta.Message{Kind: csta.KindSystemRegister, RegisterSystemStatus: true})
		var ce *csta.Error
		if err != nil && !errors.As(err, &ce) {
			return err
		}
	}
	return nil
}

// serve runs the heartbeat checks until the connection dies or ctx ends.
func (l *Link) serve(ctx context.Context, c *conn) {
	// Check a twentieth of an interval apart, and exactly when two
	// intervals of silence will have passed: a silent link is declared
	// dead on time, not up to a tick late.
	h := l.conf().HeartbeatInterval
	period := max(h/20, time.Millisecond)
	t := time.NewTimer(period)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			c.mu.Lock()
			err := c.deadErr
			c.mu.Unlock()
			l.log.Warn().Err(err).Uint64("generation", c.gen).Msg("CTI link lost")
			l.setState(StateDown, err)
			return
		case <-ctx.Done():
			l.shutdown(c)
			return
		case <-t.C:
			now := time.Now()
			l.tick(c, now)
			next := period
			if dead := time.Unix(0, c.lastRx.Load()).Add(2 * h).Sub(now); dead > 0 && dead < next {
				next = dead
			}
			t.Reset(next)
		}
	}
}

// shutdown ends the application session politely and closes.
func (l *Link) shutdown(c *conn) {
	if c.sessionID != "" && !c.isDead() {
		ctx, cancel := context.WithTimeout(context.Background(), min(l.conf().RequestTimeout, time.Second))
		_, _ = c.request(ctx, &csta.Message{Kind: csta.KindStopApplicationSession, SessionID: c.sessionID, Reason: "normal"})
		cancel()
	}
	c.fail(ErrClosed)
	l.setState(StateDown, ErrClosed)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
