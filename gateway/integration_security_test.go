package gateway_test

// Security, end to end over loopback listeners (issue 7): SIP over TLS and
// mutual TLS, digest authentication for direct clients, untrusted sources
// and spoofed identities, stolen monitor and call ids, limits (per-source
// INVITE rate, sessions per user and in total, requests in flight per
// session), the audit log, and CTI links over TLS with the ways their
// certificates go wrong. Each refusal comes with a control showing the same
// request succeeding when it is legitimate, and the legitimate client keeps
// working throughout.

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/gateway"
	"github.com/cstagw/cstagw/sipstack"
	"github.com/cstagw/cstagw/test/ctisim"
)

// ---- test certificates ----

type secCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var secSerial atomic.Int64

func newSecCA(t *testing.T, cn string) *secCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(secSerial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &secCA{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leafOpts shapes one certificate.
type leafOpts struct {
	cn      string
	dns     []string
	client  bool
	expired bool
}

// issue signs a leaf (also valid for 127.0.0.1) and returns it as PEM.
func (ca *secCA) issue(t *testing.T, o leafOpts) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	nb, na := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if o.expired {
		nb, na = time.Now().Add(-72*time.Hour), time.Now().Add(-24*time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(secSerial.Add(1)), Subject: pkix.Name{CommonName: o.cn},
		NotBefore: nb, NotAfter: na, DNSNames: o.dns, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if o.client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func (ca *secCA) pair(t *testing.T, o leafOpts) tls.Certificate {
	t.Helper()
	c, k := ca.issue(t, o)
	p, err := tls.X509KeyPair(c, k)
	require.NoError(t, err)
	return p
}

func (ca *secCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

// ---- SIP over TLS clients ----

// newTLSClient is a sipClient (client_test.go) whose transport is TLS: it
// dials the gateway's tls: listener with cfg and gets the gateway's event
// INFOs back on that connection.
func newTLSClient(t *testing.T, gwAddr string, cfg *tls.Config) *sipClient {
	t.Helper()
	return newStreamClient(t, "tls", gwAddr, "127.0.0.1", cfg)
}

// newTCPClientFrom is a TCP sipClient whose connection really leaves from
// host (newClientOn binds only its listener there; its outgoing TCP
// connection leaves from 127.0.0.1).
func newTCPClientFrom(t *testing.T, gwAddr, host string) *sipClient {
	t.Helper()
	return newStreamClient(t, "tcp", gwAddr, host, nil)
}

// newStreamClient is a connection-oriented sipClient bound to host: every
// request goes over the one connection it opens from host, and the gateway's
// requests come back on it.
func newStreamClient(t *testing.T, network, gwAddr, host string, cfg *tls.Config) *sipClient {
	t.Helper()
	require.NotEmpty(t, gwAddr, "gateway has no %s listener", network)
	opts := []sipgo.UserAgentOption{sipgo.WithUserAgent("cstagw-itest"), sipgo.WithUserAgentHostname(host)}
	if cfg != nil {
		opts = append(opts, sipgo.WithUserAgenTLSConfig(cfg))
	}
	ua, err := sipgo.NewUA(opts...)
	require.NoError(t, err)
	srv, err := sipgo.NewServer(ua)
	require.NoError(t, err)
	c := &sipClient{t: t, network: network, gwAddr: gwAddr, ua: ua, srv: srv, laddr: net.JoinHostPort(host, "5061"),
		dialogs: map[string]*dialog{}, seen: map[string]bool{}, closer: func() {}}
	c.cli, err = sipgo.NewClient(ua, sipgo.WithClientHostname(host), sipgo.WithClientConnectionAddr(net.JoinHostPort(host, "0")))
	require.NoError(t, err)
	ua.TransportLayer().OnMessage(c.onWire)
	srv.OnInfo(c.onInfo)
	srv.OnBye(c.onBye)
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

// tlsOptions dials the TLS listener with a raw crypto/tls client, sends an
// OPTIONS and returns the status line of the answer, or the error that
// ended the connection (with TLS 1.3 a refused client certificate shows on
// the first read, after the client's side of the handshake).
func tlsOptions(addr string, cfg *tls.Config) (string, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	msg := "OPTIONS sip:cstagw@" + addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS " + conn.LocalAddr().String() + ";branch=z9hG4bK-" + randHex(6) + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag=" + randHex(4) + "\r\n" +
		"To: <sip:cstagw@" + addr + ">\r\nCall-ID: " + randHex(8) + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	if _, err := conn.Write([]byte(msg)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

func tlsEnv(t *testing.T, serverCA *secCA, clientCAFile string, trusted []string) *testEnv {
	t.Helper()
	dir := t.TempDir()
	c, k := serverCA.issue(t, leafOpts{cn: "cstagw.test", dns: []string{"localhost"}})
	certFile, keyFile := writeFile(t, dir, "gw.crt", c), writeFile(t, dir, "gw.key", k)
	return newEnv(t, envOpts{gw: func(cfg *gateway.Config) {
		cfg.SIP.Listen = []string{"tls:127.0.0.1:0", "tcp:127.0.0.1:0"}
		cfg.SIP.TLS = sipstack.TLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: clientCAFile}
		cfg.SIP.TrustedHosts = trusted
	}})
}

// (a) SIP over TLS from a trusted host: sign in, events; TLS < 1.2 refused.
func TestSIPOverTLS(t *testing.T) {
	ca := newSecCA(t, "Gateway CA")
	e := tlsEnv(t, ca, "", []string{"127.0.0.0/8"})
	addr := e.gw.SIPAddr("tls")

	c := newTLSClient(t, addr, &tls.Config{RootCAs: ca.pool(), MinVersion: tls.VersionTLS12})
	d := signIn(t, c, userAlice, lineAlice)
	mark := d.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	dl, at := d.waitEvent(mark, csta.KindDeliveredEvent, id)
	assert.Equal(t, lineAlice, dl.Connection.DeviceID)
	assert.Equal(t, addr, d.entries()[at].req.Source(), "the event came back on the client's TLS connection")
	d.ok(answerCall(id, lineAlice))
	d.waitEvent(mark, csta.KindEstablishedEvent, id)

	// Raw clients: TLS 1.2 and 1.3 are served, 1.1 and 1.0 refused at the
	// handshake.
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		st, err := tlsOptions(addr, &tls.Config{RootCAs: ca.pool(), ServerName: "localhost", MinVersion: v, MaxVersion: v})
		require.NoError(t, err, "TLS version %x", v)
		assert.Equal(t, "SIP/2.0 200 OK", st)
	}
	for _, v := range []uint16{tls.VersionTLS11, tls.VersionTLS10} {
		st, err := tlsOptions(addr, &tls.Config{RootCAs: ca.pool(), ServerName: "localhost", MinVersion: v, MaxVersion: v})
		require.Error(t, err, "TLS version %x must be refused, got %q", v, st)
		assert.Contains(t, err.Error(), "version", "TLS version %x", v)
	}
	// The legitimate session is untouched.
	d.ok(holdCall(id, lineAlice))
	d.waitEvent(mark, csta.KindHeldEvent, id)
}

// (a) Mutual TLS: with client_ca_file set, a client certificate from that
// CA is required at the handshake, and its holder is a trusted peer (its
// P-Asserted-Identity is honoured) although its address is not in
// trusted_hosts.
func TestSIPMutualTLS(t *testing.T) {
	serverCA := newSecCA(t, "Gateway CA")
	clientCA := newSecCA(t, "Pool CA")
	rogueCA := newSecCA(t, "Rogue CA")
	caFile := writeFile(t, t.TempDir(), "clients-ca.crt", clientCA.pem)
	e := tlsEnv(t, serverCA, caFile, []string{"10.0.0.0/8"})
	addr := e.gw.SIPAddr("tls")
	good := clientCA.pair(t, leafOpts{cn: "pool.example.net", client: true})
	rogue := rogueCA.pair(t, leafOpts{cn: "pool.example.net", client: true})
	base := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: serverCA.pool(), ServerName: "localhost", Certificates: certs}
	}

	// Refused at the handshake: no certificate, a certificate of another
	// CA (over TLS 1.3 and 1.2). No SIP answer ever comes back.
	for name, cfg := range map[string]*tls.Config{
		"no client certificate":         base(),
		"certificate of another CA":     base(rogue),
		"another CA, TLS 1.2":           func() *tls.Config { c := base(rogue); c.MaxVersion = tls.VersionTLS12; return c }(),
		"no certificate, TLS 1.2":       func() *tls.Config { c := base(); c.MaxVersion = tls.VersionTLS12; return c }(),
		"expired certificate of the CA": base(clientCA.pair(t, leafOpts{cn: "old.example.net", client: true, expired: true})),
	} {
		st, err := tlsOptions(addr, cfg)
		assert.Error(t, err, "%s: the handshake must fail, got %q", name, st)
		assert.Empty(t, st, name)
	}
	// Control: the pool's certificate gets an answer.
	st, err := tlsOptions(addr, base(good))
	require.NoError(t, err)
	assert.Equal(t, "SIP/2.0 200 OK", st)

	// The same source over plain TCP is not trusted (127.0.0.1 is not in
	// trusted_hosts): mutual TLS trusts the certificate, not the address.
	_, res := e.tcp().invite(inviteOpts{user: userAlice, line: lineAlice})
	assert.Equal(t, 403, res.StatusCode, "TCP from a source outside trusted_hosts")

	c := newTLSClient(t, addr, base(good))
	pai := func(u string) sip.Header { return sip.NewHeader("P-Asserted-Identity", "<"+u+">") }
	// P-Asserted-Identity is honoured: From names a user outside the
	// directory, the proxy asserts alice.
	d, res := c.invite(inviteOpts{user: userMallory, line: lineAlice, headers: []sip.Header{pai(userAlice)}})
	require.NotNil(t, d, "mutual TLS peer asserting alice: %d %s", res.StatusCode, res.Reason)
	// And it wins over From: asserting bob for alice's line is refused.
	d2, res := c.invite(inviteOpts{user: userAlice, line: lineAlice, headers: []sip.Header{pai(userBob)}})
	assert.Nil(t, d2)
	assert.Equal(t, 403, res.StatusCode, "PAI bob for alice's line")

	d.xref = d.ok(monitorStart(lineAlice)).MonitorCrossRefID
	d.fails(monitorStart(lineBob), errPrivDevice)
	mark := d.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	d.waitEvent(mark, csta.KindDeliveredEvent, id)
}

// ---- digest ----

const (
	digestRealm = "cstagw-test"
	alicePass   = "alice-pw-1"
	bobPass     = "bob-pw-2"
)

func digestUsers() sipstack.AuthConfig {
	return sipstack.AuthConfig{Realm: digestRealm, Users: []sipstack.AuthUser{
		{Username: "alice", Password: alicePass, URI: userAlice},
		{Username: "bob", Password: bobPass, URI: userBob},
	}}
}

// challenge sends an INVITE without credentials and returns the
// WWW-Authenticate of the 401 it must get.
func challenge(t *testing.T, c *sipClient) string {
	t.Helper()
	d, res := c.invite(inviteOpts{user: userAlice, line: lineAlice})
	require.Nil(t, d, "an INVITE without credentials was accepted")
	require.Equal(t, 401, res.StatusCode, "INVITE without credentials from a direct client")
	h := header(res, "WWW-Authenticate")
	require.NotEmpty(t, h, "401 without WWW-Authenticate")
	return h
}

// authorization answers a challenge as a client does.
func authorization(t *testing.T, chal string, method sip.RequestMethod, uri sip.Uri, user, pass string) sip.Header {
	t.Helper()
	ch, err := digest.ParseChallenge(chal)
	require.NoError(t, err, "WWW-Authenticate %q", chal)
	require.True(t, digest.CanDigest(ch), "%q", chal)
	cred, err := digest.Digest(ch, digest.Options{Method: string(method), URI: uri.String(), Username: user, Password: pass})
	require.NoError(t, err)
	return sip.NewHeader("Authorization", cred.String())
}

// forge is a dialog of another client with d's Call-ID and tags, as an
// attacker who learned them would send.
func forge(evil *sipClient, d *dialog) *dialog {
	f := &dialog{c: evil, callID: d.callID, user: d.user, line: d.line, from: d.from, to: d.to, target: d.target,
		changed: make(chan struct{})}
	f.cseq.Store(1000)
	f.ended.Store(true) // nothing to sign out of
	return f
}

// (b) Digest authentication of a direct client.
func TestDigestAuthentication(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.SIP.TrustedHosts = []string{"10.0.0.0/8"} // not 127.0.0.1
		c.SIP.Auth = digestUsers()
	}})
	c := e.tcp()
	uri := c.gwURI("cstagw")

	chal := challenge(t, c)
	ch, err := digest.ParseChallenge(chal)
	require.NoError(t, err)
	assert.Equal(t, digestRealm, ch.Realm)

	// Wrong password: 401 again, with a challenge.
	d, res := c.invite(inviteOpts{user: userAlice, line: lineAlice,
		headers: []sip.Header{authorization(t, chal, sip.INVITE, uri, "alice", "not-it")}})
	assert.Nil(t, d)
	assert.Equal(t, 401, res.StatusCode, "wrong password")
	assert.NotEmpty(t, header(res, "WWW-Authenticate"))
	// Unknown account.
	_, res = c.invite(inviteOpts{user: userAlice, line: lineAlice,
		headers: []sip.Header{authorization(t, chal, sip.INVITE, uri, "mallory", alicePass)}})
	assert.Equal(t, 401, res.StatusCode, "unknown account")

	// The identity is the account's uri, not From: alice's account with
	// From bob may not take bob's line...
	// (Each attempt answers a fresh challenge: a nonce count is used once.)
	good := func() sip.Header { return authorization(t, challenge(t, c), sip.INVITE, uri, "alice", alicePass) }
	d, res = c.invite(inviteOpts{user: userBob, line: lineBob, headers: []sip.Header{good()}})
	assert.Nil(t, d)
	assert.Equal(t, 403, res.StatusCode, "alice's account, From bob, bob's line")
	// ... nor with a P-Asserted-Identity (a direct client asserts nothing)...
	_, res = c.invite(inviteOpts{user: userBob, line: lineBob,
		headers: []sip.Header{good(), sip.NewHeader("P-Asserted-Identity", "<"+userBob+">")}})
	assert.Equal(t, 403, res.StatusCode, "alice's account asserting bob, bob's line")
	// ... and does get alice's line.
	d, res = c.invite(inviteOpts{user: userBob, line: lineAlice, headers: []sip.Header{good()}})
	require.NotNil(t, d, "alice's account, alice's line: %d %s", res.StatusCode, res.Reason)

	// In-dialog requests from the same source need no credentials; the
	// session speaks for alice.
	d.ok(getFeatures(lineAlice))
	d.xref = d.ok(monitorStart(lineAlice)).MonitorCrossRefID
	d.fails(monitorStart(lineBob), errPrivDevice)
	d.fails(makeCall(lineBob, extOtherT), errPrivCalling)
	mark := d.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	d.waitEvent(mark, csta.KindDeliveredEvent, id)

	// The same dialog from another address: refused, with or without
	// valid credentials.
	f := forge(newTCPClientFrom(t, e.gw.SIPAddr("tcp"), "127.0.0.2"), d)
	assert.Equal(t, 403, f.info(answerCall(id, lineAlice)).StatusCode, "INFO from 127.0.0.2")
	res = f.request(sip.INFO, answerCall(id, lineAlice), ctCSTA, authorization(t, chal, sip.INFO, uri, "alice", alicePass))
	assert.Equal(t, 403, res.StatusCode, "INFO from 127.0.0.2 with alice's credentials")
	res = f.request(sip.INFO, answerCall(id, lineAlice), ctCSTA, authorization(t, chal, sip.INFO, uri, "bob", bobPass))
	assert.Equal(t, 403, res.StatusCode, "INFO from 127.0.0.2 with bob's credentials")
	assert.Equal(t, 403, f.request(sip.BYE, nil, "").StatusCode, "BYE from 127.0.0.2")
	assert.Equal(t, "alerting", connState(e.sim, id, devAlice), "the forged AnswerCall must not have run")

	// The real session is intact.
	d.ok(answerCall(id, lineAlice))
	d.waitEvent(mark, csta.KindEstablishedEvent, id)
	assert.Equal(t, 1, e.gw.Sessions())
}

// A digest account must not be able to drive a session it did not open:
// here alice signed in through the trusted proxy, and bob, a direct client
// with a valid account, sends an INFO into her dialog from elsewhere.
func TestDigestClientCannotEnterProxyDialog(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.SIP.TrustedHosts = []string{"127.0.0.1/32"}
		c.SIP.Auth = digestUsers()
	}})
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	evil := newTCPClientFrom(t, e.gw.SIPAddr("tcp"), "127.0.0.2")
	chal := challenge(t, evil)
	f := forge(evil, d)
	res := f.request(sip.INFO, setDND(lineAlice, true), ctCSTA, authorization(t, chal, sip.INFO, evil.gwURI("cstagw"), "bob", bobPass))
	assert.Equal(t, 403, res.StatusCode)
	assert.False(t, simDevice(e.sim, devAlice).DND)
}

