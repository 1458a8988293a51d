package gateway

import (
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
)

// transition is the session state machine, the only place states change.
func transition(st State, ev sessionEvent) State {
	if st == StateClosed || ev == evClose {
		return StateClosed
	}
	switch st {
	case StateActive:
		switch ev {
		case evLinkDown:
			return StateLinkDown
		case evNewGen:
			return StateStale
		}
	case StateLinkDown:
		switch ev {
		case evLinkUp:
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
)

type itemKind int

const (
	itemRequest itemKind = iota
	itemEvent
	itemMonitorEnded
	itemLink
)

// item is one thing for the session goroutine to do.
type item struct {
	kind  itemKind
	req   *sipstack.Request
	reply chan sipstack.Reply
	ev    *csta.Message
	mon   *monitorRef
	link  ctipool.LinkState
}

// monitorRef is one northbound monitor of a session.
type monitorRef struct {
	s        *Session
	xref     string // minted by the gateway, shown to the client
	line     *Line
	lineText string // the client's own spelling of the line
	w        *deviceWatch
	dead     bool
}

// Session is one client's RCC dialog, pinned to one link generation. Its
// goroutine owns everything below mu; others reach it through the inbox.
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

	mu       sync.Mutex
	state    State
	reason   CloseReason
	monitors map[string]*monitorRef // by northbound monitorCrossRefID
	told     bool                   // SystemStatus disabled sent for this outage
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
	if !s.inbox.push(it) {
		s.g.metrics.slowClients.Inc()
		s.log.Warn().Int("queue", s.inbox.max).Msg("client's event queue is full: ending its session")
		go s.close(CloseSlowClient, true)
	}
}

// run is the session goroutine.
func (s *Session) run() {
	for {
		select {
		case <-s.done:
			return
		case <-s.inbox.signal:
			for {
				it, ok := s.inbox.pop()
				if !ok {
					break
				}
				s.process(it)
				select {
				case <-s.done:
					return
				default:
				}
			}
		}
	}
}

func (s *Session) process(it item) {
	defer func() {
		if r := recover(); r != nil {
			// A bug in one session must not take the gateway down: answer
			// the request (if that is what failed), end this session.
			s.log.Error().Interface("panic", r).Bytes("stack", debug.Stack()).Msg("panic in session: closing it")
			if it.kind == itemRequest {
				select {
				case it.reply <- sipstack.Reply{Status: 500, RetryAfter: time.Second}:
				default:
				}
			}
			go s.close(CloseInternal, true)
		}
	}()
	switch it.kind {
	case itemRequest:
		sent := make(chan struct{})
		var replay []*replayed
		rep := s.handle(it.req, &replay)
		rep.Sent = func() { close(sent) }
		it.reply <- rep
		// Hold everything else (events it caused, replays) until the
		// response is on the wire (protocol.md §1.4).
		t := time.NewTimer(2 * time.Second)
		select {
		case <-sent:
		case <-t.C:
		case <-s.done:
			t.Stop()
			return
		}
		t.Stop()
		if rep.End {
			s.close(CloseStale, false)
			return
		}
		for _, r := range replay {
			s.sendEvent(r.mon, r.ev)
		}
	case itemEvent:
		if !it.mon.dead {
			s.sendEvent(it.mon, it.ev)
		}
	case itemMonitorEnded:
		it.mon.dead = true
	case itemLink:
		s.onLink(it.link)
	}
}

type replayed struct {
	mon *monitorRef
	ev  *csta.Message
}

// onLink applies a state change of the pinned link.
func (s *Session) onLink(ls ctipool.LinkState) {
	var st State
	switch {
	case ls.State != ctipool.StateUp:
		st = s.fire(evLinkDown)
	case ls.Generation == s.gen:
		st = s.fire(evLinkUp)
	default:
		st = s.fire(evNewGen)
	}
	switch st {
	case StateLinkDown:
		s.mu.Lock()
		tell := !s.told
		s.told = true
		s.mu.Unlock()
		if tell {
			s.sendRaw(&csta.Message{Kind: csta.KindSystemStatus, SystemStatus: "disabled"})
		}
	case StateStale:
		if s.g.cfg.Gateway.StaleBye {
			s.close(CloseStale, true)
		}
	}
}

// sendEvent translates a southbound event for this client and sends it.
func (s *Session) sendEvent(m *monitorRef, ev *csta.Message) {
	out := s.translateEvent(m, ev)
	s.sendRaw(out)
	s.g.metrics.eventsOut.Inc()
}

func (s *Session) sendRaw(m *csta.Message) {
	body, err := csta.Encode(m, csta.NSEd3)
	if err != nil {
		s.log.Error().Err(err).Str("kind", m.Kind.String()).Msg("cannot encode event")
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
		s.log.Error().Err(err).Str("kind", m.Kind.String()).Int("bytes", len(body)).Msg("event INFO could not be sent: ending the session")
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
		}
		s.g.forget(s, mons)
		s.g.metrics.sessionsClosed.With(string(reason)).Inc()
		s.log.Info().Str("reason", string(reason)).Dur("age", time.Since(s.created)).Msg("session closed")
	})
	if first && bye {
		s.dlg.Bye(sipstack.EndGatewayBye)
	}
}
