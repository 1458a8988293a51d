package sipstack

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"
)

// Server owns the SIP listeners and the dialogs.
type Server struct {
	// policy holds what Reconfigure replaces; read it through pol/conf.
	policy  atomic.Pointer[policy]
	log     zerolog.Logger
	handler Handler
	certs   *certStore
	conns   *connBook // TCP/TLS connection limits (connguard.go)

	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client

	dialogs  sync.Map // key → *Dialog
	draining atomic.Bool
	stats    counters

	mu       sync.Mutex
	bound    []Listener
	contacts map[string]sip.ContactHeader // per transport
	closers  []io.Closer
	wg       sync.WaitGroup
}

type counters struct {
	infoSent, infoFailed       atomic.Uint64
	authFailures, authLockouts atomic.Uint64
	dialogs                    atomic.Int64
}

// Stats are SIP-side counters for metrics.
type Stats struct {
	Dialogs      int64
	InfoSent     uint64
	InfoFailed   uint64
	AuthFailures uint64 // wrong digest credentials
	AuthLockouts uint64 // (source, user) pairs or sources locked out
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{Dialogs: s.stats.dialogs.Load(), InfoSent: s.stats.infoSent.Load(), InfoFailed: s.stats.infoFailed.Load(),
		AuthFailures: s.stats.authFailures.Load(), AuthLockouts: s.stats.authLockouts.Load()}
}

// udpReadBuffer is the socket buffer asked for on UDP listeners (the kernel
// caps it at net.core.rmem_max).
const udpReadBuffer = 8 << 20

// sipgoLogOnce guards the process-wide sipgo settings.
var sipgoLogOnce sync.Once

// New builds a server; nothing listens until Start.
func New(cfg Config, h Handler, log zerolog.Logger) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate("sip"); err != nil {
		return nil, err
	}
	trusted, _ := ParseTrusted(cfg.TrustedHosts)
	s := &Server{log: log, handler: h, contacts: map[string]sip.ContactHeader{}, conns: newConnBook()}
	pol := &policy{cfg: cfg, trusted: trusted, limiter: newRateLimiter(cfg.RateLimit)}
	for _, e := range cfg.Listen {
		if l, _ := ParseListen(e); l.Network == "tls" {
			certs, err := newCertStore(cfg.TLS, func(err error) { log.Error().Err(err).Msg("TLS certificate reload") })
			if err != nil {
				return nil, fmt.Errorf("sip.tls: %w", err)
			}
			s.certs = certs
			break
		}
	}
	auth, err := newAuthenticator(cfg.Auth)
	if err != nil {
		return nil, fmt.Errorf("sip.auth: %w", err)
	}
	pol.auth = auth
	s.policy.Store(pol)
	sipgoLogOnce.Do(func() {
		zl := log.With().Str("component", "sipgo").Logger()
		sip.SetDefaultLogger(slog.New(newFloodHandler(zerolog.NewSlogHandler(zl))))
		// sipgo refuses UDP writes above UDPMTUSize−200 (see
		// DefaultUDPMaxMessage). It is a process-wide variable read on
		// every UDP write, so it is set once, by the first server.
		sip.UDPMTUSize = cfg.UDPMaxMessage + 200
	})
	// sipgo refuses whole messages over ParseMaxMessageLength (64 KiB)
	// before we see them, which made sip.max_body_bytes's 413 unreachable:
	// leave room for the largest body we accept plus headers, so the
	// documented limit is the one that acts. (Read when the UA's parser is
	// made, just below; it only ever grows.)
	sip.ParseMaxMessageLength = max(sip.ParseMaxMessageLength, cfg.MaxBodyBytes+16<<10)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("cstagw"),
		// Answers to our event INFOs over TCP/TLS (sent without a client
		// transaction) match nothing; they need no handling or logging.
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerUnhandledResponseHandler(func(*sip.Response) {})))
	if err != nil {
		return nil, err
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		return nil, err
	}
	client, err := sipgo.NewClient(ua)
	if err != nil {
		return nil, err
	}
	s.ua, s.srv, s.client = ua, srv, client
	srv.OnInvite(s.guard(s.onInvite))
	srv.OnAck(s.guard(s.onAck))
	srv.OnBye(s.guard(s.onBye))
	srv.OnInfo(s.guard(s.onInDialog))
	srv.OnUpdate(s.guard(s.onInDialog))
	srv.OnOptions(s.guard(s.onOptions))
	srv.OnCancel(s.guard(s.onCancel))
	srv.OnNoRoute(s.guard(s.onNoRoute))
	return s, nil
}

