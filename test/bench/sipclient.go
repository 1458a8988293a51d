package main

// A lightweight SIP load generator: raw SIP text over a few TCP connections
// or UDP sockets, the way a proxy (OCS/Lync pool, Kamailio) delivers many
// client dialogs to the gateway. It is deliberately not sipgo: no goroutine
// per message, no transaction objects beyond a small struct, so that it does
// not dominate the machine the gateway is measured on.
//
// One Client owns N connections; each Session (one user, one line, one
// dialog at a time) is bound to one connection. Responses are matched by
// Call-ID and CSeq number. Requests from the gateway (event INFOs, SystemStatus,
// BYE) are counted and answered 200 (INFO only when AnswerEvents is set, as
// Communicator does; sipe never answers).

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const nsEd3 = "http://www.ecma-international.org/standards/ecma-323/csta/ed3"

// ClientOptions configure a Client.
type ClientOptions struct {
	Network      string   // tcp or udp
	Gateway      string   // host:port of the gateway (or proxy)
	Conns        int      // connections / sockets
	LocalIPs     []string // source addresses, round robin over connections
	AnswerEvents bool     // answer the gateway's INFOs 200 (Communicator) or not (sipe)
	Timeout      time.Duration
	Domain       string
}

// Client is the load generator.
type Client struct {
	opt   ClientOptions
	conns []*sipConn

	mu       sync.RWMutex
	byCallID map[string]*Session

	stop chan struct{}
	wg   sync.WaitGroup

	// counters
	EventsRx    atomic.Uint64 // CSTA event INFOs received (any kind)
	SysStatusRx atomic.Uint64 // SystemStatus INFOs received
	ByeRx       atomic.Uint64
	OtherReqRx  atomic.Uint64
	Unmatched   atomic.Uint64 // responses matching no transaction
	Retransmits atomic.Uint64 // our UDP retransmissions
	Timeouts    atomic.Uint64 // transactions without a final answer in time
	ParseErrors atomic.Uint64
	eventKinds  sync.Map // kind → *atomic.Uint64
	OnEvent     func(s *Session, kind string)
	// OnEventXref, when set, is also told the event's monitorCrossRefID.
	OnEventXref  func(s *Session, kind, xref string)
	OnBye        func(s *Session)
	seq          atomic.Uint64
	gatewayHost  string
	gatewayPort  string
	transportTag string // TCP / UDP
}

type sipConn struct {
	c       *Client
	idx     int
	nc      net.Conn
	local   string
	udp     bool
	wmu     sync.Mutex
	pmu     sync.Mutex
	pending map[txKey]*txn
	closed  atomic.Bool
}

type txKey struct {
	callID string
	cseq   uint32
}

type txn struct {
	s        *Session
	method   string
	sent     time.Time
	deadline time.Time
	raw      []byte // kept for UDP retransmission
	nextRetx time.Time
	interval time.Duration
	cb       func(r *Response, rtt time.Duration)
}

// Response is a final response handed to a transaction callback. Body and
// the strings are only valid during the callback.
type Response struct {
	Status int
	Body   []byte
	ToTag  string
	// A 2xx to INVITE through a proxy: its Record-Route values in order and
	// the Contact URI (the dialog's route set and remote target).
	RecordRoute []string
	Target      string
}

// Session is one client: a user with one line and (at most) one dialog.
type Session struct {
	Idx  int
	User string // sip:uN@domain
	Line string // tel:...;phone-context=dialstring
	conn *sipConn

	mu      sync.Mutex
	callID  string
	fromTag string
	toTag   string
	cseq    uint32
	// Through a proxy: the route set (the 2xx's Record-Route reversed) and
	// the remote target its in-dialog requests go to.
	routes   []string
	target   string
	Xref     string
	Signed   bool // INVITE answered 200 and MonitorStart answered
	Dead     bool // dialog ended (481, BYE)
	SignIns  int
	Events   atomic.Uint64
	inflight atomic.Int32
}

