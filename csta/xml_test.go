package csta

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
)

const ms = `<MonitorStop xmlns="` + NSEd3 + `">`

// nest returns n nested <a> elements.
func nest(n int) string {
	return strings.Repeat("<a>", n) + strings.Repeat("</a>", n)
}

const billionLaughs = `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<MonitorStop><monitorCrossRefID>&lol9;</monitorCrossRefID></MonitorStop>`

func TestDecodeRefusals(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want error
	}{
		// Markup we never accept.
		{"DOCTYPE", `<?xml version="1.0"?><!DOCTYPE MonitorStop><MonitorStop/>`, ErrForbiddenMarkup},
		{"DOCTYPE with internal subset", `<!DOCTYPE a [<!ELEMENT a ANY>]><a/>`, ErrForbiddenMarkup},
		{"ENTITY declaration", `<!ENTITY x "y"><a>&x;</a>`, ErrForbiddenMarkup},
		{"ENTITY inside an element", `<a><!ENTITY x "y"></a>`, ErrForbiddenMarkup},
		{"ELEMENT declaration", `<a><!ELEMENT b ANY></a>`, ErrForbiddenMarkup},
		{"billion laughs", billionLaughs, ErrForbiddenMarkup},
		{"undeclared entity", ms + `<monitorCrossRefID>&foo;</monitorCrossRefID></MonitorStop>`, ErrUnknownEntity},
		{"undeclared entity, billion-laughs style use", `<a>&lol9;</a>`, ErrUnknownEntity},
		{"undeclared entity in an attribute", `<a b="&foo;"/>`, ErrUnknownEntity},
		{"undeclared entity in xmlns", `<a xmlns="&foo;"/>`, ErrUnknownEntity},
		{"HTML entity", `<a>&nbsp;</a>`, ErrUnknownEntity},
		{"empty entity", `<a>&;</a>`, ErrUnknownEntity},

		// Limits.
		{"depth over the limit", nest(DefaultMaxDepth + 1), ErrTooDeep},
		{"elements over the limit", `<a>` + strings.Repeat(`<b/>`, DefaultMaxElements) + `</a>`, ErrTooManyElements},
		{"size over the limit", `<a>` + strings.Repeat("x", DefaultMaxBytes) + `</a>`, ErrTooLarge},
		{"text in too many pieces", `<a>` + strings.Repeat("x<!---->", 65) + `</a>`, ErrTooManyElements},

		// Malformed documents.
		{"mismatched end tag", `<a><b></a></b>`, ErrSyntax},
		{"end tag with another prefix", `<p:a xmlns:p="u" xmlns:q="u"></q:a>`, ErrSyntax},
		{"end tag without start", `</a>`, ErrSyntax},
		{"junk in end tag", `<a></a b>`, ErrSyntax},
		{"unterminated start tag", `<MonitorStop`, ErrSyntax},
		{"unterminated start tag with attribute", `<a b="1"`, ErrSyntax},
		{"unterminated element", `<a><b></b>`, ErrSyntax},
		{"unterminated comment", `<a><!-- x</a>`, ErrSyntax},
		{"unterminated CDATA", `<a><![CDATA[x</a>`, ErrSyntax},
		{"unterminated PI", `<?xml version="1.0"`, ErrSyntax},
		{"unterminated attribute value", `<a b="1/>`, ErrSyntax},
		{"text after the root", `<a/>x`, ErrSyntax},
		{"text before the root", `x<a/>`, ErrSyntax},
		{"two roots", `<a/><b/>`, ErrSyntax},
		{"CDATA after the root", `<a/><![CDATA[x]]>`, ErrSyntax},
		{"no root: empty", ``, ErrNoRoot},
		{"no root: white space", " \r\n\t", ErrNoRoot},
		{"no root: declaration and comment", `<?xml version="1.0"?><!-- nothing -->`, ErrNoRoot},
		{"no root: BOM only", "\xef\xbb\xbf", ErrNoRoot},
		{"invalid UTF-8", "<a>\xff</a>", ErrSyntax},
		{"invalid UTF-8 in a name", "<a\xc3>x</a\xc3>", ErrSyntax},
		{"UTF-8 surrogate", "<a>\xed\xa0\x80</a>", ErrSyntax},
		{"UTF-16 declared", `<?xml version="1.0" encoding="UTF-16"?><a/>`, ErrEncoding},
		{"UTF-16LE declared", `<?xml version='1.0' encoding='utf-16le'?><a/>`, ErrEncoding},
		{"EBCDIC declared", `<?xml version="1.0" encoding="IBM037"?><a/>`, ErrEncoding},
		{"attribute without quotes", `<a b=c/>`, ErrSyntax},
		{"attribute without value", `<a b/>`, ErrSyntax},
		{"attributes not separated", `<a b="1"c="2"/>`, ErrSyntax},
		{"< in attribute value", `<a b="x<y"/>`, ErrSyntax},
		{"& alone in attribute value", `<a b="x & y"/>`, ErrSyntax},
		{"bad character reference &#0;", `<a>&#0;</a>`, ErrSyntax},
		{"bad character reference &#x1;", `<a>&#x1;</a>`, ErrSyntax},
		{"bad character reference &#xD800;", `<a>&#xD800;</a>`, ErrSyntax},
		{"bad character reference &#x110000;", `<a>&#x110000;</a>`, ErrSyntax},
		{"bad character reference &#xFFFE;", `<a>&#xFFFE;</a>`, ErrSyntax},
		{"bad character reference &#X41;", `<a>&#X41;</a>`, ErrSyntax},
		{"bad character reference &#;", `<a>&#;</a>`, ErrSyntax},
		{"bad character reference &#12a;", `<a>&#12a;</a>`, ErrSyntax},
		{"& without ;", `<a>AT&T</a>`, ErrSyntax},
		{"element without a name", `<>`, ErrSyntax},
		{"space before the name", `< a/>`, ErrSyntax},
		{"malformed self-closing tag", `<a/ >`, ErrSyntax},

		// Leniencies the differential fuzzing against etree (encoding/xml)
		// found; each is refused now.
		{"NUL in text", "<a>\x00</a>", ErrSyntax},
		{"control character in text", "<a>x\x1by</a>", ErrSyntax},
		{"control character in an attribute", "<a b='\x07'/>", ErrSyntax},
		{"U+FFFF in text", "<a>\uffff</a>", ErrSyntax},
		{"name starting with a digit", `<1a/>`, ErrSyntax},
		{"name with punctuation", `<a!/>`, ErrSyntax},
		{"name with two colons", `<a:b:c/>`, ErrSyntax},
		{"name with an empty local part", `<a:/>`, ErrSyntax},
		{"name with an empty prefix", `<:a/>`, ErrSyntax},
		{"attribute name starting with a digit", `<a 1b="x"/>`, ErrSyntax},
		{"non-ASCII name", `<caf` + "\u00e9" + `/>`, ErrSyntax},
		{"]]> in text", `<a>x]]>y</a>`, ErrSyntax},
		{"-- in a comment", `<a><!-- a -- b --></a>`, ErrSyntax},
		{"comment ending in --->", `<a><!-- a ---></a>`, ErrSyntax},
		{"PI without a target", `<?? ?><a/>`, ErrSyntax},
		{"PI <?>", `<a><?></a>`, ErrSyntax},
		{"PI target not a name", `<?1x?><a/>`, ErrSyntax},
		{"XML version 1.1", `<?xml version="1.1"?><a/>`, ErrSyntax},
		{"XML version 1.1, spaced", `<?xml version = "1.1"?><a/>`, ErrSyntax},
		{"XML version 2 later in the document", `<a><?xml version='2.0'?></a>`, ErrSyntax},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			m, err := Decode([]byte(c.doc))
			if err == nil {
				t.Fatalf("accepted, decoded %+v", m)
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			var xe *XMLError
			if !errors.As(err, &xe) {
				t.Fatalf("error %T is not an *XMLError", err)
			}
			if xe.Err != c.want {
				t.Errorf("XMLError.Err = %v, want %v", xe.Err, c.want)
			}
			if xe.TooLarge() != (c.want == ErrTooLarge) {
				t.Errorf("TooLarge() = %v", xe.TooLarge())
			}
			if xe.Offset < 0 || (c.want != ErrTooLarge && xe.Offset > len(c.doc)) {
				t.Errorf("Offset %d outside the document (%d bytes)", xe.Offset, len(c.doc))
			}
			if !strings.HasPrefix(err.Error(), c.want.Error()) {
				t.Errorf("Error() = %q does not start with the sentinel's text", err.Error())
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("refusal took %v", d)
			}
		})
	}
}

