package gateway_test

// A small RCC test client on sipgo: it plays the part of an Office
// Communicator / pidgin-sipe endpoint (or of the OCS proxy in front of one)
// toward the gateway. One sipClient is one SIP user agent with one transport
// (UDP or TCP on 127.0.0.1, ephemeral port); it may hold several dialogs, and
// over TCP they all share the one connection the client opened, as a proxy's
// would.
//
// Everything the gateway sends in a dialog (event INFOs, BYE) and the
// responses to the client's own INFOs are recorded in wire order by a hook on
// the transport layer, so tests can assert ordering ("events after the 200
// OK") without depending on goroutine scheduling.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
)

const (
	ctCSTA       = "application/csta+xml"
	disposition  = "signal;handling=required"
	waitLong     = 10 * time.Second
	pollInterval = 5 * time.Millisecond
)

// sipClient is one SIP user agent talking to the gateway.
type sipClient struct {
	t       testing.TB
	network string // "udp" or "tcp"
	gwAddr  string // the gateway's listener for that transport
	laddr   string // our listener
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	cli     *sipgo.Client
	closer  func()

	mu      sync.Mutex
	dialogs map[string]*dialog // by Call-ID
	seen    map[string]bool    // incoming requests already logged (UDP retransmissions)
	closed  bool
	// handlers tracks our request handlers, so Close returns only after
	// their writes (ordering them before anything the test does next).
	handlers sync.WaitGroup
	// problems seen on the wire that break the protocol whatever the test
	// checks; reported when the client closes.
	problems []string
}

var emptyDevID = regexp.MustCompile(`<deviceIdentifier\s*/>|<deviceIdentifier>\s*</deviceIdentifier>`)

func (c *sipClient) flag(format string, args ...any) {
	c.mu.Lock()
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
	c.mu.Unlock()
}

// newClient starts a client on network ("udp" or "tcp") toward the gateway's
// listener gwAddr. It is closed by t.Cleanup.
func newClient(t testing.TB, network, gwAddr string) *sipClient {
	t.Helper()
	return newClientOn(t, network, gwAddr, "127.0.0.1")
}

// newClientOn is newClient bound to another loopback address (127.0.0.2...).
func newClientOn(t testing.TB, network, gwAddr, host string) *sipClient {
	t.Helper()
	require.NotEmpty(t, gwAddr, "gateway has no %s listener", network)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("cstagw-itest"), sipgo.WithUserAgentHostname(host))
	require.NoError(t, err)
	srv, err := sipgo.NewServer(ua)
	require.NoError(t, err)
	c := &sipClient{t: t, network: network, gwAddr: gwAddr, ua: ua, srv: srv,
		dialogs: map[string]*dialog{}, seen: map[string]bool{}}

	switch network {
	case "udp":
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		require.NoError(t, err)
		c.laddr = pc.LocalAddr().String()
		go func() { _ = srv.ServeUDP(pc) }()
		c.cli, err = sipgo.NewClient(ua, sipgo.WithClientHostname(host), sipgo.WithClientConnectionAddr(c.laddr))
		require.NoError(t, err)
		// Requests must leave from the listener (the gateway answers and
		// sends its events to where the INVITE came from): wait until the
		// transport layer knows it.
		require.Eventually(t, func() bool {
			conn, err := ua.TransportLayer().GetConnection("udp", c.laddr)
			return err == nil && conn != nil
		}, waitLong, time.Millisecond)
		c.closer = func() { _ = pc.Close() }
	case "tcp":
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		require.NoError(t, err)
		c.laddr = ln.Addr().String()
		go func() { _ = srv.ServeTCP(ln) }()
		c.cli, err = sipgo.NewClient(ua, sipgo.WithClientHostname(host))
		require.NoError(t, err)
		c.closer = func() { _ = ln.Close() }
	default:
		t.Fatalf("unknown network %q", network)
	}

	ua.TransportLayer().OnMessage(c.onWire)
	srv.OnInfo(c.onInfo)
	srv.OnBye(c.onBye)
	srv.OnUpdate(c.onUpdate)
	srv.OnNoRoute(func(req *sip.Request, tx sip.ServerTransaction) {
		if req.IsAck() || !c.enter() {
			return
		}
		defer c.handlers.Done()
		_ = tx.Respond(sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil))
	})
	t.Cleanup(c.Close)
	return c
}

