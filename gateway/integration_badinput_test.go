package gateway_test

// Bad input and the SIP status codes of docs/wire.md §1.9.3. After all of it
// a legitimate client on the same gateway must still work.

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/gateway"
	"github.com/cstagw/cstagw/sipstack"
)

const entityBomb = `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<GetCSTAFeatures xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed3">&lol5;</GetCSTAFeatures>`

func TestBadInputStatusCodes(t *testing.T) {
	const maxBody = 4096
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) { c.SIP.MaxBodyBytes = maxBody }})
	c := e.tcp()
	d := signIn(t, c, userAlice, lineAlice)

	t.Run("INFO malformed XML is 400", func(t *testing.T) {
		res := d.info([]byte(`<?xml version="1.0"?><MakeCall xmlns="` + csta.NSEd3 + `"><callingDevice>` + lineAlice))
		assert.Equal(t, 400, res.StatusCode)
		assert.Empty(t, res.Body(), "nothing was understood: no CSTA body")
	})
	t.Run("INFO with no root element is 400", func(t *testing.T) {
		res := d.info([]byte(`<?xml version="1.0"?>`))
		assert.Equal(t, 400, res.StatusCode)
	})
	t.Run("INFO body over max_body_bytes is 413", func(t *testing.T) {
		pad := strings.Repeat(" ", maxBody)
		res := d.info(doc("GetCSTAFeatures", lcsExt(lineAlice)+pad))
		assert.Equal(t, 413, res.StatusCode)
	})
	t.Run("INFO text/plain is 415 with Accept", func(t *testing.T) {
		res := d.request(sip.INFO, getFeatures(lineAlice), "text/plain")
		assert.Equal(t, 415, res.StatusCode)
		assert.Equal(t, ctCSTA, header(res, "Accept"))
	})
	t.Run("INFO entity bomb is 400", func(t *testing.T) {
		res := d.info([]byte(entityBomb))
		assert.Equal(t, 400, res.StatusCode)
	})
	t.Run("INFO with a DTD is 400", func(t *testing.T) {
		res := d.info([]byte(`<?xml version="1.0"?><!DOCTYPE GetCSTAFeatures SYSTEM "http://example.com/x.dtd"><GetCSTAFeatures xmlns="` + csta.NSEd3 + `"/>`))
		assert.Equal(t, 400, res.StatusCode)
	})
	t.Run("empty INFO is 200", func(t *testing.T) {
		res := d.request(sip.INFO, nil, "")
		assert.Equal(t, 200, res.StatusCode)
		assert.Empty(t, res.Body())
		// Cisco CUP quirk: CSTA content type with Content-Length 0.
		res = d.request(sip.INFO, []byte{}, ctCSTA)
		assert.Equal(t, 200, res.StatusCode)
	})
	t.Run("unknown CSTA request is 200 serviceNotSupported", func(t *testing.T) {
		d.fails(doc("FooBar", ""), errNotSupported)
		d.fails([]byte(`<FooBar/>`), errNotSupported)
	})
	t.Run("another namespace is accepted", func(t *testing.T) {
		m := d.csta([]byte(`<GetCSTAFeatures xmlns="http://www.ecma.ch/standards/ecma-323/csta/ed2"/>`))
		assert.Equal(t, csta.KindGetCSTAFeaturesResponse, m.Kind)
	})
	t.Run("multipart INFO with a CSTA part is served", func(t *testing.T) {
		body := "--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b1\r\nContent-Type: application/csta+xml\r\n\r\n" +
			string(getFeatures(lineAlice)) + "\r\n--b1--\r\n"
		res := d.request(sip.INFO, []byte(body), "multipart/mixed;boundary=b1")
		require.Equal(t, 200, res.StatusCode)
		m, err := csta.Decode(res.Body())
		require.NoError(t, err)
		assert.Equal(t, csta.KindGetCSTAFeaturesResponse, m.Kind)
	})
	t.Run("multipart INFO without a CSTA part is 415", func(t *testing.T) {
		body := "--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b1--\r\n"
		res := d.request(sip.INFO, []byte(body), "multipart/mixed;boundary=b1")
		assert.Equal(t, 415, res.StatusCode)
	})
	t.Run("INVITE with SDP is 488", func(t *testing.T) {
		sdp := []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
		dd, res := c.invite(inviteOpts{user: userAlice, body: sdp, contentType: "application/sdp", noDisposition: true})
		assert.Nil(t, dd)
		assert.Equal(t, 488, res.StatusCode)
	})
	t.Run("INVITE without body is 488", func(t *testing.T) {
		dd, res := c.invite(inviteOpts{user: userAlice, noBody: true})
		assert.Nil(t, dd)
		assert.Equal(t, 488, res.StatusCode)
	})
	t.Run("INVITE with malformed XML is 400", func(t *testing.T) {
		dd, res := c.invite(inviteOpts{user: userAlice, body: []byte(`<RequestSystemStatus xmlns="` + csta.NSEd3 + `">`)})
		assert.Nil(t, dd)
		assert.Equal(t, 400, res.StatusCode)
	})
	t.Run("INVITE text/plain is 415 with Accept", func(t *testing.T) {
		dd, res := c.invite(inviteOpts{user: userAlice, line: lineAlice, contentType: "text/plain"})
		assert.Nil(t, dd)
		assert.Equal(t, 415, res.StatusCode)
		assert.Equal(t, ctCSTA, header(res, "Accept"))
	})
	t.Run("Require foo is 420", func(t *testing.T) {
		dd, res := c.invite(inviteOpts{user: userAlice, line: lineAlice, headers: []sip.Header{sip.NewHeader("Require", "foo")}})
		assert.Nil(t, dd)
		assert.Equal(t, 420, res.StatusCode)
		assert.Contains(t, header(res, "Unsupported"), "foo")
	})
	t.Run("Session-Expires 30 is 422 with Min-SE", func(t *testing.T) {
		dd, res := c.invite(inviteOpts{user: userAlice, line: lineAlice, headers: []sip.Header{sip.NewHeader("Session-Expires", "30")}})
		assert.Nil(t, dd)
		assert.Equal(t, 422, res.StatusCode)
		assert.Equal(t, "90", header(res, "Min-SE"))
	})
	t.Run("INVITE body over max_body_bytes is 413", func(t *testing.T) {
		dd, res := c.invite(inviteOpts{user: userAlice, body: doc("RequestSystemStatus", lcsExt(lineAlice)+strings.Repeat(" ", maxBody))})
		assert.Nil(t, dd)
		assert.Equal(t, 413, res.StatusCode)
	})
	t.Run("re-INVITE for an unknown dialog is 481", func(t *testing.T) {
		req := withBody(c.outOfDialog(sip.INVITE, userAlice, "gw-nosuchtag"), requestSystemStatus(lineAlice), ctCSTA)
		assert.Equal(t, 481, c.mustDo(req).StatusCode)
	})
	t.Run("MESSAGE is 405 with Allow", func(t *testing.T) {
		req := withBody(c.outOfDialog(sip.MESSAGE, userAlice, ""), []byte("hello"), "text/plain")
		res := c.mustDo(req)
		assert.Equal(t, 405, res.StatusCode)
		assert.Equal(t, sipstack.Allowed, header(res, "Allow"))
	})
	t.Run("SUBSCRIBE is 405", func(t *testing.T) {
		req := c.outOfDialog(sip.SUBSCRIBE, userAlice, "")
		req.AppendHeader(sip.NewHeader("Event", "presence"))
		assert.Equal(t, 405, c.mustDo(req).StatusCode)
	})
	t.Run("INFO for an unknown dialog is 481", func(t *testing.T) {
		req := withBody(c.outOfDialog(sip.INFO, userAlice, "gw-nosuchtag"), getFeatures(lineAlice), ctCSTA)
		assert.Equal(t, 481, c.mustDo(req).StatusCode)
	})
	t.Run("BYE for an unknown dialog is 481", func(t *testing.T) {
		assert.Equal(t, 481, c.mustDo(c.outOfDialog(sip.BYE, userAlice, "gw-nosuchtag")).StatusCode)
	})
	t.Run("UPDATE for an unknown dialog is 481", func(t *testing.T) {
		assert.Equal(t, 481, c.mustDo(c.outOfDialog(sip.UPDATE, userAlice, "gw-nosuchtag")).StatusCode)
	})
	t.Run("OPTIONS is 200 with Allow and Accept", func(t *testing.T) {
		res := c.mustDo(c.outOfDialog(sip.OPTIONS, userAlice, ""))
		assert.Equal(t, 200, res.StatusCode)
		assert.Equal(t, sipstack.Allowed, header(res, "Allow"))
		assert.Equal(t, ctCSTA, header(res, "Accept"))
	})

	// The session that got all of the above still works, and so does a new
	// one: events flow.
	mark := d.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	d.waitEvent(mark, csta.KindDeliveredEvent, id)
	d.ok(answerCall(id, lineAlice))
	d.waitEvent(mark, csta.KindEstablishedEvent, id)

	d2 := signIn(t, e.tcp(), userBob, lineBob)
	mark = d2.mark()
	m := d2.ok(makeCall(lineBob, extOtherT))
	d2.waitEvent(mark, csta.KindDeliveredEvent, m.Connection.CallID)
}