// NewClient dials the connections.
func NewClient(opt ClientOptions) (*Client, error) {
	if opt.Conns <= 0 {
		opt.Conns = 4
	}
	if len(opt.LocalIPs) == 0 {
		opt.LocalIPs = []string{"127.0.0.1"}
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 12 * time.Second
	}
	if opt.Domain == "" {
		opt.Domain = "bench.cstagw"
	}
	h, p, err := net.SplitHostPort(opt.Gateway)
	if err != nil {
		return nil, err
	}
	c := &Client{opt: opt, byCallID: map[string]*Session{}, stop: make(chan struct{}), gatewayHost: h, gatewayPort: p}
	c.transportTag = strings.ToUpper(opt.Network)
	for i := 0; i < opt.Conns; i++ {
		lip := opt.LocalIPs[i%len(opt.LocalIPs)]
		var nc net.Conn
		switch opt.Network {
		case "tcp":
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(lip)}, Timeout: 5 * time.Second}
			nc, err = d.Dial("tcp", opt.Gateway)
		case "udp":
			var ra *net.UDPAddr
			ra, err = net.ResolveUDPAddr("udp", opt.Gateway)
			if err == nil {
				var uc *net.UDPConn
				uc, err = net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(lip)}, ra)
				if err == nil {
					_ = uc.SetReadBuffer(8 << 20)
					_ = uc.SetWriteBuffer(8 << 20)
					nc = uc
				}
			}
		default:
			err = fmt.Errorf("network %q: want tcp or udp", opt.Network)
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("connection %d from %s: %w", i, lip, err)
		}
		sc := &sipConn{c: c, idx: i, nc: nc, local: nc.LocalAddr().String(), udp: opt.Network == "udp", pending: map[txKey]*txn{}}
		c.conns = append(c.conns, sc)
		c.wg.Add(2)
		go func() { defer c.wg.Done(); sc.readLoop() }()
		go func() { defer c.wg.Done(); sc.sweep() }()
	}
	return c, nil
}

// Close closes every connection.
func (c *Client) Close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	for _, sc := range c.conns {
		sc.closed.Store(true)
		_ = sc.nc.Close()
	}
	c.wg.Wait()
}

// Pending counts outstanding transactions.
func (c *Client) Pending() int {
	n := 0
	for _, sc := range c.conns {
		sc.pmu.Lock()
		n += len(sc.pending)
		sc.pmu.Unlock()
	}
	return n
}

// EventKinds returns the count of event INFOs by CSTA element name.
func (c *Client) EventKinds() map[string]uint64 {
	out := map[string]uint64{}
	c.eventKinds.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

// NewSession makes session idx bound to a connection (round robin).
func (c *Client) NewSession(idx int, user, line string) *Session {
	return &Session{Idx: idx, User: user, Line: line, conn: c.conns[idx%len(c.conns)]}
}

// UserSessions returns sessions for users u1..uN of the rigs' directory,
// each on its own line.
func (c *Client) UserSessions(n int) []*Session {
	ss := make([]*Session, n)
	for i := range ss {
		ss[i] = c.NewSession(i+1, userURI(i+1), lineURI(i+1))
	}
	return ss
}

func (c *Client) register(callID string, s *Session) {
	c.mu.Lock()
	c.byCallID[callID] = s
	c.mu.Unlock()
}

func (c *Client) unregister(callID string) {
	c.mu.Lock()
	delete(c.byCallID, callID)
	c.mu.Unlock()
}

func (c *Client) lookup(callID string) *Session {
	c.mu.RLock()
	s := c.byCallID[callID]
	c.mu.RUnlock()
	return s
}

// ---- building requests ----

func (c *Client) newToken() string {
	return strconv.FormatUint(c.seq.Add(1), 36) + strconv.FormatUint(rand.Uint64()&0xffffffff, 36)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1536); return &b }}

