package csta

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beevik/etree"
)

// Events the codec does not model, in the shapes switches send them, for the
// pass-through tests and the fuzz targets.
const passthroughDir = "testdata/passthrough"

func readPassthrough(tb testing.TB) map[string][]byte {
	tb.Helper()
	ents, err := os.ReadDir(passthroughDir)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(passthroughDir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

// pbxToClient is the device mapping of the tests: the monitored line 2101
// as the client spells it (with characters that need no escaping but are
// not digits), other numbers as tel: URIs, PBX-native N<...> forms not
// shown at all.
func pbxToClient(id string, wrapped bool) string {
	switch {
	case id == "2101":
		return "tel:2101;phone-context=dialstring"
	case strings.HasPrefix(id, "N<"):
		return ""
	}
	return "tel:+" + strings.TrimPrefix(id, "+")
}

// replaceOnce replaces the one occurrence of old in s, failing the test if
// there is not exactly one.
func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("%q occurs %d times, want once", old, n)
	}
	return strings.Replace(s, old, new, 1)
}

// The output is the input byte for byte, apart from the monitorCrossRefID,
// the device identifiers outside private data, and the namespace.
func TestRewriteEventByteForByte(t *testing.T) {
	in := string(readPassthrough(t)["QueuedEvent.ed4.xml"])
	want := in
	want = replaceOnce(t, want, `xmlns="`+NSEd4+`"`, `xmlns="`+NSEd3+`"`)
	want = replaceOnce(t, want, `<monitorCrossRefID>17<`, `<monitorCrossRefID>a1c07e3b<`)
	want = replaceOnce(t, want, `<deviceID>2101</deviceID></queuedConnection>`,
		`<deviceID>tel:2101;phone-context=dialstring</deviceID></queuedConnection>`)
	// A wrapped identifier the client cannot be shown: <notKnown/>.
	want = replaceOnce(t, want, `<deviceIdentifier>N&lt;2600&gt;</deviceIdentifier>`, `<notKnown/>`)
	// Attributes stay.
	want = replaceOnce(t, want, `<deviceIdentifier typeOfNumber="other">12065550147<`,
		`<deviceIdentifier typeOfNumber="other">tel:+12065550147<`)
	// The white space around an identifier is part of the element's
	// content, which is replaced whole.
	want = replaceOnce(t, want, "<deviceIdentifier>2101</deviceIdentifier>\n  </calledDevice>",
		"<deviceIdentifier>tel:2101;phone-context=dialstring</deviceIdentifier>\n  </calledDevice>")
	// Private data keeps the PBX's own id.
	if !strings.Contains(want, `<os:deviceID>2101</os:deviceID>`) {
		t.Fatal("test document lost its private data")
	}

	got, err := RewriteEvent([]byte(in), EventRewrite{CrossRefID: "a1c07e3b", Device: pbxToClient, Namespace: NSEd3})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("rewrite:\n got %s\nwant %s", got, want)
	}
	m, err := Decode(got)
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != KindUnknown || m.Name != "QueuedEvent" || m.Namespace != NSEd3 || m.MonitorCrossRefID != "a1c07e3b" {
		t.Errorf("re-decoded as %v %q ns %q xref %q", m.Kind, m.Name, m.Namespace, m.MonitorCrossRefID)
	}
}