// ---- (c) untrusted sources and spoofed identities ----

func TestUntrustedAndSpoofed(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) { c.SIP.TrustedHosts = []string{"127.0.0.1/32"} }})
	proxy := e.tcp() // 127.0.0.1: the trusted proxy
	d := signIn(t, proxy, userAlice, lineAlice)
	pai := func(u string) sip.Header { return sip.NewHeader("P-Asserted-Identity", "<"+u+">") }

	// An untrusted source, whatever it claims.
	for _, evil := range []*sipClient{
		newTCPClientFrom(t, e.gw.SIPAddr("tcp"), "127.0.0.2"),
		newClientOn(t, "udp", e.gw.SIPAddr("udp"), "127.0.0.3"),
	} {
		_, res := evil.invite(inviteOpts{user: userAlice, line: lineAlice})
		assert.Equal(t, 403, res.StatusCode, "%s INVITE from an untrusted source", evil.network)
		_, res = evil.invite(inviteOpts{user: userMallory, line: lineAlice, headers: []sip.Header{pai(userAlice)}})
		assert.Equal(t, 403, res.StatusCode, "%s untrusted source asserting alice", evil.network)
		f := forge(evil, d)
		assert.Equal(t, 403, f.info(setDND(lineAlice, true)).StatusCode, "%s in-dialog INFO from an untrusted source", evil.network)
		assert.Equal(t, 403, f.update().StatusCode, "%s UPDATE from an untrusted source", evil.network)
		assert.Equal(t, 403, f.reinvite(requestSystemStatus(lineAlice)).StatusCode, "%s re-INVITE from an untrusted source", evil.network)
		assert.Equal(t, 403, f.request(sip.BYE, nil, "").StatusCode, "%s BYE from an untrusted source", evil.network)
	}
	assert.False(t, simDevice(e.sim, devAlice).DND, "a forged SetDoNotDisturb ran")
	assert.Equal(t, 1, e.gw.Sessions())

	// From the trusted proxy: the line must belong to the identity.
	for _, line := range []string{lineBob, e164Bob, lineShared, lineErin, "tel:40002", "sip:40002@example.com"} {
		_, res := proxy.invite(inviteOpts{user: userAlice, line: line})
		assert.Equal(t, 403, res.StatusCode, "alice's INVITE with lcs:line %s", line)
	}
	_, res := proxy.invite(inviteOpts{user: userAlice, body: doc("RequestSystemStatus", ""), requestUser: devBob})
	assert.Equal(t, 403, res.StatusCode, "Request-URI naming bob's line")
	_, res = proxy.invite(inviteOpts{user: userAlice, body: doc("RequestSystemStatus", lcsExt(lineBob)), requestUser: devAlice})
	assert.Equal(t, 403, res.StatusCode, "lcs:line names bob's line, Request-URI alice's: the body wins")
	// P-Asserted-Identity from the trusted proxy is what counts.
	_, res = proxy.invite(inviteOpts{user: userAlice, line: lineAlice, headers: []sip.Header{pai(userBob)}})
	assert.Equal(t, 403, res.StatusCode, "proxy asserts bob, alice's line")
	d2, res := proxy.invite(inviteOpts{user: userMallory, line: lineAlice, headers: []sip.Header{pai(userAlice)}})
	require.NotNil(t, d2, "control: proxy asserting alice gets alice's line: %d", res.StatusCode)
	assert.Equal(t, 200, d2.bye().StatusCode)

	// Without any trust configured beyond digest, a direct client's PAI is
	// not honoured either (see TestDigestAuthentication).

	// The legitimate session kept working.
	mark := d.mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	d.waitEvent(mark, csta.KindDeliveredEvent, id)
	d.ok(answerCall(id, lineAlice))
	d.waitEvent(mark, csta.KindEstablishedEvent, id)
}

