package ctipool

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cstagw/cstagw/csta"
)

// Defaults for Config fields left zero.
const (
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultRequestTimeout    = 5 * time.Second
	DefaultInitialBackoff    = 500 * time.Millisecond
	DefaultMaxBackoff        = 30 * time.Second
	DefaultMaxRetries        = 10
	DefaultHoldOff           = 6 * time.Minute
	DefaultAdmissionBudget   = 32
	DefaultSendQueue         = 4096
	DefaultWriteTimeout      = 5 * time.Second
	DefaultDialTimeout       = 5 * time.Second
	DefaultSessionDuration   = 180 * time.Second
	DefaultApplicationID     = "cstagw"
	DefaultLogEvery          = 10
	MaxLinks                 = 8
	DefaultFailoverAfter     = 30 * time.Second
	DefaultFallbackPerSecond = 20
)

// After-reconnect policies (cti.after_reconnect).
const (
	// AfterReconnectReinvite: a session whose link came back under a new
	// generation is stale; its next request gets 481 and the client
	// re-INVITEs (the default).
	AfterReconnectReinvite = "reinvite"
	// AfterReconnectResume: the session is moved to the link's new
	// generation at once and keeps its dialog.
	AfterReconnectResume = "resume"
)

// Config is the cti: section of the gateway configuration.
type Config struct {
	HeartbeatInterval time.Duration   `yaml:"heartbeat_interval"`
	RequestTimeout    time.Duration   `yaml:"request_timeout"`
	Reconnect         ReconnectConfig `yaml:"reconnect"`
	Links             []LinkConfig    `yaml:"links"`
	// AdmissionBudget caps the MonitorStart/SnapshotDevice requests
	// outstanding on one link; the rest wait their turn.
	AdmissionBudget int `yaml:"admission_budget"`
	// SendQueue bounds the frames waiting to be written on one link.
	SendQueue    int           `yaml:"send_queue"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
	DialTimeout  time.Duration `yaml:"dial_timeout"`
	// MaxFrame caps an incoming frame, bytes (default 1 MiB).
	MaxFrame int `yaml:"max_frame"`

	// Continuity policy, applied by the gateway (see FailoverDelay).
	// FailoverAfter: a Go duration (default 30s) after which the sessions
	// of a link that is still down move to a healthy link, or "off".
	FailoverAfter string `yaml:"failover_after"`
	// AfterReconnect: "reinvite" (default) or "resume".
	AfterReconnect string         `yaml:"after_reconnect"`
	Fallback       FallbackConfig `yaml:"fallback"`
}

// FallbackConfig paces the return of idle sessions to a link that came
// back (or was added).
type FallbackConfig struct {
	// Enabled defaults to true.
	Enabled *bool `yaml:"enabled"`
	// PerSecond caps the sessions moved per second (default 20).
	PerSecond int `yaml:"per_second"`
}

// FailoverDelay returns how long a link stays down before its sessions
// move elsewhere; ok is false when failover is off.
func (c Config) FailoverDelay() (d time.Duration, ok bool) {
	switch strings.TrimSpace(c.FailoverAfter) {
	case "":
		return DefaultFailoverAfter, true
	case "off":
		return 0, false
	}
	d, err := time.ParseDuration(strings.TrimSpace(c.FailoverAfter))
	if err != nil || d <= 0 {
		return 0, false
	}
	return d, true
}

// Resume reports whether sessions follow their link to its new generation
// (after_reconnect: resume).
func (c Config) Resume() bool { return c.AfterReconnect == AfterReconnectResume }

// FallbackEnabled reports whether idle sessions spread back to a link that
// returns.
func (c Config) FallbackEnabled() bool { return c.Fallback.Enabled == nil || *c.Fallback.Enabled }

// ReconnectConfig is the reconnect policy.
type ReconnectConfig struct {
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	MaxBackoff     time.Duration `yaml:"max_backoff"`
	MaxRetries     int           `yaml:"max_retries"`
	HoldOff        time.Duration `yaml:"hold_off"`
	// LogEvery: the first failure and every Nth after it are logged at
	// error level, the rest at debug.
	LogEvery int `yaml:"log_every"`
}

// LinkConfig is one CTI server address.
type LinkConfig struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	// AppSession: open an ECMA-354 application session first.
	AppSession bool `yaml:"app_session"`
	// ApplicationID is sent in StartApplicationSession (default "cstagw").
	ApplicationID string `yaml:"application_id"`
	// Login for CTI servers that want one (applicationSpecificInfo). The
	// password comes from Password, or the file PasswordFile, or the
	// environment variable PasswordEnv; it is never logged or reported.
	Username       string `yaml:"username"`
	Password       string `yaml:"password"`
	PasswordFile   string `yaml:"password_file"`
	PasswordEnv    string `yaml:"password_env"`
	LoginNamespace string `yaml:"login_namespace"`
	// ProtocolVersions asked for in StartApplicationSession, in order of
	// preference (default ed6 down to ed3). Without an application session
	// the first one is the namespace used.
	ProtocolVersions []string      `yaml:"protocol_versions"`
	SessionDuration  time.Duration `yaml:"session_duration"`
	// SystemRegister: without an application session, register for
	// system status (default true).
	SystemRegister *bool      `yaml:"system_register"`
	Framing        string     `yaml:"framing"` // "a" (default) or "b"
	TLS            *TLSConfig `yaml:"tls"`
}

// TLSConfig secures one link.
type TLSConfig struct {
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
	CertFile   string `yaml:"cert_file"` // client certificate, when the CTI server wants one
	KeyFile    string `yaml:"key_file"`
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	r := &c.Reconnect
	if r.InitialBackoff <= 0 {
		r.InitialBackoff = DefaultInitialBackoff
	}
	if r.MaxBackoff <= 0 {
		r.MaxBackoff = DefaultMaxBackoff
	}
	if r.MaxRetries <= 0 {
		r.MaxRetries = DefaultMaxRetries
	}
	if r.HoldOff <= 0 {
		r.HoldOff = DefaultHoldOff
	}
	if r.LogEvery <= 0 {
		r.LogEvery = DefaultLogEvery
	}
	if c.AdmissionBudget <= 0 {
		c.AdmissionBudget = DefaultAdmissionBudget
	}
	if c.SendQueue <= 0 {
		c.SendQueue = DefaultSendQueue
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = csta.DefaultMaxFrame
	}
	if c.AfterReconnect == "" {
		c.AfterReconnect = AfterReconnectReinvite
	}
	if c.Fallback.PerSecond <= 0 {
		c.Fallback.PerSecond = DefaultFallbackPerSecond
	}
	links := make([]LinkConfig, len(c.Links))
	for i, l := range c.Links {
		if l.Name == "" {
			l.Name = fmt.Sprintf("cti-%d", i+1)
		}
		if l.ApplicationID == "" {
			l.ApplicationID = DefaultApplicationID
		}
		if len(l.ProtocolVersions) == 0 {
			l.ProtocolVersions = []string{csta.NSEd6, csta.NSEd5, csta.NSEd4, csta.NSEd3}
		}
		if l.SessionDuration <= 0 {
			l.SessionDuration = DefaultSessionDuration
		}
		links[i] = l
	}
	c.Links = links
	return c
}

// Validate returns every problem with c at once, each with its YAML path
// below prefix (e.g. "cti").
func (c Config) Validate(prefix string) error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", prefix, path, fmt.Sprintf(format, args...)))
	}
	if c.HeartbeatInterval < 0 {
		bad("heartbeat_interval", "%v: must be positive", c.HeartbeatInterval)
	}
	if c.RequestTimeout < 0 {
		bad("request_timeout", "%v: must be positive", c.RequestTimeout)
	}
	if c.Reconnect.InitialBackoff < 0 || c.Reconnect.MaxBackoff < 0 || c.Reconnect.HoldOff < 0 {
		bad("reconnect", "durations must be positive")
	}
	if c.Reconnect.MaxBackoff > 0 && c.Reconnect.InitialBackoff > c.Reconnect.MaxBackoff {
		bad("reconnect.initial_backoff", "%v is larger than max_backoff %v", c.Reconnect.InitialBackoff, c.Reconnect.MaxBackoff)
	}
	if c.Reconnect.MaxRetries < 0 {
		bad("reconnect.max_retries", "%d: must be 0 (default) or more", c.Reconnect.MaxRetries)
	}
	if c.AdmissionBudget < 0 {
		bad("admission_budget", "%d: must be positive", c.AdmissionBudget)
	}
	if v := strings.TrimSpace(c.FailoverAfter); v != "" && v != "off" {
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			bad("failover_after", "%q: expected a positive duration such as 30s, or off", c.FailoverAfter)
		}
	}
	switch c.AfterReconnect {
	case "", AfterReconnectReinvite, AfterReconnectResume:
	default:
		bad("after_reconnect", "%q: expected reinvite or resume", c.AfterReconnect)
	}
	if c.Fallback.PerSecond < 0 {
		bad("fallback.per_second", "%d: must be positive", c.Fallback.PerSecond)
	}
	if len(c.Links) == 0 {
		bad("links", "at least one CTI link is required")
	}
	if len(c.Links) > MaxLinks {
		bad("links", "%d links configured, at most %d are supported", len(c.Links), MaxLinks)
	}
	names := map[string]bool{}
	for i, l := range c.Links {
		p := fmt.Sprintf("links[%d]", i)
		if l.Name != "" {
			if names[l.Name] {
				bad(p+".name", "%q is used by another link", l.Name)
			}
			names[l.Name] = true
		}
		if l.Address == "" {
			bad(p+".address", "missing; expected host:port")
		} else if i := strings.LastIndexByte(l.Address, ':'); i <= 0 || i == len(l.Address)-1 {
			bad(p+".address", "%q: expected host:port", l.Address)
		}
		for j, v := range l.ProtocolVersions {
			if !csta.IsCSTANamespace(v) {
				bad(fmt.Sprintf("%s.protocol_versions[%d]", p, j), "%q is not an ECMA-323 namespace", v)
			}
		}
		n := 0
		for _, s := range []string{l.Password, l.PasswordFile, l.PasswordEnv} {
			if s != "" {
				n++
			}
		}
		if n > 1 {
			bad(p, "set only one of password, password_file and password_env")
		}
		if l.PasswordEnv != "" {
			if _, ok := os.LookupEnv(l.PasswordEnv); !ok {
				bad(p+".password_env", "environment variable %s is not set", l.PasswordEnv)
			}
		}
		if l.PasswordFile != "" {
			if _, err := os.Stat(l.PasswordFile); err != nil {
				bad(p+".password_file", "%v", err)
			}
		}
		switch l.Framing {
		case "", "a", "A", "b", "B":
		default:
			bad(p+".framing", "%q: expected a (length header) or b (NUL-terminated)", l.Framing)
		}
		if l.TLS != nil {
			if _, err := l.TLS.build(); err != nil {
				bad(p+".tls", "%v", err)
			}
		}
	}
	return errors.Join(errs...)
}

// password resolves the link's password from its source.
func (l LinkConfig) password() (string, error) {
	switch {
	case l.PasswordFile != "":
		b, err := os.ReadFile(l.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("password_file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case l.PasswordEnv != "":
		v, ok := os.LookupEnv(l.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("password_env: %s is not set", l.PasswordEnv)
		}
		return v, nil
	}
	return l.Password, nil
}

func (l LinkConfig) frameOptions(maxFrame int) csta.FrameOptions {
	o := csta.FrameOptions{Profile: csta.ProfileA, MaxFrame: maxFrame}
	if l.Framing == "b" || l.Framing == "B" {
		o.Profile = csta.ProfileB
	}
	return o
}

func (t *TLSConfig) build() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate found", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// explainTLS says in an operator's words why a CTI server's certificate was
// refused.
func explainTLS(err error, t *TLSConfig) string {
	var inv x509.CertificateInvalidError
	var host x509.HostnameError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return fmt.Sprintf("the server certificate (%s) is expired or not yet valid (not after %s)",
			inv.Cert.Subject.CommonName, inv.Cert.NotAfter.Format(time.RFC3339))
	case errors.As(err, &host):
		return fmt.Sprintf("the server certificate is not valid for server_name %q (it names %v)", host.Host, host.Certificate.DNSNames)
	case errors.As(err, &ua):
		return fmt.Sprintf("the server certificate is signed by a CA that tls.ca_file (%s) does not hold", t.CAFile)
	}
	return "TLS handshake failed"
}