func (s *Session) build(method string, cseq uint32, branch string, body string, withTo bool) []byte {
	c := s.conn.c
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, method...)
	inDialog := withTo && s.toTag != "" && s.target != ""
	if inDialog {
		// Through a proxy: to the remote target, along the route set.
		b = append(b, ' ')
		b = append(b, s.target...)
	} else {
		b = append(b, " sip:gw@"...)
		b = append(b, c.gatewayHost...)
		b = append(b, ':')
		b = append(b, c.gatewayPort...)
		if !s.conn.udp {
			b = append(b, ";transport=tcp"...)
		}
	}
	b = append(b, " SIP/2.0\r\nVia: SIP/2.0/"...)
	b = append(b, c.transportTag...)
	b = append(b, ' ')
	b = append(b, s.conn.local...)
	b = append(b, ";branch=z9hG4bK"...)
	b = append(b, branch...)
	if s.conn.udp {
		b = append(b, ";rport"...)
	}
	if inDialog {
		for _, r := range s.routes {
			b = append(b, "\r\nRoute: "...)
			b = append(b, r...)
		}
	}
	b = append(b, "\r\nMax-Forwards: 70\r\nFrom: <"...)
	b = append(b, s.User...)
	b = append(b, ">;tag="...)
	b = append(b, s.fromTag...)
	b = append(b, ";epid=bench"...)
	b = append(b, "\r\nTo: <sip:gw@"...)
	b = append(b, c.gatewayHost...)
	b = append(b, ':')
	b = append(b, c.gatewayPort...)
	b = append(b, '>')
	if withTo && s.toTag != "" {
		b = append(b, ";tag="...)
		b = append(b, s.toTag...)
	}
	b = append(b, "\r\nCall-ID: "...)
	b = append(b, s.callID...)
	b = append(b, "\r\nCSeq: "...)
	b = strconv.AppendUint(b, uint64(cseq), 10)
	b = append(b, ' ')
	b = append(b, method...)
	b = append(b, "\r\nContact: <sip:"...)
	b = append(b, contactUser(s.User)...)
	b = append(b, '@')
	b = append(b, s.conn.local...)
	if !s.conn.udp {
		b = append(b, ";transport=tcp"...)
	}
	b = append(b, ">\r\n"...)
	if method == "INVITE" {
		b = append(b, "Supported: timer\r\nUser-Agent: cstagw-bench\r\n"...)
	}
	if body != "" {
		b = append(b, "Content-Disposition: signal;handling=required\r\nContent-Type: application/csta+xml\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	*bp = b
	return b
}

func putBuf(b []byte) {
	if cap(b) > 8192 {
		return
	}
	b = b[:0]
	bufPool.Put(&b)
}

func (sc *sipConn) write(b []byte) error {
	sc.wmu.Lock()
	_, err := sc.nc.Write(b)
	sc.wmu.Unlock()
	return err
}

// send writes a request and registers its transaction.
func (s *Session) send(method string, body string, withTo bool, cb func(*Response, time.Duration)) error {
	s.mu.Lock()
	if method == "INVITE" {
		s.cseq = 1
	} else if method != "ACK" {
		s.cseq++
	}
	cseq := s.cseq
	callID := s.callID
	branch := s.conn.c.newToken()
	raw := s.build(method, cseq, branch, body, method != "INVITE")
	s.mu.Unlock()
	sc := s.conn
	now := time.Now()
	if method != "ACK" {
		t := &txn{s: s, method: method, sent: now, deadline: now.Add(sc.c.opt.Timeout), cb: cb}
		if sc.udp {
			t.raw = append([]byte(nil), raw...)
			t.interval = 500 * time.Millisecond
			t.nextRetx = now.Add(t.interval)
		}
		sc.pmu.Lock()
		sc.pending[txKey{callID, cseq}] = t
		sc.pmu.Unlock()
		s.inflight.Add(1)
	}
	err := sc.write(raw)
	putBuf(raw)
	if err != nil && method != "ACK" {
		sc.pmu.Lock()
		t := sc.pending[txKey{callID, cseq}]
		delete(sc.pending, txKey{callID, cseq})
		sc.pmu.Unlock()
		if t != nil {
			s.inflight.Add(-1)
		}
	}
	return err
}

// ---- session operations ----

func rssBody(line string) string {
	return `<?xml version="1.0"?><RequestSystemStatus xmlns="` + nsEd3 + `"><extensions><privateData><private><lcs:line xmlns:lcs="http://schemas.microsoft.com/Lcs/2005/04/RCCExtension">` + line + `</lcs:line></private></privateData></extensions></RequestSystemStatus>`
}

func monitorStartBody(line string) string {
	return `<?xml version="1.0"?><MonitorStart xmlns="` + nsEd3 + `"><monitorObject><deviceObject>` + line + `</deviceObject></monitorObject></MonitorStart>`
}

// RequestBody returns the INFO body of a PBX-bound request kind.
func RequestBody(kind, line string) string {
	switch kind {
	case "SnapshotDevice":
		return `<?xml version="1.0"?><SnapshotDevice xmlns="` + nsEd3 + `"><snapshotObject>` + line + `</snapshotObject></SnapshotDevice>`
	case "GetForwarding":
		return `<?xml version="1.0"?><GetForwarding xmlns="` + nsEd3 + `"><device>` + line + `</device></GetForwarding>`
	case "GetCSTAFeatures":
		return `<?xml version="1.0"?><GetCSTAFeatures xmlns="` + nsEd3 + `"><extensions><privateData><private><lcs:line xmlns:lcs="http://schemas.microsoft.com/Lcs/2005/04/RCCExtension">` + line + `</lcs:line></private></privateData></extensions></GetCSTAFeatures>`
	}
	return `<?xml version="1.0"?><GetDoNotDisturb xmlns="` + nsEd3 + `"><device>` + line + `</device></GetDoNotDisturb>`
}

// SignInResult says how a sign-in went.
type SignInResult struct {
	Err        error
	Status     int           // the failing SIP status, if any
	InviteRTT  time.Duration // INVITE → 200
	MonitorRTT time.Duration // MonitorStart → 200
}

// SignIn opens a new dialog: INVITE (RequestSystemStatus with lcs:line),
// ACK, MonitorStart. done is called once.
func (s *Session) SignIn(done func(SignInResult)) {
	c := s.conn.c
	s.mu.Lock()
	old := s.callID
	s.callID = "b" + c.newToken() + "@bench"
	s.fromTag = c.newToken()
	s.toTag = ""
	s.Signed, s.Dead = false, false
	s.Xref = ""
	s.SignIns++
	callID := s.callID
	s.mu.Unlock()
	if old != "" {
		c.unregister(old)
	}
	c.register(callID, s)
	err := s.send("INVITE", rssBody(s.Line), false, func(r *Response, rtt time.Duration) {
		if r == nil {
			done(SignInResult{Err: errTimeout, InviteRTT: rtt})
			return
		}
		if r.Status != 200 || !bytes.Contains(r.Body, []byte("normal")) {
			done(SignInResult{Err: fmt.Errorf("INVITE answered %d", r.Status), Status: r.Status, InviteRTT: rtt})
			return
		}
		s.mu.Lock()
		s.toTag = r.ToTag
		s.routes = s.routes[:0]
		for i := len(r.RecordRoute) - 1; i >= 0; i-- {
			s.routes = append(s.routes, r.RecordRoute[i])
		}
		s.target = ""
		if len(s.routes) > 0 {
			s.target = r.Target
		}
		s.mu.Unlock()
		_ = s.send("ACK", "", true, nil)
		irtt := rtt
		err := s.send("INFO", monitorStartBody(s.Line), true, func(r *Response, rtt time.Duration) {
			if r == nil {
				done(SignInResult{Err: errTimeout, InviteRTT: irtt, MonitorRTT: rtt})
				return
			}
			x := between(r.Body, "<monitorCrossRefID>", "</monitorCrossRefID>")
			if r.Status != 200 || x == "" {
				done(SignInResult{Err: fmt.Errorf("MonitorStart answered %d %s", r.Status, trunc(string(r.Body), 120)), Status: r.Status, InviteRTT: irtt, MonitorRTT: rtt})
				return
			}
			s.mu.Lock()
			s.Xref = x
			s.Signed = true
			s.mu.Unlock()
			done(SignInResult{InviteRTT: irtt, MonitorRTT: rtt})
		})
		if err != nil {
			done(SignInResult{Err: err})
		}
	})
	if err != nil {
		done(SignInResult{Err: err})
	}
}

var errTimeout = errors.New("no final response in time")

// Request sends one in-dialog INFO with a CSTA request and reports the final
// response (nil on timeout) and the round trip.
func (s *Session) Request(kind string, cb func(*Response, time.Duration)) error {
	return s.send("INFO", RequestBody(kind, s.Line), true, cb)
}

// Bye ends the dialog (best effort).
func (s *Session) Bye(cb func(*Response, time.Duration)) error {
	return s.send("BYE", "", true, cb)
}

// IsSigned reports whether the session is signed in and monitored.
func (s *Session) IsSigned() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Signed && !s.Dead
}

