package ctipool

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/cstagw/cstagw/csta"
)

// conn is one generation of a link: one TCP/TLS connection, one reader, a
// bounded send queue and the requests outstanding on it. When it dies every
// outstanding request fails at once and every monitor ends.
type conn struct {
	link *Link
	nc   net.Conn
	gen  uint64
	opts csta.FrameOptions
	log  zerolog.Logger
	done chan struct{} // closed when the connection is dead

	// The send queue has no goroutine of its own: whoever queues a frame
	// while nobody is writing takes the write token and writes, together,
	// every frame queued meanwhile (one syscall for a burst), so a request
	// costs no wake-up of a writer.
	wmu     sync.Mutex
	wq      [][]byte
	spare   [][]byte
	writing bool
	bw      *bufio.Writer // the token holder's

	ns        string // CSTA namespace in use (negotiated)
	sessionID string
	sessDur   atomic.Int64 // actual session duration, nanoseconds

	lastRx    atomic.Int64 // unix nanoseconds of the last frame received
	rtt       atomic.Int64 // last heartbeat round trip, nanoseconds
	missed    atomic.Int32 // heartbeat probes sent without an answer yet
	probing   atomic.Bool
	resetting atomic.Bool
	lastReset atomic.Int64

	budget chan struct{} // admission budget for MonitorStart/SnapshotDevice
	limits csta.Limits   // for southbound documents: up to a frame, more elements than a SIP body

	mu          sync.Mutex
	dead        bool
	deadErr     error
	ids         csta.InvokeIDs
	outstanding map[int]*pending
	fifo        []fifoEntry // Profile B: requests in send order (no ids on the wire)
	overload    chan struct{}
	mons        monitorTable
	unknownXref map[string]struct{}
}

// fifoEntry is a Profile B request waiting for its answer.
type fifoEntry struct {
	id   int
	kind csta.Kind
}

type pending struct {
	ch chan reply
	// release frees the request's admission budget place (MonitorStart,
	// SnapshotDevice): when the switch answers, when the link dies, or a
	// request timeout after the caller gave up, never merely because the
	// caller gave up, so the switch never has more outstanding than the
	// budget.
	release func()
}

type reply struct {
	m   *csta.Message
	err error
}

func newConn(l *Link, nc net.Conn, opts csta.FrameOptions) *conn {
	c := &conn{
		link:        l,
		nc:          nc,
		opts:        opts,
		log:         l.log,
		bw:          bufio.NewWriterSize(nc, 32<<10),
		done:        make(chan struct{}),
		budget:      make(chan struct{}, l.conf().AdmissionBudget),
		outstanding: make(map[int]*pending),
		mons:        newMonitorTable(),
		unknownXref: make(map[string]struct{}),
		ns:          l.lc.ProtocolVersions[0],
		limits:      csta.Limits{MaxBytes: l.conf().MaxFrame, MaxElements: 16 * csta.DefaultMaxElements},
	}
	c.lastRx.Store(time.Now().UnixNano())
	c.lastReset.Store(time.Now().UnixNano())
	return c
}

// start launches the reader goroutine.
func (c *conn) start(wg *sync.WaitGroup) {
	wg.Add(1)
	go func() { defer wg.Done(); c.readLoop() }()
}

// fail marks the connection dead (once), closes the socket, fails every
// outstanding request and ends every monitor.
func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	c.dead = true
	c.deadErr = err
	out := c.outstanding
	c.outstanding = map[int]*pending{}
	c.fifo = nil
	mons := c.mons.takeAll()
	c.mu.Unlock()

	close(c.done)
	_ = c.nc.Close()
	linkErr := fmt.Errorf("link %s: %w (%v)", c.link.lc.Name, ErrLinkDown, err)
	for _, p := range out {
		if p.release != nil {
			p.release()
		}
		p.ch <- reply{err: linkErr}
	}
	for _, m := range mons {
		m.end(linkErr)
	}
}

func (c *conn) isDead() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// enqueue queues a frame; ok is false when the queue is full. write is
// true when the caller took the write token and must call flush.
func (c *conn) enqueue(f []byte) (ok, write bool) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.wq) >= c.link.conf().SendQueue {
		return false, false
	}
	c.wq = append(c.wq, f)
	if c.writing {
		return true, false
	}
	c.writing = true
	return true, true
}

