package ctisim

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"strconv"
	"strings"
	"time"

	"github.com/cstagw/cstagw/csta"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultNamespace          = "ed4"
	DefaultMaxSessionDuration = 300 * time.Second
	DefaultRingTime           = 5 * time.Second
	DefaultRingCount          = 4
	DefaultQueueSize          = 8192
	DefaultWriteTimeout       = 10 * time.Second
	DefaultMaxConference      = 6
	DefaultMaxDiversions      = 5
)

// Config describes one simulated PBX cluster: N CTI server nodes over one
// shared switch. Durations come from here so tests can run in milliseconds.
type Config struct {
	// Listen holds one address per CTI server node ("127.0.0.1:0" picks a
	// port; Addrs reports the bound ones). At least one is required.
	Listen []string
	// Control is the HTTP control API address; "" runs without it.
	Control string
	// Stations are the switch's own devices: "40000-40999", or several
	// ranges separated by commas. Any other well-formed number is an
	// external party reached through the trunk.
	Stations string
	// TrunkPrefix is the trunk access code stripped (once) from dialled
	// external numbers, e.g. "9": "912065550147" reaches "12065550147".
	TrunkPrefix string

	// Namespace is the CSTA namespace a client without an application
	// session is answered in, and the one the switch uses when a session
	// request lists no version: ed3, ed4, ed5, ed6 or a full URI. Default ed4.
	Namespace string
	// SpeakFirst makes the switch send a SystemStatus(normal) request as
	// soon as a client connects; the client must answer SystemStatusResponse
	// with the same invoke id.
	SpeakFirst bool
	// RequireSession refuses CSTA requests (operation/securityViolation)
	// until the connection has an ECMA-354 application session.
	RequireSession bool
	// Login, "user:password", makes StartApplicationSession require these
	// credentials in applicationSpecificInfo.
	Login string
	// MaxSessionDuration caps actualSessionDuration. Default 300 s.
	MaxSessionDuration time.Duration

	// AutoAnswer is how long an external party rings before answering;
	// zero means never (answer through the control API).
	AutoAnswer time.Duration
	// EventsFirst writes the ServiceInitiated/Originated events of MakeCall
	// and ConsultationCall (and the Held of ConsultationCall) before the
	// response, as many PBXs do; false writes the response first.
	// DefaultConfig sets it; the zero value means response first.
	EventsFirst bool
	// RingTime is the length of one ring: forwardNoAns diverts after
	// ringCount × RingTime. Default 5 s.
	RingTime time.Duration
	// DefaultRingCount is used when SetForwarding(forwardNoAns) gives none.
	DefaultRingCount int

	// TLS, when set, makes every node listen with TLS.
	TLS *tls.Config
	// Profile is the framing (csta.ProfileA by default).
	Profile csta.Profile
	// MaxFrame limits inbound and outbound frames (0 = csta.DefaultMaxFrame).
	MaxFrame int

	// QueueSize is the number of frames a connection may have waiting to be
	// written; a client that lets it fill up is disconnected. Default 8192.
	QueueSize int
	// WriteTimeout bounds one write to a client. Default 10 s.
	WriteTimeout time.Duration
	// MaxConference is the largest number of parties ConferenceCall builds.
	MaxConference int
	// MaxDiversions bounds forwarding chains. Default 5.
	MaxDiversions int

	// Logger receives one line per notable happening; nil discards them.
	Logger *log.Logger
}

// DefaultConfig returns the configuration the ctisim command starts from:
// one node on an ephemeral loopback port, stations 40000-40999, events first.
func DefaultConfig() Config {
	return Config{
		Listen:             []string{"127.0.0.1:0"},
		Stations:           "40000-40999",
		Namespace:          DefaultNamespace,
		MaxSessionDuration: DefaultMaxSessionDuration,
		EventsFirst:        true,
		RingTime:           DefaultRingTime,
		DefaultRingCount:   DefaultRingCount,
	}
}

func (c *Config) withDefaults() {
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.MaxSessionDuration <= 0 {
		c.MaxSessionDuration = DefaultMaxSessionDuration
	}
	if c.RingTime <= 0 {
		c.RingTime = DefaultRingTime
	}
	if c.DefaultRingCount <= 0 {
		c.DefaultRingCount = DefaultRingCount
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxConference <= 2 {
		c.MaxConference = DefaultMaxConference
	}
	if c.MaxDiversions <= 0 {
		c.MaxDiversions = DefaultMaxDiversions
	}
}

// Validate returns every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Listen) == 0 {
		errs = append(errs, errors.New("listen: at least one node address is required"))
	}
	for i, a := range c.Listen {
		if strings.TrimSpace(a) == "" {
			errs = append(errs, fmt.Errorf("listen[%d]: empty address", i))
		}
	}
	if _, err := parseStations(c.Stations); err != nil {
		errs = append(errs, fmt.Errorf("stations: %w", err))
	}
	if c.TrunkPrefix != "" && !allDigits(c.TrunkPrefix) {
		errs = append(errs, fmt.Errorf("trunk-prefix: %q is not digits", c.TrunkPrefix))
	}
	if c.Namespace != "" {
		if _, err := resolveNamespace(c.Namespace); err != nil {
			errs = append(errs, fmt.Errorf("namespace: %w", err))
		}
	}
	if c.Login != "" && !strings.Contains(c.Login, ":") {
		errs = append(errs, errors.New("login: want user:password"))
	}
	if c.Profile != csta.ProfileA && c.Profile != csta.ProfileB {
		errs = append(errs, fmt.Errorf("profile: unknown %v", c.Profile))
	}
	if c.MaxFrame < 0 {
		errs = append(errs, errors.New("max-frame: negative"))
	}
	if c.AutoAnswer < 0 {
		errs = append(errs, errors.New("auto-answer: negative"))
	}
	return errors.Join(errs...)
}

