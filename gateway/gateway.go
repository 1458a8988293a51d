// Package gateway is cstagw's RCC core: it places client sessions on CTI
// links, checks every device a client names against the directory,
// translates CSTA both ways, fans events out to the sessions monitoring a
// device, and applies the failure policy (resourceOutOfService while a link
// is down, 481 to stale sessions after it comes back).
package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/gateway/ldapdir"
	"github.com/cstagw/cstagw/sipstack"
)

// Gateway ties the SIP side and the CTI pool together.
type Gateway struct {
	// live holds what a reload replaces (reload.go): read it through
	// conf, directory, numbers and csLimits, never keep it.
	live    atomic.Pointer[liveConfig]
	log     zerolog.Logger
	pool    *ctipool.Pool
	sip     *sipstack.Server
	metrics *metrics
	// metricsHandler serves /metrics from the gateway's own registry.
	metricsHandler http.Handler
	ghosts         *ghostBook
	service        *serviceBook

	mu       sync.Mutex
	sessions map[string]*Session
	byLink   map[*ctipool.Link]map[*Session]struct{}
	// perUser counts each user's sessions and reserved sign-ins; reserved
	// counts sign-ins past the limit check and not yet in sessions: check
	// and count are one step under mu, so concurrent INVITEs cannot pass
	// the limits together.
	perUser  map[string]int
	reserved int
	byUser   map[string]map[*Session]struct{}
	// loggedState is the last state logged per link (under mu).
	loggedState map[*ctipool.Link]ctipool.State
	watches     map[watchKey]*deviceWatch
	cont        continuity
	mover       *mover
	reload      reloadState
	ldapSrc     *ldapdir.Source // directory.ldap, when configured
	ldapStop    context.CancelFunc
	cluster     *clusterNode // cluster mode; nil for a lone node

	admin     *http.Server
	adminAddr string
	draining  atomic.Bool
	drainReq  chan struct{} // closed by POST /drain
	drainOnce sync.Once
	started   time.Time
}