func TestDecodeRefusalDetails(t *testing.T) {
	// Billion laughs is refused at the DOCTYPE, before any entity is looked
	// at, let alone expanded.
	_, err := Decode([]byte(billionLaughs))
	var xe *XMLError
	if !errors.As(err, &xe) || xe.Err != ErrForbiddenMarkup {
		t.Fatalf("billion laughs: %v", err)
	}
	if want := strings.Index(billionLaughs, "<!DOCTYPE"); xe.Offset != want {
		t.Errorf("billion laughs refused at byte %d, want %d (the DOCTYPE)", xe.Offset, want)
	}

	// Size: refused before anything is scanned, and only size errors say
	// TooLarge (SIP 413 rather than 400).
	big := []byte(`<a>` + strings.Repeat("x", DefaultMaxBytes) + `</a>`)
	_, err = Decode(big)
	if !errors.As(err, &xe) || !xe.TooLarge() || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	_, err = Decode([]byte(`<a>`))
	if !errors.As(err, &xe) || xe.TooLarge() {
		t.Fatalf("syntax error says TooLarge: %v", err)
	}
	// A document of exactly the limit is fine.
	exact := `<a>` + strings.Repeat("x", DefaultMaxBytes-7) + `</a>`
	if _, err := Decode([]byte(exact)); err != nil || len(exact) != DefaultMaxBytes {
		t.Errorf("document of exactly DefaultMaxBytes: %v", err)
	}

	// The limits are exact and configurable.
	if _, err := Decode([]byte(nest(DefaultMaxDepth))); err != nil {
		t.Errorf("depth %d refused: %v", DefaultMaxDepth, err)
	}
	if _, err := Decode([]byte(`<a>` + strings.Repeat(`<b/>`, DefaultMaxElements-1) + `</a>`)); err != nil {
		t.Errorf("%d elements refused: %v", DefaultMaxElements, err)
	}
	lim := Limits{MaxBytes: 100, MaxDepth: 3, MaxElements: 5}
	for doc, want := range map[string]error{
		nest(3):                                  nil,
		nest(4):                                  ErrTooDeep,
		`<a><b/><b/><b/><b/></a>`:                nil,
		`<a><b/><b/><b/><b/><b/></a>`:            ErrTooManyElements,
		`<a>` + strings.Repeat("x", 93) + `</a>`: nil,
		`<a>` + strings.Repeat("x", 94) + `</a>`: ErrTooLarge,
	} {
		_, err := DecodeLimits([]byte(doc), lim)
		if !errors.Is(err, want) || (want == nil && err != nil) {
			t.Errorf("DecodeLimits(%.30q..., %+v) = %v, want %v", doc, lim, err, want)
		}
	}
	// Zero limits take the defaults.
	if _, err := DecodeLimits([]byte(nest(DefaultMaxDepth+1)), Limits{}); !errors.Is(err, ErrTooDeep) {
		t.Errorf("zero Limits: %v", err)
	}
	// Text may be split into up to maxTextPieces pieces by comments, PIs
	// and CDATA sections, no more (each join copies the text so far).
	if m, err := Decode([]byte(ms + `<monitorCrossRefID>` + strings.Repeat("x<!---->", maxTextPieces) + `</monitorCrossRefID></MonitorStop>`)); err != nil ||
		m.MonitorCrossRefID != strings.Repeat("x", maxTextPieces) {
		t.Errorf("text in %d pieces: %v", maxTextPieces, err)
	}
	if DefaultLimits != (Limits{DefaultMaxBytes, DefaultMaxDepth, DefaultMaxElements}) {
		t.Errorf("DefaultLimits = %+v", DefaultLimits)
	}
}

