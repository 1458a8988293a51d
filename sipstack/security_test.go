package sipstack

// Unit tests of the security building blocks: the per-source INVITE rate
// limiter, the digest authenticator (HMAC nonces, a full challenge →
// response round trip computed as a client would with icholy/digest), the
// access decision of check, and the TLS certificate store (load errors,
// reload from disk without a restart, TLS ≥ 1.2, mutual TLS).

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ---- rate limiter ----

func TestRateLimiterTokenMath(t *testing.T) {
	rl := newRateLimiter(RateLimitConfig{InvitesPerSecond: 2, Burst: 3, TrustedInvitesPerSecond: 100, TrustedBurst: 50})
	t0 := time.Unix(1_700_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	// A new source starts with a full bucket: exactly burst INVITEs.
	for i := 0; i < 3; i++ {
		require.True(t, rl.allow("192.0.2.1", false, t0), "INVITE %d of the burst", i+1)
	}
	require.False(t, rl.allow("192.0.2.1", false, t0), "over the burst")
	// Other sources have their own buckets.
	require.True(t, rl.allow("192.0.2.2", false, t0), "another source is not throttled by the first")

	// 2/s: half a token after 250 ms is not enough, a whole one after 500 ms is.
	require.False(t, rl.allow("192.0.2.1", false, at(250*time.Millisecond)))
	require.True(t, rl.allow("192.0.2.1", false, at(500*time.Millisecond)))
	require.False(t, rl.allow("192.0.2.1", false, at(500*time.Millisecond)))

	// A long pause refills to the burst, not beyond.
	n := 0
	for rl.allow("192.0.2.1", false, at(time.Hour)) {
		n++
		require.Less(t, n, 100)
	}
	assert.Equal(t, 3, n, "refill must be capped at burst")

	// Refused INVITEs do not consume tokens: steady 2/s stays allowed.
	for i := 1; i <= 10; i++ {
		now := at(time.Hour + time.Duration(i)*500*time.Millisecond)
		require.True(t, rl.allow("192.0.2.1", false, now), "steady 2/s, INVITE %d", i)
		require.False(t, rl.allow("192.0.2.1", false, now))
	}
}

func TestRateLimiterTrustedBudget(t *testing.T) {
	rl := newRateLimiter(RateLimitConfig{InvitesPerSecond: 1, Burst: 2, TrustedInvitesPerSecond: 100, TrustedBurst: 50})
	t0 := time.Unix(1_700_000_000, 0)
	count := func(src string, trusted bool, now time.Time) int {
		n := 0
		for rl.allow(src, trusted, now) {
			n++
			if n > 1000 {
				break
			}
		}
		return n
	}
	// At the same instant an untrusted source gets its small burst and the
	// trusted proxy its large one.
	assert.Equal(t, 2, count("192.0.2.9", false, t0))
	assert.Equal(t, 50, count("10.0.0.1", true, t0), "trusted burst")
	// And refills at the trusted rate: 100/s → 10 in 100 ms.
	assert.Equal(t, 10, count("10.0.0.1", true, t0.Add(100*time.Millisecond)), "trusted rate")
	assert.Equal(t, 0, count("192.0.2.9", false, t0.Add(100*time.Millisecond)), "untrusted rate")

	// Defaults give trusted peers a much larger budget.
	d := RateLimitConfig{}.withDefaults()
	assert.Equal(t, float64(DefaultInvitesPerSecond), d.InvitesPerSecond)
	assert.Equal(t, DefaultInviteBurst, d.Burst)
	assert.Greater(t, d.TrustedInvitesPerSecond, 100*d.InvitesPerSecond)
	assert.Greater(t, d.TrustedBurst, 100*d.Burst)
	def := newRateLimiter(RateLimitConfig{})
	assert.Equal(t, DefaultInviteBurst, countWith(def, "192.0.2.10", false, t0))
	assert.Equal(t, DefaultTrustedInviteBurst, countWith(def, "10.0.0.2", true, t0))
}

func countWith(rl *rateLimiter, src string, trusted bool, now time.Time) int {
	n := 0
	for rl.allow(src, trusted, now) {
		n++
		if n > 1_000_000 {
			break
		}
	}
	return n
}

// The bucket table is bounded: a flood of distinct sources cannot grow it
// without limit; newcomers are refused while it is full, known sources keep
// their buckets, and sources that have refilled are forgotten later.
func TestRateLimiterBucketTableBound(t *testing.T) {
	rl := newRateLimiter(RateLimitConfig{InvitesPerSecond: 5, Burst: 20})
	t0 := time.Unix(1_700_000_000, 0)
	for i := 0; i < maxBuckets; i++ {
		if !rl.allow("flood-"+strconv.Itoa(i), false, t0) {
			t.Fatalf("source %d refused before the table was full", i)
		}
	}
	require.Len(t, rl.buckets, maxBuckets)
	assert.False(t, rl.allow("newcomer", false, t0), "a new source while the table is full")
	assert.False(t, rl.allow("newcomer", false, t0.Add(2*time.Second)),
		"still full: nobody has refilled after 2 s at 5/s with burst 20")
	assert.LessOrEqual(t, len(rl.buckets), maxBuckets, "the table must never grow past its bound")
	assert.True(t, rl.allow("flood-7", false, t0.Add(2*time.Second)), "a known source keeps its bucket")

	// 5 s later every bucket but flood-7's has refilled: they are forgotten
	// and the newcomer gets one.
	later := t0.Add(5 * time.Second)
	assert.True(t, rl.allow("newcomer", false, later))
	assert.Less(t, len(rl.buckets), 10, "refilled buckets must be collected")
}

// A trusted proxy must never be throttled by other sources: a flood of
// distinct (spoofed UDP, or digest-authenticated) sources that fills the
// bucket table must not lock out a trusted proxy that shows up then.
func TestRateLimiterTableFullDoesNotLockOutTrustedProxy(t *testing.T) {
	rl := newRateLimiter(RateLimitConfig{})
	t0 := time.Unix(1_700_000_000, 0)
	for i := 0; i < maxBuckets; i++ {
		rl.allow("flood-"+strconv.Itoa(i), false, t0)
	}
	if !rl.allow("10.0.0.1", true, t0.Add(100*time.Millisecond)) {
		t.Fatal("a trusted proxy with no bucket yet was refused while the table is full")
	}
}

// ---- digest authentication ----

func testAuthenticator(t *testing.T, ttl time.Duration) *authenticator {
	t.Helper()
	a, err := newAuthenticator(AuthConfig{Realm: "test-realm", NonceTTL: ttl, Users: []AuthUser{
		{Username: "alice", Password: "alice-secret", URI: "sip:alice@example.com"},
		{Username: "bob", Password: "bob-secret", URI: "sip:bob@example.com"},
	}})
	require.NoError(t, err)
	require.NotNil(t, a)
	return a
}

func TestNonceValidity(t *testing.T) {
	a := testAuthenticator(t, time.Minute)
	t0 := time.Unix(1_700_000_000, 0)
	n := a.nonce(t0, testSrc)
	assert.True(t, a.nonceValid(n, testSrc, t0), "fresh nonce")
	assert.True(t, a.nonceValid(n, testSrc, t0.Add(time.Minute)), "at exactly nonce_ttl")
	assert.False(t, a.nonceValid(n, testSrc, t0.Add(time.Minute+time.Second)), "past nonce_ttl")
	assert.True(t, a.nonceValid(n, testSrc, t0.Add(-30*time.Second)), "small clock skew")
	assert.False(t, a.nonceValid(n, testSrc, t0.Add(-2*time.Minute)), "a nonce from the future")

	raw, err := base64.RawURLEncoding.DecodeString(n)
	require.NoError(t, err)
	require.Len(t, raw, 24)
	enc := base64.RawURLEncoding.EncodeToString
	// The MAC covers the timestamp: moving it (to extend a nonce's life)
	// breaks it.
	moved := append([]byte(nil), raw...)
	moved[7]++
	assert.False(t, a.nonceValid(enc(moved), testSrc, t0), "timestamp tampered")
	for i := 8; i < 24; i++ {
		bad := append([]byte(nil), raw...)
		bad[i] ^= 0x01
		assert.False(t, a.nonceValid(enc(bad), testSrc, t0), "MAC byte %d tampered", i)
	}
	assert.False(t, a.nonceValid(enc(raw[:23]), testSrc, t0), "short")
	assert.False(t, a.nonceValid(enc(append(raw, 0)), testSrc, t0), "long")
	assert.False(t, a.nonceValid("", testSrc, t0))
	assert.False(t, a.nonceValid("not base64 !!", testSrc, t0))
	// Another gateway (another key) cannot mint our nonces.
	other := testAuthenticator(t, time.Minute)
	assert.False(t, a.nonceValid(other.nonce(t0, testSrc), testSrc, t0), "nonce of another key")
	assert.True(t, other.nonceValid(other.nonce(t0, testSrc), testSrc, t0))
}

// clientAuthorize answers a WWW-Authenticate challenge as a SIP client
// would, with icholy/digest.
func clientAuthorize(t *testing.T, challenge, method, uri, user, password string) string {
	t.Helper()
	ch, err := digest.ParseChallenge(challenge)
	require.NoError(t, err, "challenge %q", challenge)
	require.True(t, digest.CanDigest(ch), "a client cannot answer %q", challenge)
	cred, err := digest.Digest(ch, digest.Options{Method: method, URI: uri, Username: user, Password: password})
	require.NoError(t, err)
	return cred.String()
}

// wireRequest builds a request as it arrives off the wire.
func wireRequest(t *testing.T, method, from string, headers ...string) *sip.Request {
	t.Helper()
	raw := method + " sip:cstagw@127.0.0.1:5060 SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP 192.0.2.7:5060;branch=z9hG4bK-" + strconv.Itoa(int(time.Now().UnixNano()%1e9)) + "\r\n" +
		"From: <" + from + ">;tag=f1\r\n" +
		"To: <sip:cstagw@127.0.0.1>\r\n" +
		"Call-ID: sec-" + method + "\r\n" +
		"CSeq: 1 " + method + "\r\n" +
		"Contact: <sip:client@192.0.2.7:5060;transport=tcp>\r\n"
	for _, h := range headers {
		raw += h + "\r\n"
	}
	raw += "Content-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(raw))
	require.NoError(t, err)
	req := m.(*sip.Request)
	req.SetSource("192.0.2.7:5060")
	req.SetTransport("TCP")
	return req
}

func TestDigestChallengeResponseRoundTrip(t *testing.T) {
	a := testAuthenticator(t, time.Minute)
	now := time.Now()
	h := a.challenge(now, testSrc, false)
	require.Equal(t, "WWW-Authenticate", h.Name())
	ch, err := digest.ParseChallenge(h.Value())
	require.NoError(t, err)
	assert.Equal(t, "test-realm", ch.Realm)
	assert.True(t, ch.SupportsQOP("auth"))
	assert.Equal(t, "MD5", ch.Algorithm)
	assert.True(t, a.nonceValid(ch.Nonce, testSrc, now))

	const uri = "sip:cstagw@127.0.0.1:5060"
	auth := clientAuthorize(t, h.Value(), "INVITE", uri, "alice", "alice-secret")
	// Through the parser, as it comes off the wire.
	req := wireRequest(t, "INVITE", "sip:bob@example.com", "Authorization: "+auth)
	assert.Equal(t, "sip:alice@example.com", a.verify(req, now), "the identity is the account's uri, not From")
	assert.Empty(t, a.verify(req, now.Add(59*time.Second)), "the same nonce count again is a replay")

	// A client without qop (RFC 2069 style) and with SHA-256 also works.
	ch2, err := digest.ParseChallenge(a.challenge(now, testSrc, false).Value())
	require.NoError(t, err)
	ch2.QOP = nil
	c2, err := digest.Digest(ch2, digest.Options{Method: "INVITE", URI: uri, Username: "bob", Password: "bob-secret"})
	require.NoError(t, err)
	assert.Equal(t, "sip:bob@example.com", a.verify(wireRequest(t, "INVITE", "sip:x@example.com", "Authorization: "+c2.String()), now))
	assert.Empty(t, a.verify(wireRequest(t, "INVITE", "sip:x@example.com", "Authorization: "+c2.String()), now),
		"without qop a nonce answers once")
	ch2, err = digest.ParseChallenge(a.challenge(now, testSrc, false).Value())
	require.NoError(t, err)
	ch2.QOP = nil
	ch2.Algorithm = "SHA-256"
	c3, err := digest.Digest(ch2, digest.Options{Method: "INVITE", URI: uri, Username: "bob", Password: "bob-secret"})
	require.NoError(t, err)
	assert.Equal(t, "sip:bob@example.com", a.verify(wireRequest(t, "INVITE", "sip:x@example.com", "Authorization: "+c3.String()), now))
}

func TestDigestRefusals(t *testing.T) {
	a := testAuthenticator(t, time.Minute)
	now := time.Now()
	const uri = "sip:cstagw@127.0.0.1:5060"
	chal := a.challenge(now, testSrc, false).Value()
	verify := func(method string, hdr string, at time.Time) string {
		var hs []string
		if hdr != "" {
			hs = append(hs, "Authorization: "+hdr)
		}
		return a.verify(wireRequest(t, method, "sip:alice@example.com", hs...), at)
	}
	good := clientAuthorize(t, chal, "INVITE", uri, "alice", "alice-secret")
	require.Equal(t, "sip:alice@example.com", verify("INVITE", good, now), "control: the good answer passes")

	assert.Empty(t, verify("INVITE", "", now), "no Authorization")
	assert.Empty(t, verify("INVITE", `Basic YWxpY2U6YWxpY2Utc2VjcmV0`, now), "not digest")
	assert.Empty(t, verify("INVITE", clientAuthorize(t, chal, "INVITE", uri, "alice", "wrong"), now), "wrong password")
	assert.Empty(t, verify("INVITE", clientAuthorize(t, chal, "INVITE", uri, "alice", "bob-secret"), now), "another account's password")
	assert.Empty(t, verify("INVITE", clientAuthorize(t, chal, "INVITE", uri, "mallory", "alice-secret"), now), "unknown account")
	assert.Empty(t, verify("INFO", good, now), "answer computed for another method")
	assert.Empty(t, verify("INVITE", good, now.Add(time.Minute+2*time.Second)), "nonce past nonce_ttl")

	// A nonce the client made up (an old timestamp it wants to keep alive,
	// or another key), answered with the right password.
	forged := a.nonce(now, testSrc)
	raw, _ := base64.RawURLEncoding.DecodeString(forged)
	raw[9] ^= 0xff
	fch := &digest.Challenge{Realm: "test-realm", Nonce: base64.RawURLEncoding.EncodeToString(raw), Algorithm: "MD5", QOP: []string{"auth"}}
	assert.Empty(t, verify("INVITE", clientAuthorize(t, fch.String(), "INVITE", uri, "alice", "alice-secret"), now), "forged nonce")
	other := testAuthenticator(t, time.Minute)
	assert.Empty(t, verify("INVITE", clientAuthorize(t, other.challenge(now, testSrc, false).Value(), "INVITE", uri, "alice", "alice-secret"), now),
		"nonce of another gateway")
	// Another realm.
	rch := &digest.Challenge{Realm: "other-realm", Nonce: a.nonce(now, testSrc), Algorithm: "MD5", QOP: []string{"auth"}}
	assert.Empty(t, verify("INVITE", clientAuthorize(t, rch.String(), "INVITE", uri, "alice", "alice-secret"), now), "another realm")
	// The response field tampered.
	cred, err := digest.ParseCredentials(good)
	require.NoError(t, err)
	cred.Response = strings.Repeat("0", len(cred.Response))
	assert.Empty(t, verify("INVITE", cred.String(), now), "response tampered")
	// Another user name with alice's response.
	cred, _ = digest.ParseCredentials(good)
	cred.Username = "bob"
	assert.Empty(t, verify("INVITE", cred.String(), now), "username swapped")
}

func TestAuthenticatorConfig(t *testing.T) {
	a, err := newAuthenticator(AuthConfig{})
	require.NoError(t, err)
	assert.Nil(t, a, "no users: no authentication")

	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(pwFile, []byte("from-file\r\n"), 0o600))
	a, err = newAuthenticator(AuthConfig{Users: []AuthUser{{Username: "carol", PasswordFile: pwFile, URI: "sip:carol@example.com"}}})
	require.NoError(t, err)
	assert.Equal(t, "cstagw", a.realm, "default realm")
	assert.Equal(t, DefaultNonceTTL, a.ttl)
	ch := a.challenge(time.Now(), testSrc, false).Value()
	auth := clientAuthorize(t, ch, "INVITE", "sip:gw", "carol", "from-file")
	assert.Equal(t, "sip:carol@example.com", a.verify(wireRequest(t, "INVITE", "sip:x@y", "Authorization: "+auth), time.Now()),
		"password_file, trailing newline trimmed")

	_, err = newAuthenticator(AuthConfig{Users: []AuthUser{{Username: "dave", PasswordFile: filepath.Join(dir, "missing"), URI: "sip:d@e"}}})
	assert.ErrorContains(t, err, "password_file")
	_, err = newAuthenticator(AuthConfig{Users: []AuthUser{{Username: "dave", Password: "x"}}})
	assert.ErrorContains(t, err, "uri", "an account without uri")
	_, err = newAuthenticator(AuthConfig{Users: []AuthUser{{Username: "dave", URI: "sip:d@e"}}})
	assert.Error(t, err, "an account without a password")
	err = Config{Auth: AuthConfig{Users: []AuthUser{{Username: "dave", URI: "sip:d@e"}}}}.Validate("sip")
	assert.ErrorContains(t, err, "sip.auth")
}

