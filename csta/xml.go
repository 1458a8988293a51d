package csta

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// This file holds a small, strict XML scanner for CSTA documents.
//
// Why not encoding/xml or etree for decoding: both allocate several objects
// per token (names, attribute slices, character data copies); a DeliveredEvent
// costs them well over a hundred allocations. CSTA documents use a small subset
// of XML (elements, namespace declarations, text, the five predefined entities,
// character references, CDATA, comments and processing instructions), and every
// byte we accept comes from the network, so the scanner below is written to be
// cheap and to refuse, rather than expand, anything outside that subset
// (DOCTYPE, entity declarations, undeclared entities). It converts the input to
// one string once and hands out substrings of it, so a decoded message costs a
// handful of allocations. Tests cross-check it against etree (encoding/xml).

// Limits bounds what the decoder accepts. Zero fields take the defaults.
type Limits struct {
	MaxBytes    int // whole document, bytes
	MaxDepth    int // element nesting
	MaxElements int // elements in the document
}

// Default limits: generous for any real CSTA document (the largest, a
// GetCSTAFeaturesResponse or a busy SnapshotDeviceResponse, has a few hundred
// elements and nests under ten deep), small enough to make bombs cheap.
const (
	DefaultMaxBytes    = 64 << 10
	DefaultMaxDepth    = 32
	DefaultMaxElements = 1024
)

// DefaultLimits are the limits Decode applies.
var DefaultLimits = Limits{MaxBytes: DefaultMaxBytes, MaxDepth: DefaultMaxDepth, MaxElements: DefaultMaxElements}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxElements <= 0 {
		l.MaxElements = DefaultMaxElements
	}
	return l
}

// Errors the XML decoder returns, wrapped in *XMLError. ErrTooLarge maps to
// SIP 413; every other one to SIP 400.
var (
	ErrTooLarge        = errors.New("csta: document larger than the limit")
	ErrTooDeep         = errors.New("csta: elements nested deeper than the limit")
	ErrTooManyElements = errors.New("csta: more elements than the limit")
	ErrForbiddenMarkup = errors.New("csta: DTDs and entity declarations are not accepted")
	ErrUnknownEntity   = errors.New("csta: undeclared entity reference")
	ErrEncoding        = errors.New("csta: unsupported character encoding")
	ErrSyntax          = errors.New("csta: malformed XML")
	ErrNoRoot          = errors.New("csta: document has no root element")
)

// XMLError reports why a document was refused and where.
type XMLError struct {
	Err    error // one of the Err* sentinels above
	Offset int   // byte offset in the input where the problem was found
	Detail string
}

func (e *XMLError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("%v at byte %d", e.Err, e.Offset)
	}
	return fmt.Sprintf("%v at byte %d: %s", e.Err, e.Offset, e.Detail)
}

func (e *XMLError) Unwrap() error { return e.Err }

// TooLarge reports whether the document was refused for its size alone (SIP
// 413) rather than for its content (SIP 400).
func (e *XMLError) TooLarge() bool { return e.Err == ErrTooLarge }

// xnode is one element of a scanned document. Children are linked through
// first/next so the whole tree lives in one reusable slice.
type xnode struct {
	qname  string // as written, prefix included
	local  string
	ns     string // resolved namespace URI ("" when none)
	text   string // character data directly inside, whitespace-only runs dropped
	parent int32
	first  int32
	last   int32
	next   int32
	start  int32    // byte offset of the start tag's '<' in the source
	inner  [2]int32 // byte range of the element's content in the source
	hasKid bool
	pieces uint8 // text segments joined into text so far, beyond the first
}

// maxNSBindings bounds the namespace declarations in scope at once: lookup
// is linear in them, and no real document needs more than a handful.
const maxNSBindings = 64

type nsBind struct {
	prefix, uri string
	depth       int
}

// nsDecl is one namespace declaration as written, for RewriteEvent.
type nsDecl struct {
	prefix, uri string
	elem        int32    // the element whose start tag declares it
	val         [2]int32 // byte range of the quoted value, quotes excluded
}

// xdoc is a scanned document. It is pooled; strings handed out point into src.
type xdoc struct {
	src   string
	nodes []xnode
	binds []nsBind
	decls []nsDecl
	buf   []byte
}

var xdocPool = sync.Pool{New: func() any { return &xdoc{nodes: make([]xnode, 0, 64)} }}

func getDoc() *xdoc { return xdocPool.Get().(*xdoc) }