// New builds a gateway from a validated configuration.
func New(cfg Config, log zerolog.Logger) (*Gateway, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dir, err := NewDirectory(cfg.Directory)
	if err != nil {
		return nil, err
	}
	num, err := newNumbering(cfg.Numbering)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		log:      log,
		metrics:  newMetrics(),
		ghosts:   newGhostBook(time.Hour, 100000),
		service:  newServiceBook(),
		sessions: map[string]*Session{},
		byLink:   map[*ctipool.Link]map[*Session]struct{}{},
		perUser:  map[string]int{},
		byUser:   map[string]map[*Session]struct{}{},

		loggedState: map[*ctipool.Link]ctipool.State{},
		watches:     map[watchKey]*deviceWatch{},
		cont: continuity{
			kick:     make(chan struct{}, 1),
			fallback: make(chan struct{}, 1),
			downAt:   map[*ctipool.Link]time.Time{},
			resume:   map[*ctipool.Link]bool{},
		},
		reload:   reloadState{removing: map[*ctipool.Link]time.Time{}},
		drainReq: make(chan struct{}),
	}
	g.live.Store(&liveConfig{cfg: cfg, dir: dir, num: num, limits: csta.Limits{MaxBytes: cfg.SIP.MaxBodyBytes},
		generation: 1, loadedAt: time.Now()})
	g.metrics.reg.MustRegister(statusCollector{g})
	g.metricsHandler = promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{})
	// Enough movers to keep every link's admission budget busy.
	g.mover = newMover(g, min(256, max(8, cfg.CTI.AdmissionBudget*len(cfg.CTI.Links))))
	g.pool, err = ctipool.New(cfg.CTI, ctipool.Options{Logger: log, OnState: g.onLinkState, OnResync: g.onResync})
	if err != nil {
		return nil, err
	}
	g.sip, err = sipstack.New(cfg.SIP, g, log)
	if err != nil {
		return nil, err
	}
	if cfg.Cluster != nil {
		if g.cluster, err = newClusterNode(g, *cfg.Cluster, cfg.Cluster.SIPURI); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// Start dials the CTI links, opens the SIP listeners and the admin HTTP.
func (g *Gateway) Start() error {
	g.started = time.Now()
	g.startLDAP() // its first load is in before the first sign-in
	g.pool.Start()
	if err := g.sip.Start(); err != nil {
		g.pool.Close()
		return err
	}
	if c := g.cluster; c != nil {
		if err := c.resolveSIPURI(); err != nil {
			g.sip.Close()
			g.pool.Close()
			return err
		}
		c.start()
	}
	g.startContinuity()
	if g.conf().Admin.Listen != "" && g.conf().Admin.Listen != "off" {
		ln, err := net.Listen("tcp", g.conf().Admin.Listen)
		if err != nil {
			g.stopContinuity()
			g.sip.Close()
			g.pool.Close()
			return err
		}
		g.adminAddr = ln.Addr().String()
		g.admin = &http.Server{Handler: g.adminMux(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := g.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				g.log.Error().Err(err).Msg("admin HTTP stopped")
			}
		}()
		g.log.Info().Str("addr", g.adminAddr).Msg("admin HTTP listening")
	}
	return nil
}

// SIPAddr returns the bound SIP address of a transport (udp, tcp, tls).
func (g *Gateway) SIPAddr(network string) string { return g.sip.Addr(network) }

// AdminAddr returns the bound admin HTTP address.
func (g *Gateway) AdminAddr() string { return g.adminAddr }

// Pool exposes the CTI pool (tests, status).
func (g *Gateway) Pool() *ctipool.Pool { return g.pool }

// DrainRequested is closed when POST /drain asks the process to drain and
// exit (the command then calls Shutdown, as on SIGTERM).
func (g *Gateway) DrainRequested() <-chan struct{} { return g.drainReq }

// RequestDrain asks for a drain (POST /drain).
func (g *Gateway) RequestDrain() { g.drainOnce.Do(func() { close(g.drainReq) }) }

// Shutdown drains: new INVITEs (and OPTIONS probes) get 503; a lone node
// sends every session BYE, a cluster node hands its sessions to the other
// nodes through the store (no BYE; whatever is left when ctx ends is taken
// over as from a dead node); the CTI application sessions are stopped,
// listeners close.
func (g *Gateway) Shutdown(ctx context.Context) {
	g.draining.Store(true)
	g.sip.Drain()
	g.stopContinuity() // no more moves: the sessions are ending
	g.stopLDAP()
	if c := g.cluster; c != nil {
		c.handOff(ctx)
		for _, s := range g.allSessions() {
			s.close(CloseShutdown, false) // stays in the store for a takeover
		}
		c.close(true)
	}
	all := g.allSessions()
	// Close in parallel, within the grace period: the CTI monitors go with
	// the application sessions anyway, so no MonitorStop is sent (see
	// deviceWatch.detach), only the BYEs.
	work := make(chan *Session)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				s.close(CloseShutdown, true)
			}
		}()
	}
feed:
	for _, s := range all {
		select {
		case work <- s:
		case <-ctx.Done():
			g.log.Warn().Int("sessions", len(all)).Msg("shutdown grace over before every session got its BYE")
			break feed
		}
	}
	close(work)
	wg.Wait()
	// Give the BYEs a moment on the wire.
	t := time.NewTimer(min(g.conf().Gateway.ShutdownGrace, 500*time.Millisecond))
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	g.pool.Close()
	g.sip.Close()
	if g.admin != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = g.admin.Shutdown(sctx)
		cancel()
	}
}

// Sessions returns the number of live sessions.
func (g *Gateway) Sessions() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sessions)
}

// unconfirmedGrace: a session whose 200 OK has not been acknowledged for
// this long may be ended to make room for a sign-in of the same user.
const unconfirmedGrace = time.Second

// reserve checks the session limits and counts the sign-in in one step.
// A user at the limit gets room by ending one of their sessions whose
// 200 OK was never acknowledged: never-ACKed INVITEs must not lock the
// real client out.
func (g *Gateway) reserve(user string, log zerolog.Logger) bool {
	lim := g.conf().Gateway
	g.mu.Lock()
	total := len(g.sessions) + g.reserved
	mine := g.perUser[user]
	var evict *Session
	if mine >= lim.MaxSessionsPerUser {
		for s := range g.byUser[user] {
			if !s.dlg.Confirmed() && time.Since(s.created) > unconfirmedGrace {
				evict = s
				break
			}
		}
	}
	if total >= lim.MaxSessions || (mine >= lim.MaxSessionsPerUser && evict == nil) {
		g.mu.Unlock()
		g.metrics.refusals.With("session_limit").Inc()
		log.Warn().Int("sessions", total).Int("user_sessions", mine).Msg("session limit reached: 503")
		return false
	}
	g.perUser[user]++
	g.reserved++
	g.mu.Unlock()
	if evict != nil {
		// Its slot is counted until it is gone: this sign-in is over the
		// limit by one for that moment, never by more.
		evict.log.Warn().Msg("unacknowledged session ended to make room for a new sign-in of its user")
		evict.close(CloseSIP, true)
	}
	return true
}

