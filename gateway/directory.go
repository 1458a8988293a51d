package gateway

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cstagw/cstagw/csta"
)

// Line is one line appearance: a provisioned line URI and the PBX device
// that carries it.
type Line struct {
	URI     string // as provisioned
	Device  string // PBX device id
	keys    []csta.LineKey
	select_ string // the device= parameter of the provisioned URI, if any
}

// matches reports whether a device string the client sent denotes this
// line: same canonical key (any alias), and when the string names a device=
// it must be this appearance's.
func (l *Line) matches(d csta.DeviceID) bool {
	k := d.Key()
	hit := false
	for _, lk := range l.keys {
		if lk.Matches(k) {
			hit = true
			break
		}
	}
	if !hit {
		return false
	}
	if d.Device != "" && l.select_ != "" && !strings.EqualFold(d.Device, l.select_) {
		return false
	}
	return true
}

// Directory is the user → line appearances authority.
type Directory struct {
	users map[string][]*Line // normalised user URI → lines
}

// NewDirectory checks and indexes the directory configuration.
func NewDirectory(cfg DirectoryConfig) (*Directory, error) {
	d := &Directory{users: map[string][]*Line{}}
	var errs []error
	for i, u := range cfg.Users {
		p := fmt.Sprintf("directory.users[%d]", i)
		id := normUser(u.URI)
		if id == "" {
			errs = append(errs, fmt.Errorf("%s.uri: %q: expected sip:user@host", p, u.URI))
			continue
		}
		if _, dup := d.users[id]; dup {
			errs = append(errs, fmt.Errorf("%s.uri: %q is listed twice", p, u.URI))
		}
		if len(u.Lines) == 0 {
			errs = append(errs, fmt.Errorf("%s.lines: user %s has no line", p, u.URI))
		}
		var lines []*Line
		for j, lc := range u.Lines {
			lp := fmt.Sprintf("%s.lines[%d]", p, j)
			dev, err := csta.ParseDeviceID(lc.Line)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.line: %v", lp, err))
				continue
			}
			if lc.Device == "" {
				errs = append(errs, fmt.Errorf("%s.device: missing: the PBX device id of %s", lp, lc.Line))
				continue
			}
			l := &Line{URI: lc.Line, Device: lc.Device, keys: []csta.LineKey{dev.Key()}, select_: dev.Device}
			for k, a := range lc.Aliases {
				ad, err := csta.ParseDeviceID(a)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s.aliases[%d]: %v", lp, k, err))
					continue
				}
				k := ad.Key()
				if k.Partition == "" {
					// An alias names the same line: same partition.
					k.Partition = dev.Partition
				}
				l.keys = append(l.keys, k)
			}
			// The PBX device id itself is an alias (bare DN).
			if pd, err := csta.ParseDeviceID(lc.Device); err == nil {
				l.keys = append(l.keys, csta.LineKey{Number: pd.Key().Number, Partition: dev.Partition})
			}
			lines = append(lines, l)
		}
		d.users[id] = lines
	}
	return d, errors.Join(errs...)
}

// Lines returns a user's line appearances (nil for an unknown user).
func (d *Directory) Lines(user string) []*Line { return d.users[normUser(user)] }

// ErrUnknownUser and ErrNotYourLine are the two refusals of the directory.
var (
	ErrUnknownUser = errors.New("gateway: user not in the directory")
	ErrNotYourLine = errors.New("gateway: line not among the user's line appearances")
	ErrBadLine     = errors.New("gateway: unparseable line")
)

// Authorize returns the user's line appearance a device string denotes.
func (d *Directory) Authorize(user, device string) (*Line, error) {
	lines := d.Lines(user)
	if lines == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownUser, user)
	}
	return findLine(lines, device)
}

func findLine(lines []*Line, device string) (*Line, error) {
	dev, err := csta.ParseDeviceID(device)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadLine, err)
	}
	for _, l := range lines {
		if l.matches(dev) {
			return l, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNotYourLine, trunc(device))
}

// normUser reduces a SIP URI to lower-case scheme:user@host.
func normUser(u string) string {
	u = strings.TrimSpace(u)
	if i := strings.IndexByte(u, '<'); i >= 0 {
		if j := strings.IndexByte(u[i:], '>'); j > 0 {
			u = u[i+1 : i+j]
		}
	}
	if i := strings.IndexAny(u, ";?"); i >= 0 {
		u = u[:i]
	}
	u = strings.ToLower(u)
	switch {
	case strings.HasPrefix(u, "sip:"), strings.HasPrefix(u, "sips:"), strings.HasPrefix(u, "tel:"):
	default:
		if !strings.Contains(u, "@") {
			return ""
		}
		u = "sip:" + u
	}
	if strings.HasPrefix(u, "sips:") {
		u = "sip:" + u[5:]
	}
	if i := strings.LastIndexByte(u, ':'); i > 4 && !strings.Contains(u[i:], "@") {
		// Drop a port: sip:user@host:5060.
		if j := strings.IndexByte(u, '@'); j >= 0 && i > j {
			u = u[:i]
		}
	}
	return u
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
