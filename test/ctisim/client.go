package ctisim

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cstagw/cstagw/csta"
)

// client is one TCP connection to a node. It has three goroutines: the
// reader (frames in, decode, count), the processor (requests in arrival
// order, after any delay fault) and the writer (a bounded queue out). The
// switch only ever enqueues to it, without blocking: a client whose queue is
// full is disconnected.
type client struct {
	sim    *Sim
	node   *node
	nc     net.Conn
	id     uint64
	remote string
	fopt   csta.FrameOptions

	out      chan outFrame
	in       chan inFrame
	done     chan struct{}
	procDone chan struct{}
	killOnce sync.Once
	closing  atomic.Bool
	ns       atomic.Pointer[string]

	// inFlight is guarded by node.mu.
	inFlight map[string]int

	mu           sync.Mutex
	session      string
	sessionGen   int
	sessionTimer *time.Timer
	sessionEnd   time.Time
	ids          csta.InvokeIDs
	pending      map[int]time.Time // switch-originated requests awaiting an answer
}

type outFrame struct {
	invoke     int
	msg        *csta.Message
	raw        []byte // a document sent as it is (msg is nil)
	name       string // raw's root element
	ns         string
	closeAfter bool
}

// label names the frame for the counters and the log.
func (f *outFrame) label() string {
	if f.msg == nil {
		return f.name
	}
	return f.msg.Kind.String()
}

type inFrame struct {
	invoke  int
	msg     *csta.Message
	err     error
	at      time.Time
	name    string
	counted bool // counted in flight: it will be answered
	done    bool // answered
}

const unparseable = "(unparseable)"

func (s *Sim) startClient(n *node, nc net.Conn) {
	c := &client{
		sim: s, node: n, nc: nc,
		id:       s.clientSeq.Add(1),
		remote:   nc.RemoteAddr().String(),
		fopt:     s.fopt,
		out:      make(chan outFrame, s.cfg.QueueSize),
		in:       make(chan inFrame, 4096),
		done:     make(chan struct{}),
		procDone: make(chan struct{}),
		inFlight: make(map[string]int),
		pending:  make(map[int]time.Time),
	}
	ns := s.ns
	c.ns.Store(&ns)
	if !n.addClient(c) {
		_ = nc.Close()
		return
	}
	s.logf("node %d: client %d connected from %s", n.idx, c.id, c.remote)
	s.wg.Add(3)
	go c.writeLoop()
	go c.procLoop()
	go c.readLoop()
	if s.cfg.SpeakFirst {
		c.mu.Lock()
		id, err := c.ids.Next(func(id int) bool { _, busy := c.pending[id]; return busy })
		if err == nil {
			c.pending[id] = time.Now()
		}
		c.mu.Unlock()
		if err == nil {
			c.send(outFrame{invoke: id, msg: &csta.Message{Kind: csta.KindSystemStatus, SystemStatus: "normal"}, ns: c.namespace()})
		}
	}
}

func (c *client) namespace() string { return *c.ns.Load() }

// kill closes the connection; every goroutine of the client then ends.
func (c *client) kill(why string) {
	c.killOnce.Do(func() {
		c.sim.logf("node %d: client %d closed: %s", c.node.idx, c.id, why)
		close(c.done)
		_ = c.nc.Close()
	})
}

// Deliver implements Sink: an event for one of the client's monitors.
func (c *client) Deliver(m *csta.Message) {
	c.send(outFrame{invoke: csta.EventInvokeID, msg: m, ns: c.namespace()})
}

// DeliverRaw implements Sink: an event document for one of the client's
// monitors, sent as it is.
func (c *client) DeliverRaw(name string, doc []byte) {
	c.send(outFrame{invoke: csta.EventInvokeID, raw: doc, name: name})
}

// send queues a frame without ever blocking. It reports whether the frame
// was queued.
func (c *client) send(f outFrame) bool {
	if c.closing.Load() {
		return false
	}
	if c.node.isSilent() {
		c.node.countDropped()
		if f.closeAfter {
			c.kill("session ended while silent")
		}
		return false
	}
	select {
	case <-c.done:
		return false
	default:
	}
	select {
	case c.out <- f:
		if f.closeAfter {
			c.closing.Store(true)
		}
		return true
	default:
		c.kill("outbound queue full (client not reading)")
		return false
	}
}