// unreserve gives back a reservation that did not become a session.
func (g *Gateway) unreserve(user string) {
	g.mu.Lock()
	g.reserved--
	if g.perUser[user]--; g.perUser[user] <= 0 {
		delete(g.perUser, user)
	}
	g.mu.Unlock()
}

// errNotInDirectory refuses a sign-in of a user the directory lacks.
var errNotInDirectory = errors.New("user not in the directory")

// signInLine is the directory's decision on a sign-in: the user's lines
// and the one named (lines is nil when the user is unknown).
func signInLine(dir *Directory, identity, lineText string) ([]*Line, *Line, error) {
	lines := dir.Lines(identity)
	if lines == nil {
		return nil, nil, errNotInDirectory
	}
	line, err := findLine(lines, lineText)
	return lines, line, err
}

// refusalKind labels a refused sign-in: an unknown user, or a line the
// user may not control.
func refusalKind(lines []*Line) string {
	if lines == nil {
		return "user"
	}
	return "line"
}

// Invite implements sipstack.Handler: a client signs in.
func (g *Gateway) Invite(ctx context.Context, d *sipstack.Dialog, req *sipstack.Request) sipstack.Reply {
	log := g.log.With().Str("call_id", req.CallID).Str("user", req.Identity).Logger()
	m, err := csta.DecodeLimits(req.Body, g.csLimits())
	if err != nil {
		return g.badBody(req, err)
	}
	// Clone: a substring would pin the whole decoded body for the life of
	// the session.
	lineText := strings.Clone(m.Line)
	if lineText == "" {
		lineText = strings.Clone(req.RequestUser)
	}
	dir := g.directory()
	lines, line, err := signInLine(dir, req.Identity, lineText)
	if err != nil {
		// The same answer for an unknown user and a line not permitted:
		// users are not told apart.
		g.metrics.refusals.With(refusalKind(lines)).Inc()
		log.Warn().Str("line", trunc(lineText)).Err(err).Msg("INVITE refused: 403")
		return sipstack.Reply{Status: 403, Reason: "Forbidden"}
	}
	if g.draining.Load() {
		return sipstack.Reply{Status: 503, RetryAfter: g.conf().SIP.RetryAfter}
	}
	user := normUser(req.Identity)
	if !g.reserve(user, log) {
		return sipstack.Reply{Status: 503, RetryAfter: g.conf().SIP.RetryAfter}
	}
	link, err := g.pool.Place()
	if err != nil {
		g.unreserve(user)
		g.metrics.refusals.With("no_link").Inc()
		log.Warn().Err(err).Msg("no CTI link up: 503")
		return sipstack.Reply{Status: 503, RetryAfter: g.conf().SIP.RetryAfter}
	}
	s := &Session{
		g:        g,
		id:       newSessionID(),
		dlg:      d,
		user:     normUser(req.Identity),
		lines:    lines,
		line:     line,
		lineText: lineText,
		link:     link,
		gen:      link.Generation(),
		created:  time.Now(),
		inbox:    newMailbox(g.conf().Gateway.EventQueue),
		done:     make(chan struct{}),
		monitors: map[string]*monitorRef{},
	}
	// The session starts with its run token held by this INVITE: nothing
	// it is sent (a link state change) overtakes the 200 OK; Sent drains.
	s.inbox.running = true
	// No link in the session's logger: a move re-pins the session, so
	// lines that concern the link name it themselves.
	s.log = g.log.With().Str("session", s.id).Str("call_id", req.CallID).Logger()
	g.mu.Lock()
	if g.directory() != dir {
		// A reload changed the directory while this INVITE was checked:
		// decide again on the new one, so that a removed user or line
		// cannot slip in past the reload's sweep of the sessions.
		nl, l2, err := signInLine(g.directory(), req.Identity, lineText)
		if err != nil {
			g.mu.Unlock()
			g.unreserve(s.user)
			g.metrics.refusals.With(refusalKind(nl)).Inc()
			return sipstack.Reply{Status: 403, Reason: "Forbidden"}
		}
		s.lines, s.line = nl, l2
	}
	g.add(s)
	g.reserved-- // the reservation becomes the session (perUser already counts it)
	g.mu.Unlock()
	d.SetOwner(s)
	g.metrics.sessionsOpened.Inc()
	s.log.Info().Str("user", s.user).Str("line", line.URI).Uint64("generation", s.gen).Str("link", link.Name()).Msg("session placed")
	if c := g.cluster; c != nil {
		c.markDirty(s)
		d.OnCSeqMark(func() { c.markDirty(s) })
	}
	body, _ := csta.Encode(&csta.Message{Kind: csta.KindRequestSystemStatusResponse, SystemStatus: "normal"}, csta.NSEd3)
	return sipstack.Reply{Status: 200, Body: body, Sent: func() { s.drain(nil) }}
}

