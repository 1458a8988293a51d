package gateway

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/sipstack"
)

// Moving a session re-pins it to another link generation (another link, or
// its own link's new generation) without touching the client's dialog:
//
//  1. the session's monitors are started on the target (shared device
//     watches, so through that link's admission budget) and their call
//     tables seeded by a snapshot;
//  2. under the session's run token, the new monitors take over the
//     client's monitorCrossRefIDs, the session is re-pinned, and the old
//     monitors are stopped (the last subscriber out sends MonitorStop);
//  3. the client is told the truth: calls it was shown that are gone get a
//     ConnectionCleared, live calls are replayed as after MonitorStart, then
//     one SystemStatus normal.
//
// The whole move runs under the token, so requests queue behind it (each
// waits at most cti.request_timeout, then is refused resourceOutOfService)
// and never run on the link being left. A move is used for failover (a
// link down longer than cti.failover_after), resume (after_reconnect:
// resume) and fallback (idle sessions spread back to a returned link).

// Why a session moves (the reason label of cstagw_session_moves_total).
const (
	moveFailover = "failover"
	moveResume   = "resume"
	moveFallback = "fallback"
	moveRemoved  = "removed" // a reload took the session's link away
	moveAdopt    = "adopt"   // a cluster node took the session over (cluster.go)
)

// Outcomes of a move (the result label).
const (
	moveOK      = "ok"      // re-pinned
	moveFailed  = "failed"  // the target could not take it; tried again later
	moveSkipped = "skipped" // no longer needed or not allowed (a call started)
	moveAborted = "aborted" // the session ended first
)

// moveJob is one session to move.
type moveJob struct {
	s      *Session
	reason string
	to     *ctipool.Link // fallback's target; failover places, resume stays
	batch  *moveBatch
	done   chan moveResult
}

type moveResult struct {
	outcome string
	from    string
	to      string
	err     error
}

// moveBatch counts the moves one link event caused, for its log line.
type moveBatch struct {
	g      *Gateway
	reason string
	link   string
	gen    uint64
	start  time.Time

	mu      sync.Mutex
	left    int
	moved   map[string]int // by target link
	counts  map[string]int // by outcome
	lastErr error
}

func newMoveBatch(g *Gateway, reason string, link *ctipool.Link, n int) *moveBatch {
	return &moveBatch{g: g, reason: reason, link: link.Name(), gen: link.Generation(), start: time.Now(),
		left: n, moved: map[string]int{}, counts: map[string]int{}}
}

func (b *moveBatch) record(r moveResult) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.counts[r.outcome]++
	if r.outcome == moveOK {
		b.moved[r.to]++
	}
	if r.err != nil {
		b.lastErr = r.err
	}
	if b.left--; b.left > 0 {
		return
	}
	ev := b.g.log.Info()
	if b.counts[moveFailed] > 0 {
		ev = b.g.log.Warn().AnErr("last_error", b.lastErr)
	}
	d := ev.Str("link", b.link).Str("reason", b.reason).Dur("took", time.Since(b.start))
	if b.reason == moveResume {
		d = d.Uint64("generation", b.gen)
	}
	d.Interface("moved_to", b.moved).Int("failed", b.counts[moveFailed]).Int("skipped", b.counts[moveSkipped]).
		Int("ended", b.counts[moveAborted]).Msg("sessions moved off a CTI link generation")
}

// mover runs move jobs on a bounded set of workers; the links' admission
// budgets pace the CTI side.
type mover struct {
	g       *Gateway
	workers int
	mu      sync.Mutex
	cond    *sync.Cond
	q       []*moveJob
	closed  bool
}

func newMover(g *Gateway, workers int) *mover {
	m := &mover{g: g, workers: workers}
	m.cond = sync.NewCond(&m.mu)
	return m
}

func (m *mover) start() {
	for i := 0; i < m.workers; i++ {
		go m.work()
	}
}

// add queues jobs whose sessions the caller has marked queued.
func (m *mover) add(jobs []*moveJob) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		for _, j := range jobs {
			j.s.queued.Store(false)
		}
		return
	}
	m.q = append(m.q, jobs...)
	m.mu.Unlock()
	m.cond.Broadcast()
}

// queued returns the number of jobs waiting for a worker.
func (m *mover) queued() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.q)
}