func TestRewriteEventShapes(t *testing.T) {
	files := readPassthrough(t)
	cases := []struct {
		name string
		in   string
		rw   EventRewrite
		want string
	}{
		{
			name: "prefixed root, staticID, numberDialed",
			in:   string(files["NetworkReachedEvent.prefixed-ed5.xml"]),
			rw:   EventRewrite{CrossRefID: "x1", Device: pbxToClient, Namespace: NSEd3},
			want: `<?xml version="1.0"?><csta:NetworkReachedEvent xmlns:csta="` + NSEd3 + `"><csta:monitorCrossRefID>x1</csta:monitorCrossRefID>` +
				`<csta:outboundConnection><csta:callID>77</csta:callID><csta:deviceID><csta:staticID>tel:+12065550147</csta:staticID></csta:deviceID></csta:outboundConnection>` +
				`<csta:networkInterfaceUsed><csta:deviceIdentifier>tel:+T1</csta:deviceIdentifier></csta:networkInterfaceUsed>` +
				`<csta:callingDevice><csta:deviceIdentifier>tel:2101;phone-context=dialstring</csta:deviceIdentifier></csta:callingDevice>` +
				`<csta:calledDevice><csta:deviceIdentifier>tel:+912065550147</csta:deviceIdentifier></csta:calledDevice>` +
				`<csta:lastRedirectionDevice><csta:numberDialed>tel:+2102</csta:numberDialed></csta:lastRedirectionDevice>` +
				`<csta:localConnectionInfo>connected</csta:localConnectionInfo><csta:cause>normal</csta:cause></csta:NetworkReachedEvent>`,
		},
		{
			name: "unqualified root gets the namespace; self-closed cross-reference filled",
			in:   string(files["DigitsDialedEvent.unqualified.xml"]),
			rw:   EventRewrite{CrossRefID: "x2", Namespace: NSEd3},
			want: `<DigitsDialedEvent xmlns="` + NSEd3 + `"><monitorCrossRefID>x2</monitorCrossRefID><diallingConnection><callID>9</callID><deviceID>2101</deviceID></diallingConnection>` +
				`<diallingDevice><deviceIdentifier>2101</deviceIdentifier></diallingDevice><diallingSequence>2102</diallingSequence></DigitsDialedEvent>`,
		},
		{
			name: "vendor root keeps its namespace, the CSTA one is made ed3",
			in:   string(files["RingerStatusEvent.vendor.xml"]),
			rw:   EventRewrite{CrossRefID: "x3", Device: pbxToClient, Namespace: NSEd3},
			want: `<av:RingerStatusEvent xmlns:av="http://www.avaya.com/csta" xmlns="` + NSEd3 + `"><monitorCrossRefID>x3</monitorCrossRefID>` +
				`<device><deviceIdentifier>tel:2101;phone-context=dialstring</deviceIdentifier></device><av:ringMode>ringing</av:ringMode></av:RingerStatusEvent>`,
		},
		{
			name: "ISO-8859-1 comes out as UTF-8 and says so",
			in:   string(files["CallInformationEvent.latin1.xml"]),
			rw:   EventRewrite{CrossRefID: "x4"},
			want: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CallInformationEvent xmlns=\"" + NSEd3 + "\"><monitorCrossRefID>x4</monitorCrossRefID>" +
				"<connection><callID>0_99</callID><deviceID>2101</deviceID></connection><device><deviceIdentifier>2101</deviceIdentifier></device>" +
				"<accountInfo>München § 3</accountInfo></CallInformationEvent>\n",
		},
		{
			name: "ids are escaped; an unchanged id keeps its bytes",
			in:   `<FooEvent><monitorCrossRefID>1</monitorCrossRefID><a><deviceID>&#50;101</deviceID></a><b><deviceID>keep</deviceID></b></FooEvent>`,
			rw: EventRewrite{CrossRefID: `<&"'>`, Device: func(id string, wrapped bool) string {
				if id == "keep" {
					return id
				}
				return "a<b&c"
			}},
			want: `<FooEvent><monitorCrossRefID>&lt;&amp;"'&gt;</monitorCrossRefID><a><deviceID>a&lt;b&amp;c</deviceID></a><b><deviceID>keep</deviceID></b></FooEvent>`,
		},
		{
			name: "an unshowable connection device stays; a wrapped one becomes notKnown with its prefix",
			in:   `<p:FooEvent xmlns:p="` + NSEd4 + `"><p:monitorCrossRefID>1</p:monitorCrossRefID><p:c><p:deviceID>N&lt;1&gt;</p:deviceID></p:c><p:d><p:deviceIdentifier xmlns:q="urn:q">N&lt;1&gt;</p:deviceIdentifier></p:d></p:FooEvent>`,
			rw:   EventRewrite{Device: pbxToClient, Namespace: NSEd3},
			want: `<p:FooEvent xmlns:p="` + NSEd3 + `"><p:monitorCrossRefID>1</p:monitorCrossRefID><p:c><p:deviceID>N&lt;1&gt;</p:deviceID></p:c><p:d><p:notKnown/></p:d></p:FooEvent>`,
		},
		{
			name: "an inner redeclaration of a CSTA namespace is rewritten, xmlns=\"\" is not",
			in:   `<FooEvent xmlns=""><monitorCrossRefID>1</monitorCrossRefID><x xmlns='` + NSEd6 + `'/></FooEvent>`,
			rw:   EventRewrite{Namespace: NSEd3},
			want: `<FooEvent xmlns=""><monitorCrossRefID>1</monitorCrossRefID><x xmlns='` + NSEd3 + `'/></FooEvent>`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := RewriteEvent([]byte(c.in), c.rw)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Errorf("\n got %s\nwant %s", got, c.want)
			}
			if err := etree.NewDocument().ReadFromBytes(got); err != nil {
				t.Errorf("output is not well-formed: %v", err)
			}
		})
	}
}