// guard recovers a panic in request handling: that request is answered 500
// with Retry-After (docs/wire.md §1.9.3) and nothing else is affected.
func (s *Server) guard(h func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		GrowStack(len(req.Body()))
		defer func() {
			if r := recover(); r != nil {
				s.log.Error().Interface("panic", r).Str("method", string(req.Method)).Str("call_id", callID(req)).
					Bytes("stack", debug.Stack()).Msg("panic while handling a SIP request: answered 500")
				if !req.IsAck() {
					_, _ = s.respond(tx, req, 500, "", nil, s.retryAfter(time.Second))
				}
			}
		}()
		h(req, tx)
	}
}

// GrowStack grows the calling goroutine's stack in one step while it is
// still shallow; call it first thing on a new goroutine that will handle or
// send SIP (n is any number, it only defeats the optimiser). sipgo runs
// every request on a new goroutine with a small stack; left alone, the
// handler grows it two or three times deep down (formatting a Via, parsing
// CSTA), each time copying and re-adjusting every frame: about a tenth of
// the CPU under load in pprof. The frame below is about what answering a
// request or sending an event takes.
//
//go:noinline
func GrowStack(n int) byte {
	var pad [6 << 10]byte
	pad[n%len(pad)] = byte(n)
	return pad[(n*7)%len(pad)]
}

// Start binds every listener (port 0 picks one; Addr reads it back) and
// serves them.
func (s *Server) Start() error {
	// Say loudly who may control phones through this gateway.
	who, open := s.conf().TrustSummary()
	if open {
		s.log.Warn().Str("trusted", who).Msg("SIP: ANYONE who can reach the listeners may send requests (trusted_hosts holds 0.0.0.0/0 or ::/0)")
	} else {
		s.log.Warn().Str("trusted", who).Msg("SIP: requests are accepted only from these sources")
	}
	for _, e := range s.conf().Listen {
		l, _ := ParseListen(e)
		var bound string
		switch l.Network {
		case "udp":
			pc, err := net.ListenPacket("udp", l.Addr)
			if err != nil {
				s.Close()
				return fmt.Errorf("sip.listen %s: %w", e, err)
			}
			bound = pc.LocalAddr().String()
			if uc, ok := pc.(*net.UDPConn); ok {
				// The kernel's default (~208 KB) overflows under sign-in
				// bursts, and a lost ACK or INFO costs a retransmission
				// or a dialog.
				_ = uc.SetReadBuffer(udpReadBuffer)
				_ = uc.SetWriteBuffer(udpReadBuffer)
			}
			gpc := udpGuard{PacketConn: pc, s: s}
			s.serve(pc, func() error { return s.srv.ServeUDP(gpc) })
		case "tcp", "tls":
			ln, err := net.Listen("tcp", l.Addr)
			if err != nil {
				s.Close()
				return fmt.Errorf("sip.listen %s: %w", e, err)
			}
			bound = ln.Addr().String()
			if l.Network == "tls" {
				// The guard sits above TLS: it reads plaintext, so it
				// can follow message boundaries.
				tln := net.Listener(guardListener{Listener: tls.NewListener(ln, s.certs.serverConfig()), s: s})
				s.serve(tln, func() error { return s.srv.ServeTLS(tln) })
			} else {
				gln := guardListener{Listener: ln, s: s}
				s.serve(ln, func() error { return s.srv.ServeTCP(gln) })
			}
		}
		s.mu.Lock()
		s.bound = append(s.bound, Listener{Network: l.Network, Addr: bound})
		if _, ok := s.contacts[l.Network]; !ok {
			s.contacts[l.Network] = s.contactFor(l.Network, bound)
		}
		s.mu.Unlock()
		s.log.Info().Str("transport", l.Network).Str("addr", bound).Msg("SIP listening")
	}
	return nil
}

func (s *Server) serve(c io.Closer, fn func() error) {
	s.mu.Lock()
	s.closers = append(s.closers, c)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := fn(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Debug().Err(err).Msg("SIP listener stopped")
		}
	}()
}