// Inflight is the number of transactions of the session awaiting an answer.
func (s *Session) Inflight() int { return int(s.inflight.Load()) }

// ---- reading ----

func (sc *sipConn) readLoop() {
	if sc.udp {
		buf := make([]byte, 65536)
		for {
			n, err := sc.nc.Read(buf)
			if err != nil {
				if sc.closed.Load() {
					return
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				// ICMP port unreachable and the like: keep reading.
				if !errors.Is(err, net.ErrClosed) {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				return
			}
			sc.handle(buf[:n])
		}
	}
	br := bufio.NewReaderSize(sc.nc, 256<<10)
	var msg []byte
	for {
		msg = msg[:0]
		clen := -1
		// headers, line by line
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				if !sc.closed.Load() && !errors.Is(err, io.EOF) {
					sc.c.ParseErrors.Add(1)
				}
				return
			}
			if len(msg) == 0 && (len(line) <= 2) {
				continue // keep-alive CRLF
			}
			msg = append(msg, line...)
			if len(line) <= 2 {
				break
			}
			if n, ok := contentLength(line); ok {
				clen = n
			}
		}
		if clen < 0 {
			clen = 0
		}
		if clen > 0 {
			start := len(msg)
			msg = slices.Grow(msg, clen)[:start+clen]
			if _, err := io.ReadFull(br, msg[start:]); err != nil {
				return
			}
		}
		sc.handle(msg)
	}
}

