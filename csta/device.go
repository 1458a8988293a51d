package csta

// Device identifiers as clients and PBXs write them (docs/wire.md §1.8).
//
// Clients name their line and the parties they dial with tel: URIs
// (tel:+14255550100;ext=100, tel:2101;phone-context=dialstring;partition=P),
// sometimes sip: URIs or bare digits; PBXs add native forms such as OpenScape's
// N<+12065550147>;displayNumber=...;noa=nk and Avaya DMCC's 2101:CM1:10.0.0.1:0.
// ParseDeviceID reduces all of them to one DeviceID value, Key reduces a
// DeviceID to the part that identifies a line, and String renders the
// canonical tel:/sip: form.

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// ErrInvalidDeviceID is wrapped by every error ParseDeviceID returns.
var ErrInvalidDeviceID = errors.New("csta: invalid device identifier")

// Device identifier schemes as reported in DeviceID.Scheme.
const (
	devSchemeTel    = "tel"
	devSchemeSIP    = "sip"
	devSchemeSIPS   = "sips"
	devSchemeBare   = ""
	devSchemeNative = "N" // OpenScape native N<number>
)

// Names of the parameters ParseDeviceID lifts into their own fields.
const (
	devParamExt          = "ext"
	devParamPhoneContext = "phone-context"
	devParamPartition    = "partition"
	devParamDevice       = "device"
)

// devDialString is the phone-context value that marks a number to be dialled
// exactly as given (Cisco's convention).
const devDialString = "dialstring"

// devMaxLen bounds the length of a device identifier (after trimming). Real
// identifiers are well below 100 bytes; the bound keeps hostile input cheap.
const devMaxLen = 256

// devRenderSlack bounds what rendering adds besides escaping: a "tel:" scheme
// and ";phone-context=dialstring".
const devRenderSlack = len("tel:") + len(";phone-context=dialstring")

// devQuoteMax is how much of a bad input an error message quotes;
// devSnippetMax how much of a bad part of it.
const (
	devQuoteMax   = 64
	devSnippetMax = 16
)

// Param is a URI parameter ParseDeviceID did not lift into a field of its own.
type Param struct {
	Name  string // lower-cased
	Value string // percent-decoded; empty for a parameter without '='
}

// DeviceID is a parsed device identifier.
type DeviceID struct {
	// Raw is the input as given, with surrounding white space trimmed.
	Raw string
	// Scheme is "tel", "sip", "sips", "" for a bare number or "N" for
	// OpenScape's native N<...> form.
	Scheme string
	// Number holds an optional leading '+' followed by digits, '*' and '#'.
	// Visual separators (- . ( ) and spaces) are removed and anything from
	// "v:" on is cut off.
	Number string
	// Host is the host part of a sip/sips URI (with its port, if any). It is
	// empty for other schemes and for a sip URI without '@'.
	Host string
	// Ext is the ext parameter, cleaned like Number.
	Ext string
	// PhoneContext, Partition and Device are the percent-decoded values of
	// the phone-context, partition and device parameters.
	PhoneContext string
	Partition    string
	Device       string
	// Params are the other parameters, in input order. For sip URIs the
	// parameters of the user part come before those after the host.
	Params []Param
}

// LineKey identifies a line appearance: two device identifiers denote the same
// line when their keys match (docs/wire.md §1.8).
type LineKey struct {
	Number    string // digits of Ext if present, else Number without its leading '+'
	Partition string // as given; compared case-insensitively
}

