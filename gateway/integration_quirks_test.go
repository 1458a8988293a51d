package gateway_test

// Client quirks the gateway must tolerate (docs/wire.md §1.12) and a client
// that stops reading (design: a full event queue ends the session).

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/gateway"
)

func TestSipeQuirks(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.tcp()

	// No Content-Disposition, P-Asserted-Identity from the trusted proxy.
	d, res := c.invite(inviteOpts{user: "sip:ocs-proxy@example.com", line: lineAlice, noDisposition: true,
		headers: []sip.Header{sip.NewHeader("P-Asserted-Identity", "<"+userAlice+">")}})
	require.NotNil(t, d, "INVITE with P-Asserted-Identity answered %d", res.StatusCode)

	// GetCSTAFeatures and MonitorStart back to back, without waiting.
	var wg sync.WaitGroup
	var feats, mon *csta.Message
	wg.Add(2)
	go func() { defer wg.Done(); feats = d.csta(getFeatures(lineAlice)) }()
	go func() { defer wg.Done(); mon = d.csta(monitorStart(lineAlice)) }()
	wg.Wait()
	require.Equal(t, csta.KindGetCSTAFeaturesResponse, feats.Kind)
	require.Equal(t, csta.KindMonitorStartResponse, mon.Kind)
	d.xref = mon.MonitorCrossRefID
	info := d.info(getFeatures(lineAlice))
	assert.Equal(t, 200, info.StatusCode)
	assert.Equal(t, disposition, header(info, "Content-Disposition"), "every body the gateway emits carries the disposition")
	assert.NotEmpty(t, header(info, "Allow"), "Allow on every 2xx")

	// sipe's CSeq reset: after a re-INVITE (CSeq n) the ACK goes out with
	// CSeq 1 and the next INFOs restart at 2.
	n := d.cseq.Add(1)
	req := d.newRequestCSeq(sip.INVITE, requestSystemStatus(lineAlice), ctCSTA, n)
	r := c.mustDo(req)
	require.Equal(t, 200, r.StatusCode)
	d.ack(1)
	d.cseq.Store(1)
	m := d.ok(getFeatures(lineAlice))
	assert.Equal(t, csta.KindGetCSTAFeaturesResponse, m.Kind, "INFO with a lower CSeq after the re-INVITE")

	// sipe never answers the gateway's INFOs: events keep flowing in order.
	d.silent.Store(true)
	mark := d.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	d.waitEvent(mark, csta.KindDeliveredEvent, id)
	require.NoError(t, e.sim.Answer(id, devAlice))
	_, at1 := d.waitEvent(mark, csta.KindEstablishedEvent, id)
	d.ok(holdCall(id, lineAlice))
	_, at2 := d.waitEvent(mark, csta.KindHeldEvent, id)
	d.ok(retrieveCall(id, lineAlice))
	_, at3 := d.waitEvent(mark, csta.KindRetrievedEvent, id)
	assert.True(t, at1 < at2 && at2 < at3, "events out of order")
	d.silent.Store(false)

	// MonitorStop and BYE at once (sipe's sign-out): both are answered.
	var stopRes, byeRes *sip.Response
	wg.Add(2)
	go func() { defer wg.Done(); stopRes = d.info(monitorStop(d.xref)) }()
	go func() { defer wg.Done(); byeRes = d.bye() }()
	wg.Wait()
	assert.Contains(t, []int{200, 481}, stopRes.StatusCode)
	assert.Equal(t, 200, byeRes.StatusCode)
	require.Eventually(t, func() bool { return e.gw.Sessions() == 0 }, waitLong, pollInterval)
	require.Eventually(t, func() bool { return simDevice(e.sim, devAlice).Monitors == 0 }, waitLong, pollInterval)
}