// Close stops the user agent.
func (c *sipClient) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	for _, p := range c.problems {
		c.t.Errorf("%s", p)
	}
	var open []*dialog
	for _, d := range c.dialogs {
		if !d.ended.Load() && !d.byeReceived() {
			open = append(open, d)
		}
	}
	c.mu.Unlock()
	// Sign out of what is still open, as a client does, so the gateway is
	// left without sessions.
	for _, d := range open {
		req := d.newRequest(sip.BYE, nil, "")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req.SetTransport(c.transport())
		req.SetDestination(c.gwAddr)
		if tx, err := c.cli.TransactionRequest(ctx, req); err == nil {
			select {
			case <-tx.Responses():
			case <-tx.Done():
			case <-ctx.Done():
			}
			tx.Terminate()
		}
		cancel()
	}
	_ = c.ua.Close()
	c.closer()
	c.handlers.Wait()
}

func (c *sipClient) dialog(callID string) *dialog {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dialogs[callID]
}

// onWire runs on the transport's read goroutine for every message received,
// in wire order: it logs what concerns a dialog of ours.
func (c *sipClient) onWire(m sip.Message) {
	switch m := m.(type) {
	case *sip.Request:
		if m.Method != sip.INFO && m.Method != sip.BYE && m.Method != sip.UPDATE {
			return
		}
		key := ""
		if v := m.Via(); v != nil {
			key = v.Params.GetOr("branch", "")
		}
		if cs := m.CSeq(); cs != nil {
			key += "/" + strconv.FormatUint(uint64(cs.SeqNo), 10) + string(cs.MethodName)
		}
		cid := ""
		if h := m.CallID(); h != nil {
			cid = string(*h)
		}
		c.mu.Lock()
		dup := c.seen[cid+key]
		c.seen[cid+key] = true
		d := c.dialogs[cid]
		c.mu.Unlock()
		if d == nil && !dup {
			c.flag("gateway sent %s for a Call-ID this client never used: %s", m.Method, cid)
		}
		if dup || d == nil {
			return
		}
		e := wireEntry{req: m, at: time.Now()}
		if len(m.Body()) > 0 {
			e.msg, e.err = csta.Decode(m.Body())
			if e.err != nil {
				c.flag("undecodable CSTA body in %s from the gateway: %v: %s", m.Method, e.err, m.Body())
			}
			if emptyDevID.Match(m.Body()) {
				c.flag("empty deviceIdentifier in an event (docs/wire.md §1.6): %s", m.Body())
			}
		}
		d.append(e)
	case *sip.Response:
		cs := m.CSeq()
		if cs == nil || (cs.MethodName != sip.INFO && cs.MethodName != sip.UPDATE) || m.IsProvisional() {
			return
		}
		cid := ""
		if h := m.CallID(); h != nil {
			cid = string(*h)
		}
		d := c.dialog(cid)
		if d == nil {
			return
		}
		e := wireEntry{res: m, at: time.Now(), cseq: cs.SeqNo}
		if len(m.Body()) > 0 {
			e.msg, e.err = csta.Decode(m.Body())
		}
		d.appendResponse(e)
	}
}

// enter registers a running handler; false once the client is closed.
func (c *sipClient) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.handlers.Add(1)
	return true
}

func (c *sipClient) onInfo(req *sip.Request, tx sip.ServerTransaction)   { c.answerInDialog(req, tx) }
func (c *sipClient) onUpdate(req *sip.Request, tx sip.ServerTransaction) { c.answerInDialog(req, tx) }