// ---- the access decision ----

func TestCheckAccess(t *testing.T) {
	a := testAuthenticator(t, time.Minute)
	trusted, err := ParseTrusted([]string{"10.0.0.0/8"})
	require.NoError(t, err)
	now := time.Now()
	authFor := func(method, user, pw string) string {
		return "Authorization: " + clientAuthorize(t, a.challenge(now, testSrc, false).Value(), method, "sip:cstagw@127.0.0.1:5060", user, pw)
	}
	from := func(req *sip.Request, src, transport string) *sip.Request {
		req.SetSource(src)
		req.SetTransport(transport)
		return req
	}
	pai := "P-Asserted-Identity: \"Alice\" <sip:alice@example.com>"

	t.Run("trusted proxy: P-Asserted-Identity honoured", func(t *testing.T) {
		s := testServer(trusted, nil, nil)
		acc := s.check(from(wireRequest(t, "INVITE", "sip:mallory@example.com", pai), "10.1.2.3:5060", "TCP"), nil)
		assert.Equal(t, access{ok: true, trusted: true, identity: "sip:alice@example.com"}, acc)
		acc = s.check(from(wireRequest(t, "INVITE", "sip:mallory@example.com"), "10.1.2.3:5060", "TCP"), nil)
		assert.Equal(t, access{ok: true, trusted: true, identity: "sip:mallory@example.com"}, acc, "no PAI: From")
	})
	t.Run("untrusted source refused, PAI or not", func(t *testing.T) {
		s := testServer(trusted, nil, nil)
		assert.False(t, s.check(from(wireRequest(t, "INVITE", "sip:alice@example.com", pai), "192.0.2.7:5060", "TCP"), nil).ok)
		assert.False(t, s.check(from(wireRequest(t, "INVITE", "sip:alice@example.com"), "127.0.0.1:5060", "UDP"), nil).ok)
		// A source spelled as an IPv4-mapped IPv6 address is the same source.
		assert.True(t, s.check(from(wireRequest(t, "INVITE", "sip:alice@example.com"), "[::ffff:10.1.2.3]:5060", "TCP"), nil).ok)
	})
	t.Run("digest: identity is the account, PAI and From ignored", func(t *testing.T) {
		s := testServer(trusted, a, nil)
		acc := s.check(from(wireRequest(t, "INVITE", "sip:alice@example.com", pai, authFor("INVITE", "bob", "bob-secret")), "192.0.2.7:5060", "UDP"), nil)
		assert.Equal(t, access{ok: true, identity: "sip:bob@example.com", digest: true}, acc)
		assert.False(t, s.check(from(wireRequest(t, "INVITE", "sip:bob@example.com", authFor("INVITE", "bob", "nope")), "192.0.2.7:5060", "UDP"), nil).ok)
		assert.False(t, s.check(from(wireRequest(t, "INVITE", "sip:bob@example.com"), "192.0.2.7:5060", "UDP"), nil).ok)
	})
	t.Run("digest dialog: bound to its source host", func(t *testing.T) {
		s := testServer(trusted, a, nil)
		d := &Dialog{authIdentity: "sip:alice@example.com", source: "192.0.2.7:40000"}
		acc := s.check(from(wireRequest(t, "INFO", "sip:bob@example.com", pai), "192.0.2.7:40001", "UDP"), d)
		assert.Equal(t, access{ok: true, identity: "sip:alice@example.com", digest: true}, acc)
		assert.False(t, s.check(from(wireRequest(t, "INFO", "sip:alice@example.com"), "192.0.2.8:40000", "UDP"), d).ok,
			"another host")
		assert.False(t, s.check(from(wireRequest(t, "INFO", "sip:alice@example.com", authFor("INFO", "bob", "bob-secret")), "192.0.2.8:40000", "UDP"), d).ok,
			"another host with valid credentials of another account")
	})
	t.Run("mutual TLS peer trusted on TLS only", func(t *testing.T) {
		s := testServer(trusted, nil, &certStore{cfg: TLSConfig{ClientCAFile: "clients-ca.pem"}})
		acc := s.check(from(wireRequest(t, "INVITE", "sip:mallory@example.com", pai), "192.0.2.7:5061", "TLS"), nil)
		assert.Equal(t, access{ok: true, trusted: true, identity: "sip:alice@example.com"}, acc)
		assert.False(t, s.check(from(wireRequest(t, "INVITE", "sip:mallory@example.com", pai), "192.0.2.7:5061", "TCP"), nil).ok,
			"the same peer over TCP presented no certificate")
		// TLS without client_ca_file proves nothing about the peer.
		s = testServer(trusted, nil, &certStore{cfg: TLSConfig{}})
		assert.False(t, s.check(from(wireRequest(t, "INVITE", "sip:mallory@example.com", pai), "192.0.2.7:5061", "TLS"), nil).ok)
	})
	t.Run("no trust configured: loopback only, as From", func(t *testing.T) {
		s := testServer(nil, nil, nil)
		acc := s.check(from(wireRequest(t, "INVITE", "sip:carol@example.com", pai), "127.0.0.9:5060", "UDP"), nil)
		assert.Equal(t, access{ok: true, identity: "sip:carol@example.com"}, acc, "PAI from an untrusted peer is not honoured")
		assert.False(t, s.check(from(wireRequest(t, "INVITE", "sip:carol@example.com"), "192.0.2.7:5060", "UDP"), nil).ok)
	})
}