func TestDecodeAcceptance(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want string // MonitorCrossRefID
	}{
		{"plain", ms + `<monitorCrossRefID>a1</monitorCrossRefID></MonitorStop>`, "a1"},
		{"BOM", "\xef\xbb\xbf" + `<?xml version="1.0" encoding="UTF-8"?>` + ms + `<monitorCrossRefID>a1</monitorCrossRefID></MonitorStop>`, "a1"},
		{"BOM without declaration", "\xef\xbb\xbf" + ms + `<monitorCrossRefID>a1</monitorCrossRefID></MonitorStop>`, "a1"},
		{"comments and PIs before the root",
			"<?xml version=\"1.0\"?>\n<!-- one -->\n<?app data?>\n<!---->\n" + ms + `<monitorCrossRefID>a1</monitorCrossRefID></MonitorStop>`, "a1"},
		{"comments and PIs after the root", ms + `<monitorCrossRefID>a1</monitorCrossRefID></MonitorStop><!-- x --><?y?>` + "\n", "a1"},
		{"comment with single dashes", ms + `<monitorCrossRefID>a1<!-- a-b - c --></monitorCrossRefID></MonitorStop>`, "a1"},
		{"CDATA", ms + `<monitorCrossRefID><![CDATA[<a1&>]]></monitorCrossRefID></MonitorStop>`, "<a1&>"},
		{"empty CDATA", ms + `<monitorCrossRefID>a<![CDATA[]]>1</monitorCrossRefID></MonitorStop>`, "a1"},
		{"CDATA holding ]]", ms + `<monitorCrossRefID><![CDATA[a]]]]><![CDATA[>1]]></monitorCrossRefID></MonitorStop>`, "a]]>1"},
		{"predefined entities", ms + `<monitorCrossRefID>&lt;&gt;&amp;&apos;&quot;</monitorCrossRefID></MonitorStop>`, `<>&'"`},
		{"hex character reference", ms + `<monitorCrossRefID>&#x41;&#x62;</monitorCrossRefID></MonitorStop>`, "Ab"},
		{"decimal character reference", ms + `<monitorCrossRefID>&#65;&#0000098;</monitorCrossRefID></MonitorStop>`, "Ab"},
		{"non-ASCII character references", ms + `<monitorCrossRefID>&#xE9;&#x2713;&#x1F4DE;</monitorCrossRefID></MonitorStop>`, "é✓📞"},
		{"character reference to white space", ms + `<monitorCrossRefID>a&#x20;b&#9;c</monitorCrossRefID></MonitorStop>`, "a b\tc"},
		{"UTF-8 text", ms + `<monitorCrossRefID>Zürich ☎</monitorCrossRefID></MonitorStop>`, "Zürich ☎"},
		{"DEL and C1 characters", ms + "<monitorCrossRefID>a\x7f\u0085b</monitorCrossRefID></MonitorStop>", "a\x7f\u0085b"},
		{"white space trimmed", ms + "<monitorCrossRefID>\r\n\t a1 \n</monitorCrossRefID></MonitorStop>", "a1"},
		{"attributes of all kinds", `<MonitorStop xmlns="` + NSEd3 + `" a='1' b = "x &amp; &#60;y&#62;" c="]]>" xml:lang="en">` +
			`<monitorCrossRefID z:t="1" xmlns:z="urn:z">a1</monitorCrossRefID></MonitorStop>`, "a1"},
		{"white space inside tags", "<MonitorStop\n\txmlns=\"" + NSEd3 + "\"\n><monitorCrossRefID >a1</monitorCrossRefID\n></MonitorStop >", "a1"},
		{"ISO-8859-1", "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>" + ms + "<monitorCrossRefID>Z\xfcrich\xa0\xe9</monitorCrossRefID></MonitorStop>", "Zürich\u00a0é"},
		{"latin1 declared, ASCII only", `<?xml version="1.0" encoding="latin1"?>` + ms + `<monitorCrossRefID>a1</monitorCrossRefID></MonitorStop>`, "a1"},
		{"US-ASCII declared", `<?xml version="1.0" encoding="US-ASCII"?>` + ms + `<monitorCrossRefID>a1</monitorCrossRefID></MonitorStop>`, "a1"},
		{"utf8 declared in lower case", `<?xml version='1.0' encoding='utf-8'?>` + ms + `<monitorCrossRefID>a1</monitorCrossRefID></MonitorStop>`, "a1"},
		{"PI whose target starts with xml", "<?xml-stylesheet encoding=\"ISO-8859-1\"?>" + ms + "<monitorCrossRefID>Zürich</monitorCrossRefID></MonitorStop>", "Zürich"},
		{"XML declaration without version", `<?xml encoding="UTF-8"?>` + ms + `<monitorCrossRefID>a1</monitorCrossRefID></MonitorStop>`, "a1"},
		{"names with digits, dots, dashes", `<MonitorStop><x-1.y_z/><monitorCrossRefID>a1</monitorCrossRefID></MonitorStop>`, "a1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Decode([]byte(c.doc))
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if m.Kind != KindMonitorStop || m.MonitorCrossRefID != c.want {
				t.Errorf("got %v %q, want MonitorStop %q", m.Kind, m.MonitorCrossRefID, c.want)
			}
			// What we accept, etree accepts (see FuzzDecode); Latin-1
			// input is the exception, etree reads it as UTF-8.
			if !declaresLatin1([]byte(c.doc)) {
				if err := etree.NewDocument().ReadFromBytes([]byte(c.doc)); err != nil {
					t.Errorf("etree refuses what we accept: %v", err)
				}
			}
		})
	}
}