// answerInDialog answers the gateway's INFO (an event) or UPDATE (our
// refresh) 200, 481 for a dialog we do not know, and not at all for a
// silent dialog (sipe never answers an INFO; a client that is gone
// answers nothing).
func (c *sipClient) answerInDialog(req *sip.Request, tx sip.ServerTransaction) {
	if !c.enter() {
		return
	}
	defer c.handlers.Done()
	cid := ""
	if h := req.CallID(); h != nil {
		cid = string(*h)
	}
	d := c.dialog(cid)
	if d == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	if d.silent.Load() {
		return
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
}

func (c *sipClient) onBye(req *sip.Request, tx sip.ServerTransaction) {
	if !c.enter() {
		return
	}
	defer c.handlers.Done()
	cid := ""
	if h := req.CallID(); h != nil {
		cid = string(*h)
	}
	if c.dialog(cid) == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
}

// transport is the Via/URI transport name.
func (c *sipClient) transport() string { return strings.ToUpper(c.network) }

// contact is our Contact header.
func (c *sipClient) contact() *sip.ContactHeader {
	host, port, _ := net.SplitHostPort(c.laddr)
	p, _ := strconv.Atoi(port)
	u := sip.Uri{Scheme: "sip", User: "itest", Host: host, Port: p, UriParams: sip.NewParams()}
	if c.network == "tcp" {
		u.UriParams.Add("transport", "tcp")
	}
	return &sip.ContactHeader{Address: u}
}

// gwURI is the line server URI: sip:<user>@gateway.
func (c *sipClient) gwURI(user string) sip.Uri {
	host, port, _ := net.SplitHostPort(c.gwAddr)
	p, _ := strconv.Atoi(port)
	u := sip.Uri{Scheme: "sip", User: user, Host: host, Port: p, UriParams: sip.NewParams()}
	if c.network == "tcp" {
		u.UriParams.Add("transport", "tcp")
	}
	return u
}

// do sends a request (a transaction) and returns its final response.
func (c *sipClient) do(req *sip.Request) (*sip.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req.SetTransport(c.transport())
	req.SetDestination(c.gwAddr)
	tx, err := c.cli.TransactionRequest(ctx, req)
	if err != nil {
		return nil, err
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			if err := tx.Err(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("transaction ended without a final response")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// mustDo is do that fails the test on a transport error.
func (c *sipClient) mustDo(req *sip.Request) *sip.Response {
	c.t.Helper()
	res, err := c.do(req)
	require.NoError(c.t, err, "%s got no final response", req.Method)
	return res
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sipeInviteBody is the RequestSystemStatus sipe sends in its INVITE: no
// whitespace, an XML declaration without encoding, the line in lcs:line.
func sipeInviteBody(line string) []byte {
	return []byte(`<?xml version="1.0"?><RequestSystemStatus xmlns="` + csta.NSEd3 + `"><extensions><privateData><private>` +
		`<lcs:line xmlns:lcs="http://schemas.microsoft.com/Lcs/2005/04/RCCExtension">` + xmlEsc(line) + `</lcs:line>` +
		`</private></privateData></extensions></RequestSystemStatus>`)
}

// inviteOpts shapes an initial INVITE.
type inviteOpts struct {
	user        string // the From URI, e.g. sip:alice@example.com
	line        string // lcs:line of the sipe body
	body        []byte // replaces the sipe body
	noBody      bool
	contentType string       // default application/csta+xml
	headers     []sip.Header // extra headers
	// recordRoute, when set, is added as a Record-Route (as an OCS proxy
	// would), e.g. "<sip:127.0.0.1:5070;lr;ms-route-sig=aa1bc2>".
	recordRoute   string
	noSupported   bool // leave out Supported: timer
	requestUser   string
	noDisposition bool
}

// invite sends an initial INVITE. On a 2xx it ACKs and returns the dialog;
// otherwise the dialog is nil.
func (c *sipClient) invite(o inviteOpts) (*dialog, *sip.Response) {
	c.t.Helper()
	ruser := o.requestUser
	if ruser == "" {
		ruser = "cstagw"
	}
	req := sip.NewRequest(sip.INVITE, c.gwURI(ruser))
	var fromURI sip.Uri
	require.NoError(c.t, sip.ParseUri(o.user, &fromURI))
	from := sip.FromHeader{Address: fromURI, Params: sip.NewParams()}
	from.Params.Add("tag", randHex(5))
	from.Params.Add("epid", randHex(5))
	to := sip.ToHeader{Address: c.gwURI(ruser), Params: sip.NewParams()}
	callID := sip.CallIDHeader(randHex(16))
	cseq := &sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE}
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&from)
	req.AppendHeader(&to)
	req.AppendHeader(&callID)
	req.AppendHeader(cseq)
	req.AppendHeader(&maxFwd)
	req.AppendHeader(c.contact())
	if o.recordRoute != "" {
		req.AppendHeader(sip.NewHeader("Record-Route", o.recordRoute))
	}
	if !o.noSupported {
		req.AppendHeader(sip.NewHeader("Supported", "timer"))
	}
	for _, h := range o.headers {
		req.AppendHeader(h)
	}
	var body []byte
	switch {
	case o.noBody:
	case o.body != nil:
		body = o.body
	default:
		body = sipeInviteBody(o.line)
	}
	if body != nil {
		ct := o.contentType
		if ct == "" {
			ct = ctCSTA
		}
		cth := sip.ContentTypeHeader(ct)
		req.AppendHeader(&cth)
		if !o.noDisposition {
			req.AppendHeader(sip.NewHeader("Content-Disposition", disposition))
		}
	}
	req.SetBody(body)

	d := &dialog{c: c, callID: string(callID), line: o.line, user: o.user, changed: make(chan struct{})}
	d.from = from
	// Register the dialog before the INVITE leaves: an event INFO may
	// overtake the ACK.
	c.mu.Lock()
	c.dialogs[d.callID] = d
	c.mu.Unlock()

	res := c.mustDo(req)
	if !res.IsSuccess() {
		c.mu.Lock()
		delete(c.dialogs, d.callID)
		c.mu.Unlock()
		return nil, res
	}
	rto := res.To()
	require.NotNil(c.t, rto)
	tag, ok := rto.Params.Get("tag")
	require.True(c.t, ok, "200 OK to INVITE without a To tag")
	d.to = sip.ToHeader{Address: *rto.Address.Clone(), Params: sip.NewParams()}
	d.to.Params.Add("tag", tag)
	d.target = c.gwURI(ruser)
	if ct := res.Contact(); ct != nil {
		d.target = *ct.Address.Clone()
	}
	// UAC route set: the Record-Route of the 2xx, reversed.
	rrs := res.GetHeaders("Record-Route")
	for i := len(rrs) - 1; i >= 0; i-- {
		d.route = append(d.route, rrs[i].Value())
	}
	d.cseq.Store(1)
	d.inviteRes = res
	d.ack(1)
	return d, res
}

// wireEntry is one message of a dialog as it came off the wire.
type wireEntry struct {
	req  *sip.Request  // an in-dialog request from the gateway (INFO, BYE)
	res  *sip.Response // a response to one of our INFO/UPDATE requests
	cseq uint32
	msg  *csta.Message // the decoded CSTA body, if any
	err  error         // decoding error
	at   time.Time
}

// dialog is one client dialog with the gateway.
type dialog struct {
	c      *sipClient
	callID string
	user   string
	line   string
	from   sip.FromHeader
	to     sip.ToHeader
	target sip.Uri
	route  []string
	cseq   atomic.Uint32
	// silent: do not answer the gateway's INFOs (as sipe does).
	silent atomic.Bool
	// ended: we sent BYE or were told the dialog does not exist.
	ended atomic.Bool

	inviteRes *sip.Response
	xref      string // northbound monitorCrossRefID after monitorStart

	mu      sync.Mutex
	log     []wireEntry
	changed chan struct{}
}

func (d *dialog) append(e wireEntry) {
	d.mu.Lock()
	d.log = append(d.log, e)
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
}

func (d *dialog) appendResponse(e wireEntry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, x := range d.log {
		if x.res != nil && x.cseq == e.cseq && x.res.CSeq().MethodName == e.res.CSeq().MethodName {
			return // retransmission
		}
	}
	d.log = append(d.log, e)
	close(d.changed)
	d.changed = make(chan struct{})
}

// entries returns a copy of the wire log.
func (d *dialog) entries() []wireEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]wireEntry(nil), d.log...)
}