// flush writes, as the token holder, what is queued. A requester (once)
// writes one batch, its own frame in it, and hands the token to a
// goroutine of its own if more has queued meanwhile, so that a slow reader
// at the far end never holds one caller writing everybody's frames; the
// background writer (once false) goes on until the queue is empty, then
// gives the token back. A write error or a peer that does not read within
// write_timeout kills the connection.
func (c *conn) flush(once bool) {
	defer func() {
		if r := recover(); r != nil {
			c.fail(fmt.Errorf("write: panic: %v", r)) // keeps the token: nothing writes on it again
		}
	}()
	for {
		c.wmu.Lock()
		batch := c.wq
		if len(batch) == 0 {
			c.writing = false
			c.wmu.Unlock()
			return
		}
		c.wq, c.spare = c.spare[:0], nil
		c.wmu.Unlock()

		err := c.nc.SetWriteDeadline(time.Now().Add(c.link.conf().WriteTimeout))
		for i, f := range batch {
			if err == nil {
				_, err = c.bw.Write(f)
			}
			putFrameBuf(f)
			batch[i] = nil
		}
		if err == nil {
			err = c.bw.Flush()
		}
		if err != nil {
			c.fail(fmt.Errorf("write: %w", err))
			// Dead: drop what is queued (its requests failed with the
			// connection) and keep the token, so nothing writes again.
			c.wmu.Lock()
			for _, f := range c.wq {
				putFrameBuf(f)
			}
			c.wq = nil
			c.wmu.Unlock()
			return
		}
		c.wmu.Lock()
		if cap(batch) <= 256 {
			c.spare = batch[:0]
		}
		more := len(c.wq) > 0
		if !more {
			c.writing = false
		}
		c.wmu.Unlock()
		if !more {
			return
		}
		if once {
			go c.flush(false)
			return
		}
	}
}

func (c *conn) readLoop() {
	fr := csta.NewFrameReader(c.nc, c.opts)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			var fe *csta.FrameError
			if errors.As(err, &fe) {
				err = fmt.Errorf("%w: %v", ErrProtocol, err)
			}
			c.fail(err)
			return
		}
		c.lastRx.Store(time.Now().UnixNano())
		c.missed.Store(0)
		m, err := csta.DecodeLimits(f.Payload, c.limits)
		if err != nil {
			c.log.Warn().Err(err).Int("invoke_id", f.InvokeID).Msg("undecodable CSTA frame from the CTI server dropped")
			undecodable := fmt.Errorf("%w: undecodable response: %v", ErrProtocol, err)
			switch {
			case c.opts.Profile == csta.ProfileB && looksLikeReply(f.Payload):
				// No invoke ids: it answered the oldest request; popping it
				// keeps the later replies matched to their requests.
				c.complete(-1, nil, undecodable)
			case f.InvokeID >= 0 && f.InvokeID != csta.EventInvokeID:
				// If it answered one of ours, do not leave the caller waiting.
				c.complete(f.InvokeID, nil, undecodable)
			}
			continue
		}
		c.safeDispatch(f.InvokeID, m)
	}
}

// looksLikeReply tells, from the root element's name alone, whether an
// undecodable document was a response or an error (…Response,
// CSTAErrorCode) rather than an event or a request of the switch.
func looksLikeReply(doc []byte) bool {
	i := 0
	for {
		j := bytes.IndexByte(doc[i:], '<')
		if j < 0 || i+j+1 >= len(doc) {
			return false
		}
		i += j + 1
		if doc[i] != '?' && doc[i] != '!' {
			break
		}
	}
	end := i
	for end < len(doc) && !strings.ContainsRune(" \t\r\n/>", rune(doc[end])) {
		end++
	}
	name := string(doc[i:end])
	if k := strings.LastIndexByte(name, ':'); k >= 0 {
		name = name[k+1:]
	}
	return strings.HasSuffix(name, "Response") || name == "CSTAErrorCode"
}

// safeDispatch keeps a bug in one message's handling (ours or a
// subscriber's) from killing the reader and with it every session on the
// link.
func (c *conn) safeDispatch(id int, m *csta.Message) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error().Interface("panic", r).Str("kind", m.Name).Int("invoke_id", id).
				Bytes("stack", debug.Stack()).Msg("panic while dispatching a CTI message: dropped")
		}
	}()
	c.dispatch(id, m)
}

