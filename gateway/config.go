package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/gateway/cluster"
	"github.com/cstagw/cstagw/gateway/ldapdir"
	"github.com/cstagw/cstagw/sipstack"
)

// Config is the whole gateway configuration file. The keys listed in
// docs/architecture.md §5 are a contract; more may be added, none renamed.
type Config struct {
	SIP       sipstack.Config `yaml:"sip"`
	CTI       ctipool.Config  `yaml:"cti"`
	Directory DirectoryConfig `yaml:"directory"`
	Numbering NumberingConfig `yaml:"numbering"`
	Admin     AdminConfig     `yaml:"admin"`
	Log       LogConfig       `yaml:"log"`
	Gateway   SessionConfig   `yaml:"gateway"`
	Runtime   RuntimeConfig   `yaml:"runtime"`
	// Cluster, when set, shares the sessions with other nodes through
	// Redis (docs/cluster.md). Without it: one node, state in memory.
	Cluster *cluster.Config `yaml:"cluster"`
}

// DirectoryConfig maps users to the line appearances they may control.
type DirectoryConfig struct {
	Users []UserConfig `yaml:"users"`
	// LDAP, when set, takes users and lines from LDAP / Active Directory
	// as well; for the same user the file wins.
	LDAP *ldapdir.Config `yaml:"ldap"`
}

// UserConfig is one user.
type UserConfig struct {
	URI   string       `yaml:"uri"`
	Lines []LineConfig `yaml:"lines"`
}

// LineConfig is one line appearance of a user.
type LineConfig struct {
	// Line is the line URI as provisioned to the client (lcs:line).
	Line string `yaml:"line"`
	// Device is the PBX device id on the CTI side.
	Device string `yaml:"device"`
	// Aliases are other spellings of the same line (E.164, ext forms).
	Aliases []string `yaml:"aliases"`
}

// NumberingConfig holds the number normalisation rules.
type NumberingConfig struct {
	// Dial: what the client asks to call (E.164) → what the PBX dials.
	Dial []csta.Rule `yaml:"dial"`
	// Display: PBX numbers → what clients are shown (tel:+E.164).
	Display []csta.Rule `yaml:"display"`
}

// AdminConfig is the admin HTTP listener.
type AdminConfig struct {
	Listen string `yaml:"listen"`
	// Pprof serves Go's profiler under /debug/pprof/ (off by default:
	// profiles reveal internals; keep the admin listener private).
	Pprof bool `yaml:"pprof"`
}

// LogConfig sets logging.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or console
}

// SessionConfig tunes RCC sessions.
type SessionConfig struct {
	// EventQueue bounds the events waiting to be sent to one client; a
	// client that lets it fill up is disconnected (it re-INVITEs).
	EventQueue int `yaml:"event_queue"`
	// MaxSessions caps sessions in total (503 beyond).
	MaxSessions int `yaml:"max_sessions"`
	// MaxSessionsPerUser caps one user's sessions (503 beyond).
	MaxSessionsPerUser int `yaml:"max_sessions_per_user"`
	// MaxMonitorsPerSession caps MonitorStarts on one session.
	MaxMonitorsPerSession int `yaml:"max_monitors_per_session"`
	// MaxInFlight caps the requests one session may have waiting for
	// answers (503 beyond).
	MaxInFlight int `yaml:"max_in_flight"`
	// StaleBye sends BYE to sessions made stale by a reconnect at once
	// instead of waiting for their next request (docs/wire.md §1.11 item 4).
	StaleBye bool `yaml:"stale_bye"`
	// ShutdownGrace bounds the SIGTERM drain.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
}

// Defaults for SessionConfig.
const (
	DefaultEventQueue            = 256
	DefaultMaxSessions           = 200000
	DefaultMaxSessionsPerUser    = 8
	DefaultMaxMonitorsPerSession = 8
	DefaultShutdownGrace         = 5 * time.Second
	DefaultMaxInFlight           = 16
	DefaultAdminListen           = "127.0.0.1:8080"
)

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	c.SIP = c.SIP.WithDefaults()
	c.CTI = c.CTI.WithDefaults()
	g := &c.Gateway
	if g.EventQueue <= 0 {
		g.EventQueue = DefaultEventQueue
	}
	if g.MaxSessions <= 0 {
		g.MaxSessions = DefaultMaxSessions
	}
	if g.MaxSessionsPerUser <= 0 {
		g.MaxSessionsPerUser = DefaultMaxSessionsPerUser
	}
	if g.MaxMonitorsPerSession <= 0 {
		g.MaxMonitorsPerSession = DefaultMaxMonitorsPerSession
	}
	if g.MaxInFlight <= 0 {
		g.MaxInFlight = DefaultMaxInFlight
	}
	if g.ShutdownGrace <= 0 {
		g.ShutdownGrace = DefaultShutdownGrace
	}
	if c.Admin.Listen == "" {
		c.Admin.Listen = DefaultAdminListen
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	c.Runtime = c.Runtime.withDefaults()
	if c.Directory.LDAP != nil {
		l := c.Directory.LDAP.WithDefaults()
		c.Directory.LDAP = &l // a copy: the caller's Config keeps its own
	}
	if c.Cluster != nil {
		cl := c.Cluster.WithDefaults()
		c.Cluster = &cl
	}
	return c
}

// Validate returns every problem at once, each with its key path.
func (c Config) Validate() error {
	var errs []error
	if err := c.SIP.Validate("sip"); err != nil {
		errs = append(errs, err)
	}
	if err := c.CTI.Validate("cti"); err != nil {
		errs = append(errs, err)
	}
	if _, err := NewDirectory(c.Directory); err != nil {
		errs = append(errs, err)
	}
	if c.Directory.LDAP != nil {
		if err := c.Directory.LDAP.WithDefaults().Validate("directory.ldap"); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := csta.CompileRules(c.Numbering.Dial); err != nil {
		errs = append(errs, prefixErr("numbering.dial", err))
	}
	if _, err := csta.CompileRules(c.Numbering.Display); err != nil {
		errs = append(errs, prefixErr("numbering.display", err))
	}
	switch strings.ToLower(c.Log.Level) {
	case "", "debug", "info", "warn", "error", "trace":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q: expected debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "", "json", "console":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q: expected json or console", c.Log.Format))
	}
	if c.Cluster != nil {
		if err := c.Cluster.Validate("cluster"); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.Runtime.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Gateway.EventQueue < 0 || c.Gateway.MaxSessions < 0 || c.Gateway.MaxSessionsPerUser < 0 {
		errs = append(errs, errors.New("gateway: limits must be positive"))
	}
	return errors.Join(errs...)
}

func prefixErr(path string, err error) error {
	var out []error
	for _, line := range strings.Split(err.Error(), "\n") {
		out = append(out, fmt.Errorf("%s: %s", path, line))
	}
	return errors.Join(out...)
}

// LoadConfig reads a YAML file strictly (unknown keys are errors), applies
// defaults and validates it.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	return ParseConfig(b)
}

// ParseConfig is LoadConfig from bytes.
func ParseConfig(b []byte) (Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return Config{}, fmt.Errorf("config: %w", explainYAML(err))
	}
	if err := checkYAML(&doc); err != nil {
		return Config{}, err
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("config: %w", explainYAML(err))
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// explainYAML makes yaml.v3's type errors read like the rest of our errors.
func explainYAML(err error) error {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, "yaml: unmarshal errors:\n", "")
	msg = strings.ReplaceAll(msg, "not found in type", "is not a known key of")
	return errors.New(strings.TrimSpace(msg))
}