func (m *mover) close() {
	m.mu.Lock()
	m.closed = true
	q := m.q
	m.q = nil
	m.mu.Unlock()
	m.cond.Broadcast()
	for _, j := range q {
		j.s.queued.Store(false)
	}
}

func (m *mover) work() {
	for {
		m.mu.Lock()
		for len(m.q) == 0 && !m.closed {
			m.cond.Wait()
		}
		if m.closed {
			m.mu.Unlock()
			return
		}
		j := m.q[0]
		m.q[0] = nil
		m.q = m.q[1:]
		if len(m.q) == 0 {
			m.q = nil // give a mass move's array back
		}
		m.mu.Unlock()
		m.run(j)
	}
}

// run hands a job to its session (the move runs under the session's run
// token) and waits for the outcome.
func (m *mover) run(j *moveJob) moveResult {
	s := j.s
	j.done = make(chan moveResult, 1)
	s.moving.Store(true)
	s.deliverForce(item{kind: itemMove, move: j})
	var r moveResult
	select {
	case r = <-j.done:
	case <-s.done:
		r = moveResult{outcome: moveAborted}
	}
	s.moving.Store(false)
	s.queued.Store(false)
	m.g.metrics.moves.With(j.reason, r.outcome).Inc()
	if j.batch != nil {
		j.batch.record(r)
	}
	return r
}

// move runs a job holding the session's run token.
func (s *Session) move(j *moveJob) moveResult {
	defer s.moving.Store(false)
	g := s.g
	from := s.link
	r := moveResult{from: from.Name()}
	st := s.State()
	if st == StateClosed {
		r.outcome = moveAborted
		return r
	}
	pinned := st == StateActive || st == StateLinkDown
	var to *ctipool.Link
	switch j.reason {
	case moveFailover:
		if !pinned || from.Up() {
			r.outcome = moveSkipped // its link came back first: after_reconnect applies
			return r
		}
		var err error
		if to, err = g.pool.PlaceWhere(func(l *ctipool.Link) bool { return l != from }); err != nil {
			r.outcome, r.err = moveFailed, err
			return r
		}
	case moveRemoved:
		if !pinned || !from.Removed() {
			r.outcome = moveSkipped
			return r
		}
		var err error
		if to, err = g.pool.Place(); err != nil {
			r.outcome, r.err = moveFailed, err
			return r
		}
	case moveResume:
		if !pinned || !from.Up() || from.Generation() == s.gen {
			r.outcome = moveSkipped
			return r
		}
		to = from
	case moveFallback:
		if st != StateActive || !from.Up() || s.busy() {
			r.outcome = moveSkipped
			return r
		}
		to = j.to
	case moveAdopt:
		if s.gen != 0 {
			r.outcome = moveSkipped // placed already
			return r
		}
		var err error
		if to, err = g.placeAdopted(from); err != nil {
			r.outcome, r.err = moveFailed, err
			return r
		}
	}
	r.to = to.Name()
	gen := to.Generation()
	if !to.Up() || (to == from && gen == s.gen) {
		r.outcome, r.err = moveFailed, fmt.Errorf("link %s: %w", to.Name(), ctipool.ErrLinkDown)
		return r
	}

	// 1. The target's monitors, one per line the session monitors.
	s.mu.Lock()
	var old []*monitorRef
	for _, m := range s.monitors {
		if !m.ended {
			old = append(old, m)
		}
	}
	s.mu.Unlock()
	rt := g.conf().CTI.RequestTimeout
	ctx, cancel := context.WithTimeout(context.Background(), rt*time.Duration(2+2*len(old)))
	defer cancel()
	ws := make([]*deviceWatch, 0, len(old))
	release := func() {
		for _, w := range ws {
			w.releaseIfUnused()
		}
	}
	for _, m := range old {
		w, err := g.watch(ctx, to, gen, m.line.Device)
		if err != nil {
			release()
			r.outcome, r.err = moveFailed, err
			return r
		}
		ws = append(ws, w)
	}
	if j.reason == moveFallback && s.busy() {
		release()
		r.outcome = moveSkipped // a call started meanwhile: it never moves
		return r
	}
	news := make([]*monitorRef, len(old))
	replays := make([][]*csta.Message, len(old))
	undo := func() {
		for _, nr := range news {
			if nr != nil {
				nr.dead = true // events it queued meanwhile are not sent
				nr.w.detach(nr)
			}
		}
		release()
	}
	for i, m := range old {
		nr := &monitorRef{s: s, xref: m.xref, line: m.line, lineText: m.lineText, w: ws[i]}
		evs, ok := ws[i].attach(nr)
		if !ok {
			undo()
			r.outcome, r.err = moveFailed, fmt.Errorf("link %s: %w", to.Name(), ctipool.ErrLinkDown)
			return r
		}
		news[i], replays[i] = nr, evs
	}

	// 2. Commit: re-pin the session and its monitors at once.
	g.mu.Lock()
	s.mu.Lock()
	if s.state == StateClosed {
		s.mu.Unlock()
		g.mu.Unlock()
		undo()
		r.outcome = moveAborted
		return r
	}
	for i, m := range old {
		m.dead = true
		if s.monitors[m.xref] == m {
			s.monitors[m.xref] = news[i]
		}
	}
	s.link, s.gen = to, gen
	s.state = transition(s.state, evMoved)
	if from != to {
		g.unpin(s, from)
	}
	g.pin(s, to)
	// The target's state is stored before its listeners are told under
	// g.mu: if it died since the monitors started, either it is seen not
	// up here or the news reaches the session through byLink.
	lost := !to.Up() || to.Generation() != gen
	if lost {
		s.state = transition(s.state, evLinkDown)
		if g.conf().CTI.Resume() {
			g.cont.resume[to] = true // it may be back already: look again
		}
	}
	s.mu.Unlock()
	g.mu.Unlock()
	for _, m := range old {
		if m.w != nil { // an adopted session's monitors have none yet
			m.w.detach(m) // the last one out of a live link sends MonitorStop
		}
	}
	if c := g.cluster; c != nil {
		c.markDirty(s)
	}

	// 3. Reconcile the client's view, then say the system is back.
	for i, m := range old {
		if m.w == nil {
			continue
		}
		for _, id := range m.w.callIDs() {
			if known, _ := news[i].w.hasCall(id); !known {
				replays[i] = append(replays[i], &csta.Message{Kind: csta.KindConnectionClearedEvent,
					Connection:    csta.ConnectionID{CallID: id, DeviceID: m.line.Device},
					SubjectDevice: csta.Dev(m.line.Device), LocalConnectionInfo: "null", Cause: "normalClearing"})
			}
		}
	}
	for i, nr := range news {
		for _, ev := range replays[i] {
			s.sendEvent(nr, ev)
		}
	}
	status := "normal"
	if lost {
		status = "disabled"
	}
	s.sendRaw(&csta.Message{Kind: csta.KindSystemStatus, SystemStatus: status})
	s.log.Debug().Str("reason", j.reason).Str("from", from.Name()).Str("to", to.Name()).Uint64("generation", gen).
		Int("monitors", len(news)).Msg("session moved")
	r.outcome = moveOK
	return r
}