// ---- (d) stolen monitor and call ids ----

func TestStolenIDs(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.tcp()
	da := signIn(t, c, userAlice, lineAlice)
	db := signIn(t, e.tcp(), userBob, lineBob)
	// A second session of alice's, without a monitor: the gateway cannot
	// judge calls from a table there, the PBX must refuse.
	da2 := invited(t, c, userAlice, lineAlice)

	bobEvent := func(kind csta.Kind, id string, act func()) {
		t.Helper()
		mark := db.mark()
		act()
		db.waitEvent(mark, kind, id)
	}
	var id string
	bobEvent(csta.KindDeliveredEvent, "", func() {
		var err error
		id, err = e.sim.PlaceCall(extCaller, devBob)
		require.NoError(t, err)
	})

	// Another session's monitorCrossRefID.
	da.fails(monitorStop(db.xref), errInvalidXref)
	da2.fails(monitorStop(db.xref), errInvalidXref)
	da2.fails(monitorStop(da.xref), errInvalidXref) // even the same user's other session
	assert.Equal(t, 1, simDevice(e.sim, devBob).Monitors)
	assert.Equal(t, 1, simDevice(e.sim, devAlice).Monitors)

	// Bob's alerting call, by its callID, whatever device is named.
	for _, s := range []*dialog{da, da2} {
		for _, dev := range []string{lineAlice, lineBob, extCallerT, ""} {
			s.fails(answerCall(id, dev), errInvalidConn)
		}
	}
	assert.Equal(t, "alerting", connState(e.sim, id, devBob))
	bobEvent(csta.KindEstablishedEvent, id, func() { db.ok(answerCall(id, lineBob)) })

	// Bob's connected call.
	for _, s := range []*dialog{da, da2} {
		for _, dev := range []string{lineAlice, lineBob} {
			s.fails(holdCall(id, dev), errInvalidConn)
			s.fails(clearConnection(id, dev), errInvalidConn)
		}
	}
	assert.Equal(t, "connected", connState(e.sim, id, devBob), "bob's call must be untouched")
	assert.Equal(t, "connected", connState(e.sim, id, extCaller))
	for _, m := range da.events(0) {
		assert.NotEqual(t, id, eventCallID(m), "alice saw bob's call")
	}

	// Bob's session works throughout: his monitor and his calls.
	bobEvent(csta.KindHeldEvent, id, func() { db.ok(holdCall(id, lineBob)) })
	bobEvent(csta.KindRetrievedEvent, id, func() { db.ok(retrieveCall(id, lineBob)) })
	bobEvent(csta.KindConnectionClearedEvent, id, func() { db.ok(clearConnection(id, lineBob)) })
	db.ok(monitorStop(db.xref))
	// And alice's own monitor still serves her.
	mark := da.mark()
	id2, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	da.waitEvent(mark, csta.KindDeliveredEvent, id2)
	da.ok(monitorStop(da.xref))
}