func putDoc(d *xdoc) {
	if cap(d.nodes) > 2*DefaultMaxElements || cap(d.binds) > maxNSBindings || cap(d.decls) > maxNSBindings {
		return // do not keep the memory of a huge document around
	}
	d.src = ""
	d.nodes = d.nodes[:0]
	d.binds = d.binds[:0]
	d.decls = d.decls[:0]
	d.buf = d.buf[:0]
	xdocPool.Put(d)
}

func (d *xdoc) fail(err error, off int, format string, args ...any) error {
	return &XMLError{Err: err, Offset: off, Detail: fmt.Sprintf(format, args...)}
}

// scan parses src into d.nodes. Node 0 is the root element.
func (d *xdoc) scan(data []byte, lim Limits) error {
	lim = lim.withDefaults()
	if len(data) > lim.MaxBytes {
		return &XMLError{Err: ErrTooLarge, Offset: lim.MaxBytes, Detail: fmt.Sprintf("%d bytes, limit %d", len(data), lim.MaxBytes)}
	}
	src, err := toUTF8(data)
	if err != nil {
		return err
	}
	d.src = src
	s := src
	i := 0
	if strings.HasPrefix(s, "\xef\xbb\xbf") {
		i = 3
	}
	cur := int32(-1) // innermost open element
	depth := 0
	rootDone := false
	for {
		// Character data up to the next markup.
		j := strings.IndexByte(s[i:], '<')
		var seg string
		if j < 0 {
			seg = s[i:]
		} else {
			seg = s[i : i+j]
		}
		if len(seg) > 0 {
			if cur < 0 {
				if !isSpace(seg) {
					return d.fail(ErrSyntax, i, "text outside the root element")
				}
			} else if !isSpace(seg) {
				if err := d.addText(cur, seg, i); err != nil {
					return err
				}
			}
		}
		if j < 0 {
			break
		}
		i += j
		rest := s[i:]
		switch {
		case strings.HasPrefix(rest, "<?"):
			end := strings.Index(rest[2:], "?>") // not in "<?>"
			if end < 0 {
				return d.fail(ErrSyntax, i, "unterminated processing instruction")
			}
			if err := d.checkPI(rest[2:2+end], i); err != nil {
				return err
			}
			i += 2 + end + 2
		case strings.HasPrefix(rest, "<!--"):
			end := strings.Index(rest[4:], "-->")
			if end < 0 {
				return d.fail(ErrSyntax, i, "unterminated comment")
			}
			if body := rest[4 : 4+end]; strings.Contains(body, "--") || strings.HasSuffix(body, "-") {
				return d.fail(ErrSyntax, i, "'--' inside a comment")
			}
			i += 4 + end + 3
		case strings.HasPrefix(rest, "<![CDATA["):
			if cur < 0 {
				return d.fail(ErrSyntax, i, "CDATA outside the root element")
			}
			end := strings.Index(rest[9:], "]]>")
			if end < 0 {
				return d.fail(ErrSyntax, i, "unterminated CDATA section")
			}
			if err := d.appendRaw(cur, rest[9:9+end], i); err != nil {
				return err
			}
			i += 9 + end + 3
		case strings.HasPrefix(rest, "<!"):
			// <!DOCTYPE, <!ENTITY, <!ELEMENT...: never accepted.
			return d.fail(ErrForbiddenMarkup, i, "%.20q", rest)
		case strings.HasPrefix(rest, "</"):
			if cur < 0 {
				return d.fail(ErrSyntax, i, "end tag without start tag")
			}
			k := i + 2
			nameEnd := scanName(s, k)
			name := s[k:nameEnd]
			k = skipSpace(s, nameEnd)
			if k >= len(s) || s[k] != '>' {
				return d.fail(ErrSyntax, k, "malformed end tag")
			}
			n := &d.nodes[cur]
			if name != n.qname {
				return d.fail(ErrSyntax, i, "end tag </%s> does not match <%s>", trunc(name), trunc(n.qname))
			}
			n.inner[1] = int32(i)
			d.popBinds(depth)
			depth--
			cur = n.parent
			i = k + 1
			if cur < 0 {
				rootDone = true
			}
		default:
			if rootDone {
				return d.fail(ErrSyntax, i, "content after the root element")
			}
			depth++
			if depth > lim.MaxDepth {
				return d.fail(ErrTooDeep, i, "depth %d, limit %d", depth, lim.MaxDepth)
			}
			if len(d.nodes) >= lim.MaxElements {
				return d.fail(ErrTooManyElements, i, "limit %d", lim.MaxElements)
			}
			next, selfClose, err := d.startTag(i, cur, depth)
			if err != nil {
				return err
			}
			idx := int32(len(d.nodes) - 1)
			i = next
			if selfClose {
				d.nodes[idx].inner = [2]int32{int32(i), int32(i)}
				d.popBinds(depth)
				depth--
				if cur < 0 {
					rootDone = true
				}
			} else {
				d.nodes[idx].inner[0] = int32(i)
				cur = idx
			}
		}
	}
	if cur >= 0 {
		return d.fail(ErrSyntax, len(s), "unexpected end of document inside <%s>", trunc(d.nodes[cur].qname))
	}
	if len(d.nodes) == 0 {
		return &XMLError{Err: ErrNoRoot, Offset: len(s)}
	}
	return nil
}