func TestDecodeNamespaces(t *testing.T) {
	cases := []struct {
		doc    string
		wantNS string
	}{
		{`<MonitorStop xmlns="` + NSEd4 + `"/>`, NSEd4},
		{`<MonitorStop/>`, ""},
		{`<csta:MonitorStop xmlns:csta="` + NSEd5 + `"/>`, NSEd5},
		{`<csta:MonitorStop xmlns="urn:other" xmlns:csta="` + NSEd6 + `"/>`, NSEd6},
		{`<csta:MonitorStop/>`, ""}, // undeclared prefix: no namespace, still decoded
		{`<MonitorStop xmlns="a&amp;b"/>`, "a&b"},
		// Bindings are scoped: an inner declaration does not leak out.
		{`<MonitorStop xmlns="` + NSEd3 + `"><x xmlns="urn:x"/><monitorCrossRefID>1</monitorCrossRefID></MonitorStop>`, NSEd3},
	}
	for _, c := range cases {
		m := mustDecode(t, c.doc)
		if m.Kind != KindMonitorStop || m.Namespace != c.wantNS {
			t.Errorf("%s: got %v %q, want MonitorStop %q", c.doc, m.Kind, m.Namespace, c.wantNS)
		}
	}
	// lcs:line is found by namespace or by its customary prefix.
	for _, doc := range []string{
		`<GetCSTAFeatures><extensions><privateData><private><m:line xmlns:m="` + NSLcs + `">L</m:line></private></privateData></extensions></GetCSTAFeatures>`,
		`<GetCSTAFeatures><extensions><privateData><private><lcs:line>L</lcs:line></private></privateData></extensions></GetCSTAFeatures>`,
	} {
		if m := mustDecode(t, doc); m.Line != "L" {
			t.Errorf("%s: Line = %q", doc, m.Line)
		}
	}
	if m := mustDecode(t, `<GetCSTAFeatures><extensions><line>L</line></extensions></GetCSTAFeatures>`); m.Line != "" {
		t.Errorf("a line element outside the lcs namespace was taken: %q", m.Line)
	}
}