// ---- (e) limits ----

// More INVITEs per second from one untrusted (digest) source than allowed:
// 503 with Retry-After, while the trusted proxy is not throttled at the
// same moment.
func TestInviteRateLimit(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.SIP.TrustedHosts = []string{"127.0.0.1/32"}
		c.SIP.Auth = digestUsers()
		// 0.1/s: no token comes back during the test.
		c.SIP.RateLimit = sipstack.RateLimitConfig{InvitesPerSecond: 0.1, Burst: 3}
	}})
	direct := newTCPClientFrom(t, e.gw.SIPAddr("tcp"), "127.0.0.2")
	// A fresh answer per INVITE: a replayed one would be stale.
	auth := func() sip.Header {
		return authorization(t, challenge(t, direct), sip.INVITE, direct.gwURI("cstagw"), "alice", alicePass)
	}
	// INVITEs for a line the account may not take pass the limiter and are
	// refused after it (403), so no sessions pile up.
	invite := func(c *sipClient, hs ...sip.Header) *sip.Response {
		_, res := c.invite(inviteOpts{user: userAlice, line: lineBob, headers: hs})
		return res
	}
	for i := 0; i < 3; i++ {
		assert.Equal(t, 403, invite(direct, auth()).StatusCode, "INVITE %d within the burst", i+1)
	}
	res := invite(direct, auth())
	require.Equal(t, 503, res.StatusCode, "INVITE over the source's rate")
	ra, err := strconv.Atoi(header(res, "Retry-After"))
	require.NoError(t, err, "503 without a numeric Retry-After: %q", header(res, "Retry-After"))
	assert.GreaterOrEqual(t, ra, 1)

	// The trusted proxy, at the same moment, well past the untrusted burst.
	proxy := e.tcp()
	for i := 0; i < 12; i++ {
		assert.Equal(t, 403, invite(proxy).StatusCode, "trusted proxy INVITE %d", i+1)
	}
	d := signIn(t, proxy, userAlice, lineAlice)
	// The direct source is still throttled, even signing in properly.
	_, res = direct.invite(inviteOpts{user: userAlice, line: lineAlice, headers: []sip.Header{auth()}})
	assert.Equal(t, 503, res.StatusCode, "still over the rate")
	assert.NotEmpty(t, header(res, "Retry-After"))
	// Unauthenticated INVITEs are challenged, not counted nor served.
	challenge(t, direct)
	assert.Equal(t, 1, e.gw.Sessions())
	d.ok(getDND(lineAlice))
}