// An in-dialog request of a dialog a trusted proxy opened, sent from an
// untrusted address with valid digest credentials of another account, must
// not be let into that dialog: the dialog's user is not that account.
func TestCheckDigestCannotEnterProxyDialog(t *testing.T) {
	a := testAuthenticator(t, time.Minute)
	trusted, _ := ParseTrusted([]string{"10.0.0.0/8"})
	s := testServer(trusted, a, nil)
	d := &Dialog{source: "10.1.2.3:5060"} // opened by the trusted proxy for alice
	auth := clientAuthorize(t, a.challenge(time.Now(), testSrc, false).Value(), "INFO", "sip:cstagw@127.0.0.1:5060", "bob", "bob-secret")
	req := wireRequest(t, "INFO", "sip:alice@example.com", "Authorization: "+auth)
	req.SetSource("192.0.2.7:5060")
	acc := s.check(req, d)
	if acc.ok {
		t.Fatal("a digest-authenticated direct client got into a dialog a trusted proxy opened")
	}
}

// ---- TLS certificate store ----

type testPKI struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serialMu sync.Mutex
var serialN int64 = 1000

func nextSerial() *big.Int {
	serialMu.Lock()
	defer serialMu.Unlock()
	serialN++
	return big.NewInt(serialN)
}