func (s *Server) contactFor(network, bound string) sip.ContactHeader {
	host, portStr, _ := net.SplitHostPort(bound)
	port, _ := strconv.Atoi(portStr)
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
		if s.conf().Advertise != "" {
			host = s.conf().Advertise
			if h, p, err := net.SplitHostPort(s.conf().Advertise); err == nil {
				host = h
				port, _ = strconv.Atoi(p)
			}
		}
	}
	uri := sip.Uri{Scheme: "sip", Host: host, Port: port, UriParams: sip.NewParams()}
	if network == "tls" {
		uri.Scheme = "sips"
	}
	if network != "udp" {
		uri.UriParams.Add("transport", network)
	}
	return sip.ContactHeader{Address: uri}
}

// Addr returns the bound address of the first listener of a transport.
func (s *Server) Addr(network string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.bound {
		if l.Network == network {
			return l.Addr
		}
	}
	return ""
}

// Drain makes new INVITEs get 503 from now on.
func (s *Server) Drain() { s.draining.Store(true) }

// Dialogs calls fn for every established dialog.
func (s *Server) Dialogs(fn func(d *Dialog)) {
	s.dialogs.Range(func(_, v any) bool {
		fn(v.(*Dialog))
		return true
	})
}

// Close stops listening and closes the transports. Dialogs still open are
// ended with EndShutdown (no BYE: send those first with Dialog.Bye).
func (s *Server) Close() {
	s.draining.Store(true)
	s.Dialogs(func(d *Dialog) { d.end(EndShutdown) })
	s.mu.Lock()
	closers := s.closers
	s.closers = nil
	s.mu.Unlock()
	for _, c := range closers {
		_ = c.Close()
	}
	_ = s.srv.Close()
	_ = s.ua.Close()
	s.wg.Wait()
}

// access is who may send a request and as whom it speaks.
type access struct {
	ok       bool   // may be served
	trusted  bool   // a trusted proxy or mutually authenticated TLS peer
	identity string // the user the request speaks for
	digest   bool   // authenticated by digest (identity from the account)
	auth     authResult
}

// hostTrusted reports whether an address (no port) is in trusted_hosts.
func (s *Server) hostTrusted(host string) bool { return s.hostTrustedIn(s.pol(), host) }

func (s *Server) hostTrustedIn(p *policy, host string) bool {
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, pre := range p.trusted {
		if pre.Contains(a) {
			return true
		}
	}
	return false
}

// ipTrusted reports whether the source address is in trusted_hosts.
func (s *Server) ipTrusted(req *sip.Request) bool { return s.hostTrusted(hostOf(req.Source())) }

// check decides access for a request outside a dialog (d == nil) or inside
// one. Trusted: a source in trusted_hosts, or a TLS peer whose certificate
// verified against client_ca_file (the handshake refuses any other). Digest
// authenticated: only when auth users are configured. With no trust
// configured at all (no trusted_hosts, no client CA, no digest accounts),
// only loopback sources are served: opening to everyone is an explicit
// trusted_hosts: ["0.0.0.0/0", "::/0"].
func (s *Server) check(req *sip.Request, d *Dialog) access {
	p := s.pol() // one policy for the whole decision, whatever a reload does meanwhile
	if (len(p.trusted) > 0 && s.hostTrustedIn(p, hostOf(req.Source()))) ||
		(strings.EqualFold(req.Transport(), "tls") && s.certs.mutualTLS()) {
		return access{ok: true, trusted: true, identity: s.assertedIdentity(req)}
	}
	if d != nil && d.authIdentity != "" {
		// A digest-authenticated dialog: its requests must come from
		// where the INVITE came from.
		if hostOf(req.Source()) == hostOf(d.source) {
			return access{ok: true, identity: d.authIdentity, digest: true}
		}
		return access{}
	}
	// In a dialog made through a trusted proxy, digest credentials of some
	// account do not let anyone else in: only an initial request is verified.
	if d == nil && p.auth != nil {
		r := p.auth.authenticate(req, hostOf(req.Source()), false, time.Now())
		if r.verdict == authOK {
			return access{ok: true, identity: r.uri, digest: true}
		}
		return access{auth: r}
	}
	if len(p.trusted) == 0 && !s.certs.mutualTLS() && p.auth == nil && isLoopback(req.Source()) {
		return access{ok: true, identity: fromIdentity(req)}
	}
	return access{}
}

// assertedIdentity: the P-Asserted-Identity a trusted proxy added, else From.
func (s *Server) assertedIdentity(req *sip.Request) string {
	if h := req.GetHeader("P-Asserted-Identity"); h != nil {
		if u := uriOf(h.Value()); u != "" {
			return u
		}
	}
	return fromIdentity(req)
}

