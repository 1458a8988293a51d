package sipstack

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// AuthConfig enables SIP digest authentication for clients that connect
// directly (not through a trusted proxy or mutual TLS).
type AuthConfig struct {
	Realm string     `yaml:"realm"`
	Users []AuthUser `yaml:"users"`
	// NonceTTL bounds how long a challenge may be answered.
	NonceTTL time.Duration `yaml:"nonce_ttl"`
	// MaxFailures wrong answers from one source for one user within
	// FailureWindow lock that pair out for Lockout, doubling with every
	// lockout up to LockoutMax (one source, all users: five times as many).
	MaxFailures   int           `yaml:"max_failures"`
	FailureWindow time.Duration `yaml:"failure_window"`
	Lockout       time.Duration `yaml:"lockout"`
	LockoutMax    time.Duration `yaml:"lockout_max"`
}

// AuthUser is one digest account. Its identity for the directory is URI,
// never the From header a direct client chose.
type AuthUser struct {
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	URI          string `yaml:"uri"`
}

// RateLimitConfig bounds initial INVITEs per source address.
type RateLimitConfig struct {
	// InvitesPerSecond and Burst apply to each untrusted source address.
	InvitesPerSecond float64 `yaml:"invites_per_second"`
	Burst            int     `yaml:"burst"`
	// TrustedInvitesPerSecond and TrustedBurst apply to each trusted proxy,
	// which carries every user's traffic from one address.
	TrustedInvitesPerSecond float64 `yaml:"trusted_invites_per_second"`
	TrustedBurst            int     `yaml:"trusted_burst"`
}

// Rate limit defaults.
const (
	DefaultInvitesPerSecond        = 5
	DefaultInviteBurst             = 20
	DefaultTrustedInvitesPerSecond = 5000
	DefaultTrustedInviteBurst      = 20000
	DefaultNonceTTL                = time.Minute
)

func (r RateLimitConfig) withDefaults() RateLimitConfig {
	if r.InvitesPerSecond <= 0 {
		r.InvitesPerSecond = DefaultInvitesPerSecond
	}
	if r.Burst <= 0 {
		r.Burst = DefaultInviteBurst
	}
	if r.TrustedInvitesPerSecond <= 0 {
		r.TrustedInvitesPerSecond = DefaultTrustedInvitesPerSecond
	}
	if r.TrustedBurst <= 0 {
		r.TrustedBurst = DefaultTrustedInviteBurst
	}
	return r
}

