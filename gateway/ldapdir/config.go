// Package ldapdir reads the user → line directory from an LDAP server or
// Active Directory, where Lync / Skype for Business keep it on each user
// object (msRTCSIP-PrimaryUserAddress, msRTCSIP-Line). It knows nothing of
// the gateway: it turns a search into a list of users and their lines, and
// its Source keeps the last list that loaded, refreshing it on a timer.
package ldapdir

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Defaults of Config.
const (
	DefaultFilter          = "(msRTCSIP-Line=*)"
	DefaultUserAttribute   = "msRTCSIP-PrimaryUserAddress"
	DefaultLineAttribute   = "msRTCSIP-Line"
	DefaultRefresh         = 5 * time.Minute
	DefaultPageSize        = 500
	DefaultTimeout         = 10 * time.Second
	DefaultMaxEntries      = 1000000
	MinRefresh             = time.Second
	maxPageSize            = 100000
	maxSkippedExamplesKept = 5
)

// Config is directory.ldap. The key names are a contract (issue 15).
type Config struct {
	// URL is ldap://host[:port] (with StartTLS) or ldaps://host[:port].
	URL string `yaml:"url"`
	// StartTLS upgrades an ldap:// connection before binding.
	StartTLS bool `yaml:"start_tls"`
	// BindDN is who the gateway binds as; empty means an anonymous search.
	BindDN string `yaml:"bind_dn"`
	// PasswordFile holds the bind password (first line); it is read at every
	// load, so it can be rotated without a reload.
	PasswordFile string `yaml:"password_file"`
	// PasswordEnv names an environment variable holding the bind password.
	PasswordEnv string `yaml:"password_env"`
	// BaseDN is where the subtree search starts.
	BaseDN string `yaml:"base_dn"`
	// Filter selects the user objects.
	Filter string `yaml:"filter"`
	// UserAttribute holds the user's SIP URI.
	UserAttribute string `yaml:"user_attribute"`
	// LineAttribute holds the user's line URI(s).
	LineAttribute string `yaml:"line_attribute"`
	// DeviceAttribute, when set, holds the PBX device id of the line(s).
	DeviceAttribute string `yaml:"device_attribute"`
	// Device derives the PBX device from the line URI when no attribute
	// gives it.
	Device DeviceRule `yaml:"device"`
	// Refresh is how often the directory is searched again.
	Refresh time.Duration `yaml:"refresh"`
	// PageSize is the page of the paged search (RFC 2696).
	PageSize int `yaml:"page_size"`
	// CAFile is a PEM bundle trusted for the server certificate instead of
	// the system's roots.
	CAFile string `yaml:"ca_file"`
	// Timeout bounds the connection (dial, TLS, bind) and each search page.
	Timeout time.Duration `yaml:"timeout"`
	// MaxEntries fails a search that returns more entries than this: a
	// runaway filter must not take the gateway's memory.
	MaxEntries int `yaml:"max_entries"`
}

// DeviceRule is a regular expression on the line URI and the device it
// gives: the device is Replace with $1, $2… (or ${name}) taken from the
// match. A line the expression does not match has no device from it.
type DeviceRule struct {
	Match   string `yaml:"match"`
	Replace string `yaml:"replace"`
}