func TestSessionLimits(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.Gateway.MaxSessionsPerUser = 2
		c.Gateway.MaxSessions = 3
	}})
	c := e.tcp()
	a1 := invited(t, c, userAlice, lineAlice)
	invited(t, c, userAlice, lineAlice)
	refused := func(user, line, why string) {
		t.Helper()
		d, res := c.invite(inviteOpts{user: user, line: line})
		require.Nil(t, d, why)
		assert.Equal(t, 503, res.StatusCode, why)
		assert.Equal(t, "7", header(res, "Retry-After"), "%s: Retry-After is sip.retry_after", why)
	}
	refused(userAlice, lineAlice, "third session of alice (max_sessions_per_user 2)")
	b := signIn(t, c, userBob, lineBob) // another user is not affected
	refused(userCarol, lineShared, "fourth session in total (max_sessions 3)")
	refused(userAlice, lineAlice, "alice again")
	assert.Equal(t, 3, e.gw.Sessions())

	// A session ending frees its place.
	assert.Equal(t, 200, a1.bye().StatusCode)
	require.Eventually(t, func() bool { return e.gw.Sessions() == 2 }, waitLong, pollInterval)
	invited(t, c, userCarol, lineShared)
	refused(userDave, lineShared, "full again")
	// The sessions in place were never disturbed.
	mark := b.mark()
	id, err := e.sim.PlaceCall(extCaller, devBob)
	require.NoError(t, err)
	b.waitEvent(mark, csta.KindDeliveredEvent, id)
}

// max_in_flight: requests piling up on one session (the PBX is slow) are
// answered 503 with Retry-After beyond the cap; another session is not
// affected.
func TestMaxInFlightPerSession(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.Gateway.MaxInFlight = 2
		c.CTI.RequestTimeout = 5 * time.Second
		c.CTI.HeartbeatInterval = 3 * time.Second // the delay holds heartbeats too
	}})
	da := invited(t, e.tcp(), userAlice, lineAlice)
	db := invited(t, e.tcp(), userBob, lineBob)
	require.NoError(t, e.sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDelay, Delay: time.Second}))

	send := func(d *dialog, body []byte) <-chan *sip.Response {
		ch := make(chan *sip.Response, 1)
		req := d.newRequest(sip.INFO, body, ctCSTA)
		go func() {
			res, err := d.c.do(req)
			if err != nil {
				res = nil
			}
			ch <- res
		}()
		return ch
	}
	recv := func(ch <-chan *sip.Response) *sip.Response {
		t.Helper()
		select {
		case r := <-ch:
			require.NotNil(t, r, "no final response")
			return r
		case <-time.After(15 * time.Second):
			t.Fatal("no final response")
			return nil
		}
	}
	first := send(da, getDND(lineAlice))
	require.Eventually(t, func() bool { return e.sim.State().Nodes[0].InFlight["GetDoNotDisturb"] > 0 }, waitLong, time.Millisecond)
	// While it waits for the PBX: three more. One fits (cap 2), two do not.
	results := make(chan *sip.Response, 3)
	for i := 0; i < 3; i++ {
		ch := send(da, getDND(lineAlice))
		go func() { results <- <-ch }()
	}
	var ok, busy []*sip.Response
	// The refusals come at once; the accepted one waits its turn (≥ 1 s).
	for len(busy) < 2 && len(ok)+len(busy) < 3 {
		r := recv(results)
		if r.StatusCode == 503 {
			busy = append(busy, r)
		} else {
			ok = append(ok, r)
		}
	}
	require.Len(t, busy, 2, "requests beyond max_in_flight must be answered 503")
	require.Empty(t, ok, "a request beyond max_in_flight was served")
	retryAfter := []string{}
	for _, r := range busy {
		assert.Empty(t, r.Body())
		retryAfter = append(retryAfter, header(r, "Retry-After"))
	}
	// Meanwhile bob's session: its own budget, two in flight at once.
	b1, b2 := send(db, getDND(lineBob)), send(db, requestSystemStatus(lineBob))
	for _, r := range []*sip.Response{recv(b1), recv(b2)} {
		assert.Equal(t, 200, r.StatusCode, "bob's session must not feel alice's pile-up")
		m, err := csta.Decode(r.Body())
		require.NoError(t, err)
		assert.NotEqual(t, csta.KindCSTAErrorCode, m.Kind, "%s", r.Body())
	}
	// Alice's accepted requests are served.
	ok = append(ok, recv(results), recv(first))
	require.Len(t, ok, 2)
	for _, r := range ok {
		assert.Equal(t, 200, r.StatusCode)
		m, err := csta.Decode(r.Body())
		require.NoError(t, err)
		assert.Equal(t, csta.KindGetDoNotDisturbResponse, m.Kind, "%s", r.Body())
	}
	e.sim.ClearFaults(0)
	da.ok(getDND(lineAlice))
	db.ok(getDND(lineBob))
	for _, ra := range retryAfter {
		assert.Equal(t, "1", ra, "Retry-After of the in-flight 503")
	}
}

// ---- (f) audit ----

// syncBuffer collects the gateway's log lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// audits returns the audit lines logged so far, decoded.
func (s *syncBuffer) audits(t *testing.T) []map[string]any {
	s.mu.Lock()
	text := s.b.String()
	s.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), "log line is not JSON: %s", line)
		if m["audit"] == true {
			out = append(out, m)
		}
	}
	return out
}