// An INFO that overtakes the ACK (a proxy reordering, or UDP) is served,
// and the late ACK is still accepted.
func TestInfoBeforeAck(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.udp()
	req := sip.NewRequest(sip.INVITE, c.gwURI("cstagw"))
	var fromURI sip.Uri
	require.NoError(t, sip.ParseUri(userAlice, &fromURI))
	from := sip.FromHeader{Address: fromURI, Params: sip.NewParams()}
	from.Params.Add("tag", randHex(5))
	to := sip.ToHeader{Address: c.gwURI("cstagw"), Params: sip.NewParams()}
	cid := sip.CallIDHeader(randHex(16))
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&from)
	req.AppendHeader(&to)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	req.AppendHeader(&maxFwd)
	req.AppendHeader(c.contact())
	withBody(req, sipeInviteBody(lineAlice), ctCSTA)
	d := &dialog{c: c, callID: string(cid), line: lineAlice, user: userAlice, changed: make(chan struct{}), from: from}
	c.mu.Lock()
	c.dialogs[d.callID] = d
	c.mu.Unlock()
	res := c.mustDo(req)
	require.Equal(t, 200, res.StatusCode)
	tag, _ := res.To().Params.Get("tag")
	d.to = sip.ToHeader{Address: *res.To().Address.Clone(), Params: sip.NewParams()}
	d.to.Params.Add("tag", tag)
	d.target = res.Contact().Address
	d.cseq.Store(1)

	ms := d.ok(monitorStart(lineAlice)) // before the ACK
	d.xref = ms.MonitorCrossRefID
	d.ack(1)
	mark := d.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	d.waitEvent(mark, csta.KindDeliveredEvent, id)
	d.ok(answerCall(id, lineAlice))
	waitConn(t, e.sim, id, devAlice, "connected")
}

// rawSIP is a hand-rolled SIP-over-TCP client that can stop reading.
type rawSIP struct {
	t    *testing.T
	conn net.Conn
	rd   *bufio.Reader
	gw   string
}

type rawMsg struct {
	start   string
	headers map[string]string // lower-case name → first value
	body    string
}