func newTestCA(t *testing.T, cn string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testPKI{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs a leaf for localhost/127.0.0.1 valid in [nb, na].
func (ca *testPKI) issue(t *testing.T, cn string, nb, na time.Time, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: nb, NotAfter: na,
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func (ca *testPKI) valid(t *testing.T, cn string, client bool) (certPEM, keyPEM []byte) {
	return ca.issue(t, cn, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), client)
}

func (ca *testPKI) clientCert(t *testing.T, cn string) tls.Certificate {
	c, k := ca.valid(t, cn, true)
	pair, err := tls.X509KeyPair(c, k)
	require.NoError(t, err)
	return pair
}

// replaceFile swaps a file's content in one rename, as a deployment tool
// would.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	require.NoError(t, os.WriteFile(tmp, data, 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

func TestCertStoreLoadErrors(t *testing.T) {
	ca := newTestCA(t, "Test CA")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, 0o600))
		return p
	}
	c, k := ca.valid(t, "good", false)
	goodCert, goodKey := write("good.crt", c), write("good.key", k)
	caFile := write("ca.crt", ca.pem)
	_, err := newCertStore(TLSConfig{CertFile: goodCert, KeyFile: goodKey, ClientCAFile: caFile}, nil)
	require.NoError(t, err, "control: a good certificate loads")

	c, k = ca.issue(t, "old.example.net", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour), false)
	_, err = newCertStore(TLSConfig{CertFile: write("old.crt", c), KeyFile: write("old.key", k)}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "expired")
	assert.Contains(t, err.Error(), "old.example.net", "the error names the certificate")

	c, k = ca.issue(t, "future.example.net", time.Now().Add(time.Hour), time.Now().Add(48*time.Hour), false)
	_, err = newCertStore(TLSConfig{CertFile: write("future.crt", c), KeyFile: write("future.key", k)}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not valid before")

	_, err = newCertStore(TLSConfig{CertFile: filepath.Join(dir, "missing.crt"), KeyFile: goodKey}, nil)
	assert.ErrorContains(t, err, "cert_file")
	_, err = newCertStore(TLSConfig{CertFile: goodCert, KeyFile: filepath.Join(dir, "missing.key")}, nil)
	assert.ErrorContains(t, err, "key_file")
	_, otherKey := ca.valid(t, "other", false)
	_, err = newCertStore(TLSConfig{CertFile: goodCert, KeyFile: write("other.key", otherKey)}, nil)
	assert.Error(t, err, "a key that does not match the certificate")
	_, err = newCertStore(TLSConfig{CertFile: goodCert, KeyFile: goodKey, ClientCAFile: filepath.Join(dir, "missing-ca.crt")}, nil)
	assert.ErrorContains(t, err, "client_ca_file")
	_, err = newCertStore(TLSConfig{CertFile: goodCert, KeyFile: goodKey, ClientCAFile: write("junk.crt", []byte("junk"))}, nil)
	assert.ErrorContains(t, err, "no PEM certificate")

	// Config validation reports the same, under its key.
	err = Config{Listen: []string{"tls:127.0.0.1:0"}, TLS: TLSConfig{CertFile: filepath.Join(dir, "old.crt"), KeyFile: filepath.Join(dir, "old.key")}}.Validate("sip")
	assert.ErrorContains(t, err, "sip.tls")
	assert.ErrorContains(t, err, "expired")
	err = Config{Listen: []string{"tls:127.0.0.1:0"}}.Validate("sip")
	assert.ErrorContains(t, err, "cert_file and key_file are required")
}

