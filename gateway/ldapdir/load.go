package ldapdir

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/cstagw/cstagw/csta"
)

// User is one directory user and the lines they may control.
type User struct {
	URI   string // sip:user@domain
	Lines []Line // sorted by Line
}

// Line is one line appearance: the line URI as provisioned to the client
// and the PBX device id that carries it.
type Line struct {
	Line   string
	Device string
}

// Result is a load and what it made of the entries.
type Result struct {
	Users   []User // sorted by URI
	Entries int    // entries the search returned
	Pages   int    // search requests of the paged search
	Lines   int    // lines in Users
	// Skipped counts entries that gave no user (no usable user attribute or
	// no usable line); SkippedLines counts single line values dropped from
	// an otherwise usable entry (unparseable, or no device).
	Skipped      int
	SkippedLines int
	// Examples holds the first few reasons for Skipped and SkippedLines,
	// with the entry's DN.
	Examples []string
}

// LoadError is a failed load; Key is the configuration key the failure
// points at, relative to directory.ldap (url, bind_dn, base_dn, …).
type LoadError struct {
	Key string
	Err error
}

func (e *LoadError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *LoadError) Unwrap() error { return e.Err }

func loadErr(key string, format string, args ...any) error {
	return &LoadError{Key: key, Err: fmt.Errorf(format, args...)}
}

// Load connects, binds, searches and returns the users. It is Search
// without the counts.
func (c Config) Load(ctx context.Context) ([]User, error) {
	r, err := c.Search(ctx)
	return r.Users, err
}

// Search connects, binds, runs the paged search and turns the entries
// into users. Any failure fails the whole load (no partial directory). The
// configuration must have passed Validate.
func (c Config) Search(ctx context.Context) (Result, error) {
	conn, err := c.connect(ctx)
	if err != nil {
		return Result{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	r, err := c.search(conn)
	if err != nil && ctx.Err() != nil {
		err = loadErr("url", "%w", ctx.Err())
	}
	return r, err
}

func (c Config) connect(ctx context.Context) (*ldap.Conn, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, loadErr("url", "%v", err)
	}
	tc := &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pool, err := loadCA(c.CAFile)
		if err != nil {
			return nil, loadErr("ca_file", "%v", err)
		}
		tc.RootCAs = pool
	}
	password := ""
	switch {
	case c.PasswordFile != "":
		if password, err = readPasswordFile(c.PasswordFile); err != nil {
			return nil, loadErr("password_file", "%v", err)
		}
	case c.PasswordEnv != "":
		password = os.Getenv(c.PasswordEnv)
	}
	if c.BindDN != "" && password == "" {
		return nil, loadErr("password_file", "the bind password is empty")
	}

	dialer := &net.Dialer{Timeout: c.Timeout}
	if dl, ok := ctx.Deadline(); ok {
		dialer.Deadline = dl
	}
	conn, err := ldap.DialURL(c.URL, ldap.DialWithDialer(dialer), ldap.DialWithTLSConfig(tc))
	if err != nil {
		return nil, loadErr("url", "%v", err)
	}
	conn.SetTimeout(c.Timeout)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	fail := func(key string, err error) (*ldap.Conn, error) {
		conn.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, loadErr(key, "%v", err)
	}
	if c.StartTLS {
		if err := conn.StartTLS(tc); err != nil {
			return fail("start_tls", fmt.Errorf("StartTLS: %w", err))
		}
	}
	if c.BindDN != "" {
		// The password never reaches an error or a log: go-ldap's bind
		// errors carry the server's diagnostic, not the request.
		if err := conn.Bind(c.BindDN, password); err != nil {
			return fail("bind_dn", fmt.Errorf("bind as %s: %w", c.BindDN, err))
		}
	}
	return conn, nil
}

func (c Config) search(conn *ldap.Conn) (Result, error) {
	attrs := []string{c.UserAttribute, c.LineAttribute}
	if c.DeviceAttribute != "" {
		attrs = append(attrs, c.DeviceAttribute)
	}
	var rule *deviceRule
	if c.Device.Match != "" {
		var err error
		if rule, err = compileDevice(c.Device); err != nil {
			return Result{}, loadErr("device", "%v", err)
		}
	}
	paging := ldap.NewControlPaging(uint32(c.PageSize))
	timeLimit := int(c.Timeout.Seconds())
	if timeLimit < 1 {
		timeLimit = 1
	}
	req := ldap.NewSearchRequest(c.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, timeLimit, false, c.Filter, attrs, []ldap.Control{paging})

	b := builder{cfg: c, rule: rule, users: map[string]*User{}}
	for {
		res, err := conn.Search(req)
		if err != nil {
			return Result{}, c.searchErr(err)
		}
		b.r.Pages++
		for _, e := range res.Entries {
			b.r.Entries++
			if b.r.Entries > c.MaxEntries {
				return Result{}, loadErr("max_entries", "the search returned more than %d entries; narrow filter or base_dn, or raise max_entries", c.MaxEntries)
			}
			b.add(e)
		}
		ctl := ldap.FindControl(res.Controls, ldap.ControlTypePaging)
		p, ok := ctl.(*ldap.ControlPaging)
		if !ok || len(p.Cookie) == 0 {
			break
		}
		paging.SetCookie(p.Cookie)
	}
	return b.result(), nil
}