func contentLength(line []byte) (int, bool) {
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return 0, false
	}
	name := bytes.TrimSpace(line[:i])
	if !(len(name) == 1 && (name[0] == 'l' || name[0] == 'L')) && !bytes.EqualFold(name, []byte("Content-Length")) {
		return 0, false
	}
	n, err := strconv.Atoi(string(bytes.TrimSpace(line[i+1:])))
	if err != nil {
		return 0, false
	}
	return n, true
}

// parsed is one SIP message, views into the read buffer.
type parsed struct {
	isResp bool
	status int
	method []byte
	callID []byte
	cseq   uint32
	cmeth  []byte
	toTag  []byte
	vias   [][]byte
	from   []byte
	to     []byte
	cseqH  []byte
	body   []byte
	rr     [][]byte // Record-Route values, in order
	ctURI  []byte   // the Contact's URI
}

func parseMsg(b []byte, p *parsed) bool {
	hEnd := bytes.Index(b, []byte("\r\n\r\n"))
	if hEnd < 0 {
		return false
	}
	p.body = b[hEnd+4:]
	head := b[:hEnd]
	nl := bytes.Index(head, []byte("\r\n"))
	var start []byte
	if nl < 0 {
		start, head = head, nil
	} else {
		start, head = head[:nl], head[nl+2:]
	}
	if bytes.HasPrefix(start, []byte("SIP/2.0 ")) {
		p.isResp = true
		if len(start) < 11 {
			return false
		}
		p.status, _ = strconv.Atoi(string(start[8:11]))
	} else {
		sp := bytes.IndexByte(start, ' ')
		if sp < 0 {
			return false
		}
		p.method = start[:sp]
	}
	p.vias = p.vias[:0]
	p.rr = p.rr[:0]
	for len(head) > 0 {
		var line []byte
		if i := bytes.Index(head, []byte("\r\n")); i >= 0 {
			line, head = head[:i], head[i+2:]
		} else {
			line, head = head, nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		name := bytes.TrimSpace(line[:colon])
		val := bytes.TrimSpace(line[colon+1:])
		switch {
		case eqName(name, "Call-ID", 'i'):
			p.callID = val
		case eqName(name, "CSeq", 0):
			p.cseqH = line
			sp := bytes.IndexByte(val, ' ')
			if sp > 0 {
				n, _ := strconv.ParseUint(string(val[:sp]), 10, 32)
				p.cseq = uint32(n)
				p.cmeth = bytes.TrimSpace(val[sp+1:])
			}
		case eqName(name, "To", 't'):
			p.to = line
			if i := bytes.Index(val, []byte(";tag=")); i >= 0 {
				t := val[i+5:]
				if j := bytes.IndexAny(t, ";> "); j >= 0 {
					t = t[:j]
				}
				p.toTag = t
			}
		case eqName(name, "From", 'f'):
			p.from = line
		case eqName(name, "Via", 'v'):
			p.vias = append(p.vias, line)
		case eqName(name, "Record-Route", 0):
			for _, r := range bytes.Split(val, []byte(">,")) {
				r = bytes.TrimSpace(r)
				if len(r) > 0 && r[len(r)-1] != '>' {
					r = append(r[:len(r):len(r)], '>')
				}
				p.rr = append(p.rr, r)
			}
		case eqName(name, "Contact", 'm'):
			if i := bytes.IndexByte(val, '<'); i >= 0 {
				if j := bytes.IndexByte(val[i:], '>'); j > 0 {
					p.ctURI = val[i+1 : i+j]
				}
			}
		}
	}
	return true
}

func eqName(name []byte, full string, compact byte) bool {
	if compact != 0 && len(name) == 1 {
		return name[0] == compact || name[0] == compact-32
	}
	return len(name) == len(full) && strings.EqualFold(string(name), full)
}

func (sc *sipConn) handle(b []byte) {
	var p parsed
	if !parseMsg(b, &p) {
		sc.c.ParseErrors.Add(1)
		return
	}
	if p.isResp {
		sc.onResponse(&p)
		return
	}
	sc.onRequest(&p)
}

func (sc *sipConn) onResponse(p *parsed) {
	if p.status < 200 {
		return
	}
	key := txKey{string(p.callID), p.cseq}
	sc.pmu.Lock()
	t := sc.pending[key]
	if t != nil && string(p.cmeth) == t.method {
		delete(sc.pending, key)
	} else {
		t = nil
	}
	sc.pmu.Unlock()
	if t == nil {
		// A retransmitted 2xx to INVITE (UDP): ACK it again.
		if string(p.cmeth) == "INVITE" && p.status/100 == 2 {
			if s := sc.c.lookup(string(p.callID)); s != nil {
				_ = s.send("ACK", "", true, nil)
				return
			}
		}
		sc.c.Unmatched.Add(1)
		return
	}
	t.s.inflight.Add(-1)
	rtt := time.Since(t.sent)
	if p.status == 481 {
		t.s.mu.Lock()
		t.s.Dead = true
		t.s.mu.Unlock()
	}
	if t.cb != nil {
		r := &Response{Status: p.status, Body: p.body, ToTag: string(p.toTag)}
		if t.method == "INVITE" && p.status/100 == 2 {
			for _, v := range p.rr {
				r.RecordRoute = append(r.RecordRoute, string(v))
			}
			r.Target = string(p.ctURI)
		}
		t.cb(r, rtt)
	}
}

func (sc *sipConn) onRequest(p *parsed) {
	c := sc.c
	method := string(p.method)
	answer := false
	s := c.lookup(string(p.callID))
	switch method {
	case "INFO":
		kind := rootElement(p.body)
		if kind == "SystemStatus" {
			c.SysStatusRx.Add(1)
		} else {
			c.EventsRx.Add(1)
		}
		v, ok := c.eventKinds.Load(kind)
		if !ok {
			v, _ = c.eventKinds.LoadOrStore(kind, new(atomic.Uint64))
		}
		v.(*atomic.Uint64).Add(1)
		if s != nil {
			s.Events.Add(1)
			if c.OnEvent != nil {
				c.OnEvent(s, kind)
			}
			if c.OnEventXref != nil {
				c.OnEventXref(s, kind, between(p.body, "<monitorCrossRefID>", "</monitorCrossRefID>"))
			}
		}
		answer = c.opt.AnswerEvents
	case "BYE":
		c.ByeRx.Add(1)
		answer = true
		if s != nil {
			s.mu.Lock()
			s.Dead = true
			s.Signed = false
			s.mu.Unlock()
			if c.OnBye != nil {
				c.OnBye(s)
			}
		}
	case "ACK":
		return
	default:
		c.OtherReqRx.Add(1)
		answer = true
	}
	if !answer {
		return
	}
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, "SIP/2.0 200 OK\r\n"...)
	for _, v := range p.vias {
		b = append(b, v...)
		b = append(b, "\r\n"...)
	}
	b = append(b, p.from...)
	b = append(b, "\r\n"...)
	b = append(b, p.to...)
	b = append(b, "\r\nCall-ID: "...)
	b = append(b, p.callID...)
	b = append(b, "\r\n"...)
	b = append(b, p.cseqH...)
	b = append(b, "\r\nContent-Length: 0\r\n\r\n"...)
	_ = sc.write(b)
	*bp = b
	putBuf(b)
}