func TestDecodeUnknownRoot(t *testing.T) {
	cases := []struct {
		doc   string
		name  string
		class Class
		reply bool
	}{
		{`<FooBar xmlns="` + NSEd3 + `"/>`, "FooBar", ClassRequest, false},
		{`<FooBar xmlns="` + NSEd3 + `"><makeCall>x</makeCall></FooBar>`, "FooBar", ClassRequest, false},
		{`<FooResponse/>`, "FooResponse", ClassResponse, true},
		{`<x:FooResponse xmlns:x="` + NSEd4 + `"/>`, "FooResponse", ClassResponse, true},
		{`<FooEvent xmlns="` + NSEd3 + `"/>`, "FooEvent", ClassEvent, false},
		{`<makeCall/>`, "makeCall", ClassRequest, false},
	}
	for _, c := range cases {
		m, err := Decode([]byte(c.doc))
		if err != nil {
			t.Errorf("%s: %v", c.doc, err)
			continue
		}
		if m.Kind != KindUnknown || m.Name != c.name || m.Class() != c.class || m.IsReply() != c.reply {
			t.Errorf("%s: got Kind %v Name %q Class %v IsReply %v, want Unknown %q %v %v",
				c.doc, m.Kind, m.Name, m.Class(), m.IsReply(), c.name, c.class, c.reply)
		}
	}
	m := mustDecode(t, `<FooBar xmlns="`+NSEd3+`"/>`)
	if m.Namespace != NSEd3 {
		t.Errorf("unknown root Namespace = %q", m.Namespace)
	}
	if m := mustDecode(t, `<TransferredEvent/>`); m.Kind != KindTransferedEvent || m.Name != "TransferedEvent" {
		t.Errorf("TransferredEvent decoded as %v %q", m.Kind, m.Name)
	}
}

// The scanner reuses pooled state: decoding one document must not leak into
// the next, and strings handed out must survive later decodes.
func TestDecodePooledStateIsolation(t *testing.T) {
	first := mustDecode(t, `<p:MonitorStop xmlns:p="urn:first"><p:monitorCrossRefID>one</p:monitorCrossRefID></p:MonitorStop>`)
	_, _ = Decode([]byte(`<a xmlns:p="urn:leak"><b>` + strings.Repeat("<c/>", 100)))
	second := mustDecode(t, `<p:MonitorStop><p:monitorCrossRefID>two</p:monitorCrossRefID></p:MonitorStop>`)
	if second.Namespace != "" {
		t.Errorf("namespace binding leaked from an earlier document: %q", second.Namespace)
	}
	if first.MonitorCrossRefID != "one" || first.Namespace != "urn:first" || second.MonitorCrossRefID != "two" {
		t.Errorf("decoded values changed: %+v %+v", first, second)
	}
}