// mark returns the current length of the wire log; waits can start there.
func (d *dialog) mark() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.log)
}

// fromHeader and toHeader build fresh headers for one request.
func (d *dialog) fromHeader() *sip.FromHeader {
	return &sip.FromHeader{DisplayName: d.from.DisplayName, Address: *d.from.Address.Clone(), Params: d.from.Params.Clone()}
}

func (d *dialog) toHeader() *sip.ToHeader {
	return &sip.ToHeader{DisplayName: d.to.DisplayName, Address: *d.to.Address.Clone(), Params: d.to.Params.Clone()}
}

// newRequest builds an in-dialog request with the next CSeq.
func (d *dialog) newRequest(method sip.RequestMethod, body []byte, contentType string) *sip.Request {
	return d.newRequestCSeq(method, body, contentType, d.cseq.Add(1))
}

func (d *dialog) newRequestCSeq(method sip.RequestMethod, body []byte, contentType string, cseq uint32) *sip.Request {
	req := sip.NewRequest(method, *d.target.Clone())
	for _, r := range d.route {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&maxFwd)
	req.AppendHeader(d.fromHeader())
	req.AppendHeader(d.toHeader())
	cid := sip.CallIDHeader(d.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: method})
	req.AppendHeader(d.c.contact())
	if body != nil {
		if contentType == "" {
			contentType = ctCSTA
		}
		ct := sip.ContentTypeHeader(contentType)
		req.AppendHeader(&ct)
		req.AppendHeader(sip.NewHeader("Content-Disposition", disposition))
	}
	req.SetBody(body)
	return req
}