// ParseDeviceID parses a device identifier in any of the forms of
// docs/wire.md §1.8. Every error wraps ErrInvalidDeviceID, says what is wrong
// and quotes the (truncated) input.
func ParseDeviceID(s string) (DeviceID, error) {
	t := strings.TrimSpace(s)
	switch {
	case t == "":
		return DeviceID{}, devError(s, "empty")
	case len(t) > devMaxLen:
		return DeviceID{}, devError(s, fmt.Sprintf("longer than %d bytes", devMaxLen))
	}
	if i := devControlIndex(t); i >= 0 {
		return DeviceID{}, devError(s, fmt.Sprintf("control character %q at offset %d", t[i], i))
	}

	d := DeviceID{Raw: t}
	var err error
	switch {
	case devHasPrefixFold(t, "tel:"):
		d.Scheme = devSchemeTel
		err = d.devParseTel(t[len("tel:"):], false)
	case devHasPrefixFold(t, "sip:"):
		d.Scheme = devSchemeSIP
		err = d.devParseSIP(t[len("sip:"):])
	case devHasPrefixFold(t, "sips:"):
		d.Scheme = devSchemeSIPS
		err = d.devParseSIP(t[len("sips:"):])
	case len(t) >= 2 && (t[0] == 'N' || t[0] == 'n') && t[1] == '<':
		d.Scheme = devSchemeNative
		err = d.devParseNative(t[2:])
	default:
		d.Scheme = devSchemeBare
		err = d.devParseTel(t, true) // may be Avaya DMCC number:switch:address:n
	}
	if err != nil {
		return DeviceID{}, devError(s, err.Error())
	}
	// The canonical form must parse back, so it has to fit the limit too.
	// Rendering grows an identifier by at most a scheme and
	// ";phone-context=dialstring" and by escaping bytes (x3): only long
	// inputs need checking.
	if 3*len(t)+devRenderSlack > devMaxLen {
		var tmp [devMaxLen + 1]byte
		if n := len(d.devAppend(tmp[:0])); n > devMaxLen {
			return DeviceID{}, devError(s, fmt.Sprintf("canonical form of %d bytes is longer than %d", n, devMaxLen))
		}
	}
	return d, nil
}

// devParseTel parses what follows "tel:": the number up to the first ';',
// then the parameters.
func (d *DeviceID) devParseTel(rest string, avaya bool) error {
	num, params := devCutParams(rest)
	n, err := devNumber(num, avaya)
	if err != nil {
		return err
	}
	d.Number = n
	return d.devParseParams(params)
}

// devParseSIP parses what follows "sip:" or "sips:". The number is the user
// part; parameters may follow the user (sip:2101;user=phone@host) as well as
// the host (sip:2101@host;user=phone) and are collected from both places.
// URI headers (from '?' on) do not identify a device and are dropped.
func (d *DeviceID) devParseSIP(rest string) error {
	user, hostPart, hasHost := strings.Cut(rest, "@")
	if !hasHost {
		// No '@': a lenient "sip:2101;user=phone" with the number where the
		// host would be. Keep the number, leave Host empty.
		user, _, _ = strings.Cut(user, "?")
	} else {
		hostPart, _, _ = strings.Cut(hostPart, "?")
	}

	num, userParams := devCutParams(user)
	if num == "" {
		return errors.New("empty user part")
	}
	n, err := devNumber(num, false)
	if err != nil {
		return err
	}
	d.Number = n
	if err := d.devParseParams(userParams); err != nil {
		return err
	}
	if !hasHost {
		return nil
	}

	host, hostParams := devCutParams(hostPart)
	if host == "" {
		return errors.New("empty host")
	}
	for i := 0; i < len(host); i++ {
		if !devIsHostChar(host[i]) {
			return fmt.Errorf("invalid character %q in host", devRuneAt(host, i))
		}
	}
	d.Host = host
	return d.devParseParams(hostParams)
}

// devParseNative parses what follows "N<" in OpenScape's native form
// N<+12065550147>;displayNumber=2065550147;noa=nk.
func (d *DeviceID) devParseNative(rest string) error {
	num, after, ok := strings.Cut(rest, ">")
	if !ok {
		return errors.New("missing '>' after N<number")
	}
	if after != "" && after[0] != ';' {
		return fmt.Errorf("unexpected %q after N<number>", devTruncate(after, devSnippetMax))
	}
	n, err := devNumber(num, false)
	if err != nil {
		return err
	}
	d.Number = n
	return d.devParseParams(after)
}

