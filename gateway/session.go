package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/sipstack"
)

// State is a session's state.
type State int

const (
	StateActive   State = iota // link up, same generation as at placement
	StateLinkDown              // its link is down: PBX-bound requests refused at once
	StateStale                 // its link came back under a new generation: next request gets 481
	StateClosed
)

var sessionStateNames = [...]string{"active", "link_down", "stale", "closed"}

func (s State) String() string {
	if int(s) < len(sessionStateNames) {
		return sessionStateNames[s]
	}
	return "unknown"
}

// sessionEvent is what moves a session between states.
type sessionEvent int

const (
	evLinkDown sessionEvent = iota // the pinned link went down
	evLinkUp                       // the pinned link is up on the session's own generation
	evNewGen                       // the pinned link is up on a newer generation
	evClose                        // BYE, expiry, overflow, shutdown
	// evResume: the pinned link is up on a newer generation and the
	// session will be moved there (cti.after_reconnect: resume); until
	// then it refuses PBX-bound requests as while the link was down.
	evResume
	evMoved // a move to another link generation committed
)

// transition is the session state machine, the only place states change.
func transition(st State, ev sessionEvent) State {
	if st == StateClosed || ev == evClose {
		return StateClosed
	}
	switch st {
	case StateActive:
		switch ev {
		case evLinkDown, evResume:
			return StateLinkDown
		case evNewGen:
			return StateStale
		}
	case StateLinkDown:
		switch ev {
		case evLinkUp, evMoved:
			return StateActive
		case evNewGen:
			return StateStale
		}
	case StateStale:
		return StateStale
	}
	return st
}

// CloseReason records why a session ended.
type CloseReason string

const (
	CloseClientBye  CloseReason = "client_bye"
	CloseExpired    CloseReason = "expired"
	CloseStale      CloseReason = "stale"
	CloseSlowClient CloseReason = "slow_client"
	CloseShutdown   CloseReason = "shutdown"
	CloseSIP        CloseReason = "sip_ended"
	CloseSendFailed CloseReason = "send_failed"
	CloseInternal   CloseReason = "internal_error"
	CloseDirectory  CloseReason = "directory"  // the user or the sign-in line left the directory
	CloseHandedOff  CloseReason = "handed_off" // another cluster node serves it now (no BYE)
)

type itemKind int

const (
	itemRequest itemKind = iota
	itemEvent
	itemMonitorEnded
	itemLink
	itemMove
	itemAuthority // the directory changed the user's lines
	itemResync    // cluster: serving again after a lease loss (cluster.go)
	itemAdopted   // cluster: an adopted session's monitors are ready (cluster.go)
)

// item is one thing for the session to do.
type item struct {
	kind itemKind
	p    *pending
	ev   *csta.Message
	mon  *monitorRef
	link ctipool.LinkState
	move *moveJob
	// itemAdopted: the watches started for an adopted session.
	adopt *adoptJob
	lost  bool // itemMonitorEnded: the monitor went with its link
	// itemAuthority: the user's lines now, and where the outcome goes.
	lines  []*Line
	result chan int
}

// Waiter states of a pending request.
const (
	waiting   int32 = iota
	started         // taken by a drainer: the waiter now waits for the answer
	abandoned       // the waiter answered 503/481 itself: never run it
)

// pending is a SIP request queued on a session and the goroutine waiting
// for its answer. When another goroutine holds the run token and answers
// it, the token goes with the answer: the waiter writes the response and
// only then runs what the request caused and what queued behind it, so
// nothing overtakes a response (docs/wire.md §1.4) and nobody waits on a
// timer for it.
type pending struct {
	req *sipstack.Request
	// ctx is the SIP handler's: sip.handler_timeout bounds the answer even
	// when the request's own goroutine runs it and waits on the PBX.
	ctx    context.Context
	state  atomic.Int32
	reply  chan struct{} // closed when rep is set and the token handed over
	rep    sipstack.Reply
	replay []*replayed
}