func (c Config) searchErr(err error) error {
	var le *ldap.Error
	if errors.As(err, &le) {
		switch le.ResultCode {
		case ldap.LDAPResultNoSuchObject:
			return loadErr("base_dn", "search under %s: %v", c.BaseDN, err)
		case ldap.LDAPResultFilterError:
			return loadErr("filter", "search %s: %v", c.Filter, err)
		case ldap.LDAPResultInsufficientAccessRights, ldap.LDAPResultInappropriateAuthentication:
			return loadErr("bind_dn", "search: %v", err)
		case ldap.LDAPResultSizeLimitExceeded, ldap.LDAPResultAdminLimitExceeded:
			return loadErr("page_size", "search: %v", err)
		}
	}
	return loadErr("url", "search: %v", err)
}

type builder struct {
	cfg   Config
	rule  *deviceRule
	users map[string]*User
	r     Result
}

func (b *builder) skip(dn, format string, args ...any) {
	if len(b.r.Examples) < maxSkippedExamplesKept {
		b.r.Examples = append(b.r.Examples, dn+": "+fmt.Sprintf(format, args...))
	}
}

func (b *builder) add(e *ldap.Entry) {
	c := b.cfg
	var uri string
	for _, v := range e.GetEqualFoldAttributeValues(c.UserAttribute) {
		if uri = NormalizeUser(v); uri != "" {
			break
		}
	}
	if uri == "" {
		b.r.Skipped++
		b.skip(e.DN, "no usable %s (%q)", c.UserAttribute, e.GetEqualFoldAttributeValues(c.UserAttribute))
		return
	}
	lines := e.GetEqualFoldAttributeValues(c.LineAttribute)
	var devices []string
	if c.DeviceAttribute != "" {
		devices = e.GetEqualFoldAttributeValues(c.DeviceAttribute)
	}
	var got []Line
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if _, err := csta.ParseDeviceID(l); err != nil {
			b.r.SkippedLines++
			b.skip(e.DN, "%s %q: %v", c.LineAttribute, l, err)
			continue
		}
		dev := ""
		// Device attribute values pair with the lines by position; a single
		// value serves a single line.
		if len(devices) == len(lines) {
			dev = strings.TrimSpace(devices[i])
		}
		if dev == "" {
			dev = b.rule.device(l)
		}
		if dev == "" {
			b.r.SkippedLines++
			b.skip(e.DN, "line %q has no PBX device (no %s value for it, device.match does not match)", l, orNone(c.DeviceAttribute))
			continue
		}
		if _, err := csta.ParseDeviceID(dev); err != nil {
			b.r.SkippedLines++
			b.skip(e.DN, "line %q: device %q: %v", l, dev, err)
			continue
		}
		got = append(got, Line{Line: l, Device: dev})
	}
	if len(got) == 0 {
		b.r.Skipped++
		if len(lines) == 0 {
			b.skip(e.DN, "no %s", c.LineAttribute)
		}
		return
	}
	u := b.users[uri]
	if u == nil {
		u = &User{URI: uri}
		b.users[uri] = u
	}
	// Two entries for one user (OpenLDAP allows it): their lines merge.
	for _, l := range got {
		dup := false
		for _, have := range u.Lines {
			if have.Line == l.Line {
				dup = true
				break
			}
		}
		if !dup {
			u.Lines = append(u.Lines, l)
		}
	}
}

func orNone(a string) string {
	if a == "" {
		return "device_attribute"
	}
	return a
}

func (b *builder) result() Result {
	r := b.r
	r.Users = make([]User, 0, len(b.users))
	for _, u := range b.users {
		sort.Slice(u.Lines, func(i, j int) bool { return u.Lines[i].Line < u.Lines[j].Line })
		r.Lines += len(u.Lines)
		r.Users = append(r.Users, *u)
	}
	sort.Slice(r.Users, func(i, j int) bool { return r.Users[i].URI < r.Users[j].URI })
	return r
}

// NormalizeUser turns a user attribute value into sip:user@domain, or ""
// when it is not one. Lync writes "sip:user@domain"; "SIP:", "sips:" and a
// bare user@domain are accepted too.
func NormalizeUser(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, ':'); i >= 0 {
		switch strings.ToLower(v[:i]) {
		case "sip", "sips":
			v = v[i+1:]
		default:
			return ""
		}
	}
	at := strings.IndexByte(v, '@')
	if at <= 0 || at == len(v)-1 || strings.Count(v, "@") != 1 || strings.ContainsAny(v, " \t<>;?\"") {
		return ""
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return ""
		}
	}
	return "sip:" + v
}