// startTag parses "<name attrs...>" at s[i] and appends the node.
func (d *xdoc) startTag(i int, parent int32, depth int) (next int, selfClose bool, err error) {
	s := d.src
	k := i + 1
	nameEnd := scanName(s, k)
	if nameEnd == k {
		return 0, false, d.fail(ErrSyntax, i, "element without a name")
	}
	qname := s[k:nameEnd]
	if !validName(qname) {
		return 0, false, d.fail(ErrSyntax, k, "invalid element name %q", trunc(qname))
	}
	k = nameEnd
	for {
		k2 := skipSpace(s, k)
		if k2 >= len(s) {
			return 0, false, d.fail(ErrSyntax, k2, "unterminated start tag <%s", trunc(qname))
		}
		c := s[k2]
		if c == '>' {
			k = k2 + 1
			break
		}
		if c == '/' {
			if k2+1 >= len(s) || s[k2+1] != '>' {
				return 0, false, d.fail(ErrSyntax, k2, "malformed start tag <%s", trunc(qname))
			}
			k = k2 + 2
			selfClose = true
			break
		}
		if k2 == k {
			return 0, false, d.fail(ErrSyntax, k2, "attributes must be separated by white space")
		}
		an := scanName(s, k2)
		if an == k2 {
			return 0, false, d.fail(ErrSyntax, k2, "malformed attribute in <%s", trunc(qname))
		}
		attr := s[k2:an]
		if !validName(attr) {
			return 0, false, d.fail(ErrSyntax, k2, "invalid attribute name %q", trunc(attr))
		}
		k3 := skipSpace(s, an)
		if k3 >= len(s) || s[k3] != '=' {
			return 0, false, d.fail(ErrSyntax, k3, "attribute %s has no value", trunc(attr))
		}
		k3 = skipSpace(s, k3+1)
		if k3 >= len(s) || (s[k3] != '"' && s[k3] != '\'') {
			return 0, false, d.fail(ErrSyntax, k3, "attribute %s value is not quoted", trunc(attr))
		}
		q := s[k3]
		end := strings.IndexByte(s[k3+1:], q)
		if end < 0 {
			return 0, false, d.fail(ErrSyntax, k3, "unterminated attribute value")
		}
		raw := s[k3+1 : k3+1+end]
		if strings.IndexByte(raw, '<') >= 0 {
			return 0, false, d.fail(ErrSyntax, k3, "'<' in attribute value")
		}
		v, err := d.unescape(raw, k3+1)
		if err != nil {
			return 0, false, err
		}
		if attr == "xmlns" || strings.HasPrefix(attr, "xmlns:") {
			prefix := ""
			if len(attr) > 5 {
				prefix = attr[6:]
			}
			if len(d.binds) >= maxNSBindings {
				return 0, false, d.fail(ErrTooManyElements, k2, "more than %d namespace declarations in scope", maxNSBindings)
			}
			d.binds = append(d.binds, nsBind{prefix: prefix, uri: v, depth: depth})
			d.decls = append(d.decls, nsDecl{prefix: prefix, uri: v, elem: int32(len(d.nodes)), val: [2]int32{int32(k3 + 1), int32(k3 + 1 + end)}})
		}
		k = k3 + 1 + end + 1
	}
	prefix, local := "", qname
	if c := strings.IndexByte(qname, ':'); c >= 0 {
		prefix, local = qname[:c], qname[c+1:]
	}
	n := xnode{qname: qname, local: local, ns: d.lookupNS(prefix), parent: parent, first: -1, last: -1, next: -1, start: int32(i)}
	d.nodes = append(d.nodes, n)
	idx := int32(len(d.nodes) - 1)
	if parent >= 0 {
		p := &d.nodes[parent]
		p.hasKid = true
		if p.last < 0 {
			p.first = idx
		} else {
			d.nodes[p.last].next = idx
		}
		p.last = idx
	}
	return k, selfClose, nil
}

func (d *xdoc) lookupNS(prefix string) string {
	for i := len(d.binds) - 1; i >= 0; i-- {
		if d.binds[i].prefix == prefix {
			return d.binds[i].uri
		}
	}
	return ""
}