// With nothing to change, the document comes back as it was, whatever its
// shape: every golden file and every pass-through sample.
func TestRewriteEventIdentity(t *testing.T) {
	all := readGolden(t)
	for name, b := range readPassthrough(t) {
		all[name] = b
	}
	same := func(id string, wrapped bool) string { return id }
	for _, name := range sortedKeys(all) {
		in := all[name]
		if declaresLatin1(in) {
			continue // transcoded to UTF-8: see TestRewriteEventShapes
		}
		m, err := Decode(in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rws := []EventRewrite{{}, {Device: same}}
		if IsCSTANamespace(m.Namespace) {
			rws = append(rws, EventRewrite{Device: same, Namespace: m.Namespace})
		}
		for _, rw := range rws {
			got, err := RewriteEvent(in, rw)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !bytes.Equal(got, in) {
				t.Errorf("%s changed:\n got %s\nwant %s", name, got, in)
			}
		}
	}
}

func TestRewriteEventErrors(t *testing.T) {
	_, err := RewriteEvent([]byte(`<FooEvent><cause>x</cause></FooEvent>`), EventRewrite{CrossRefID: "1"})
	if !errors.Is(err, ErrNoCrossRefID) {
		t.Errorf("no monitorCrossRefID: %v", err)
	}
	// A monitorCrossRefID below the root is not the event's.
	_, err = RewriteEvent([]byte(`<FooEvent><a><monitorCrossRefID>1</monitorCrossRefID></a></FooEvent>`), EventRewrite{CrossRefID: "1"})
	if !errors.Is(err, ErrNoCrossRefID) {
		t.Errorf("nested monitorCrossRefID: %v", err)
	}
	var xe *XMLError
	_, err = RewriteEvent([]byte(`<!DOCTYPE a><FooEvent/>`), EventRewrite{})
	if !errors.As(err, &xe) || !errors.Is(err, ErrForbiddenMarkup) {
		t.Errorf("DOCTYPE: %v", err)
	}
	_, err = RewriteEvent([]byte(`<FooEvent>`+strings.Repeat("<a/>", 20)+`</FooEvent>`), EventRewrite{Limits: Limits{MaxElements: 10}})
	if !errors.Is(err, ErrTooManyElements) {
		t.Errorf("limits: %v", err)
	}
}

func TestRewriteEventDoesNotAliasInput(t *testing.T) {
	in := []byte(`<FooEvent><monitorCrossRefID>1</monitorCrossRefID></FooEvent>`)
	out, err := RewriteEvent(in, EventRewrite{})
	if err != nil {
		t.Fatal(err)
	}
	in[1] = 'X'
	if string(out) != `<FooEvent><monitorCrossRefID>1</monitorCrossRefID></FooEvent>` {
		t.Errorf("output changed with the input: %s", out)
	}
}

// An event the codec does not model keeps its monitorCrossRefID (so it can
// be routed) and its document (so it can be passed on); nothing else does.
func TestDecodeUnknownEventKeepsDocument(t *testing.T) {
	in := readPassthrough(t)["QueuedEvent.ed4.xml"]
	buf := append([]byte(nil), in...)
	m, err := Decode(buf)
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != KindUnknown || m.Name != "QueuedEvent" || m.Class() != ClassEvent || m.MonitorCrossRefID != "17" || m.Namespace != NSEd4 {
		t.Errorf("decoded as %v %q %v xref %q ns %q", m.Kind, m.Name, m.Class(), m.MonitorCrossRefID, m.Namespace)
	}
	for i := range buf {
		buf[i] = 'x' // a frame reader reuses its buffer
	}
	if !bytes.Equal(m.Raw, in) {
		t.Errorf("Raw does not hold the document as received:\n%s", m.Raw)
	}
	for _, doc := range []string{
		`<FooRequest xmlns="` + NSEd3 + `"><monitorCrossRefID>1</monitorCrossRefID></FooRequest>`,
		`<FooResponse><monitorCrossRefID>1</monitorCrossRefID></FooResponse>`,
	} {
		if m := mustDecode(t, doc); m.Raw != nil || m.MonitorCrossRefID != "" {
			t.Errorf("%s: Raw %q xref %q, want neither", doc, m.Raw, m.MonitorCrossRefID)
		}
	}
	for name, b := range readGolden(t) {
		if m, err := Decode(b); err == nil && m.Raw != nil {
			t.Errorf("%s: a modelled message keeps Raw", name)
		}
	}
}