func TestAuditLog(t *testing.T) {
	// A gateway of our own beside the harness's, on the same simulator,
	// logging JSON to a buffer.
	base := newEnv(t, envOpts{})
	logs := &syncBuffer{}
	gw, err := gateway.New(base.cfg, gateway.NewLogger(gateway.LogConfig{Level: "info", Format: "json"}, logs))
	require.NoError(t, err)
	require.NoError(t, gw.Start())
	e := &testEnv{t: t, sim: base.sim, gw: gw, cfg: base.cfg}
	t.Cleanup(func() {
		if !e.shutdown {
			e.stop()
		}
	})
	e.waitLinks(ctipool.StateUp)

	c := e.tcp()
	d := signIn(t, c, userAlice, lineAlice)
	db := signIn(t, e.tcp(), userBob, lineBob)
	mark := db.mark()
	bobCall, err := e.sim.PlaceCall(extCaller, devBob)
	require.NoError(t, err)
	db.waitEvent(mark, csta.KindDeliveredEvent, bobCall)

	// act runs one control action on d and returns the one audit line it
	// must have produced.
	act := func(d *dialog, body []byte, wantError string) map[string]any {
		t.Helper()
		before := len(logs.audits(t))
		if wantError == "" {
			d.ok(body)
		} else {
			d.fails(body, wantError)
		}
		after := logs.audits(t)
		require.Len(t, after, before+1, "%s: exactly one audit line per control action", rootName(body))
		return after[before]
	}
	check := func(a map[string]any, user, line, service, result, target string) {
		t.Helper()
		assert.Equal(t, user, a["user"], "user: %v", a)
		assert.Equal(t, line, a["line"], "line: %v", a)
		assert.Equal(t, service, a["service"], "service: %v", a)
		assert.Equal(t, result, a["result"], "result: %v", a)
		if target != "" {
			assert.Contains(t, a["target"], target, "target: %v", a)
		}
		assert.NotEmpty(t, a["session"], "session id: %v", a)
	}

	// Successes.
	mk := act(d, makeCall(lineAlice, extOtherT), "")
	check(mk, userAlice, lineAlice, "MakeCall", "ok", "to "+extOtherT)
	check(act(d, setDND(lineAlice, true), ""), userAlice, lineAlice, "SetDoNotDisturb", "ok", "device "+lineAlice)
	check(act(db, answerCall(bobCall, lineBob), ""), userBob, lineBob, "AnswerCall", "ok", "call "+bobCall)
	// Refusals.
	check(act(d, makeCall(lineBob, extOtherT), errPrivCalling), userAlice, lineAlice, "MakeCall", errPrivCalling, "from "+lineBob)
	check(act(d, setForwarding(lineBob, "forwardImmediate", true, extOtherT), errPrivDevice), userAlice, lineAlice, "SetForwarding", errPrivDevice, lineBob)
	check(act(d, clearConnection(bobCall, lineBob), errInvalidConn), userAlice, lineAlice, "ClearConnection", errInvalidConn, "call "+bobCall)
	check(act(d, monitorStop(db.xref), errInvalidXref), userAlice, lineAlice, "MonitorStop", errInvalidXref, "monitor "+db.xref)
	assert.Equal(t, "connected", connState(e.sim, bobCall, devBob))
	// A query that succeeds changes nothing: no audit line at info level;
	// a refused one is logged like any refusal.
	before := len(logs.audits(t))
	d.ok(getDND(lineAlice))
	assert.Len(t, logs.audits(t), before, "a successful GetDoNotDisturb is audited at debug level only")
	check(act(d, getDND(lineBob), errPrivDevice), userAlice, lineAlice, "GetDoNotDisturb", errPrivDevice, lineBob)

	// A request that reaches no session is no control action of anyone: no
	// audit line claims a user for it.
	before = len(logs.audits(t))
	evil := newTCPClientFrom(t, e.gw.SIPAddr("tcp"), "127.0.0.2")
	req := withBody(evil.outOfDialog(sip.INFO, userAlice, "gw-x"), setDND(lineAlice, false), ctCSTA)
	assert.Equal(t, 481, evil.mustDo(req).StatusCode)
	assert.Len(t, logs.audits(t), before)
}

// ---- (g) CTI links over TLS ----

type statusDoc struct {
	Links []struct {
		Name       string `json:"name"`
		State      string `json:"state"`
		Generation uint64 `json:"generation"`
		LastError  string `json:"last_error"`
	} `json:"links"`
}

func TestCTILinkTLS(t *testing.T) {
	pbxCA := newSecCA(t, "PBX CA")
	otherCA := newSecCA(t, "Some other CA")
	dir := t.TempDir()
	caFile := writeFile(t, dir, "pbx-ca.crt", pbxCA.pem)
	wrongCAFile := writeFile(t, dir, "wrong-ca.crt", otherCA.pem)
	const name = "cti.pbx.test"

	// A second PBX whose certificate has expired.
	ecfg := ctisim.DefaultConfig()
	ecfg.Listen = []string{"127.0.0.1:0"}
	ecfg.Stations = "40000-40999"
	ecfg.TLS = &tls.Config{Certificates: []tls.Certificate{pbxCA.pair(t, leafOpts{cn: name, dns: []string{name}, expired: true})}}
	expSim, err := ctisim.New(ecfg)
	require.NoError(t, err)
	require.NoError(t, expSim.Start())
	t.Cleanup(func() { _ = expSim.Close() })

	e := newEnv(t, envOpts{noWait: true,
		sim: func(c *ctisim.Config) {
			c.TLS = &tls.Config{Certificates: []tls.Certificate{pbxCA.pair(t, leafOpts{cn: name, dns: []string{name}})}}
		},
		gw: func(c *gateway.Config) {
			// Three links failing their handshakes every 20–100 ms load a
			// 2-core machine: keep the good link's heartbeat out of that.
			c.CTI.HeartbeatInterval = 2 * time.Second
			addr := c.CTI.Links[0].Address
			c.CTI.Links[0].TLS = &ctipool.TLSConfig{CAFile: caFile, ServerName: name}
			c.CTI.Links = append(c.CTI.Links,
				ctipool.LinkConfig{Name: "cti-wrong-ca", Address: addr, AppSession: true,
					TLS: &ctipool.TLSConfig{CAFile: wrongCAFile, ServerName: name}},
				ctipool.LinkConfig{Name: "cti-wrong-name", Address: addr, AppSession: true,
					TLS: &ctipool.TLSConfig{CAFile: caFile, ServerName: "other.pbx.test"}},
				ctipool.LinkConfig{Name: "cti-expired", Address: expSim.Addrs()[0], AppSession: true,
					TLS: &ctipool.TLSConfig{CAFile: caFile, ServerName: name}},
			)
		}})
	status := func() map[string]struct {
		state, err string
		gen        uint64
	} {
		code, body := httpGet(t, "http://"+e.gw.AdminAddr()+"/status")
		require.Equal(t, 200, code)
		var st statusDoc
		require.NoError(t, json.Unmarshal([]byte(body), &st), body)
		out := map[string]struct {
			state, err string
			gen        uint64
		}{}
		for _, l := range st.Links {
			out[l.Name] = struct {
				state, err string
				gen        uint64
			}{l.State, l.LastError, l.Generation}
		}
		return out
	}
	want := map[string][]string{
		"cti-wrong-ca":   {"CA", "ca_file", wrongCAFile},
		"cti-wrong-name": {"server_name", "other.pbx.test"},
		"cti-expired":    {"expired", name}, // which certificate, and why
	}
	reached := assert.Eventually(t, func() bool {
		st := status()
		if st["cti-a"].state != "up" {
			return false
		}
		for link, words := range want {
			for _, w := range words {
				if !strings.Contains(st[link].err, w) {
					return false
				}
			}
		}
		return true
	}, waitLong, 20*time.Millisecond)
	st := status()
	require.True(t, reached, "links never reached the expected states: %+v", st)
	for link := range want {
		assert.NotEqual(t, "up", st[link].state, link)
		assert.Zero(t, st[link].gen, "%s must never have come up", link)
		t.Logf("%s: %s", link, st[link].err)
	}
	// Sessions are placed on the good link and work.
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	d.ok(getDND(lineAlice))

	// The operator fixes the CA file in place: the link comes up at its next
	// reconnect, no restart.
	tmp := wrongCAFile + ".new"
	require.NoError(t, os.WriteFile(tmp, pbxCA.pem, 0o600))
	require.NoError(t, os.Rename(tmp, wrongCAFile))
	require.Eventually(t, func() bool { return status()["cti-wrong-ca"].state == "up" }, waitLong, 20*time.Millisecond,
		"the link never came up after its CA file was fixed: %+v", status()["cti-wrong-ca"])
	st = status()
	assert.NotEqual(t, "up", st["cti-wrong-name"].state)
	assert.NotEqual(t, "up", st["cti-expired"].state)
}