// busy reports whether any monitored line of the session has a call.
func (s *Session) busy() bool {
	s.mu.Lock()
	ws := make([]*deviceWatch, 0, len(s.monitors))
	for _, m := range s.monitors {
		if m.w != nil {
			ws = append(ws, m.w)
		}
	}
	s.mu.Unlock()
	for _, w := range ws {
		if w.liveCalls() > 0 {
			return true
		}
	}
	return false
}

// staleGeneration handles a request that found its link on a newer
// generation: the session is stale (481 next), or, with after_reconnect:
// resume, waits for its move.
func (s *Session) staleGeneration() {
	if s.g.conf().CTI.Resume() {
		s.fire(evResume)
		s.g.markResume(s.link)
		return
	}
	s.fire(evNewGen)
}

// outOfService answers a request that waited too long behind a move: INFO
// gets resourceOutOfService, a refresh gets its 200 with systemStatus
// disabled.
func (g *Gateway) outOfService(req *sipstack.Request) sipstack.Reply {
	m := csta.ErrorMessage(csta.CodeResourceOutOfService)
	if req.Method != "INFO" {
		if len(req.Body) == 0 {
			return sipstack.Reply{Status: 200}
		}
		m = &csta.Message{Kind: csta.KindRequestSystemStatusResponse, SystemStatus: "disabled"}
	}
	body, err := csta.Encode(m, csta.NSEd3)
	if err != nil {
		return sipstack.Reply{Status: 500}
	}
	return sipstack.Reply{Status: 200, Body: body}
}

// ---- when sessions move ----