// devParseParams parses ";name[=value]" parameters. s is empty or starts with
// ';'. Empty segments (";;" or a trailing ';') are ignored.
func (d *DeviceID) devParseParams(s string) error {
	for s != "" {
		var seg string
		seg, s = devCutParams(s[1:])
		if seg == "" {
			continue
		}
		rawName, rawValue, _ := strings.Cut(seg, "=")
		if rawName == "" {
			return fmt.Errorf("parameter %q has no name", devTruncate(seg, devSnippetMax))
		}
		for i := 0; i < len(rawName); i++ {
			if !devIsParamNameChar(rawName[i]) {
				return fmt.Errorf("invalid character %q in parameter name %q", devRuneAt(rawName, i), devTruncate(rawName, devSnippetMax))
			}
		}
		name := strings.ToLower(rawName)
		value, err := url.PathUnescape(rawValue)
		if err != nil {
			return fmt.Errorf("bad percent-encoding in parameter %s", name)
		}
		if i := devControlIndex(value); i >= 0 {
			return fmt.Errorf("control character in parameter %s", name)
		}
		if err := d.devSetParam(name, value); err != nil {
			return err
		}
	}
	return nil
}

// devSetParam stores one decoded parameter in its field or in Params.
func (d *DeviceID) devSetParam(name, value string) error {
	var field *string
	switch name {
	case devParamExt:
		field = &d.Ext
	case devParamPhoneContext:
		field = &d.PhoneContext
	case devParamPartition:
		field = &d.Partition
	case devParamDevice:
		field = &d.Device
	default:
		d.Params = append(d.Params, Param{Name: name, Value: value})
		return nil
	}
	if *field != "" {
		return fmt.Errorf("duplicate parameter %s", name)
	}
	if value == "" {
		return fmt.Errorf("parameter %s needs a value", name)
	}
	if name == devParamExt {
		ext, err := devCleanNumber(value, false)
		if err != nil {
			return fmt.Errorf("parameter ext: %w", err)
		}
		value = ext
	}
	*field = value
	return nil
}

// devCutParams splits s at its first ';' into the part before it and the
// rest starting with the ';' (empty when there is none).
func devCutParams(s string) (head, params string) {
	if i := strings.IndexByte(s, ';'); i >= 0 {
		return s[:i], s[i:]
	}
	return s, ""
}

// devNumber percent-decodes the number text of a device identifier and
// cleans it with devCleanNumber.
func devNumber(text string, avaya bool) (string, error) {
	if strings.IndexByte(text, '%') >= 0 {
		dec, err := url.PathUnescape(text)
		if err != nil {
			return "", errors.New("bad percent-encoding in number")
		}
		text = dec
	}
	return devCleanNumber(text, avaya)
}

// devCleanNumber turns number text into Number form: cut at "v:" (and, with
// avaya set, at the first ':'), visual separators removed, then checked to be
// an optional '+' followed by at least one digit, '*' or '#'.
func devCleanNumber(text string, avaya bool) (string, error) {
	// An old sipe turned "5555551234 v:41234" into tel:5555551234v:41234; the
	// part from "v:" on is not part of the number.
	if i := devIndexVColon(text); i >= 0 {
		text = text[:i]
	}
	if avaya {
		// Avaya DMCC: 2101:CM1:10.0.0.1:0 names extension 2101 on switch CM1.
		text, _, _ = strings.Cut(text, ":")
	}

	// First pass: validate and see whether anything must be dropped.
	digits, separators, plus := 0, 0, false
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case devIsNumberDigit(c):
			digits++
		case devIsVisualSeparator(c):
			separators++
		case c == '+':
			if digits > 0 || plus {
				return "", errors.New("'+' inside number")
			}
			plus = true
		default:
			return "", fmt.Errorf("invalid character %q in number", devRuneAt(text, i))
		}
	}
	if digits == 0 {
		return "", errors.New("empty number")
	}
	if separators == 0 {
		return text, nil
	}
	// Second pass: copy without the separators.
	b := make([]byte, 0, len(text)-separators)
	for i := 0; i < len(text); i++ {
		if !devIsVisualSeparator(text[i]) {
			b = append(b, text[i])
		}
	}
	return string(b), nil
}

// IsE164 reports whether the number is in global (+E.164) form.
func (d DeviceID) IsE164() bool {
	return strings.HasPrefix(d.Number, "+")
}