// WithDefaults fills the keys left out.
func (c Config) WithDefaults() Config {
	if c.Filter == "" {
		c.Filter = DefaultFilter
	}
	if c.UserAttribute == "" {
		c.UserAttribute = DefaultUserAttribute
	}
	if c.LineAttribute == "" {
		c.LineAttribute = DefaultLineAttribute
	}
	if c.Refresh == 0 {
		c.Refresh = DefaultRefresh
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxEntries == 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	return c
}

// Validate returns every problem at once, each with its key path under
// prefix (e.g. "directory.ldap"). It reads password_file and ca_file, so
// that -check finds an unreadable one. Call it on WithDefaults' result.
func (c Config) Validate(prefix string) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", prefix, key, fmt.Sprintf(format, args...)))
	}

	if c.URL == "" {
		bad("url", "missing: ldaps://host or ldap://host with start_tls: true")
	} else if u, err := url.Parse(c.URL); err != nil {
		bad("url", "%q: %v", c.URL, err)
	} else {
		switch strings.ToLower(u.Scheme) {
		case "ldaps":
			if c.StartTLS {
				bad("start_tls", "true with ldaps://: the connection is TLS from the start; use one or the other")
			}
		case "ldap":
			if !c.StartTLS && !loopback(u.Hostname()) {
				bad("start_tls", "ldap:// to %s without start_tls: true would send the bind password and the directory in clear; set start_tls: true or use ldaps://", u.Hostname())
			}
		default:
			bad("url", "%q: expected ldaps://host[:port] or ldap://host[:port]", c.URL)
		}
		if u.Hostname() == "" && u.Scheme != "" {
			bad("url", "%q: no host", c.URL)
		}
		if u.Path != "" && u.Path != "/" {
			bad("url", "%q: put the search base in base_dn, not in the URL", c.URL)
		}
	}

	switch {
	case c.PasswordFile != "" && c.PasswordEnv != "":
		bad("password_file", "set password_file or password_env, not both")
	case c.BindDN == "" && (c.PasswordFile != "" || c.PasswordEnv != ""):
		bad("bind_dn", "missing: a password is set but no bind_dn to bind as")
	case c.BindDN != "" && c.PasswordFile == "" && c.PasswordEnv == "":
		bad("password_file", "missing: bind_dn %q needs password_file or password_env", c.BindDN)
	case c.PasswordFile != "":
		if p, err := readPasswordFile(c.PasswordFile); err != nil {
			bad("password_file", "%v", err)
		} else if p == "" {
			bad("password_file", "%s is empty", c.PasswordFile)
		}
	case c.PasswordEnv != "":
		if os.Getenv(c.PasswordEnv) == "" {
			bad("password_env", "environment variable %s is not set or empty", c.PasswordEnv)
		}
	}
	if c.BindDN != "" {
		if _, err := ldap.ParseDN(c.BindDN); err != nil {
			bad("bind_dn", "%q: %v", c.BindDN, err)
		}
	}

	if c.BaseDN == "" {
		bad("base_dn", "missing: where the search for users starts, e.g. dc=corp,dc=example,dc=net")
	} else if _, err := ldap.ParseDN(c.BaseDN); err != nil {
		bad("base_dn", "%q: %v", c.BaseDN, err)
	}
	if _, err := ldap.CompileFilter(c.Filter); err != nil {
		bad("filter", "%q: %v", c.Filter, err)
	}
	for key, a := range map[string]string{"user_attribute": c.UserAttribute, "line_attribute": c.LineAttribute, "device_attribute": c.DeviceAttribute} {
		if a != "" && !validAttr(a) {
			bad(key, "%q is not an attribute name", a)
		}
	}
	if c.UserAttribute == "" {
		bad("user_attribute", "empty")
	}
	if c.LineAttribute == "" {
		bad("line_attribute", "empty")
	}

	if c.Device.Match == "" && c.Device.Replace != "" {
		bad("device.match", "missing: replace is set but there is no expression to take it from")
	}
	if c.Device.Match != "" {
		if _, err := compileDevice(c.Device); err != nil {
			bad("device", "%v", err)
		}
	}
	if c.DeviceAttribute == "" && c.Device.Match == "" {
		bad("device", "neither device_attribute nor device.match is set: no line would have a PBX device")
	}

	if c.Refresh < MinRefresh {
		bad("refresh", "%s: at least %s", c.Refresh, MinRefresh)
	}
	if c.PageSize < 1 || c.PageSize > maxPageSize {
		bad("page_size", "%d: expected 1 to %d", c.PageSize, maxPageSize)
	}
	if c.Timeout <= 0 {
		bad("timeout", "%s: must be positive", c.Timeout)
	}
	if c.MaxEntries < 1 {
		bad("max_entries", "%d: must be positive", c.MaxEntries)
	}
	if c.CAFile != "" {
		if _, err := loadCA(c.CAFile); err != nil {
			bad("ca_file", "%v", err)
		}
	}
	return errors.Join(errs...)
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

var attrRE = regexp.MustCompile(`^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)$`)

func validAttr(a string) bool { return attrRE.MatchString(a) }

func readPasswordFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := string(b)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return s, nil
}

func loadCA(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}

// deviceRule is a compiled DeviceRule.
type deviceRule struct {
	re      *regexp.Regexp
	replace string
}

var groupRefRE = regexp.MustCompile(`\$(\d+|\{[^}]*\})`)

func compileDevice(r DeviceRule) (*deviceRule, error) {
	re, err := regexp.Compile(r.Match)
	if err != nil {
		return nil, fmt.Errorf("match %q: %v", r.Match, err)
	}
	repl := r.Replace
	if repl == "" {
		if re.NumSubexp() == 0 {
			return nil, fmt.Errorf("match %q has no group and replace is empty: say which part is the device, e.g. match: 'ext=(\\d+)', replace: '$1'", r.Match)
		}
		repl = "$1"
	}
	names := re.SubexpNames()
	for _, m := range groupRefRE.FindAllStringSubmatch(repl, -1) {
		ref := strings.Trim(m[1], "{}")
		ok := false
		var n int
		if _, err := fmt.Sscanf(ref, "%d", &n); err == nil && fmt.Sprint(n) == ref {
			ok = n <= re.NumSubexp()
		} else {
			for _, name := range names {
				if name != "" && name == ref {
					ok = true
				}
			}
		}
		if !ok {
			return nil, fmt.Errorf("replace %q refers to $%s, which match %q does not have", repl, m[1], r.Match)
		}
	}
	return &deviceRule{re: re, replace: repl}, nil
}

// device gives the device of a line URI, or "" when the expression does
// not match.
func (d *deviceRule) device(line string) string {
	if d == nil {
		return ""
	}
	m := d.re.FindStringSubmatchIndex(line)
	if m == nil {
		return ""
	}
	return strings.TrimSpace(string(d.re.ExpandString(nil, d.replace, line, m)))
}