// continuity is the gateway's failover, resume and fallback state.
type continuity struct {
	kick     chan struct{} // wake the scan now
	fallback chan struct{} // a link came up: rebalance
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	// Under Gateway.mu:
	downAt map[*ctipool.Link]time.Time // since when a link has been down
	resume map[*ctipool.Link]bool      // sessions may be behind the link's generation
}

func (g *Gateway) startContinuity() {
	c := &g.cont
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	g.mover.start()
	c.wg.Add(2)
	go func() { defer c.wg.Done(); g.scanLoop(ctx) }()
	go func() { defer c.wg.Done(); g.fallbackLoop(ctx) }()
}

func (g *Gateway) stopContinuity() {
	if g.cont.cancel != nil {
		g.cont.cancel()
	}
	g.mover.close()
	g.cont.wg.Wait()
}

// markResume asks the scan to look for sessions behind link's generation
// (a session found it moved on before the link's Up reached it).
func (g *Gateway) markResume(link *ctipool.Link) {
	g.mu.Lock()
	g.cont.resume[link] = true
	g.mu.Unlock()
	g.kickContinuity()
}

func (g *Gateway) kickContinuity() {
	select {
	case g.cont.kick <- struct{}{}:
	default:
	}
}

// continuityLinkState records a link's state change for the scans (g.mu
// held).
func (g *Gateway) continuityLinkState(link *ctipool.Link, ls ctipool.LinkState) {
	c := &g.cont
	if ls.State != ctipool.StateUp {
		if _, ok := c.downAt[link]; !ok {
			c.downAt[link] = time.Now()
		}
		return
	}
	delete(c.downAt, link)
	if g.conf().CTI.Resume() {
		c.resume[link] = true
	}
}

// scanPeriod is how often the scan looks for sessions to move.
func (g *Gateway) scanPeriod() time.Duration {
	p := g.conf().CTI.HeartbeatInterval
	if fo, ok := g.conf().CTI.FailoverDelay(); ok && fo/10 < p {
		p = fo / 10
	}
	return min(max(p, 10*time.Millisecond), time.Second)
}

func (g *Gateway) scanLoop(ctx context.Context) {
	t := time.NewTicker(g.scanPeriod())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-g.cont.kick:
		}
		g.scan(time.Now())
	}
}

// scan queues the moves due now: the sessions of links down longer than
// failover_after (when another link is up), and, with after_reconnect:
// resume, the sessions behind their link's new generation.
func (g *Gateway) scan(now time.Time) {
	fo, foOn := g.conf().CTI.FailoverDelay()
	resume := g.conf().CTI.Resume()
	var jobs []*moveJob
	g.mu.Lock()
	links := g.pool.Links()
	for l := range g.byLink {
		if l.Removed() { // still holding sessions (a reload took it away)
			links = append(links, l)
		}
	}
	for _, l := range links {
		reason := ""
		if l.Removed() {
			if g.pool.AnyUp() {
				reason = moveRemoved
			}
		} else if l.Up() {
			if resume && g.cont.resume[l] {
				reason = moveResume
			}
		} else if at, down := g.cont.downAt[l]; foOn && down && now.Sub(at) >= fo && g.otherUp(l) {
			reason = moveFailover
		}
		if reason == "" || len(g.byLink[l]) == 0 {
			delete(g.cont.resume, l)
			continue
		}
		gen := l.Generation()
		behind := false
		var pick []*Session
		for s := range g.byLink[l] {
			s.mu.Lock()
			st, sg := s.state, s.gen
			s.mu.Unlock()
			if st != StateActive && st != StateLinkDown {
				continue
			}
			if reason == moveResume {
				if sg == gen {
					continue
				}
				behind = true
			}
			if s.queued.CompareAndSwap(false, true) {
				pick = append(pick, s)
			}
		}
		if reason == moveResume && !behind {
			delete(g.cont.resume, l)
		}
		if len(pick) == 0 {
			continue
		}
		b := newMoveBatch(g, reason, l, len(pick))
		for _, s := range pick {
			jobs = append(jobs, &moveJob{s: s, reason: reason, batch: b})
		}
	}
	g.mu.Unlock()
	if len(jobs) > 0 {
		g.mover.add(jobs)
	}
	g.closeRemovedLinks(now)
}

// otherUp reports whether a link other than l is up.
func (g *Gateway) otherUp(l *ctipool.Link) bool {
	for _, o := range g.pool.Links() {
		if o != l && o.Up() {
			return true
		}
	}
	return false
}