// ack sends the ACK of an INVITE transaction with CSeq n.
func (d *dialog) ack(n uint32) {
	ack := sip.NewRequest(sip.ACK, *d.target.Clone())
	for _, r := range d.route {
		ack.AppendHeader(sip.NewHeader("Route", r))
	}
	maxFwd := sip.MaxForwardsHeader(70)
	ack.AppendHeader(&maxFwd)
	ack.AppendHeader(d.fromHeader())
	ack.AppendHeader(d.toHeader())
	cid := sip.CallIDHeader(d.callID)
	ack.AppendHeader(&cid)
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: n, MethodName: sip.ACK})
	ack.SetBody(nil)
	ack.SetTransport(d.c.transport())
	ack.SetDestination(d.c.gwAddr)
	require.NoError(d.c.t, d.c.cli.WriteRequest(ack))
}

// request sends any in-dialog request and returns the final response.
func (d *dialog) request(method sip.RequestMethod, body []byte, contentType string, headers ...sip.Header) *sip.Response {
	d.c.t.Helper()
	req := d.newRequest(method, body, contentType)
	for _, h := range headers {
		req.AppendHeader(h)
	}
	res := d.c.mustDo(req)
	if method == sip.BYE || res.StatusCode == 481 {
		d.ended.Store(true)
	}
	return res
}

// info sends an INFO with a CSTA body and returns the final response.
func (d *dialog) info(body []byte) *sip.Response {
	d.c.t.Helper()
	return d.request(sip.INFO, body, ctCSTA)
}

// csta sends a CSTA request in an INFO, requires a 200 OK and returns its
// decoded CSTA response.
func (d *dialog) csta(body []byte) *csta.Message {
	d.c.t.Helper()
	m, _ := d.cstaRes(body)
	return m
}