// Password guessing stops after sip.auth.max_failures: further attempts
// from that source for that user are refused without a look at the
// password, while the real user signs in from another address; a captured
// Authorization header does not open a second session, nor does a nonce
// answered from another address.
func TestDigestGuessingAndReplay(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.SIP.TrustedHosts = []string{"10.0.0.0/8"} // every 127.x client is direct
		c.SIP.Auth = digestUsers()
		c.SIP.Auth.MaxFailures = 3
		c.SIP.Auth.Lockout = 30 * time.Second
		c.SIP.RateLimit = sipstack.RateLimitConfig{InvitesPerSecond: 1000, Burst: 1000}
	}})
	attacker := newTCPClientFrom(t, e.gw.SIPAddr("tcp"), "127.0.0.2")
	uri := attacker.gwURI("cstagw")
	try := func(c *sipClient, user, pass string) *sip.Response {
		_, res := c.invite(inviteOpts{user: userAlice, line: lineAlice,
			headers: []sip.Header{authorization(t, challenge(t, c), sip.INVITE, uri, user, pass)}})
		return res
	}
	for i := 0; i < 3; i++ {
		assert.Equal(t, 401, try(attacker, "alice", fmt.Sprintf("guess-%d", i)).StatusCode, "guess %d", i+1)
	}
	res := try(attacker, "alice", alicePass)
	assert.Equal(t, 403, res.StatusCode, "the right password after the limit: refused without a look")
	ra, err := strconv.Atoi(header(res, "Retry-After"))
	require.NoError(t, err, "403 without Retry-After")
	assert.InDelta(t, 30, ra, 2)
	// Another user from the same source is not locked (yet).
	_, res = attacker.invite(inviteOpts{user: userBob, line: lineBob,
		headers: []sip.Header{authorization(t, challenge(t, attacker), sip.INVITE, uri, "bob", bobPass)}})
	assert.Equal(t, 200, res.StatusCode, "bob from the attacker's address")

	// The real alice, from her own address, signs in.
	real := newTCPClientFrom(t, e.gw.SIPAddr("tcp"), "127.0.0.3")
	chal := challenge(t, real)
	good := authorization(t, chal, sip.INVITE, uri, "alice", alicePass)
	d, res := real.invite(inviteOpts{user: userAlice, line: lineAlice, headers: []sip.Header{good}})
	require.NotNil(t, d, "alice from her own address: %d %s", res.StatusCode, res.Reason)

	// Her Authorization header, captured and replayed as it was: 401 with
	// a fresh challenge marked stale, never 200.
	for _, c := range []*sipClient{real, newTCPClientFrom(t, e.gw.SIPAddr("tcp"), "127.0.0.4")} {
		d2, res := c.invite(inviteOpts{user: userAlice, line: lineAlice, headers: []sip.Header{good}})
		assert.Nil(t, d2)
		assert.Equal(t, 401, res.StatusCode, "replayed credentials")
		ch, err := digest.ParseChallenge(header(res, "WWW-Authenticate"))
		require.NoError(t, err)
		assert.True(t, ch.Stale, "a replay is answered stale=true")
	}
	// A challenge taken at one address and answered from another.
	stolen := authorization(t, challenge(t, attacker), sip.INVITE, uri, "alice", alicePass)
	_, res = newTCPClientFrom(t, e.gw.SIPAddr("tcp"), "127.0.0.5").invite(inviteOpts{user: userAlice, line: lineAlice, headers: []sip.Header{stolen}})
	assert.Equal(t, 401, res.StatusCode, "a nonce issued to another address")

	m := metricsText(t, e)
	assert.Contains(t, m, "cstagw_auth_failures_total 3")
	assert.Contains(t, m, "cstagw_auth_lockouts_total 1")
}

// Unparseable datagrams from anyone are counted; the legitimate client
// keeps working through the flood.
func TestJunkDatagramsCounted(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := signIn(t, e.udp(), userAlice, lineAlice)
	count := func() float64 {
		for _, l := range strings.Split(metricsText(t, e), "\n") {
			if strings.HasPrefix(l, `cstagw_sip_parse_errors_total{transport="udp"} `) {
				v, err := strconv.ParseFloat(strings.Fields(l)[1], 64)
				require.NoError(t, err)
				return v
			}
		}
		t.Fatal("no cstagw_sip_parse_errors_total for udp")
		return 0
	}
	before := count()
	conn, err := net.Dial("udp", e.gw.SIPAddr("udp"))
	require.NoError(t, err)
	defer conn.Close()
	junk := []byte(strings.Repeat("garbage that is not SIP ", 300))
	for i := 0; i < 300; i++ {
		_, err := conn.Write(junk)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return count()-before >= 250 }, waitLong, pollInterval, "junk not counted")
	assert.Equal(t, csta.KindGetDoNotDisturbResponse, d.ok(getDND(lineAlice)).Kind)
}