// resolveNamespace turns "ed3".."ed6" or a CSTA namespace URI into a URI.
func resolveNamespace(s string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "ed3", "3":
		return csta.NSEd3, nil
	case "ed4", "4":
		return csta.NSEd4, nil
	case "ed5", "5":
		return csta.NSEd5, nil
	case "ed6", "6":
		return csta.NSEd6, nil
	}
	if ed := csta.Edition(s); ed >= 3 && ed <= 6 {
		return s, nil
	}
	return "", fmt.Errorf("%q is not one of ed3, ed4, ed5, ed6", s)
}

// ParseProfile reads "a" or "b" (any case).
func ParseProfile(s string) (csta.Profile, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "a", "":
		return csta.ProfileA, nil
	case "b":
		return csta.ProfileB, nil
	}
	return csta.ProfileA, fmt.Errorf("profile %q: want a or b", s)
}

// stationRange is one inclusive range of station numbers.
type stationRange struct {
	lo, hi uint64
	width  int // digits every number in the range has, 0 when they differ
}

type stationSet []stationRange

func parseStations(s string) (stationSet, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("no station range (want e.g. 40000-40999)")
	}
	var set stationSet
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		loS, hiS, isRange := strings.Cut(part, "-")
		if !isRange {
			hiS = loS
		}
		loS, hiS = strings.TrimSpace(loS), strings.TrimSpace(hiS)
		if !allDigits(loS) || !allDigits(hiS) || len(loS) > 18 || len(hiS) > 18 {
			return nil, fmt.Errorf("%q: want digits or digits-digits", part)
		}
		lo, _ := strconv.ParseUint(loS, 10, 64)
		hi, _ := strconv.ParseUint(hiS, 10, 64)
		if lo > hi {
			return nil, fmt.Errorf("%q: range is backwards", part)
		}
		r := stationRange{lo: lo, hi: hi}
		if len(loS) == len(hiS) {
			r.width = len(loS)
		}
		set = append(set, r)
	}
	return set, nil
}

// contains reports whether the digit string n is a station.
func (s stationSet) contains(n string) bool {
	if !allDigits(n) || len(n) > 18 {
		return false
	}
	v, _ := strconv.ParseUint(n, 10, 64)
	for _, r := range s {
		if r.width != 0 && len(n) != r.width {
			continue
		}
		if r.width == 0 && len(n) > 1 && n[0] == '0' {
			continue
		}
		if v >= r.lo && v <= r.hi {
			return true
		}
	}
	return false
}

func (s stationSet) String() string {
	parts := make([]string, len(s))
	for i, r := range s {
		f := func(v uint64) string {
			if r.width > 0 {
				return fmt.Sprintf("%0*d", r.width, v)
			}
			return strconv.FormatUint(v, 10)
		}
		if r.lo == r.hi {
			parts[i] = f(r.lo)
		} else {
			parts[i] = f(r.lo) + "-" + f(r.hi)
		}
	}
	return strings.Join(parts, ",")
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// numbering turns device identifiers as they come off the wire into the
// switch's own device ids.
type numbering struct {
	stations    stationSet
	trunkPrefix string
}

var errBadNumber = errors.New("not a dialable number")

// cleanNumber accepts PBX-native identifiers: digits, '*' and '#', with an
// optional leading '+'. A "tel:" prefix and URI parameters are tolerated.
func cleanNumber(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) > 4 && strings.EqualFold(s[:4], "tel:") {
		s = s[4:]
		if i := strings.IndexByte(s, ';'); i >= 0 {
			s = s[:i]
		}
	}
	if s == "" || len(s) > 32 {
		return "", errBadNumber
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c == '*', c == '#':
		case c == '+' && i == 0 && len(s) > 1:
		default:
			return "", errBadNumber
		}
	}
	return s, nil
}

// dialled resolves a number someone dialled: a station, or an external
// number with one trunk access code stripped.
func (n numbering) dialled(s string) (id string, station bool, err error) {
	s, err = cleanNumber(s)
	if err != nil {
		return "", false, err
	}
	if n.stations.contains(s) {
		return s, true, nil
	}
	if p := n.trunkPrefix; p != "" && len(s) > len(p) && strings.HasPrefix(s, p) {
		s = s[len(p):]
		if n.stations.contains(s) {
			return s, true, nil
		}
	}
	return s, false, nil
}

// identify resolves a device named as itself (a monitor object, a calling
// device, an external caller id): no trunk prefix is stripped.
func (n numbering) identify(s string) (id string, station bool, err error) {
	s, err = cleanNumber(s)
	if err != nil {
		return "", false, err
	}
	return s, n.stations.contains(s), nil
}