// fallbackLoop rebalances after a link comes up: idle sessions move from
// the links above the mean to the ones below, paced.
func (g *Gateway) fallbackLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.cont.fallback:
		}
		if g.conf().CTI.FallbackEnabled() {
			g.rebalance(ctx)
		}
	}
}

// fallbackPatience bounds how long a rebalance keeps looking for idle
// sessions while every candidate is in a call.
const fallbackPatience = 5 * time.Minute

func (g *Gateway) rebalance(ctx context.Context) {
	per := max(g.conf().CTI.Fallback.PerSecond, 1)
	// The start times of the last per moves: a new one starts only when
	// the oldest of them is a second old, so no window of one second ever
	// holds more than per moves.
	starts := make([]time.Time, 0, per)
	start := time.Now()
	moved := map[string]int{} // "from>to"
	counts := map[string]int{}
	lastFound := time.Now()
	reason := "balanced"
	for {
		s, to, balanced := g.pickFallback()
		if balanced {
			break
		}
		if s == nil {
			if time.Since(lastFound) > fallbackPatience {
				reason = "only sessions in calls left to move"
				break
			}
			if !sleepCtx(ctx, time.Second) {
				reason = "shutdown"
				break
			}
			continue
		}
		lastFound = time.Now()
		if len(starts) == per {
			if !sleepCtx(ctx, time.Until(starts[0].Add(time.Second))) {
				s.queued.Store(false)
				reason = "shutdown"
				break
			}
			starts = append(starts[:0], starts[1:]...)
		}
		starts = append(starts, time.Now())
		r := g.mover.run(&moveJob{s: s, reason: moveFallback, to: to})
		counts[r.outcome]++
		if r.outcome == moveOK {
			moved[r.from+">"+r.to]++
		}
	}
	if len(counts) == 0 {
		return
	}
	g.log.Info().Interface("moved", moved).Int("failed", counts[moveFailed]).Int("skipped", counts[moveSkipped]).
		Dur("took", time.Since(start)).Str("stopped", reason).Interface("sessions", g.linkSessions()).
		Msg("fallback: idle sessions spread over the healthy links")
}

// pickFallback chooses the next idle session to move and its target, or
// reports that every healthy link is within max(1, 5 %) of the mean.
func (g *Gateway) pickFallback() (*Session, *ctipool.Link, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var up []*ctipool.Link
	total := 0
	for _, l := range g.pool.Links() {
		if l.Up() {
			up = append(up, l)
			total += len(g.byLink[l])
		}
	}
	if len(up) < 2 {
		return nil, nil, true
	}
	mean := float64(total) / float64(len(up))
	tol := max(1, 0.05*mean)
	balanced := true
	var target *ctipool.Link
	for _, l := range up {
		n := float64(len(g.byLink[l]))
		if n-mean > tol || mean-n > tol {
			balanced = false
		}
		if target == nil || len(g.byLink[l]) < len(g.byLink[target]) {
			target = l
		}
	}
	if balanced {
		return nil, nil, true
	}
	// Sources: the links above the mean, most loaded first.
	srcs := make([]*ctipool.Link, 0, len(up))
	for _, l := range up {
		if float64(len(g.byLink[l])) > mean && len(g.byLink[l]) >= len(g.byLink[target])+2 {
			srcs = append(srcs, l)
		}
	}
	for i := 1; i < len(srcs); i++ {
		for k := i; k > 0 && len(g.byLink[srcs[k]]) > len(g.byLink[srcs[k-1]]); k-- {
			srcs[k], srcs[k-1] = srcs[k-1], srcs[k]
		}
	}
	for _, l := range srcs {
		gen := l.Generation()
		for s := range g.byLink[l] {
			s.mu.Lock()
			ok := s.state == StateActive && s.gen == gen
			s.mu.Unlock()
			if !ok || s.queued.Load() || s.busy() {
				continue
			}
			if s.queued.CompareAndSwap(false, true) {
				return s, target, false
			}
		}
	}
	return nil, nil, false
}

// linkSessions counts the sessions pinned to each link.
func (g *Gateway) linkSessions() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]int, len(g.byLink))
	for l, ss := range g.byLink {
		out[l.Name()] += len(ss) // a re-added link shares its name with the removed one
	}
	return out
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