// INVITEs whose 200 OK is never acknowledged cannot lock a user out: at
// the per-user limit, a sign-in ends one of those unconfirmed sessions
// instead of getting 503.
func TestUnacknowledgedInvitesDoNotLockTheUserOut(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) { c.Gateway.MaxSessionsPerUser = 2 }})
	c := e.tcp()
	for i := 0; i < 2; i++ {
		req := withBody(c.outOfDialog(sip.INVITE, userAlice, ""), sipeInviteBody(lineAlice), ctCSTA)
		req.AppendHeader(c.contact())
		req.AppendHeader(sip.NewHeader("Supported", "timer"))
		res := c.mustDo(req) // and no ACK, ever
		require.Equal(t, 200, res.StatusCode)
	}
	require.Equal(t, 2, e.gw.Sessions())
	c.Close()                           // the attacker is gone; the BYEs of its sessions go nowhere
	time.Sleep(1100 * time.Millisecond) // past the grace an unacknowledged session gets
	d := signIn(t, e.tcp(), userAlice, lineAlice)
	assert.Equal(t, csta.KindGetDoNotDisturbResponse, d.ok(getDND(lineAlice)).Kind)
	assert.Equal(t, 2, e.gw.Sessions(), "one unacknowledged session made room")
	// The second unacknowledged session makes room too; a confirmed
	// session is never the one to go.
	d2, res := e.tcp().invite(inviteOpts{user: userAlice, line: lineAlice})
	require.NotNil(t, d2, "the second sign-in answered %d", res.StatusCode)
	_, res = e.tcp().invite(inviteOpts{user: userAlice, line: lineAlice})
	assert.Equal(t, 503, res.StatusCode, "two confirmed sessions: the user is at the limit")
	assert.False(t, d.byeReceived(), "a confirmed session was ended")
	assert.False(t, d2.byeReceived(), "a confirmed session was ended")
}

// TCP hygiene: an idle connection without a dialog is closed after
// sip.tcp_idle_timeout, a message trickled in is cut at sip.read_timeout,
// one untrusted address gets at most sip.max_connections_per_source, and
// a connection carrying a dialog stays however quiet.
func TestTCPConnectionHygiene(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.SIP.TrustedHosts = []string{"127.0.0.1/32"}
		c.SIP.TCPIdleTimeout = time.Second
		c.SIP.ReadTimeout = 600 * time.Millisecond
		c.SIP.MaxConnectionsPerSource = 3
	}})
	d := signIn(t, e.tcp(), userAlice, lineAlice) // from 127.0.0.1, trusted
	dial := func() net.Conn {
		dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: time.Second}
		c, err := dl.Dial("tcp", e.gw.SIPAddr("tcp"))
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}
	closedWithin := func(c net.Conn, limit time.Duration) (bool, time.Duration) {
		start := time.Now()
		_ = c.SetReadDeadline(start.Add(limit))
		_, err := c.Read(make([]byte, 64))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false, time.Since(start)
		}
		return err != nil, time.Since(start)
	}

	// Idle, no dialog: closed after about a second.
	idle := dial()
	closed, took := closedWithin(idle, 3*time.Second)
	assert.True(t, closed, "an idle connection without a dialog stayed open")
	assert.GreaterOrEqual(t, took, 900*time.Millisecond, "closed before tcp_idle_timeout")

	// One byte every 100 ms: the message never completes, cut at 600 ms.
	slow := dial()
	cut := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		msg := []byte("INVITE sip:cstagw@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.2\r\n")
		for _, b := range msg {
			if _, err := slow.Write([]byte{b}); err != nil {
				break
			}
			time.Sleep(100 * time.Millisecond) // the attacker's pace
		}
		cut <- time.Since(start)
	}()
	closed, _ = closedWithin(slow, 5*time.Second)
	assert.True(t, closed, "a trickled message was waited for")

	// The trusted client's dialog connection stayed through all of it.
	time.Sleep(2200 * time.Millisecond) // over two idle timeouts of silence
	assert.Equal(t, csta.KindGetDoNotDisturbResponse, d.ok(getDND(lineAlice)).Kind)
	assert.False(t, d.byeReceived())
}

// One untrusted address gets at most sip.max_connections_per_source
// connections; the next is closed at once. A trusted address is not
// capped per address.
func TestTCPConnectionsCappedPerSource(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.SIP.TrustedHosts = []string{"127.0.0.1/32"}
		c.SIP.MaxConnectionsPerSource = 3
	}})
	dial := func(from string) net.Conn {
		dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: time.Second}
		c, err := dl.Dial("tcp", e.gw.SIPAddr("tcp"))
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}
	open := func(c net.Conn) bool { // still open after a short wait
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 16))
		var ne net.Error
		return errors.As(err, &ne) && ne.Timeout()
	}
	var keep []net.Conn
	for i := 0; i < 3; i++ {
		keep = append(keep, dial("127.0.0.2"))
	}
	assert.False(t, open(dial("127.0.0.2")), "a fourth connection from one untrusted address was kept")
	for _, c := range keep {
		assert.True(t, open(c), "a connection within the cap was closed")
	}
	for i := 0; i < 5; i++ {
		assert.True(t, open(dial("127.0.0.1")), "the trusted address is not capped per address")
	}
}

// With no trust configured at all (no trusted_hosts, no client CA, no
// digest accounts) only loopback sources are served: a sign-in from this
// machine's own non-loopback address is refused over a real socket, one
// from 127.0.0.1 works.
func TestNoTrustConfiguredServesLoopbackOnly(t *testing.T) {
	ip := nonLoopbackIPv4(t)
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.SIP.TrustedHosts = nil
		c.SIP.Listen = []string{"udp:127.0.0.1:0", "tcp:" + net.JoinHostPort(ip, "0")}
	}})
	signIn(t, e.udp(), userAlice, lineAlice)

	remote := newTCPClientFrom(t, e.gw.SIPAddr("tcp"), ip)
	d, res := remote.invite(inviteOpts{user: userBob, line: lineBob})
	assert.Nil(t, d)
	assert.Equal(t, 403, res.StatusCode, "INVITE from %s with no trust configured", ip)
	assert.Equal(t, 403, remote.mustDo(remote.outOfDialog(sip.OPTIONS, userBob, "")).StatusCode)
	assert.Equal(t, 1, e.gw.Sessions())
}

// nonLoopbackIPv4 returns an address of this machine outside 127.0.0.0/8,
// or skips the test when there is none.
func nonLoopbackIPv4(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	require.NoError(t, err)
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address on this machine")
	return ""
}