// rateLimiter is a token bucket per source address, bounded in size.
type rateLimiter struct {
	cfg     RateLimitConfig
	mu      sync.Mutex
	buckets map[string]*bucket
	lastGC  time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

const maxBuckets = 100000

func newRateLimiter(cfg RateLimitConfig) *rateLimiter {
	return &rateLimiter{cfg: cfg.withDefaults(), buckets: map[string]*bucket{}}
}

// allow takes one token from the source's bucket.
func (r *rateLimiter) allow(src string, trusted bool, now time.Time) bool {
	rate, burst := r.cfg.InvitesPerSecond, float64(r.cfg.Burst)
	if trusted {
		rate, burst = r.cfg.TrustedInvitesPerSecond, float64(r.cfg.TrustedBurst)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.buckets) >= maxBuckets && now.Sub(r.lastGC) > time.Second {
		// Forget sources that have refilled completely: they lose nothing.
		for k, b := range r.buckets {
			if now.Sub(b.last).Seconds()*r.cfg.InvitesPerSecond >= float64(r.cfg.Burst) {
				delete(r.buckets, k)
			}
		}
		r.lastGC = now
	}
	b := r.buckets[src]
	if b == nil {
		if len(r.buckets) >= maxBuckets && !trusted {
			// A flood of distinct sources: refuse the untrusted newcomers
			// (trusted proxies are few and always get a bucket).
			return false
		}
		b = &bucket{tokens: burst, last: now}
		r.buckets[src] = b
	}
	b.tokens += now.Sub(b.last).Seconds() * rate
	if b.tokens > burst {
		b.tokens = burst
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// authenticator checks digest credentials with stateless, HMAC-signed
// nonces.
type authenticator struct {
	realm  string
	ttl    time.Duration
	key    [32]byte
	users  map[string]authAccount
	fails  *failBook
	nonces *nonceBook
	stamp  atomic.Int64 // the last nonce's time stamp: every nonce differs
}

type authAccount struct {
	password string
	uri      string
}

func newAuthenticator(cfg AuthConfig) (*authenticator, error) {
	if len(cfg.Users) == 0 {
		return nil, nil
	}
	a := &authenticator{realm: cfg.Realm, ttl: cfg.NonceTTL, users: map[string]authAccount{}}
	if a.realm == "" {
		a.realm = "cstagw"
	}
	if a.ttl <= 0 {
		a.ttl = DefaultNonceTTL
	}
	a.fails = newFailBook(cfg.MaxFailures, cfg.FailureWindow, cfg.Lockout, cfg.LockoutMax)
	a.nonces = newNonceBook(a.ttl)
	if _, err := rand.Read(a.key[:]); err != nil {
		return nil, err
	}
	var errs []error
	for i, u := range cfg.Users {
		pw := u.Password
		if u.PasswordFile != "" {
			b, err := os.ReadFile(u.PasswordFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("auth.users[%d].password_file: %w", i, err))
				continue
			}
			pw = strings.TrimRight(string(b), "\r\n")
		}
		if u.Username == "" || pw == "" || u.URI == "" {
			errs = append(errs, fmt.Errorf("auth.users[%d]: username, password (or password_file) and uri are required", i))
			continue
		}
		a.users[u.Username] = authAccount{password: pw, uri: u.URI}
	}
	return a, errors.Join(errs...)
}

// nonce mints a challenge nonce for a source: its issue time and an HMAC
// of the time and the source, so it is worthless from anywhere else.
func (a *authenticator) nonce(now time.Time, src string) string {
	var b [8 + 16]byte
	ts := now.UnixNano()
	for {
		last := a.stamp.Load()
		if ts <= last {
			ts = last + 1
		}
		if a.stamp.CompareAndSwap(last, ts) {
			break
		}
	}
	binary.BigEndian.PutUint64(b[:8], uint64(ts))
	mac := hmac.New(sha256.New, a.key[:])
	mac.Write(b[:8])
	mac.Write([]byte(src))
	copy(b[8:], mac.Sum(nil)[:16])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (a *authenticator) nonceValid(n, src string, now time.Time) bool {
	b, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil || len(b) != 24 {
		return false
	}
	mac := hmac.New(sha256.New, a.key[:])
	mac.Write(b[:8])
	mac.Write([]byte(src))
	if !hmac.Equal(b[8:], mac.Sum(nil)[:16]) {
		return false
	}
	t := time.Unix(0, int64(binary.BigEndian.Uint64(b[:8])))
	return now.Sub(t) <= a.ttl && now.Sub(t) >= -time.Minute
}

// challenge is a WWW-Authenticate for src; stale says the credentials were
// right but their nonce was not (expired, another source's, replayed).
func (a *authenticator) challenge(now time.Time, src string, stale bool) sip.Header {
	ch := digest.Challenge{Realm: a.realm, Nonce: a.nonce(now, src), Algorithm: "MD5", QOP: []string{"auth"}, Stale: stale}
	return sip.NewHeader("WWW-Authenticate", ch.String())
}

// authVerdict is the outcome of a digest check.
type authVerdict int

const (
	authMissing authVerdict = iota // no credentials: challenge
	authOK
	authFailed // wrong credentials: counted, challenge again
	authStale  // a nonce that is not good any more: fresh challenge, stale=true
	authLocked // too many failures: 403 with Retry-After
)

// authResult is a digest check's outcome.
type authResult struct {
	verdict authVerdict
	uri     string        // authOK: the account's identity
	user    string        // the username the client gave
	retry   time.Duration // authLocked: how long the lockout lasts
	// locked is set on the failure that started a lockout (for its one
	// audit line), bySource when the whole source was locked.
	locked   time.Duration
	bySource bool
}

// authenticate checks req's credentials, from src (a trusted source is
// limited per user only).
func (a *authenticator) authenticate(req *sip.Request, src string, trusted bool, now time.Time) authResult {
	h := req.GetHeader("Authorization")
	if h == nil {
		return authResult{}
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil {
		return authResult{verdict: authFailed}
	}
	res := authResult{user: cred.Username}
	if left := a.fails.locked(src, cred.Username, trusted, now); left > 0 {
		res.verdict, res.retry = authLocked, left
		return res
	}
	if cred.Realm != a.realm || !a.nonceValid(cred.Nonce, src, now) {
		res.verdict = authStale
		return res
	}
	if !a.passwordOK(req, cred) {
		res.verdict = authFailed
		res.locked, res.bySource = a.fails.fail(src, cred.Username, trusted, now)
		return res
	}
	if !a.nonces.use(cred.Nonce, cred.Nc, cred.QOP != "", now) {
		res.verdict = authStale // the same nonce count again: a replay
		return res
	}
	res.verdict, res.uri = authOK, a.users[cred.Username].uri
	return res
}

// passwordOK checks the digest response against the account's password.
func (a *authenticator) passwordOK(req *sip.Request, cred *digest.Credentials) bool {
	acct, ok := a.users[cred.Username]
	if !ok {
		return false
	}
	ch := &digest.Challenge{Realm: a.realm, Nonce: cred.Nonce, Algorithm: cred.Algorithm, Opaque: cred.Opaque}
	if cred.QOP != "" {
		ch.QOP = []string{cred.QOP}
	}
	want, err := digest.Digest(ch, digest.Options{
		Method: string(req.Method), URI: cred.URI, Username: cred.Username, Password: acct.password,
		Count: cred.Nc, Cnonce: cred.Cnonce,
	})
	return err == nil && subtle.ConstantTimeCompare([]byte(want.Response), []byte(cred.Response)) == 1
}

// certStore serves the TLS listener's certificate and client CA, reloading
// them from disk when the files change, without a restart. A bad new file
// is logged and the previous certificate kept.
type certStore struct {
	cfg     TLSConfig
	onError func(error)

	mu      sync.Mutex
	cert    *tls.Certificate
	pool    *x509.CertPool
	stamp   string
	checked time.Time
}

func newCertStore(cfg TLSConfig, onError func(error)) (*certStore, error) {
	c := &certStore{cfg: cfg, onError: onError}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func fileStamp(paths ...string) string {
	var b strings.Builder
	for _, p := range paths {
		if p == "" {
			continue
		}
		if st, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", p, st.Size(), st.ModTime().UnixNano())
		}
	}
	return b.String()
}

// load reads the files and checks the certificate is usable now.
func (c *certStore) load() error {
	cert, err := tls.LoadX509KeyPair(c.cfg.CertFile, c.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("cert_file/key_file: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("cert_file %s: %w", c.cfg.CertFile, err)
	}
	now := time.Now()
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("cert_file %s: certificate for %s expired on %s", c.cfg.CertFile, leaf.Subject.CommonName, leaf.NotAfter.Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("cert_file %s: certificate for %s is not valid before %s", c.cfg.CertFile, leaf.Subject.CommonName, leaf.NotBefore.Format(time.RFC3339))
	}
	cert.Leaf = leaf
	var pool *x509.CertPool
	if c.cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(c.cfg.ClientCAFile)
		if err != nil {
			return fmt.Errorf("client_ca_file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("client_ca_file %s: no PEM certificate found", c.cfg.ClientCAFile)
		}
	}
	c.mu.Lock()
	c.cert, c.pool = &cert, pool
	c.stamp = fileStamp(c.cfg.CertFile, c.cfg.KeyFile, c.cfg.ClientCAFile)
	c.checked = now
	c.mu.Unlock()
	return nil
}

// refresh reloads when a file changed, at most once a second.
func (c *certStore) refresh() {
	c.mu.Lock()
	if time.Since(c.checked) < time.Second {
		c.mu.Unlock()
		return
	}
	c.checked = time.Now()
	changed := fileStamp(c.cfg.CertFile, c.cfg.KeyFile, c.cfg.ClientCAFile) != c.stamp
	c.mu.Unlock()
	if changed {
		if err := c.load(); err != nil && c.onError != nil {
			c.onError(fmt.Errorf("sip.tls reload failed, keeping the previous certificate: %w", err))
		}
	}
}

// serverConfig is the listener's tls.Config: TLS 1.2 and up, certificates
// from the store on every handshake.
func (c *certStore) serverConfig() *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c.refresh()
		c.mu.Lock()
		cert, pool := c.cert, c.pool
		c.mu.Unlock()
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}}
		if pool != nil {
			cfg.ClientCAs = pool
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
		return cfg, nil
	}
	return base
}

// mutualTLS reports whether TLS clients must present a verified certificate.
func (c *certStore) mutualTLS() bool { return c != nil && c.cfg.ClientCAFile != "" }

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}