func (d *xdoc) popBinds(depth int) {
	for len(d.binds) > 0 && d.binds[len(d.binds)-1].depth >= depth {
		d.binds = d.binds[:len(d.binds)-1]
	}
}

func (d *xdoc) addText(cur int32, seg string, off int) error {
	if j := strings.Index(seg, "]]>"); j >= 0 {
		return d.fail(ErrSyntax, off+j, "']]>' in character data")
	}
	if strings.IndexByte(seg, '&') >= 0 {
		v, err := d.unescape(seg, off)
		if err != nil {
			return err
		}
		seg = v
	}
	return d.appendRaw(cur, seg, off)
}

// maxTextPieces bounds how many segments (text split by comments, PIs and
// CDATA sections) one element's text may be joined from. Each join copies
// the text so far, so without a bound a document of many tiny pieces costs
// time quadratic in its size.
const maxTextPieces = 64

func (d *xdoc) appendRaw(cur int32, seg string, off int) error {
	n := &d.nodes[cur]
	if n.text == "" {
		n.text = seg
		return nil
	}
	if int(n.pieces)+1 >= maxTextPieces { // the first piece is not counted
		return d.fail(ErrTooManyElements, off, "text of <%s> split into more than %d pieces", trunc(n.qname), maxTextPieces)
	}
	n.pieces++
	n.text += seg
	return nil
}

// unescape resolves the predefined entities and character references. Any
// other entity is refused: with no DTD there is nothing it could mean, and
// refusing it leaves no room for expansion tricks.
func (d *xdoc) unescape(s string, off int) (string, error) {
	amp := strings.IndexByte(s, '&')
	if amp < 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for amp >= 0 {
		b = append(b, s[:amp]...)
		s = s[amp:]
		semi := strings.IndexByte(s, ';')
		if semi < 0 || semi > 12 {
			return "", d.fail(ErrSyntax, off, "unterminated entity reference")
		}
		ent := s[1:semi]
		switch ent {
		case "lt":
			b = append(b, '<')
		case "gt":
			b = append(b, '>')
		case "amp":
			b = append(b, '&')
		case "apos":
			b = append(b, '\'')
		case "quot":
			b = append(b, '"')
		default:
			r, ok := charRef(ent)
			if !ok {
				if len(ent) > 0 && ent[0] == '#' {
					return "", d.fail(ErrSyntax, off, "bad character reference &%s;", trunc(ent))
				}
				return "", d.fail(ErrUnknownEntity, off, "&%s;", trunc(ent))
			}
			b = utf8.AppendRune(b, r)
		}
		off += semi + 1
		s = s[semi+1:]
		amp = strings.IndexByte(s, '&')
	}
	b = append(b, s...)
	return string(b), nil
}

func charRef(ent string) (rune, bool) {
	if len(ent) < 2 || ent[0] != '#' {
		return 0, false
	}
	var r rune
	digits := ent[1:]
	base := rune(10)
	if digits[0] == 'x' {
		base = 16
		digits = digits[1:]
	}
	if digits == "" || len(digits) > 8 {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		var v rune
		switch {
		case c >= '0' && c <= '9':
			v = rune(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			v = rune(c-'a') + 10
		case base == 16 && c >= 'A' && c <= 'F':
			v = rune(c-'A') + 10
		default:
			return 0, false
		}
		r = r*base + v
	}
	if !xmlChar(r) {
		return 0, false
	}
	return r, true
}

// xmlChar reports whether r is a character XML 1.0 allows.
func xmlChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		(r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
}

// toUTF8 returns data as a string, transcoding a document declared
// ISO-8859-1 and refusing encodings we cannot read.
func toUTF8(data []byte) (string, error) {
	enc := declEncoding(data)
	switch strings.ToLower(enc) {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
	case "iso-8859-1", "latin1", "latin-1", "iso8859-1":
		ascii := true
		for _, c := range data {
			if c >= 0x80 {
				ascii = false
				break
			}
		}
		if !ascii {
			b := make([]byte, 0, len(data)+len(data)/8)
			for _, c := range data {
				b = utf8.AppendRune(b, rune(c))
			}
			return checkChars(string(b))
		}
	default:
		return "", &XMLError{Err: ErrEncoding, Detail: trunc(enc)}
	}
	s := string(data)
	if !utf8.ValidString(s) {
		return "", &XMLError{Err: ErrSyntax, Detail: "invalid UTF-8"}
	}
	return checkChars(s)
}

// checkChars refuses characters XML 1.0 does not allow anywhere in a
// document: C0 controls other than tab, LF and CR, and U+FFFE/U+FFFF
// (surrogates cannot occur in valid UTF-8).
func checkChars(s string) (string, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return "", &XMLError{Err: ErrSyntax, Offset: i, Detail: fmt.Sprintf("character U+%04X not allowed", c)}
		}
		if c == 0xEF && i+2 < len(s) && s[i+1] == 0xBF && (s[i+2] == 0xBE || s[i+2] == 0xBF) {
			return "", &XMLError{Err: ErrSyntax, Offset: i, Detail: "noncharacter U+FFFE/U+FFFF not allowed"}
		}
	}
	return s, nil
}