// tlsServe runs a TLS listener with the store's config; each accepted
// connection that completes its handshake is sent one byte.
func tlsServe(t *testing.T, cs *certStore) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cs.serverConfig())
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = c.Write([]byte("k"))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// probeTLS handshakes and reads the server's byte; it returns the server
// certificate's common name, or the error that refused the connection
// (with TLS 1.3 a refused client certificate shows on the first read).
func probeTLS(addr string, cfg *tls.Config) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 1)
	// Read may return the byte together with io.EOF (close_notify).
	if n, err := c.Read(b); n != 1 {
		if err == nil {
			err = errors.New("no byte")
		}
		return "", err
	}
	if b[0] != 'k' {
		return "", errors.New("unexpected byte")
	}
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

func TestCertStoreTLSPolicy(t *testing.T) {
	ca := newTestCA(t, "Server CA")
	clients := newTestCA(t, "Clients CA")
	rogue := newTestCA(t, "Rogue CA")
	dir := t.TempDir()
	c, k := ca.valid(t, "gw", false)
	cfg := TLSConfig{CertFile: filepath.Join(dir, "s.crt"), KeyFile: filepath.Join(dir, "s.key")}
	require.NoError(t, os.WriteFile(cfg.CertFile, c, 0o600))
	require.NoError(t, os.WriteFile(cfg.KeyFile, k, 0o600))
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)

	// Without client_ca_file: any client, TLS 1.2 and up only.
	cs, err := newCertStore(cfg, nil)
	require.NoError(t, err)
	assert.False(t, cs.mutualTLS())
	addr := tlsServe(t, cs)
	cn, err := probeTLS(addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	require.NoError(t, err)
	assert.Equal(t, "gw", cn)
	_, err = probeTLS(addr, &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: tls.VersionTLS12})
	assert.NoError(t, err, "TLS 1.2 is accepted")
	_, err = probeTLS(addr, &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	assert.Error(t, err, "TLS 1.1 must be refused")
	_, err = probeTLS(addr, &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10})
	assert.Error(t, err, "TLS 1.0 must be refused")
	// Not only by Go's defaults: the listener's own configuration says so.
	sc := cs.serverConfig()
	assert.Equal(t, uint16(tls.VersionTLS12), sc.MinVersion)
	per, err := sc.GetConfigForClient(&tls.ClientHelloInfo{})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, per.MinVersion, uint16(tls.VersionTLS12))

	// With client_ca_file: a verified client certificate is required.
	cfg.ClientCAFile = filepath.Join(dir, "clients.crt")
	require.NoError(t, os.WriteFile(cfg.ClientCAFile, clients.pem, 0o600))
	cs, err = newCertStore(cfg, nil)
	require.NoError(t, err)
	assert.True(t, cs.mutualTLS())
	addr = tlsServe(t, cs)
	_, err = probeTLS(addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	assert.Error(t, err, "no client certificate")
	_, err = probeTLS(addr, &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{rogue.clientCert(t, "rogue")}})
	assert.Error(t, err, "client certificate of another CA")
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		_, err = probeTLS(addr, &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: v, Certificates: []tls.Certificate{rogue.clientCert(t, "rogue")}})
		assert.Error(t, err, "client certificate of another CA, TLS version %x", v)
	}
	cn, err = probeTLS(addr, &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{clients.clientCert(t, "pool-1")}})
	require.NoError(t, err, "a client certificate of client_ca_file")
	assert.Equal(t, "gw", cn)
}