func (c *client) readLoop() {
	defer c.sim.wg.Done()
	why := "closed by peer"
	defer func() {
		c.kill(why)
		<-c.procDone
		c.stopSession()
		c.sim.sw.removeSink(c)
		c.node.removeClient(c)
	}()
	fr := csta.NewFrameReader(c.nc, c.fopt)
	lim := csta.Limits{MaxBytes: max(c.sim.cfg.MaxFrame, csta.DefaultMaxBytes)}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			var fe *csta.FrameError
			switch {
			case errors.As(err, &fe):
				why = "framing error: " + err.Error()
			case errors.Is(err, io.EOF):
			default:
				why = "read: " + err.Error()
			}
			return
		}
		it := inFrame{invoke: f.InvokeID, at: time.Now()}
		it.msg, it.err = csta.DecodeLimits(f.Payload, lim)
		if it.err != nil {
			it.name, it.counted = unparseable, true
		} else {
			it.name = it.msg.Name
			it.counted = expectsAnswer(it.msg)
		}
		c.node.countIn(it.name)
		if it.counted {
			c.node.addInFlight(c, it.name, 1)
		}
		select {
		case c.in <- it:
		case <-c.done:
			return
		}
	}
}

// expectsAnswer reports whether the switch answers a message: requests do;
// responses and events a client sends (or misdirects) do not.
func expectsAnswer(m *csta.Message) bool {
	return m.Kind != csta.KindApplicationSessionTerminated && !m.IsReply() && m.Class() != csta.ClassEvent
}

func (c *client) procLoop() {
	defer c.sim.wg.Done()
	defer close(c.procDone)
	for {
		var it inFrame
		select {
		case <-c.done:
			return
		case it = <-c.in:
		}
		if d := c.node.currentDelay(); d > 0 {
			if wait := time.Until(it.at.Add(d)); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-c.done:
					t.Stop()
					return
				}
			}
		}
		if c.node.isSilent() {
			// A hung server: the request is swallowed, never answered.
			if it.counted {
				c.node.addInFlight(c, it.name, -1)
			}
			continue
		}
		c.process(&it)
	}
}

func (c *client) reply(it *inFrame, m *csta.Message) { c.replyOpt(it, m, false) }

func (c *client) replyOpt(it *inFrame, m *csta.Message, closeAfter bool) {
	if it.counted && !it.done {
		it.done = true
		c.node.addInFlight(c, it.name, -1)
	}
	c.send(outFrame{invoke: it.invoke, msg: m, ns: c.namespace(), closeAfter: closeAfter})
}

func (c *client) hasSession() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session != ""
}

// process answers one inbound message.
func (c *client) process(it *inFrame) {
	if it.err != nil {
		c.reply(it, csta.ErrorMessage(csta.CodeGeneric))
		return
	}
	m := it.msg
	if !it.counted {
		if m.Kind == csta.KindSystemStatusResponse {
			c.mu.Lock()
			delete(c.pending, it.invoke)
			if c.fopt.Profile == csta.ProfileB {
				clear(c.pending)
			}
			c.mu.Unlock()
		}
		return
	}
	switch m.Kind {
	case csta.KindStartApplicationSession:
		c.startSession(it)
		return
	case csta.KindResetApplicationSessionTimer:
		c.resetSession(it)
		return
	case csta.KindStopApplicationSession:
		c.stopSessionRequest(it)
		return
	case csta.KindSystemStatus:
		c.reply(it, &csta.Message{Kind: csta.KindSystemStatusResponse})
		return
	}
	if c.sim.cfg.RequireSession && !c.hasSession() {
		c.reply(it, csta.ErrorMessage(codeSecurityViolation))
		return
	}
	switch m.Kind {
	case csta.KindRequestSystemStatus:
		c.reply(it, &csta.Message{Kind: csta.KindRequestSystemStatusResponse, SystemStatus: "normal"})
	case csta.KindSystemRegister:
		id := "reg" + strconv.FormatUint(uint64(c.sim.regSeq.Add(1)), 10)
		c.reply(it, &csta.Message{Kind: csta.KindSystemRegisterResponse, SysStatRegisterID: id})
	case csta.KindGetCSTAFeatures:
		c.reply(it, features())
	default:
		if m.Kind == csta.KindUnknown || m.Kind.Class() != csta.ClassRequest {
			c.reply(it, csta.ErrorMessage(csta.CodeServiceNotSupported))
			return
		}
		c.sim.sw.handle(m, c, func(r *csta.Message) { c.reply(it, r) })
	}
}

// ---- ECMA-354 application sessions ----

func negResponse(k csta.Kind, reason string) *csta.Message {
	return &csta.Message{Kind: k, Reason: reason}
}

// wireSeconds renders a duration as the whole seconds ECMA-354 carries
// (at least 1: sub-second durations exist only in tests).
func wireSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// sessionLength is min(requested, max); no request means the maximum.
func (c *client) sessionLength(requested int) time.Duration {
	maxD := c.sim.cfg.MaxSessionDuration
	if requested <= 0 {
		return maxD
	}
	return min(time.Duration(requested)*time.Second, maxD)
}