// monitorRef is one northbound monitor of a session.
type monitorRef struct {
	s        *Session
	xref     string // minted by the gateway, shown to the client
	line     *Line
	lineText string // the client's own spelling of the line
	w        *deviceWatch
	dead     bool // no events any more (stopped, ended, or replaced by a move)
	ended    bool // the switch ended it: a move does not re-create it
}

// Session is one client's RCC dialog, pinned to one link generation until
// a move (move.go) re-pins it. It has no goroutine: whoever holds its run
// token (see mailbox) owns what is not under mu; others reach it through
// the inbox. link and gen change only under the token with g.mu and mu
// held, so either lock is enough to read them.
type Session struct {
	g     *Gateway
	id    string
	dlg   *sipstack.Dialog
	user  string
	lines []*Line // the user's line appearances
	line  *Line   // the line named at sign-in
	// lineText is the line as the client spelled it at sign-in.
	lineText string
	link     *ctipool.Link
	gen      uint64
	log      zerolog.Logger
	created  time.Time

	inbox    *mailbox
	done     chan struct{}
	once     sync.Once
	inflight atomic.Int32 // requests handed to the session and not answered
	// queued: a move job for the session is waiting or running (one at a
	// time); moving: its move item is in the inbox or running, so a
	// request queued behind it waits at most cti.request_timeout.
	queued atomic.Bool
	moving atomic.Bool
	// handingOff: a drain is releasing the session to another node: it
	// sends nothing more and answers requests 503 (cluster.go).
	handingOff atomic.Bool

	mu       sync.Mutex
	state    State
	reason   CloseReason
	monitors map[string]*monitorRef // by northbound monitorCrossRefID
	// cgen is the session's claim generation in the cluster store (0:
	// not written yet, or no cluster).
	cgen int64
}

func newSessionID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newXref mints a northbound monitorCrossRefID: 8 hex digits, as Cisco's
// gateway showed them.
func newXref() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// State returns the session's state.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

func (s *Session) fire(ev sessionEvent) State {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = transition(s.state, ev)
	return s.state
}

// deliver hands an item to the session without blocking; a session whose
// inbox is full is a slow client and is closed (it will re-INVITE and get a
// snapshot), never waited on.
func (s *Session) deliver(it item) {
	select {
	case <-s.done:
		return
	default:
	}
	ok, run := s.inbox.push(it, false)
	if !ok {
		s.g.metrics.slowClients.Inc()
		s.log.Warn().Int("queue", s.inbox.max).Msg("client's event queue is full: ending its session")
		go s.close(CloseSlowClient, true)
		return
	}
	if run {
		s.startDrain(it.kind)
	}
}

// deliverForce hands the session an item its inbox bound must not refuse
// (the sender bounds itself), draining it when nobody is.
func (s *Session) deliverForce(it item) {
	if _, run := s.inbox.push(it, true); run {
		s.startDrain(it.kind)
	}
}

// startDrain drains the inbox on a goroutine of its own (the caller took
// the run token).
func (s *Session) startDrain(kind itemKind) {
	go func() {
		sipstack.GrowStack(int(kind))
		s.drain(nil)
	}()
}

// request queues a SIP request behind whatever the session has to do and
// waits for its answer, draining the inbox itself when nobody else is.
// The reply it returns carries the run token in Sent.
func (s *Session) request(ctx context.Context, req *sipstack.Request) sipstack.Reply {
	p := &pending{req: req, ctx: ctx, reply: make(chan struct{})}
	// Requests are bounded by max_in_flight, so they always fit beside
	// the events.
	if _, run := s.inbox.push(item{kind: itemRequest, p: p}, true); run && s.drain(p) {
		return s.withToken(p)
	}
	// Behind a move, a request waits for it at most the CTI request
	// timeout, then is refused as while the link is down: it never runs
	// on the link the session is leaving.
	var moveWait <-chan time.Time
	if s.moving.Load() {
		t := time.NewTimer(s.g.conf().CTI.RequestTimeout)
		defer t.Stop()
		moveWait = t.C
	}
	var gaveUp sipstack.Reply
	select {
	case <-p.reply:
		return s.withToken(p)
	case <-s.done:
		gaveUp = sipstack.Reply{Status: 481, End: true}
	case <-ctx.Done():
		gaveUp = sipstack.Reply{Status: 503, RetryAfter: time.Second}
	case <-moveWait:
		gaveUp = s.g.outOfService(req)
	}
	if p.state.CompareAndSwap(waiting, abandoned) {
		return gaveUp
	}
	<-p.reply // being answered (bounded by the CTI request timeout): the token comes with it
	return s.withToken(p)
}

