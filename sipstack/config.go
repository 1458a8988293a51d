package sipstack

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxBodyBytes   = 64 << 10
	DefaultSessionExpires = 1800 * time.Second
	DefaultMinSE          = 90 * time.Second
	DefaultRetryAfter     = 30 * time.Second
	DefaultHandlerTimeout = 10 * time.Second
	// DefaultUDPMaxMessage is the largest SIP message written over UDP.
	// sipgo's own default (1300 bytes, after RFC 3261 §18.1.1) is smaller
	// than a full GetCSTAFeaturesResponse or a busy snapshot; UDP is for lab
	// tools, so the gateway allows datagrams up to this size and production
	// clients use TCP or TLS. A write over the limit fails loudly.
	DefaultUDPMaxMessage = 8192
)

// Config is the sip: section of the gateway configuration.
type Config struct {
	// Listen: "udp:host:port", "tcp:host:port", "tls:host:port".
	Listen []string `yaml:"listen"`
	// TrustedHosts: addresses or CIDR prefixes allowed to send requests;
	// empty (with no client CA and no digest accounts) means loopback only.
	TrustedHosts   []string      `yaml:"trusted_hosts"`
	MaxBodyBytes   int           `yaml:"max_body_bytes"`
	SessionExpires time.Duration `yaml:"session_expires"`
	MinSE          time.Duration `yaml:"min_se"`
	TLS            TLSConfig     `yaml:"tls"`
	// Advertise is the host[:port] put in Contact when the listener is
	// bound to an unspecified address (0.0.0.0).
	Advertise string `yaml:"advertise"`
	// UDPMaxMessage caps a SIP message written over UDP, bytes.
	UDPMaxMessage int `yaml:"udp_max_message"`
	// RetryAfter is sent with 503 answers.
	RetryAfter time.Duration `yaml:"retry_after"`
	// HandlerTimeout bounds how long a request may wait for its answer.
	HandlerTimeout time.Duration `yaml:"handler_timeout"`
	// TCPIdleTimeout closes a TCP/TLS connection that carries no dialog
	// after this long without a byte; ReadTimeout bounds one message once
	// it has started; MaxConnections caps connections in all and
	// MaxConnectionsPerSource those of one untrusted address.
	TCPIdleTimeout          time.Duration `yaml:"tcp_idle_timeout"`
	ReadTimeout             time.Duration `yaml:"read_timeout"`
	MaxConnections          int           `yaml:"max_connections"`
	MaxConnectionsPerSource int           `yaml:"max_connections_per_source"`
	// Auth enables digest authentication for direct (untrusted) clients.
	Auth AuthConfig `yaml:"auth"`
	// RateLimit bounds initial INVITEs per source address.
	RateLimit RateLimitConfig `yaml:"rate_limit"`
}

// TLSConfig is used by tls: listeners.
type TLSConfig struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// Listener is one parsed listen entry.
type Listener struct {
	Network string // udp, tcp, tls
	Addr    string // host:port
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if len(c.Listen) == 0 {
		c.Listen = []string{"udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"}
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.SessionExpires <= 0 {
		c.SessionExpires = DefaultSessionExpires
	}
	if c.MinSE <= 0 {
		c.MinSE = DefaultMinSE
	}
	if c.UDPMaxMessage <= 0 {
		c.UDPMaxMessage = DefaultUDPMaxMessage
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.TCPIdleTimeout <= 0 {
		c.TCPIdleTimeout = DefaultTCPIdleTimeout
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.MaxConnectionsPerSource <= 0 {
		c.MaxConnectionsPerSource = DefaultMaxConnectionsPerPeer
	}
	if c.HandlerTimeout <= 0 {
		c.HandlerTimeout = DefaultHandlerTimeout
	}
	return c
}

// ParseListen parses one listen entry.
func ParseListen(s string) (Listener, error) {
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return Listener{}, fmt.Errorf("%q: expected udp:host:port, tcp:host:port or tls:host:port", s)
	}
	l := Listener{Network: strings.ToLower(s[:i]), Addr: s[i+1:]}
	switch l.Network {
	case "udp", "tcp", "tls":
	default:
		return Listener{}, fmt.Errorf("%q: transport %q is not udp, tcp or tls", s, s[:i])
	}
	if _, _, err := net.SplitHostPort(l.Addr); err != nil {
		return Listener{}, fmt.Errorf("%q: %v", s, err)
	}
	return l, nil
}

// ParseTrusted parses trusted_hosts entries (addresses or prefixes).
func ParseTrusted(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for i, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("trusted_hosts[%d]: %q is not an IP address or CIDR prefix", i, s))
			continue
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, errors.Join(errs...)
}

// Validate returns every problem at once, each with its YAML path below
// prefix (e.g. "sip").
func (c Config) Validate(prefix string) error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", prefix, path, fmt.Sprintf(format, args...)))
	}
	hasTLS := false
	for i, s := range c.Listen {
		l, err := ParseListen(s)
		if err != nil {
			bad(fmt.Sprintf("listen[%d]", i), "%v", err)
			continue
		}
		if l.Network == "tls" {
			hasTLS = true
		}
	}
	if _, err := ParseTrusted(c.TrustedHosts); err != nil {
		bad("trusted_hosts", "%v", err)
	}
	if c.MaxBodyBytes < 0 {
		bad("max_body_bytes", "%d: must be positive", c.MaxBodyBytes)
	}
	// RFC 4028 wants at least 90 s; lower values are accepted so tests and
	// labs can watch sessions expire in seconds.
	if c.SessionExpires < 0 || (c.SessionExpires > 0 && c.SessionExpires < time.Second) {
		bad("session_expires", "%v: must be at least 1s (90s or more in production)", c.SessionExpires)
	}
	if c.MinSE < 0 || (c.MinSE > 0 && c.MinSE < time.Second) {
		bad("min_se", "%v: must be at least 1s (90s in production)", c.MinSE)
	}
	if c.MinSE > 0 && c.SessionExpires > 0 && c.SessionExpires < c.MinSE {
		bad("session_expires", "%v is below min_se %v", c.SessionExpires, c.MinSE)
	}
	if hasTLS {
		if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
			bad("tls", "cert_file and key_file are required by tls: listeners")
		} else if _, err := newCertStore(c.TLS, nil); err != nil {
			bad("tls", "%v", err)
		}
	}
	if _, err := newAuthenticator(c.Auth); err != nil {
		bad("auth", "%v", err)
	}
	if c.RateLimit.InvitesPerSecond < 0 || c.RateLimit.Burst < 0 || c.RateLimit.TrustedInvitesPerSecond < 0 || c.RateLimit.TrustedBurst < 0 {
		bad("rate_limit", "rates and bursts must be positive")
	}
	return errors.Join(errs...)
}