// IsDialString reports whether the number is to be dialled exactly as given:
// it carries phone-context=dialstring, or it is a bare or native number
// without '+' and without a phone-context of its own.
func (d DeviceID) IsDialString() bool {
	if d.PhoneContext != "" {
		return strings.EqualFold(d.PhoneContext, devDialString)
	}
	return (d.Scheme == devSchemeBare || d.Scheme == devSchemeNative) && !d.IsE164()
}

// Key returns the line key of the identifier: the digits of ext when present,
// else the number without '+', with the partition if one was given. The
// device parameter selects a phone on the line and is not part of the key.
func (d DeviceID) Key() LineKey {
	n := d.Number
	if d.Ext != "" {
		n = d.Ext
	}
	return LineKey{Number: strings.TrimPrefix(n, "+"), Partition: d.Partition}
}

// String renders the canonical form. tel (and bare and native) identifiers
// render as tel:NUMBER followed by ;ext= ;phone-context= ;partition= ;device=
// and then the other parameters in their input order; sip and sips
// identifiers render as sip:NUMBER@host followed by the parameters in the
// same order. A bare or native number that is not E.164 and has no
// phone-context is given ;phone-context=dialstring, so that the result is a
// valid tel URI that still says "dial as is". Parameter values are
// percent-encoded where needed, so the result parses back to the same fields.
// The zero DeviceID renders as "".
func (d DeviceID) String() string {
	if d.Number == "" {
		return ""
	}
	return string(d.devAppend(make([]byte, 0, len(d.Raw)+32)))
}

// devAppend appends the canonical form (see String) to dst.
func (d DeviceID) devAppend(dst []byte) []byte {
	sip := d.Scheme == devSchemeSIP || d.Scheme == devSchemeSIPS
	if sip {
		dst = append(dst, d.Scheme...)
		dst = append(dst, ':')
		// '#' may not stand unescaped in a SIP user part.
		for i := 0; i < len(d.Number); i++ {
			if c := d.Number[i]; c == '#' {
				dst = append(dst, "%23"...)
			} else {
				dst = append(dst, c)
			}
		}
		if d.Host != "" {
			dst = append(dst, '@')
			dst = append(dst, d.Host...)
		}
	} else {
		dst = append(dst, "tel:"...)
		dst = append(dst, d.Number...)
	}

	phoneContext := d.PhoneContext
	if phoneContext == "" && !sip && d.Scheme != devSchemeTel && !d.IsE164() {
		phoneContext = devDialString
	}
	dst = devAppendParam(dst, devParamExt, d.Ext)
	dst = devAppendParam(dst, devParamPhoneContext, phoneContext)
	dst = devAppendParam(dst, devParamPartition, d.Partition)
	dst = devAppendParam(dst, devParamDevice, d.Device)
	for _, p := range d.Params {
		if p.Name == "" {
			continue
		}
		dst = append(dst, ';')
		dst = devAppendName(dst, p.Name)
		if p.Value != "" {
			dst = append(dst, '=')
			dst = devAppendEscaped(dst, p.Value)
		}
	}
	return dst
}

// devAppendParam appends ";name=value" unless value is empty.
func devAppendParam(dst []byte, name, value string) []byte {
	if value == "" {
		return dst
	}
	dst = append(dst, ';')
	dst = append(dst, name...)
	dst = append(dst, '=')
	return devAppendEscaped(dst, value)
}

// devAppendName appends a parameter name, lower-cased. Names ParseDeviceID
// produced are appended as they are; any byte a name may not hold (only
// possible in a hand-built Param) is percent-encoded.
func devAppendName(dst []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'A' && c <= 'Z':
			dst = append(dst, c+('a'-'A'))
		case devIsParamNameChar(c):
			dst = append(dst, c)
		default:
			dst = devAppendPercent(dst, c)
		}
	}
	return dst
}

// devAppendEscaped appends s with every byte outside the characters that may
// stand unescaped in a tel/sip parameter percent-encoded.
func devAppendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; devIsParamValueChar(c) {
			dst = append(dst, c)
		} else {
			dst = devAppendPercent(dst, c)
		}
	}
	return dst
}