// dispatch handles one message from the switch. Events, modelled or not,
// are routed to their monitor and never answered; requests of the switch are
// answered (serviceNotSupported when not served); replies complete ours.
func (c *conn) dispatch(id int, m *csta.Message) {
	switch {
	case m.IsReply():
		var err error
		switch {
		case m.Kind == csta.KindCSTAErrorCode:
			err = &csta.Error{Code: m.Error, Detail: "from the CTI server"}
		case m.Kind == csta.KindStartApplicationSessionNegResponse ||
			m.Kind == csta.KindStopApplicationSessionNegResponse ||
			m.Kind == csta.KindResetApplicationSessionTimerNegResponse:
			err = fmt.Errorf("%w: %s %s", ErrSessionRefused, m.Kind, m.Reason)
		}
		c.complete(id, m, err)
	case m.Class() == csta.ClassEvent:
		c.routeEvent(m)
	case m.Kind == csta.KindSystemStatus:
		c.sendReply(id, &csta.Message{Kind: csta.KindSystemStatusResponse})
		c.systemStatus(m.SystemStatus)
	case m.Kind == csta.KindRequestSystemStatus:
		c.sendReply(id, &csta.Message{Kind: csta.KindRequestSystemStatusResponse, SystemStatus: "normal"})
	case m.Kind == csta.KindApplicationSessionTerminated:
		c.fail(fmt.Errorf("%w: %s", ErrSessionTerminated, m.Reason))
	case id == csta.EventInvokeID:
		// The event invoke id marks an unsolicited message (docs/wire.md
		// §2.4) even when its root does not read as an event: nothing
		// waits for an answer, and the switch would take one for the
		// reply to a request it never made.
		c.log.Debug().Str("kind", m.Name).Msg("unsolicited message from the CTI server ignored")
	default:
		// A request from the switch we do not serve (route requests,
		// escape services...): say so rather than leave it hanging.
		c.log.Debug().Str("kind", m.Name).Int("invoke_id", id).Msg("unsupported request from the CTI server")
		c.sendReply(id, csta.ErrorMessage(csta.CodeServiceNotSupported))
	}
}

// systemStatus applies a status the switch reported.
func (c *conn) systemStatus(s string) {
	switch s {
	case "disabled":
		c.fail(ErrSystemDisabled)
	case "overloadReached", "overloadImminent":
		c.mu.Lock()
		if c.overload == nil {
			c.overload = make(chan struct{})
		}
		c.mu.Unlock()
	case "overloadRelieved", "normal", "enabled":
		c.mu.Lock()
		if c.overload != nil {
			close(c.overload)
			c.overload = nil
		}
		c.mu.Unlock()
		if s == "normal" {
			return
		}
	case "messagesLost":
		if fn := c.link.pool.opts.OnResync; fn != nil {
			fn(c.link, c.gen)
		}
	}
}

func (c *conn) complete(id int, m *csta.Message, err error) {
	c.mu.Lock()
	var skipped []*pending
	if c.opts.Profile == csta.ProfileB {
		// No invoke ids on the wire: replies come in request order. A
		// reply answers the oldest request of a kind it can answer;
		// requests before it that the switch skipped are failed, so one
		// unanswered request does not shift every later reply to the
		// wrong caller. An undecodable reply takes the oldest.
		at := 0
		if m != nil {
			at = -1
			for i, e := range c.fifo {
				if csta.Answers(e.kind, m.Kind) {
					at = i
					break
				}
			}
		}
		if len(c.fifo) == 0 || at < 0 {
			c.mu.Unlock()
			if m != nil {
				c.log.Warn().Str("kind", m.Name).Msg("CTI reply that answers no outstanding request dropped")
			}
			return
		}
		for _, e := range c.fifo[:at] {
			if p := c.outstanding[e.id]; p != nil {
				skipped = append(skipped, p)
				delete(c.outstanding, e.id)
			}
		}
		id = c.fifo[at].id
		c.fifo = c.fifo[at+1:]
	}
	p := c.outstanding[id]
	delete(c.outstanding, id)
	c.mu.Unlock()
	for _, s := range skipped {
		if s.release != nil {
			s.release()
		}
		s.ch <- reply{err: fmt.Errorf("%w: the switch answered a later request first (Profile B, no invoke ids)", ErrProtocol)}
	}
	if p == nil {
		if m != nil {
			c.log.Debug().Int("invoke_id", id).Str("kind", m.Name).Msg("late or unknown CTI response dropped")
		}
		return
	}
	if p.release != nil {
		p.release()
	}
	p.ch <- reply{m: m, err: err}
}

// sendReply answers a request of the switch with the same invoke id.
func (c *conn) sendReply(id int, m *csta.Message) {
	f, err := c.frame(id, m)
	if err != nil {
		c.log.Error().Err(err).Msg("cannot encode reply to the CTI server")
		return
	}
	ok, write := c.enqueue(f)
	if !ok {
		putFrameBuf(f)
		c.fail(ErrQueueFull)
		return
	}
	if write {
		go c.flush(false) // the reader never blocks on a write
	}
}