// cstaRes is csta that also returns the raw SIP response.
func (d *dialog) cstaRes(body []byte) (*csta.Message, *sip.Response) {
	d.c.t.Helper()
	res := d.info(body)
	require.Equal(d.c.t, 200, res.StatusCode, "INFO %s answered %d %s", rootName(body), res.StatusCode, res.Reason)
	require.NotEmpty(d.c.t, res.Body(), "200 OK to INFO %s has no CSTA body", rootName(body))
	ct := res.ContentType()
	require.NotNil(d.c.t, ct, "200 OK with a body but no Content-Type")
	require.Equal(d.c.t, ctCSTA, ct.Value())
	m, err := csta.Decode(res.Body())
	require.NoError(d.c.t, err, "undecodable CSTA response: %s", res.Body())
	return m, res
}

// ok is csta for a request that must succeed: the response must be the
// request's positive response, not a CSTAErrorCode.
func (d *dialog) ok(body []byte) *csta.Message {
	d.c.t.Helper()
	m := d.csta(body)
	require.NotEqual(d.c.t, csta.KindCSTAErrorCode, m.Kind, "%s refused: %s", rootName(body), m.Error)
	want := csta.KindByName(rootName(body)).Response()
	require.Equal(d.c.t, want, m.Kind, "response to %s", rootName(body))
	return m
}

// fails is csta for a request that must be refused with a CSTA error.
func (d *dialog) fails(body []byte, code string) *csta.Message {
	d.c.t.Helper()
	m, res := d.cstaRes(body)
	require.Equal(d.c.t, csta.KindCSTAErrorCode, m.Kind, "%s was not refused: %s", rootName(body), res.Body())
	require.Equal(d.c.t, code, m.Error.String(), "CSTA error of %s: %s", rootName(body), res.Body())
	return m
}

// reinvite sends an in-dialog INVITE (a refresh), ACKs a 2xx, and returns
// the final response.
func (d *dialog) reinvite(body []byte, headers ...sip.Header) *sip.Response {
	d.c.t.Helper()
	n := d.cseq.Add(1)
	req := d.newRequestCSeq(sip.INVITE, body, ctCSTA, n)
	req.AppendHeader(sip.NewHeader("Supported", "timer"))
	for _, h := range headers {
		req.AppendHeader(h)
	}
	res := d.c.mustDo(req)
	if res.IsSuccess() {
		d.ack(n)
	}
	if res.StatusCode == 481 {
		d.ended.Store(true)
	}
	return res
}

// update sends a bodiless UPDATE (an OC 2007 R2 refresh).
func (d *dialog) update(headers ...sip.Header) *sip.Response {
	d.c.t.Helper()
	hs := append([]sip.Header{sip.NewHeader("Supported", "timer")}, headers...)
	return d.request(sip.UPDATE, nil, "", hs...)
}

// bye ends the dialog from the client's side.
func (d *dialog) bye() *sip.Response {
	d.c.t.Helper()
	return d.request(sip.BYE, nil, "")
}

// events returns the CSTA events received so far from index from on.
func (d *dialog) events(from int) []*csta.Message {
	var out []*csta.Message
	for _, e := range d.entries()[from:] {
		if e.req != nil && e.req.Method == sip.INFO && e.msg != nil {
			out = append(out, e.msg)
		}
	}
	return out
}

// find looks for an event INFO from index from on that matches pred.
func (d *dialog) find(from int, pred func(*csta.Message) bool) (*csta.Message, int) {
	es := d.entries()
	for i := from; i < len(es); i++ {
		e := es[i]
		if e.req != nil && e.req.Method == sip.INFO && e.msg != nil && pred(e.msg) {
			return e.msg, i
		}
	}
	return nil, -1
}