func TestUntrustedSourceIsRefused(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) { c.SIP.TrustedHosts = []string{"10.0.0.0/8"} }})
	for _, c := range []*sipClient{e.udp(), e.tcp()} {
		d, res := c.invite(inviteOpts{user: userAlice, line: lineAlice})
		assert.Nil(t, d)
		assert.Equal(t, 403, res.StatusCode, "%s source 127.0.0.1 is not in trusted_hosts", c.network)
		req := withBody(c.outOfDialog(sip.INFO, userAlice, "gw-x"), getFeatures(lineAlice), ctCSTA)
		assert.Equal(t, 403, c.mustDo(req).StatusCode)
		assert.Equal(t, 403, c.mustDo(c.outOfDialog(sip.OPTIONS, userAlice, "")).StatusCode)
	}
	assert.Equal(t, 0, e.gw.Sessions())
}

// In-dialog requests are subject to trusted_hosts too: a BYE (or INFO)
// forged from an untrusted address for a live dialog must not touch it.
func TestUntrustedInDialogRequestsAreRefused(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) { c.SIP.TrustedHosts = []string{"127.0.0.1/32"} }})
	d := signIn(t, e.udp(), userAlice, lineAlice)
	evil := newClientOn(t, "udp", e.gw.SIPAddr("udp"), "127.0.0.2")
	forged := &dialog{c: evil, callID: d.callID, user: d.user, line: d.line, from: d.from, to: d.to, target: d.target,
		changed: make(chan struct{})}
	forged.cseq.Store(1000)
	forged.ended.Store(true) // never signed in: nothing to sign out of
	assert.Equal(t, 403, forged.info(getFeatures(lineAlice)).StatusCode, "INFO from an untrusted host")
	assert.Equal(t, 403, forged.update().StatusCode, "UPDATE from an untrusted host")
	assert.Equal(t, 403, forged.request(sip.BYE, nil, "").StatusCode, "BYE from an untrusted host")
	// The forged BYE must not have ended the real session (a short window
	// asserting an absence, not a wait for a condition).
	require.Never(t, func() bool { return e.gw.Sessions() == 0 }, 300*time.Millisecond, 5*time.Millisecond,
		"a BYE from an untrusted host ended the session")
	require.Equal(t, 200, d.info(getDND(lineAlice)).StatusCode, "the real dialog must survive a forged BYE")
	mark := d.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	d.waitEvent(mark, csta.KindDeliveredEvent, id)
}