// InDialog implements sipstack.Handler: INFO, re-INVITE, UPDATE.
func (g *Gateway) InDialog(ctx context.Context, d *sipstack.Dialog, req *sipstack.Request) sipstack.Reply {
	s, _ := d.Owner().(*Session)
	if s == nil && g.cluster != nil {
		// A dialog being adopted, its session not built yet: that takes
		// milliseconds.
		s = g.awaitOwner(ctx, d)
		if s == nil {
			return sipstack.Reply{Status: 503, RetryAfter: time.Second}
		}
	}
	if s == nil {
		return sipstack.Reply{Status: 481, End: true}
	}
	if n := s.inflight.Add(1); n > int32(g.conf().Gateway.MaxInFlight) {
		s.inflight.Add(-1)
		g.metrics.refusals.With("in_flight").Inc()
		s.log.Warn().Int32("in_flight", n-1).Msg("too many requests in flight on one session: 503")
		return sipstack.Reply{Status: 503, RetryAfter: time.Second}
	}
	defer s.inflight.Add(-1)
	if c := g.cluster; c != nil && s.handingOff.Load() {
		// Before the check of s.done: a session closed by its hand-off
		// lives on at another node, its dialog must not end.
		return g.handedOff(ctx, s)
	}
	select {
	case <-s.done:
		return sipstack.Reply{Status: 481, End: true}
	default:
	}
	if c := g.cluster; c != nil && !c.serving() {
		// Not sure the session is still ours: let the client retry (the
		// proxy finds its owner meanwhile).
		c.lapsed.Store(true)
		return sipstack.Reply{Status: 503, RetryAfter: time.Second}
	}
	return s.request(ctx, req)
}

// awaitOwner waits (at most a second) for the session of a dialog being
// adopted to be built.
func (g *Gateway) awaitOwner(ctx context.Context, d *sipstack.Dialog) *Session {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	limit := time.NewTimer(time.Second)
	defer limit.Stop()
	for {
		select {
		case <-t.C:
			if s, _ := d.Owner().(*Session); s != nil {
				return s
			}
			if d.Ended() {
				return nil
			}
		case <-limit.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// handOffWait bounds how long a request for a session being handed off
// waits for the release to reach the store.
const handOffWait = 2 * time.Second

// handedOff answers a request for a session a drain is handing over. It
// waits until the session is released (in the store, free for the other
// nodes) before answering 503 Dialog Elsewhere: the proxy's retry then
// normally finds the session free or already claimed, where an answer
// before the release sent it to a node that saw it still ours and had to
// refuse it too. After handOffWait it answers anyway (a release slower
// than that, or a session never written, which is not released).
func (g *Gateway) handedOff(ctx context.Context, s *Session) sipstack.Reply {
	t := time.NewTimer(handOffWait)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
	case <-ctx.Done():
	}
	return sipstack.Reply{Status: 503, Reason: sipstack.ReasonElsewhere, RetryAfter: time.Second}
}

// Ended implements sipstack.Handler.
func (g *Gateway) Ended(d *sipstack.Dialog, reason sipstack.EndReason) {
	s, _ := d.Owner().(*Session)
	if s == nil {
		return
	}
	switch reason {
	case sipstack.EndClientBye:
		s.close(CloseClientBye, false)
	case sipstack.EndExpired:
		s.close(CloseExpired, false)
	case sipstack.EndStale:
		s.close(CloseStale, false)
	case sipstack.EndHandedOff:
		s.close(CloseHandedOff, false)
	default:
		s.close(CloseSIP, false)
	}
}

// add enters a session in the tables (g.mu held): by id, by link, by user.
func (g *Gateway) add(s *Session) {
	g.sessions[s.id] = s
	g.pin(s, s.link)
	if g.byUser[s.user] == nil {
		g.byUser[s.user] = map[*Session]struct{}{}
	}
	g.byUser[s.user][s] = struct{}{}
}

// pin and unpin keep byLink (g.mu held); a removed link's entry goes with
// its last session.
func (g *Gateway) pin(s *Session, l *ctipool.Link) {
	if g.byLink[l] == nil {
		g.byLink[l] = map[*Session]struct{}{}
	}
	g.byLink[l][s] = struct{}{}
}

func (g *Gateway) unpin(s *Session, l *ctipool.Link) {
	if m := g.byLink[l]; m != nil {
		delete(m, s)
		if len(m) == 0 && l.Removed() {
			delete(g.byLink, l)
		}
	}
}

// forget removes a closed session from the tables, remembering the calls
// its client was shown so a replacement session can clear the ones that
// are gone.
func (g *Gateway) forget(s *Session, mons map[string]*monitorRef) {
	g.mu.Lock()
	delete(g.sessions, s.id)
	g.unpin(s, s.link)
	if g.perUser[s.user]--; g.perUser[s.user] <= 0 {
		delete(g.perUser, s.user)
	}
	if m := g.byUser[s.user]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(g.byUser, s.user)
		}
	}
	g.mu.Unlock()
	if s.reason == CloseClientBye {
		return
	}
	for _, m := range mons {
		if m.w != nil {
			g.ghosts.put(s.user, m.line.Device, m.w.callIDs())
		}
	}
}