// rootElement is the name of the document element of a CSTA body.
func rootElement(b []byte) string {
	for {
		i := bytes.IndexByte(b, '<')
		if i < 0 || i+1 >= len(b) {
			return "(none)"
		}
		b = b[i+1:]
		if b[0] == '?' || b[0] == '!' {
			continue
		}
		j := bytes.IndexAny(b, " />")
		if j < 0 {
			return "(none)"
		}
		return string(b[:j])
	}
}

func between(b []byte, open, close string) string {
	i := bytes.Index(b, []byte(open))
	if i < 0 {
		return ""
	}
	rest := b[i+len(open):]
	j := bytes.Index(rest, []byte(close))
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// sweep times transactions out and retransmits UDP requests.
func (sc *sipConn) sweep() {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var expired []*txn
	var retx [][]byte
	for {
		select {
		case <-sc.c.stop:
			return
		case now := <-t.C:
			expired, retx = expired[:0], retx[:0]
			sc.pmu.Lock()
			for k, x := range sc.pending {
				if now.After(x.deadline) {
					delete(sc.pending, k)
					expired = append(expired, x)
					continue
				}
				if x.raw != nil && now.After(x.nextRetx) {
					retx = append(retx, x.raw)
					x.interval *= 2
					if x.interval > 4*time.Second {
						x.interval = 4 * time.Second
					}
					x.nextRetx = now.Add(x.interval)
				}
			}
			sc.pmu.Unlock()
			for _, raw := range retx {
				sc.c.Retransmits.Add(1)
				_ = sc.write(raw)
			}
			for _, x := range expired {
				sc.c.Timeouts.Add(1)
				x.s.inflight.Add(-1)
				if x.cb != nil {
					x.cb(nil, now.Sub(x.sent))
				}
			}
		}
	}
}

// contactUser is the user part of sip:user@domain, for our Contact
// (sip:user@our-address).
func contactUser(uri string) string {
	u := strings.TrimPrefix(uri, "sip:")
	if i := strings.IndexByte(u, '@'); i >= 0 {
		u = u[:i]
	}
	return u
}