func (c *client) startSession(it *inFrame) {
	m := it.msg
	const neg = csta.KindStartApplicationSessionNegResponse
	if c.hasSession() {
		c.reply(it, negResponse(neg, "invalidApplicationInfo"))
		return
	}
	if c.sim.loginSet {
		if m.LoginUser != c.sim.loginUser || m.LoginPassword != c.sim.loginPass {
			c.replyOpt(it, negResponse(neg, "invalidApplicationInfo"), true)
			return
		}
	}
	ns := ""
	for _, v := range m.ProtocolVersions {
		if ed := csta.Edition(v); ed >= 3 && ed <= 6 {
			ns = strings.TrimSpace(v)
			break
		}
	}
	if len(m.ProtocolVersions) == 0 {
		ns = c.sim.ns
	}
	if ns == "" {
		c.reply(it, negResponse(neg, "requestedProtocolVersionNotSupported"))
		return
	}
	d := c.sessionLength(m.SessionDuration)
	id := mint(c.sim.sessSeq.Add(1), 0x2545F491, c.sim.sw.salt)
	c.mu.Lock()
	c.session = id
	c.sessionGen++
	c.armSessionLocked(d)
	c.mu.Unlock()
	c.reply(it, &csta.Message{Kind: csta.KindStartApplicationSessionPosResponse, SessionID: id, ProtocolVersion: ns, SessionDuration: wireSeconds(d)})
	c.ns.Store(&ns)
}

func (c *client) armSessionLocked(d time.Duration) {
	if c.sessionTimer != nil {
		c.sessionTimer.Stop()
	}
	gen := c.sessionGen
	c.sessionEnd = time.Now().Add(d)
	c.sessionTimer = time.AfterFunc(d, func() { c.expireSession(gen) })
}

func (c *client) expireSession(gen int) {
	c.mu.Lock()
	if gen != c.sessionGen || c.session == "" {
		c.mu.Unlock()
		return
	}
	id := c.session
	c.session = ""
	c.sessionTimer = nil
	c.mu.Unlock()
	select {
	case <-c.done:
		return
	default:
	}
	c.sim.logf("node %d: client %d: session %s expired", c.node.idx, c.id, id)
	m := &csta.Message{Kind: csta.KindApplicationSessionTerminated, SessionID: id, Reason: "sessionTimerExpired"}
	if !c.send(outFrame{invoke: csta.EventInvokeID, msg: m, closeAfter: true}) {
		c.kill("session expired")
	}
}

// checkSession matches a request's sessionID with the connection's session.
func (c *client) checkSession(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session != "" && strings.TrimSpace(id) == c.session
}

func (c *client) resetSession(it *inFrame) {
	if !c.checkSession(it.msg.SessionID) {
		c.reply(it, negResponse(csta.KindResetApplicationSessionTimerNegResponse, "invalidSessionID"))
		return
	}
	d := c.sessionLength(it.msg.SessionDuration)
	c.mu.Lock()
	c.sessionGen++
	c.armSessionLocked(d)
	c.mu.Unlock()
	c.reply(it, &csta.Message{Kind: csta.KindResetApplicationSessionTimerPosResponse, SessionDuration: wireSeconds(d)})
}

func (c *client) stopSessionRequest(it *inFrame) {
	if !c.checkSession(it.msg.SessionID) {
		c.reply(it, negResponse(csta.KindStopApplicationSessionNegResponse, "invalidSessionID"))
		return
	}
	c.stopSession()
	c.replyOpt(it, &csta.Message{Kind: csta.KindStopApplicationSessionPosResponse}, true)
}

func (c *client) stopSession() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessionTimer != nil {
		c.sessionTimer.Stop()
		c.sessionTimer = nil
	}
	c.session = ""
	c.sessionGen++
}

// ---- writer ----

func (c *client) writeLoop() {
	defer c.sim.wg.Done()
	var frame []byte
	for {
		var f outFrame
		select {
		case <-c.done:
			return
		case f = <-c.out:
		}
		var err error
		if f.raw != nil {
			frame, err = csta.AppendFrame(frame[:0], f.invoke, f.raw, c.fopt)
		} else {
			frame, err = csta.AppendFrameWith(frame[:0], f.invoke, c.fopt, func(b []byte) ([]byte, error) { return csta.AppendEncode(b, f.msg, f.ns) })
		}
		if err != nil {
			// Nothing the switch builds should fail to encode; if a frame is
			// over the limit the client would be out of step, so close.
			c.kill("cannot frame " + f.label() + ": " + err.Error())
			return
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.sim.cfg.WriteTimeout))
		if _, err := c.nc.Write(frame); err != nil {
			c.kill("write: " + err.Error())
			return
		}
		c.node.countOut(f.label())
		if f.closeAfter {
			if tc, ok := c.nc.(interface{ CloseWrite() error }); ok {
				_ = tc.CloseWrite()
			}
			c.kill("session ended")
			return
		}
	}
}

func (c *client) state() ClientState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := ClientState{ID: c.id, Remote: c.remote, Namespace: c.namespace(), Session: c.session,
		Queued: len(c.out), AwaitingSystemStatus: len(c.pending) > 0}
	if c.session != "" {
		st.SessionEnd = rfc3339(c.sessionEnd)
	}
	return st
}