// frame encodes m as one wire frame with invoke id id, straight into a
// pooled buffer.
func (c *conn) frame(id int, m *csta.Message) ([]byte, error) {
	return csta.AppendFrameWith(getFrameBuf(), id, c.opts, func(b []byte) ([]byte, error) {
		return csta.AppendEncode(b, m, c.ns)
	})
}

// request sends m and waits for its reply, the request timeout, ctx or the
// connection's death, whichever comes first.
func (c *conn) request(ctx context.Context, m *csta.Message) (*csta.Message, error) {
	var release func()
	if m.Kind == csta.KindMonitorStart || m.Kind == csta.KindSnapshotDevice {
		if err := c.admit(ctx); err != nil {
			return nil, err
		}
		var once sync.Once
		release = func() { once.Do(func() { <-c.budget }) }
	}
	fail := func(err error) (*csta.Message, error) {
		if release != nil {
			release()
		}
		return nil, err
	}
	p := &pending{ch: make(chan reply, 1), release: release}
	c.mu.Lock()
	if c.dead {
		err := c.deadErr
		c.mu.Unlock()
		return fail(fmt.Errorf("link %s: %w (%v)", c.link.lc.Name, ErrLinkDown, err))
	}
	id, err := c.ids.Next(func(id int) bool { _, ok := c.outstanding[id]; return ok })
	if err != nil {
		c.mu.Unlock()
		return fail(fmt.Errorf("link %s: %w", c.link.lc.Name, ErrQueueFull))
	}
	f, err := c.frame(id, m)
	if err != nil {
		c.mu.Unlock()
		return fail(err)
	}
	// Enqueue under the lock so that Profile B's fifo order is the wire
	// order.
	ok, write := c.enqueue(f)
	if !ok {
		c.mu.Unlock()
		putFrameBuf(f)
		return fail(fmt.Errorf("link %s: %w", c.link.lc.Name, ErrQueueFull))
	}
	c.outstanding[id] = p
	if c.opts.Profile == csta.ProfileB {
		c.fifo = append(c.fifo, fifoEntry{id: id, kind: m.Kind})
	}
	c.mu.Unlock()
	if write {
		c.flush(true)
	}

	t := time.NewTimer(c.link.conf().RequestTimeout)
	defer t.Stop()
	select {
	case r := <-p.ch:
		return r.m, r.err
	case <-t.C:
		c.abandon(id, p)
		return nil, fmt.Errorf("link %s: %s invoke %04d: %w", c.link.lc.Name, m.Kind, id, ErrTimeout)
	case <-ctx.Done():
		c.abandon(id, p)
		return nil, ctx.Err()
	}
}

// abandon handles a request whose caller gave up. Without a budget place it
// is forgotten at once (a late answer is logged and dropped). With one, it
// stays outstanding so that a late answer frees the place, for one more
// request timeout at most.
func (c *conn) abandon(id int, p *pending) {
	if p.release == nil {
		c.forget(id, p)
		return
	}
	time.AfterFunc(c.link.conf().RequestTimeout, func() {
		c.forget(id, p)
		p.release()
	})
}

// forget drops an outstanding request whose caller gave up; a late answer
// is then logged and dropped. The entry goes only if it is still p's: once
// a late answer freed the id, a newer request may hold it.
func (c *conn) forget(id int, p *pending) {
	c.mu.Lock()
	if c.outstanding[id] == p {
		delete(c.outstanding, id)
	}
	c.mu.Unlock()
}

// admit waits for a place in the admission budget (and for the switch to
// leave overload).
func (c *conn) admit(ctx context.Context) error {
	for {
		c.mu.Lock()
		ov := c.overload
		c.mu.Unlock()
		if ov == nil {
			break
		}
		select {
		case <-ov:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return fmt.Errorf("link %s: %w", c.link.lc.Name, ErrLinkDown)
		}
	}
	select {
	case c.budget <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return fmt.Errorf("link %s: %w", c.link.lc.Name, ErrLinkDown)
	}
}

func (c *conn) outstandingCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.outstanding)
}

var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func getFrameBuf() []byte { return (*frameBufs.Get().(*[]byte))[:0] }

func putFrameBuf(b []byte) {
	if cap(b) > 64<<10 {
		return
	}
	b = b[:0]
	frameBufs.Put(&b)
}