// withToken returns p's answer; once it is on the wire, Sent runs what the
// request caused and drains the rest of the inbox.
func (s *Session) withToken(p *pending) sipstack.Reply {
	rep := p.rep
	rep.Sent = func() {
		defer s.drain(nil)
		s.finish(p)
	}
	return rep
}

// drain runs the session's items in order while holding the run token.
// It returns true, still holding the token, when it has answered own (the
// caller's request). Otherwise it returns once it has given the token back
// (inbox empty), handed it to another request's waiter, or found the
// session closed (a closed session keeps the token and never runs again).
func (s *Session) drain(own *pending) bool {
	for {
		select {
		case <-s.done:
			return false
		default:
		}
		it, ok := s.inbox.next()
		if !ok {
			return false
		}
		if it.kind != itemRequest {
			s.process(it)
			continue
		}
		p := it.p
		if !p.state.CompareAndSwap(waiting, started) {
			continue // its waiter already answered 503 or 481: do not act on it
		}
		s.answer(p)
		if p == own {
			return true
		}
		close(p.reply) // the token goes with the answer
		return false
	}
}

// answer handles a request and sets its reply.
func (s *Session) answer(p *pending) {
	defer func() {
		if r := recover(); r != nil {
			// A bug in one session must not take the gateway down: answer
			// the request, end this session.
			s.log.Error().Interface("panic", r).Bytes("stack", debug.Stack()).Msg("panic in session: closing it")
			p.rep = sipstack.Reply{Status: 500, RetryAfter: time.Second}
			p.replay = nil
			go s.close(CloseInternal, true)
		}
	}()
	p.rep = s.handle(p.ctx, p.req, &p.replay)
}

// finish runs what an answered request leaves to do once its response is
// on the wire: end a stale session, or send the replayed call state.
func (s *Session) finish(p *pending) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error().Interface("panic", r).Bytes("stack", debug.Stack()).Msg("panic in session: closing it")
			go s.close(CloseInternal, true)
		}
	}()
	select {
	case <-s.done:
		return
	default:
	}
	if p.rep.End {
		s.close(CloseStale, false)
		return
	}
	for _, r := range p.replay {
		s.sendEvent(r.mon, r.ev)
	}
}

func (s *Session) process(it item) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error().Interface("panic", r).Bytes("stack", debug.Stack()).Msg("panic in session: closing it")
			go s.close(CloseInternal, true)
		}
	}()
	switch it.kind {
	case itemEvent:
		if !it.mon.dead {
			s.sendEvent(it.mon, it.ev)
		}
	case itemMonitorEnded:
		s.mu.Lock() // record() reads the flags off the run token
		it.mon.dead = true
		it.mon.ended = it.mon.ended || !it.lost
		s.mu.Unlock()
		if c := s.g.cluster; c != nil && !it.lost {
			c.markDirty(s) // the switch ended it: the next owner must not re-create it
		}
	case itemLink:
		s.onLink(it.link)
	case itemMove:
		it.move.done <- s.move(it.move)
	case itemAuthority:
		it.result <- s.onAuthority(it.lines)
	case itemResync:
		s.resync()
	case itemAdopted:
		s.attachAdopted(it.adopt)
	}
}

type replayed struct {
	mon *monitorRef
	ev  *csta.Message
}