func TestCertStoreReload(t *testing.T) {
	ca := newTestCA(t, "Server CA")
	clients := newTestCA(t, "Clients CA")
	clients2 := newTestCA(t, "Clients CA 2")
	dir := t.TempDir()
	cfg := TLSConfig{CertFile: filepath.Join(dir, "s.crt"), KeyFile: filepath.Join(dir, "s.key"), ClientCAFile: filepath.Join(dir, "ca.crt")}
	c, k := ca.valid(t, "first", false)
	require.NoError(t, os.WriteFile(cfg.CertFile, c, 0o600))
	require.NoError(t, os.WriteFile(cfg.KeyFile, k, 0o600))
	require.NoError(t, os.WriteFile(cfg.ClientCAFile, clients.pem, 0o600))
	var mu sync.Mutex
	var reloadErrs []string
	cs, err := newCertStore(cfg, func(err error) {
		mu.Lock()
		reloadErrs = append(reloadErrs, err.Error())
		mu.Unlock()
	})
	require.NoError(t, err)
	lastErr := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(reloadErrs) == 0 {
			return ""
		}
		return reloadErrs[len(reloadErrs)-1]
	}
	errCount := func() int { mu.Lock(); defer mu.Unlock(); return len(reloadErrs) }
	addr := tlsServe(t, cs)
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	client := &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{clients.clientCert(t, "pool")}}
	seen := func() string {
		cn, err := probeTLS(addr, client)
		if err != nil {
			return "error: " + err.Error()
		}
		return cn
	}
	require.Equal(t, "first", seen())

	// A new certificate on disk: new handshakes see it, no restart.
	c, k = ca.valid(t, "second-certificate", false)
	replaceFile(t, cfg.KeyFile, k)
	replaceFile(t, cfg.CertFile, c)
	require.Eventually(t, func() bool { return seen() == "second-certificate" }, 10*time.Second, 50*time.Millisecond,
		"the replaced certificate was never served; last: %s", seen())

	// A broken replacement: the previous certificate stays, the error is
	// reported.
	n := errCount()
	replaceFile(t, cfg.CertFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"))
	require.Eventually(t, func() bool { seen(); return errCount() > n }, 10*time.Second, 50*time.Millisecond,
		"a broken certificate file was never reported")
	assert.Contains(t, lastErr(), "keeping the previous certificate")
	assert.Equal(t, "second-certificate", seen(), "a broken file must not replace the working certificate")

	// An expired replacement: likewise, and the report says why.
	n = errCount()
	c, k = ca.issue(t, "expired-one", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour), false)
	replaceFile(t, cfg.KeyFile, k)
	replaceFile(t, cfg.CertFile, c)
	require.Eventually(t, func() bool { seen(); return errCount() > n && strings.Contains(lastErr(), "expired") }, 10*time.Second, 50*time.Millisecond,
		"an expired certificate file was never reported; last error: %s", lastErr())
	assert.Equal(t, "second-certificate", seen(), "an expired file must not replace the working certificate")

	// The client CA is reloaded too: clients of the new CA get in, those of
	// the old one no longer do.
	c, k = ca.valid(t, "third", false)
	replaceFile(t, cfg.KeyFile, k)
	replaceFile(t, cfg.CertFile, c)
	replaceFile(t, cfg.ClientCAFile, clients2.pem)
	client2 := &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{clients2.clientCert(t, "pool2")}}
	require.Eventually(t, func() bool { cn, err := probeTLS(addr, client2); return err == nil && cn == "third" }, 10*time.Second, 50*time.Millisecond,
		"a client of the new client CA was never accepted")
	_, err = probeTLS(addr, client)
	assert.Error(t, err, "a client of the replaced client CA must be refused")
}