func fromIdentity(req *sip.Request) string {
	if f := req.From(); f != nil {
		return addrOf(&f.Address)
	}
	return ""
}

// uriOf extracts the first URI of a name-addr header value.
func uriOf(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, ','); i >= 0 && !strings.Contains(v[:i], "<") {
		v = v[:i]
	}
	var u sip.Uri
	if err := sip.ParseUri(uriPart(v), &u); err != nil {
		return ""
	}
	return addrOf(&u)
}

// addrOf renders scheme:user@host, the form the directory uses.
func addrOf(u *sip.Uri) string {
	scheme := u.Scheme
	if scheme == "" {
		scheme = "sip"
	}
	if u.User == "" {
		return scheme + ":" + u.Host
	}
	return scheme + ":" + u.User + "@" + u.Host
}

func (s *Server) toRequest(req *sip.Request, body []byte, acc access) *Request {
	r := &Request{
		Method:    string(req.Method),
		Body:      body,
		Identity:  acc.identity,
		Source:    req.Source(),
		Transport: strings.ToLower(req.Transport()),
		Raw:       req,
		Received:  time.Now().UnixNano(),
	}
	if c := req.CallID(); c != nil {
		r.CallID = string(*c)
	}
	r.RequestUser = req.Recipient.User
	return r
}

func (s *Server) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.conf().HandlerTimeout)
}

// policy is the part of the configuration that may change while running:
// limits, session timer values, trust, digest accounts, rate limits.
type policy struct {
	cfg     Config
	trusted []netip.Prefix
	auth    *authenticator
	limiter *rateLimiter
}

func (s *Server) pol() *policy  { return s.policy.Load() }
func (s *Server) conf() *Config { return &s.policy.Load().cfg }

// Reconfigure applies a new sip: section for the next request. Listeners,
// TLS files and the advertised address are kept as they run (they need a
// restart); rate-limit buckets and digest nonces survive when their
// settings did not change.
func (s *Server) Reconfigure(cfg Config) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate("sip"); err != nil {
		return err
	}
	old := s.pol()
	cfg.Listen, cfg.TLS, cfg.Advertise, cfg.UDPMaxMessage = old.cfg.Listen, old.cfg.TLS, old.cfg.Advertise, old.cfg.UDPMaxMessage
	trusted, err := ParseTrusted(cfg.TrustedHosts)
	if err != nil {
		return fmt.Errorf("sip.trusted_hosts: %w", err)
	}
	pol := &policy{cfg: cfg, trusted: trusted, auth: old.auth, limiter: old.limiter}
	if !reflect.DeepEqual(old.cfg.Auth, cfg.Auth) {
		if pol.auth, err = newAuthenticator(cfg.Auth); err != nil {
			return fmt.Errorf("sip.auth: %w", err)
		}
	}
	if old.cfg.RateLimit != cfg.RateLimit {
		pol.limiter = newRateLimiter(cfg.RateLimit)
	}
	s.policy.Store(pol)
	return nil
}

// isLoopback reports whether a host:port source is a loopback address.
func isLoopback(src string) bool {
	a, err := netip.ParseAddr(hostOf(src))
	return err == nil && a.Unmap().IsLoopback()
}

// TrustSummary says, in an operator's words, who may send requests.
func (c Config) TrustSummary() (summary string, open bool) {
	var parts []string
	for _, h := range c.TrustedHosts {
		p, err := netip.ParsePrefix(h)
		if err != nil {
			if a, err2 := netip.ParseAddr(h); err2 == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				continue
			}
		}
		if p.Bits() == 0 {
			open = true
		}
	}
	if len(c.TrustedHosts) > 0 {
		parts = append(parts, "trusted_hosts "+strings.Join(c.TrustedHosts, ", "))
	}
	if c.TLS.ClientCAFile != "" {
		parts = append(parts, "TLS clients with a certificate from "+c.TLS.ClientCAFile)
	}
	if len(c.Auth.Users) > 0 {
		parts = append(parts, fmt.Sprintf("%d digest accounts", len(c.Auth.Users)))
	}
	if len(parts) == 0 {
		return "loopback sources only (no sip.trusted_hosts, client CA or digest accounts configured)", false
	}
	return strings.Join(parts, "; "), open
}