func dialRaw(t *testing.T, gw string, rcvbuf int) *rawSIP {
	d := net.Dialer{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", gw)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &rawSIP{t: t, conn: conn, rd: bufio.NewReader(conn), gw: gw}
}

func (r *rawSIP) send(s string) {
	s = strings.ReplaceAll(s, "\n", "\r\n")
	_, err := io.WriteString(r.conn, s)
	require.NoError(r.t, err)
}

func (r *rawSIP) read() rawMsg {
	require.NoError(r.t, r.conn.SetReadDeadline(time.Now().Add(waitLong)))
	m := rawMsg{headers: map[string]string{}}
	line, err := r.rd.ReadString('\n')
	require.NoError(r.t, err)
	m.start = strings.TrimSpace(line)
	for {
		line, err = r.rd.ReadString('\n')
		require.NoError(r.t, err)
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		name, val, _ := strings.Cut(line, ":")
		name = strings.ToLower(strings.TrimSpace(name))
		if _, ok := m.headers[name]; !ok {
			m.headers[name] = strings.TrimSpace(val)
		}
	}
	n, _ := strconv.Atoi(m.headers["content-length"])
	b := make([]byte, n)
	_, err = io.ReadFull(r.rd, b)
	require.NoError(r.t, err)
	m.body = string(b)
	return m
}

// readResponse reads until the response whose CSeq is cseq.
func (r *rawSIP) readResponse(cseq string) rawMsg {
	for {
		m := r.read()
		if strings.HasPrefix(m.start, "SIP/2.0 ") && m.headers["cseq"] == cseq {
			return m
		}
	}
}

func TestSlowClientIsDisconnected(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.Gateway.EventQueue = 256
		// The flood below loads a small machine hard: keep a heartbeat that
		// a scheduling stall cannot mistake for a dead link.
		c.CTI.HeartbeatInterval = time.Second
	}})
	gw := e.gw.SIPAddr("tcp")
	raw := dialRaw(t, gw, 4096)
	local := raw.conn.LocalAddr().String()
	from := fmt.Sprintf("<%s>;tag=%s;epid=%s", userAlice, randHex(4), randHex(4))
	callID := randHex(16)
	body := string(sipeInviteBody(lineAlice))
	raw.send(fmt.Sprintf(`INVITE sip:cstagw@%[1]s;transport=tcp SIP/2.0
Via: SIP/2.0/TCP %[2]s;branch=z9hG4bK%[3]s
Max-Forwards: 70
From: %[4]s
To: <sip:cstagw@%[1]s>
Call-ID: %[5]s
CSeq: 1 INVITE
Contact: <sip:slow@%[2]s;transport=tcp>
Supported: timer
Content-Type: application/csta+xml
Content-Length: %[6]d

`, gw, local, randHex(6), from, callID, len(body)) + body)
	ok := raw.readResponse("1 INVITE")
	require.Equal(t, "SIP/2.0 200 OK", ok.start, ok.body)
	to := ok.headers["to"]
	target := regexp.MustCompile(`<([^>]+)>`).FindStringSubmatch(ok.headers["contact"])
	require.Len(t, target, 2)
	raw.send(fmt.Sprintf(`ACK %s SIP/2.0
Via: SIP/2.0/TCP %s;branch=z9hG4bK%s
Max-Forwards: 70
From: %s
To: %s
Call-ID: %s
CSeq: 1 ACK
Content-Length: 0

`, target[1], local, randHex(6), from, to, callID))
	ms := string(monitorStart(lineAlice))
	raw.send(fmt.Sprintf(`INFO %s SIP/2.0
Via: SIP/2.0/TCP %s;branch=z9hG4bK%s
Max-Forwards: 70
From: %s
To: %s
Call-ID: %s
CSeq: 2 INFO
Contact: <sip:slow@%s;transport=tcp>
Content-Type: application/csta+xml
Content-Length: %d

`, target[1], local, randHex(6), from, to, callID, local, len(ms)) + ms)
	mres := raw.readResponse("2 INFO")
	require.Equal(t, "SIP/2.0 200 OK", mres.start)
	require.Contains(t, mres.body, "MonitorStartResponse")
	// From here on the slow client reads nothing.

	// A client that does read, on the same line.
	good := signIn(t, e.tcp(), userAlice, lineAlice)
	require.Equal(t, 2, e.gw.Sessions())

	// Call events straight from the switch, in batches the reading client
	// keeps up with, until the non-reading client's TCP buffers and event
	// queue are full.
	calls := 0
	for e.gw.Sessions() > 1 && calls < 4000 {
		mark := good.mark()
		var last string
		for i := 0; i < 40; i++ {
			id, err := e.sim.PlaceCall(extCaller, devAlice)
			require.NoError(t, err)
			require.NoError(t, e.sim.Hangup(id, ""))
			last = id
			calls++
		}
		good.waitEvent(mark, csta.KindConnectionClearedEvent, last)
	}
	t.Logf("slow session closed after %d calls (3 events each)", calls)
	require.Eventually(t, func() bool { return e.gw.Sessions() == 1 }, waitLong, pollInterval,
		"a client that stops reading must lose its session")
	_, metrics := httpGet(t, "http://"+e.gw.AdminAddr()+"/metrics")
	assert.Regexp(t, regexp.MustCompile(`(?m)^cstagw_(slow_clients_total|event_send_failures_total) [1-9]`), metrics)
	// The session that ended must be the slow one: say why if not.
	closes := regexp.MustCompile(`(?m)^cstagw_(sessions_closed_total|slow_clients_total|event_send_failures_total|sip_info_failed_total).*$`).FindAllString(metrics, -1)
	res := good.info(getDND(lineAlice))
	require.Equal(t, 200, res.StatusCode, "the reading client's session was ended; %v", closes)
	require.False(t, good.byeReceived(), "the reading client's session was ended; %v", closes)

	// The reading client is unaffected.
	mark := good.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	good.waitEvent(mark, csta.KindDeliveredEvent, id)

	// The slow client gets a BYE (it re-INVITEs and is resynchronised by
	// the snapshot): read the backlog and look for it.
	// Read the backlog message by message (framed by Content-Length) until
	// the BYE or until the stream goes quiet.
	bye := false
	msgs := 0
	for !bye {
		require.NoError(t, raw.conn.SetReadDeadline(time.Now().Add(time.Second)))
		start, err := raw.rd.ReadString('\n')
		if err != nil {
			break
		}
		clen := 0
		for {
			line, err := raw.rd.ReadString('\n')
			require.NoError(t, err)
			line = strings.TrimRight(line, "\r\n")
			if line == "" {
				break
			}
			if name, val, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Content-Length") {
				clen, _ = strconv.Atoi(strings.TrimSpace(val))
			}
		}
		_, err = io.CopyN(io.Discard, raw.rd, int64(clen))
		require.NoError(t, err)
		msgs++
		bye = strings.HasPrefix(start, "BYE ")
	}
	assert.True(t, bye, "no BYE sent to the client whose session was closed (%d INFOs read)", msgs)
}