// testServer builds a Server with just what the access checks read.
func testServer(trusted []netip.Prefix, auth *authenticator, certs *certStore) *Server {
	s := &Server{certs: certs}
	s.policy.Store(&policy{trusted: trusted, auth: auth})
	return s
}

// testSrc is where wireRequest's requests come from.
const testSrc = "192.0.2.7"

// verify is authenticate as a yes/no: the account's identity, or "".
func (a *authenticator) verify(req *sip.Request, now time.Time) string {
	r := a.authenticate(req, hostOf(req.Source()), false, now)
	if r.verdict != authOK {
		return ""
	}
	return r.uri
}

// With no trust configured at all, only loopback sources are served.
func TestNoTrustConfiguredMeansLoopbackOnly(t *testing.T) {
	s := testServer(nil, nil, nil)
	from := func(src string) *sip.Request {
		req := wireRequest(t, "INVITE", "sip:alice@example.com")
		req.SetSource(src)
		return req
	}
	assert.True(t, s.check(from("127.0.0.1:5060"), nil).ok, "loopback")
	assert.True(t, s.check(from("127.0.0.2:5060"), nil).ok, "loopback range")
	assert.True(t, s.check(from("[::1]:5060"), nil).ok, "IPv6 loopback")
	assert.False(t, s.check(from("192.0.2.7:5060"), nil).ok, "a non-loopback source")
	assert.False(t, s.check(from("[::ffff:10.1.2.3]:5060"), nil).ok, "a mapped non-loopback source")
	open := testServer([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, nil, nil)
	assert.True(t, open.check(from("192.0.2.7:5060"), nil).ok, "opened on purpose")

	who, isOpen := Config{}.TrustSummary()
	assert.False(t, isOpen)
	assert.Contains(t, who, "loopback")
	_, isOpen = Config{TrustedHosts: []string{"0.0.0.0/0", "::/0"}}.TrustSummary()
	assert.True(t, isOpen)
}