// onLink applies a state change of the pinned link.
func (s *Session) onLink(ls ctipool.LinkState) {
	if ls.Link != s.link {
		return // news of a link the session has moved away from
	}
	if s.gen == 0 {
		return // adopted while no link was up: its adopt move places it
	}
	prev := s.State()
	var st State
	switch {
	case ls.State != ctipool.StateUp:
		st = s.fire(evLinkDown)
	case ls.Generation == s.gen:
		st = s.fire(evLinkUp)
	case s.g.conf().CTI.Resume():
		st = s.fire(evResume) // the move is queued by the gateway
	default:
		st = s.fire(evNewGen)
	}
	switch st {
	case StateLinkDown:
		if prev != StateLinkDown {
			s.sendRaw(&csta.Message{Kind: csta.KindSystemStatus, SystemStatus: "disabled"})
		}
	case StateStale:
		if s.g.conf().Gateway.StaleBye {
			s.close(CloseStale, true)
		}
	}
}

// sendEvent translates a southbound event for this client and sends it.
func (s *Session) sendEvent(m *monitorRef, ev *csta.Message) {
	if ev.Raw != nil {
		s.passThrough(m, ev)
		return
	}
	out := s.translateEvent(m, ev)
	s.sendRaw(out) // encodes it: nothing keeps it after
	releaseMsg(out)
	s.g.metrics.eventsOut.Inc()
	since(s.g.metrics.eventLatency, ev.Received)
}

func (s *Session) sendRaw(m *csta.Message) {
	body, err := csta.Encode(m, csta.NSEd3)
	if err != nil {
		s.log.Error().Err(err).Str("kind", m.Kind.String()).Msg("cannot encode event")
		return
	}
	s.sendBody(body, m.Kind.String())
}

// sendBody sends a CSTA document (name is its root element) in an INFO.
func (s *Session) sendBody(body []byte, name string) {
	if c := s.g.cluster; c != nil && (s.handingOff.Load() || !c.serving()) {
		// The session is being handed over, or our lease is not sure:
		// another node may serve this dialog now.
		s.g.metrics.fencedDrops.Inc()
		if !s.handingOff.Load() {
			// Held back from a session we keep: it is resynced once
			// serving again. (A handed-off session's new node tells its
			// client; a resync here would reach every session still
			// waiting for its batch of the drain.)
			c.lapsed.Store(true)
		}
		return
	}
	if err := s.dlg.SendInfo(body); err != nil {
		if s.dlg.Ended() {
			s.close(CloseSIP, false)
			return
		}
		// A lost event is lost call state: end the session so the client
		// re-INVITEs and gets the truth from a snapshot.
		s.g.metrics.sendFailed.Inc()
		s.log.Error().Err(err).Str("kind", name).Int("bytes", len(body)).Msg("event INFO could not be sent: ending the session")
		s.close(CloseSendFailed, true)
	}
}

// close ends the session once: monitors released, gateway tables cleaned,
// and, when bye is set, BYE sent to the client. The BYE goes out after the
// once-block: it ends the dialog, whose Ended callback comes back here.
func (s *Session) close(reason CloseReason, bye bool) {
	first := false
	s.once.Do(func() {
		first = true
		s.mu.Lock()
		s.state = transition(s.state, evClose)
		s.reason = reason
		mons := s.monitors
		s.monitors = map[string]*monitorRef{}
		s.mu.Unlock()
		close(s.done)
		for _, m := range mons {
			if m.w != nil {
				m.w.detach(m)
			}
			s.g.metrics.monitors.Dec()
		}
		s.g.forget(s, mons)
		if c := s.g.cluster; c != nil {
			c.ended(s, reason)
		}
		s.g.metrics.sessionsClosed.With(string(reason)).Inc()
		s.log.Info().Str("reason", string(reason)).Dur("age", time.Since(s.created)).Msg("session closed")
	})
	if first && bye {
		s.dlg.Bye(sipstack.EndGatewayBye)
	}
}