// With the default sip.max_body_bytes (64 KiB) a body just over it gets
// the documented 413, not a reset connection.
func TestDefaultBodyLimitAnswers413(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.tcp()
	d := signIn(t, c, userAlice, lineAlice)
	pad := strings.Repeat(" ", sipstack.DefaultMaxBodyBytes)
	res := d.info(doc("GetCSTAFeatures", lcsExt(lineAlice)+pad))
	assert.Equal(t, 413, res.StatusCode)
	assert.Equal(t, csta.KindGetDoNotDisturbResponse, d.ok(getDND(lineAlice)).Kind, "the dialog goes on")
}

// A UDP request whose Content-Length is larger than the datagram's body
// is answered 400 (sipgo alone dropped it silently).
func TestUDPContentLengthBeyondDatagramIs400(t *testing.T) {
	e := newEnv(t, envOpts{})
	conn, err := net.Dial("udp", e.gw.SIPAddr("udp"))
	require.NoError(t, err)
	defer conn.Close()
	local := conn.LocalAddr().String()
	msg := "INFO sip:cstagw@" + e.gw.SIPAddr("udp") + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-cl1\r\n" +
		"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:cstagw@example.com>;tag=b2\r\n" +
		"Call-ID: cl-too-long\r\nCSeq: 2 INFO\r\nContent-Type: application/csta+xml\r\n" +
		"Content-Length: 500\r\n\r\n<short/>"
	_, err = conn.Write([]byte(msg))
	require.NoError(t, err)
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	require.NoError(t, err, "no answer to a truncated datagram")
	res := string(buf[:n])
	assert.True(t, strings.HasPrefix(res, "SIP/2.0 400 "), res)
	assert.Contains(t, res, "Call-ID: cl-too-long")
	assert.Contains(t, res, "branch=z9hG4bK-cl1")
}