// waitEvent waits for an event of kind about callID ("" = any call) received
// at or after index from, and returns it with its wire index. Every event
// must carry the dialog's monitorCrossRefID.
func (d *dialog) waitEvent(from int, kind csta.Kind, callID string) (*csta.Message, int) {
	d.c.t.Helper()
	var m *csta.Message
	var idx int
	ok := d.waitFor(func() bool {
		m, idx = d.find(from, func(x *csta.Message) bool {
			return x.Kind == kind && (callID == "" || eventCallID(x) == callID)
		})
		return m != nil
	})
	require.True(d.c.t, ok, "no %s for call %q within %v; got %s", kind, callID, waitLong, describe(d.events(from)))
	if d.xref != "" {
		require.Equal(d.c.t, d.xref, m.MonitorCrossRefID, "%s carries another monitorCrossRefID", kind)
	}
	return m, idx
}

// waitFor polls cond until it holds or waitLong passes, waking on every new
// wire entry.
func (d *dialog) waitFor(cond func() bool) bool {
	deadline := time.NewTimer(waitLong)
	defer deadline.Stop()
	for {
		d.mu.Lock()
		ch := d.changed
		d.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return cond()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// byeReceived reports whether the gateway sent BYE on this dialog.
func (d *dialog) byeReceived() bool {
	for _, e := range d.entries() {
		if e.req != nil && e.req.Method == sip.BYE {
			return true
		}
	}
	return false
}

// responseIndex returns the wire index of the response to our INFO with
// CSeq n, or -1. The transport hook logs a message right after the
// transaction layer has been handed it, so the caller may have the response
// a moment before the log does: wait for it.
func (d *dialog) responseIndex(n uint32) int {
	idx := -1
	d.waitFor(func() bool {
		for i, e := range d.entries() {
			if e.res != nil && e.cseq == n {
				idx = i
				return true
			}
		}
		return false
	})
	return idx
}

// eventCallID is the call an event is about.
func eventCallID(m *csta.Message) string {
	if m.Connection.CallID != "" {
		return m.Connection.CallID
	}
	return m.PrimaryOldCall.CallID
}

func describe(ms []*csta.Message) string {
	var b strings.Builder
	b.WriteString("[")
	for i, m := range ms {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s(%s %s)", m.Name, eventCallID(m), m.LocalConnectionInfo)
	}
	b.WriteString("]")
	return b.String()
}

// rootName returns the local name of a document's root element, for messages.
func rootName(body []byte) string {
	s := string(body)
	for {
		i := strings.IndexByte(s, '<')
		if i < 0 || i+1 >= len(s) {
			return "?"
		}
		s = s[i+1:]
		if s[0] == '?' || s[0] == '!' {
			continue
		}
		j := strings.IndexAny(s, " />")
		if j < 0 {
			return s
		}
		return s[:j]
	}
}

// outOfDialog builds a request that belongs to no dialog of ours: random
// Call-ID and tags (toTag "" leaves To without a tag).
func (c *sipClient) outOfDialog(method sip.RequestMethod, user, toTag string) *sip.Request {
	req := sip.NewRequest(method, c.gwURI("cstagw"))
	var fromURI sip.Uri
	require.NoError(c.t, sip.ParseUri(user, &fromURI))
	from := sip.FromHeader{Address: fromURI, Params: sip.NewParams()}
	from.Params.Add("tag", randHex(5))
	to := sip.ToHeader{Address: c.gwURI("cstagw"), Params: sip.NewParams()}
	if toTag != "" {
		to.Params.Add("tag", toTag)
	}
	cid := sip.CallIDHeader(randHex(16))
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&from)
	req.AppendHeader(&to)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: method})
	req.AppendHeader(&maxFwd)
	req.AppendHeader(c.contact())
	req.SetBody(nil)
	return req
}

// withBody sets a body and its content type on a request.
func withBody(req *sip.Request, body []byte, contentType string) *sip.Request {
	if contentType != "" {
		ct := sip.ContentTypeHeader(contentType)
		req.AppendHeader(&ct)
	}
	req.SetBody(body)
	return req
}

// header returns a header's value or "".
func header(m interface{ GetHeader(string) sip.Header }, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}