// onLinkState is told every link state change by the pool.
func (g *Gateway) onLinkState(ls ctipool.LinkState) {
	g.metrics.linkChanges.With(ls.Name, ls.State.String()).Inc()
	link := ls.Link // always set by the pool
	g.mu.Lock()
	var affected []*Session
	for s := range g.byLink[link] {
		affected = append(affected, s)
	}
	g.continuityLinkState(link, ls)
	// A dead link cycles connecting → down on every attempt: say "down"
	// once per outage, not once per attempt.
	logIt := (ls.State == ctipool.StateUp || ls.State == ctipool.StateDown) && g.loggedState[link] != ls.State
	if logIt {
		g.loggedState[link] = ls.State
	}
	g.mu.Unlock()
	if logIt {
		g.log.Info().Str("link", ls.Name).Str("state", ls.State.String()).Uint64("generation", ls.Generation).
			Int("sessions", len(affected)).AnErr("cause", ls.Err).Msg("CTI link state")
	}
	for _, s := range affected {
		s.deliver(item{kind: itemLink, link: ls})
	}
	if ls.State == ctipool.StateUp {
		// Resume the sessions behind the new generation now, and spread
		// idle sessions back to the link.
		g.kickContinuity()
		select {
		case g.cont.fallback <- struct{}{}:
		default:
		}
	}
}

// onResync: the switch lost messages; the call tables of that link
// generation may be wrong. Re-snapshot every watched device.
func (g *Gateway) onResync(link *ctipool.Link, gen uint64) {
	g.mu.Lock()
	var ws []*deviceWatch
	for k, w := range g.watches {
		if k.link == link && k.gen == gen {
			ws = append(ws, w)
		}
	}
	g.mu.Unlock()
	go func() {
		for _, w := range ws {
			ctx, cancel := context.WithTimeout(context.Background(), g.conf().CTI.RequestTimeout)
			items, err := link.Snapshot(ctx, gen, w.key.device)
			cancel()
			if err != nil {
				continue
			}
			w.reconcile(items, true)
		}
	}()
}

// ghostBook remembers, per user and line, the calls a closed session's
// client was shown, for a while.
type ghostBook struct {
	ttl time.Duration
	max int
	mu  sync.Mutex
	m   map[string]ghost
}

type ghost struct {
	calls []string
	at    time.Time
}

func newGhostBook(ttl time.Duration, max int) *ghostBook {
	return &ghostBook{ttl: ttl, max: max, m: map[string]ghost{}}
}

func (b *ghostBook) put(user, device string, calls []string) {
	if len(calls) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.m) >= b.max {
		// Full: drop what has expired, then anything, to make room.
		now := time.Now()
		for k, v := range b.m {
			if now.Sub(v.at) > b.ttl {
				delete(b.m, k)
			}
		}
		for k := range b.m {
			if len(b.m) < b.max {
				break
			}
			delete(b.m, k)
		}
	}
	b.m[user+"\x00"+device] = ghost{calls: calls, at: time.Now()}
}

func (b *ghostBook) take(user, device string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := user + "\x00" + device
	g, ok := b.m[k]
	delete(b.m, k)
	if !ok || time.Since(g.at) > b.ttl {
		return nil
	}
	return g.calls
}