// devAppendPercent appends c as %XX.
func devAppendPercent(dst []byte, c byte) []byte {
	const hex = "0123456789ABCDEF"
	return append(dst, '%', hex[c>>4], hex[c&0x0f])
}

// Matches reports whether k and o denote the same line: the numbers are equal
// and, when both sides name a partition, the partitions are equal ignoring
// case. A key without a number matches nothing.
func (k LineKey) Matches(o LineKey) bool {
	if k.Number == "" || k.Number != o.Number {
		return false
	}
	if k.Partition == "" || o.Partition == "" {
		return true
	}
	return strings.EqualFold(k.Partition, o.Partition)
}

// String renders the key for logs: "2101" or "2101;partition=Internal_PT".
func (k LineKey) String() string {
	if k.Partition == "" {
		return k.Number
	}
	return k.Number + ";partition=" + k.Partition
}

// TelURI renders a number for a party other than the monitored line
// (docs/wire.md §1.8): "tel:+E.164" for a global number, otherwise
// "tel:<digits>;phone-context=dialstring". Visual separators are removed and
// anything from "v:" on is cut, as ParseDeviceID does. A string that is not
// a number at all gives "", which callers render as <notKnown/>.
func TelURI(number string) string {
	n, err := devCleanNumber(strings.TrimSpace(number), false)
	if err != nil {
		return ""
	}
	if strings.HasPrefix(n, "+") {
		return "tel:" + n
	}
	return "tel:" + n + ";" + devParamPhoneContext + "=" + devDialString
}

// devError builds a parse error that wraps ErrInvalidDeviceID and quotes the
// input, truncated.
func devError(input, what string) error {
	return fmt.Errorf("%w: %s: %q", ErrInvalidDeviceID, what, devTruncate(input, devQuoteMax))
}

// devTruncate shortens s to at most limit bytes, on a rune boundary, marking
// the cut with "...".
func devTruncate(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// devRuneAt returns the character starting at s[i], for error messages
// (utf8.RuneError for a byte that does not start valid UTF-8).
func devRuneAt(s string, i int) rune {
	r, _ := utf8.DecodeRuneInString(s[i:])
	return r
}

// devControlIndex returns the index of the first ASCII control character
// (including DEL) in s, or -1.
func devControlIndex(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return i
		}
	}
	return -1
}

// devHasPrefixFold reports whether s starts with the lower-case ASCII prefix,
// ignoring case.
func devHasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// devIndexVColon returns the index of the first "v:" or "V:" in s, or -1.
func devIndexVColon(s string) int {
	for i := strings.IndexByte(s, ':'); i >= 0; {
		if i > 0 && (s[i-1] == 'v' || s[i-1] == 'V') {
			return i - 1
		}
		j := strings.IndexByte(s[i+1:], ':')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return -1
}

// devIsNumberDigit reports whether c may appear in Number after the '+'.
func devIsNumberDigit(c byte) bool {
	return c >= '0' && c <= '9' || c == '*' || c == '#'
}

// devIsVisualSeparator reports whether c is a visual separator dropped from
// numbers (RFC 3966 uses - . ( ); clients also write spaces).
func devIsVisualSeparator(c byte) bool {
	return c == '-' || c == '.' || c == '(' || c == ')' || c == ' '
}

// devIsAlnum reports whether c is an ASCII letter or digit.
func devIsAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// devIsParamNameChar reports whether c may appear in a parameter name (the
// token characters of RFC 3261 that make sense in a name).
func devIsParamNameChar(c byte) bool {
	return devIsAlnum(c) || strings.IndexByte("-_.!~*'+`", c) >= 0
}

// devIsParamValueChar reports whether c may stand unescaped in a rendered
// parameter value (RFC 3986 unreserved plus RFC 3261 param-unreserved).
func devIsParamValueChar(c byte) bool {
	return devIsAlnum(c) || strings.IndexByte("-_.!~*'()[]/:&+$", c) >= 0
}

// devIsHostChar reports whether c may appear in a SIP host[:port], including
// bracketed IPv6 references.
func devIsHostChar(c byte) bool {
	return devIsAlnum(c) || strings.IndexByte("-._:[]", c) >= 0
}