// checkPI checks the inside of a processing instruction (between "<?" and
// "?>"): it must start with a target name, and the XML declaration (target
// "xml") may only name version 1.0.
func (d *xdoc) checkPI(pi string, off int) error {
	n := 0
	for n < len(pi) && pi[n] != ' ' && pi[n] != '\t' && pi[n] != '\r' && pi[n] != '\n' {
		n++
	}
	if !validName(pi[:n]) {
		return d.fail(ErrSyntax, off, "processing instruction without a valid target")
	}
	if pi[:n] != "xml" {
		return nil
	}
	if v := declValue(pi[n:], "version"); v != "" && v != "1.0" {
		return d.fail(ErrSyntax, off, "unsupported XML version %q", trunc(v))
	}
	return nil
}

// validName reports whether s is a name we accept for an element, an
// attribute or a processing instruction target: ASCII letters, digits, '_',
// '-', '.', starting with a letter or '_', with at most one ':' that splits
// it into two non-empty parts (a namespace QName). Non-ASCII names are
// refused: no CSTA schema uses them.
func validName(s string) bool {
	if s == "" {
		return false
	}
	colon := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_':
		case '0' <= c && c <= '9' || c == '-' || c == '.':
			if i == 0 || s[i-1] == ':' {
				return false
			}
		case c == ':':
			if colon || i == 0 || i == len(s)-1 {
				return false
			}
			colon = true
		default:
			return false
		}
	}
	return true
}

// declEncoding returns the encoding named in an XML declaration, if any.
func declEncoding(data []byte) string {
	if len(data) >= 3 && data[0] == 0xEF && data[1] == 0xBB && data[2] == 0xBF {
		data = data[3:]
	}
	if len(data) < 6 || string(data[:5]) != "<?xml" ||
		(data[5] != ' ' && data[5] != '\t' && data[5] != '\r' && data[5] != '\n') {
		return ""
	}
	end := -1
	for i := 5; i+1 < len(data) && i < 256; i++ {
		if data[i] == '?' && data[i+1] == '>' {
			end = i
			break
		}
	}
	if end < 0 {
		return ""
	}
	return declValue(string(data[5:end]), "encoding")
}

// declValue returns the value of pseudo-attribute name in an XML declaration.
func declValue(decl, name string) string {
	if i, j, ok := declValueSpan(decl, name); ok {
		return decl[i:j]
	}
	return ""
}

// declValueSpan returns where the value of pseudo-attribute name lies in an
// XML declaration, quotes excluded.
func declValueSpan(decl, name string) (i, j int, ok bool) {
	k := strings.Index(decl, name)
	if k < 0 {
		return 0, 0, false
	}
	k += len(name)
	k = skipSpace(decl, k)
	if k >= len(decl) || decl[k] != '=' {
		return 0, 0, false
	}
	k = skipSpace(decl, k+1)
	if k >= len(decl) || (decl[k] != '"' && decl[k] != '\'') {
		return 0, 0, false
	}
	e := strings.IndexByte(decl[k+1:], decl[k])
	if e < 0 {
		return 0, 0, false
	}
	return k + 1, k + 1 + e, true
}

func scanName(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\r', '\n', '/', '>', '=', '<', '"', '\'', '&':
			return i
		}
		i++
	}
	return i
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n') {
		i++
	}
	return i
}

func isSpace[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Tree navigation helpers used by the decoder.

func (d *xdoc) child(i int32, local string) int32 {
	for c := d.nodes[i].first; c >= 0; c = d.nodes[c].next {
		if d.nodes[c].local == local {
			return c
		}
	}
	return -1
}

// textOf returns the trimmed text of node i or, when it only has children,
// the text of its first descendant that has any (so <deviceID><staticID>x
// </staticID></deviceID> reads as "x").
func (d *xdoc) textOf(i int32) string {
	for depth := 0; i >= 0 && depth < DefaultMaxDepth; depth++ {
		n := &d.nodes[i]
		if t := strings.TrimSpace(n.text); t != "" || !n.hasKid {
			return t
		}
		i = n.first
	}
	return ""
}
