package csta

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/beevik/etree"
)

func mustEncode(t *testing.T, m *Message, ns string) string {
	t.Helper()
	out, err := Encode(m, ns)
	if err != nil {
		t.Fatalf("Encode(%v): %v", m.Kind, err)
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(out); err != nil {
		t.Fatalf("Encode(%v) output is not well-formed: %v\n%s", m.Kind, err, out)
	}
	return string(out)
}

func mustDecode(t *testing.T, doc string) *Message {
	t.Helper()
	m, err := Decode([]byte(doc))
	if err != nil {
		t.Fatalf("Decode: %v\n%s", err, doc)
	}
	return m
}

// isRequestKind: a kind that expects an answer. Events, replies and
// ApplicationSessionTerminated (a notification) do not.
func isRequestKind(k Kind) bool {
	return !k.IsReply() && k.Class() != ClassEvent && k != KindApplicationSessionTerminated
}

func TestKindResponse(t *testing.T) {
	requests := 0
	for _, k := range Kinds() {
		suffix := "Response"
		if k.Class() == ClassSession {
			suffix = "PosResponse"
		}
		if !isRequestKind(k) {
			if r := k.Response(); r != KindUnknown {
				t.Errorf("%v is not a request but Response() = %v", k, r)
			}
			continue
		}
		requests++
		want := KindByName(k.String() + suffix)
		if want == KindUnknown {
			t.Errorf("request %v has no %s%s kind", k, k, suffix)
			continue
		}
		if got := k.Response(); got != want {
			t.Errorf("%v.Response() = %v, want %v", k, got, want)
		}
		if !want.IsReply() {
			t.Errorf("%v.IsReply() = false", want)
		}
		if want.Class() != k.Class() && !(k.Class() == ClassRequest && want.Class() == ClassResponse) {
			t.Errorf("%v (%v) answered by %v (%v)", k, k.Class(), want, want.Class())
		}
	}
	if requests != 28 {
		t.Errorf("%d request kinds found, want 28; is isRequestKind right?", requests)
	}
	// Spot checks written out.
	for req, resp := range map[Kind]Kind{
		KindRequestSystemStatus:          KindRequestSystemStatusResponse,
		KindSystemStatus:                 KindSystemStatusResponse,
		KindSystemRegister:               KindSystemRegisterResponse,
		KindGetCSTAFeatures:              KindGetCSTAFeaturesResponse,
		KindMonitorStart:                 KindMonitorStartResponse,
		KindMakeCall:                     KindMakeCallResponse,
		KindSingleStepTransferCall:       KindSingleStepTransferCallResponse,
		KindGetDoNotDisturb:              KindGetDoNotDisturbResponse,
		KindStartApplicationSession:      KindStartApplicationSessionPosResponse,
		KindStopApplicationSession:       KindStopApplicationSessionPosResponse,
		KindResetApplicationSessionTimer: KindResetApplicationSessionTimerPosResponse,
	} {
		if got := req.Response(); got != resp {
			t.Errorf("%v.Response() = %v, want %v", req, got, resp)
		}
	}
	for _, k := range []Kind{KindUnknown, KindCSTAErrorCode, KindDeliveredEvent, KindMakeCallResponse,
		KindApplicationSessionTerminated, kindCount, Kind(9999)} {
		if r := k.Response(); r != KindUnknown {
			t.Errorf("%v.Response() = %v, want Unknown", k, r)
		}
	}
}

func TestKindIsReply(t *testing.T) {
	for _, k := range Kinds() {
		want := strings.HasSuffix(k.String(), "Response") || k == KindCSTAErrorCode
		if got := k.IsReply(); got != want {
			t.Errorf("%v.IsReply() = %v, want %v", k, got, want)
		}
		if m := (&Message{Kind: k}); m.IsReply() != want {
			t.Errorf("Message{%v}.IsReply() = %v, want %v", k, m.IsReply(), want)
		}
	}
	for _, k := range []Kind{KindUnknown, kindCount, Kind(9999)} {
		if k.IsReply() {
			t.Errorf("%v.IsReply() = true", k)
		}
	}
	// Unknown roots are classified by name.
	for name, want := range map[string]bool{
		"FooResponse": true, "FooPosResponse": true, "Foo": false, "FooEvent": false, "": false,
	} {
		if got := (&Message{Name: name}).IsReply(); got != want {
			t.Errorf("unknown %q IsReply() = %v, want %v", name, got, want)
		}
	}
}

func TestKindNamesAndClasses(t *testing.T) {
	seen := map[string]Kind{}
	for _, k := range Kinds() {
		name := k.String()
		if prev, dup := seen[name]; dup {
			t.Errorf("%v and %v share the name %s", prev, k, name)
		}
		seen[name] = k
		if KindByName(name) != k {
			t.Errorf("KindByName(%q) = %v, want %v", name, KindByName(name), k)
		}
		var want Class
		switch {
		case k == KindCSTAErrorCode:
			want = ClassError
		case strings.Contains(name, "ApplicationSession"):
			want = ClassSession
		case strings.HasPrefix(name, "RequestSystemStatus") || strings.HasPrefix(name, "SystemStatus") ||
			strings.HasPrefix(name, "SystemRegister"):
			want = ClassSystem
		case strings.HasSuffix(name, "Event"):
			want = ClassEvent
		case strings.HasSuffix(name, "Response"):
			want = ClassResponse
		default:
			want = ClassRequest
		}
		if k.Class() != want {
			t.Errorf("%v.Class() = %v, want %v", k, k.Class(), want)
		}
	}
	if n := len(Kinds()); n != int(kindCount)-1 {
		t.Errorf("Kinds() has %d kinds, want %d", n, kindCount-1)
	}
	for name, want := range map[string]Kind{
		"TransferredEvent":      KindTransferedEvent,
		"TransferedEvent":       KindTransferedEvent,
		"CSTAErrorCodeResponse": KindCSTAErrorCode,
		"makeCall":              KindUnknown, // local names are case-sensitive
		"":                      KindUnknown,
	} {
		if got := KindByName(name); got != want {
			t.Errorf("KindByName(%q) = %v, want %v", name, got, want)
		}
	}
	if s := KindUnknown.String(); s != "Unknown" {
		t.Errorf("KindUnknown.String() = %q", s)
	}
	if s := Kind(9999).String(); s != "Unknown" {
		t.Errorf("Kind(9999).String() = %q", s)
	}
	if c := Kind(9999).Class(); c != ClassUnknown {
		t.Errorf("Kind(9999).Class() = %v", c)
	}
	for c, want := range map[Class]string{ClassUnknown: "unknown", ClassRequest: "request", ClassResponse: "response",
		ClassError: "error", ClassEvent: "event", ClassSession: "session", ClassSystem: "system", Class(200): "unknown"} {
		if c.String() != want {
			t.Errorf("Class(%d).String() = %q, want %q", c, c.String(), want)
		}
	}
}

func TestEdition(t *testing.T) {
	cases := []struct {
		ns   string
		want int
	}{
		{NSEd2, 2},
		{NSEd3, 3},
		{NSEd4, 4},
		{NSEd5, 5},
		{NSEd6, 6},
		{"http://www.ecma-international.org/standards/ecma-323/csta/ed2", 2},
		{"http://www.ecma.ch/standards/ecma-323/csta/ed3", 3},
		{"http://www.ecmainternational.org/standards/ecma-323/csta/ed3", 3}, // misspelt host seen in the field
		{"http://www.ecmainternational.org/standards/ecma-323/csta/ed4", 4},
		{"https://www.ecma-international.org/standards/ecma-323/csta/ed3", 3},
		{"http://ecma-international.org/standards/ecma-323/csta/ed5", 5}, // no www.
		{"http://www.ecma-international.org/standards/ecma-323/csta/ed3/priv7", 3},
		{"http://www.ecma-international.org/standards/ecma-323/csta/ed4/priv2", 4},
		{"http://www.ecma-international.org/standards/ecma-323/csta/ed3/", 3},
		{"HTTP://WWW.ECMA-INTERNATIONAL.ORG/standards/ECMA-323/csta/ED6", 6},
		{"  http://www.ecma-international.org/standards/ecma-323/csta/ed3\n", 3},
		// Not CSTA namespaces.
		{"", 0},
		{"garbage", 0},
		{"urn:ecma-323:ed3", 0},
		{NSAppSession, 0},
		{NSLcs, 0},
		{NSOpenScape, 0},
		{"http://www.ecma-international.org/standards/ecma-323/csta/ed1", 0},
		{"http://www.ecma-international.org/standards/ecma-323/csta/ed7", 0},
		{"http://www.ecma-international.org/standards/ecma-323/csta/ed10", 0},
		{"http://www.ecma-international.org/standards/ecma-323/csta/ed3priv", 0},
		{"http://www.ecma-international.org/standards/ecma-323/csta/", 0},
		{"http://www.ecma-international.org/standards/ecma-354/appl_session/ed3", 0},
		{"http://www.example.org/standards/ecma-323/csta/ed3", 0},
		{"ftp://www.ecma-international.org/standards/ecma-323/csta/ed3", 0},
	}
	for _, c := range cases {
		if got := Edition(c.ns); got != c.want {
			t.Errorf("Edition(%q) = %d, want %d", c.ns, got, c.want)
		}
		if got := IsCSTANamespace(c.ns); got != (c.want != 0) {
			t.Errorf("IsCSTANamespace(%q) = %v", c.ns, got)
		}
	}
	for ed := 2; ed <= 6; ed++ {
		if got := Edition(EditionNamespace(ed)); got != ed {
			t.Errorf("Edition(EditionNamespace(%d)) = %d", ed, got)
		}
	}
	for _, ed := range []int{-1, 0, 1, 3, 7, 100} {
		if got := EditionNamespace(ed); got != NSEd3 {
			t.Errorf("EditionNamespace(%d) = %q, want ed3", ed, got)
		}
	}
}

func TestEncodeUnknownKind(t *testing.T) {
	for _, m := range []*Message{{}, {Name: "FooBar"}, {Kind: kindCount}, {Kind: Kind(9999)}} {
		dst := []byte("keep")
		out, err := AppendEncode(dst, m, NSEd3)
		if !errors.Is(err, ErrEncodeUnknown) {
			t.Errorf("AppendEncode(Kind %d) error = %v, want ErrEncodeUnknown", m.Kind, err)
		}
		if string(out) != "keep" {
			t.Errorf("AppendEncode(Kind %d) wrote %q", m.Kind, out)
		}
		if _, err := Encode(m, ""); !errors.Is(err, ErrEncodeUnknown) {
			t.Errorf("Encode(Kind %d) error = %v, want ErrEncodeUnknown", m.Kind, err)
		}
	}
	// A decoded unknown root refuses to encode too, so nothing is ever
	// forwarded under a made-up schema.
	m := mustDecode(t, `<FooBar xmlns="`+NSEd3+`"><x>1</x></FooBar>`)
	if _, err := Encode(m, NSEd3); !errors.Is(err, ErrEncodeUnknown) {
		t.Errorf("Encode(decoded FooBar) error = %v", err)
	}
}

func TestAppendEncodeAppends(t *testing.T) {
	m := &Message{Kind: KindMonitorStop, MonitorCrossRefID: "1"}
	out, err := AppendEncode([]byte("prefix:"), m, "")
	if err != nil {
		t.Fatal(err)
	}
	want := `prefix:<?xml version="1.0" encoding="UTF-8"?><MonitorStop xmlns="` + NSEd3 + `"><monitorCrossRefID>1</monitorCrossRefID></MonitorStop>`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	// ECMA-354 messages are always written in the application session
	// namespace, whatever the caller asks for.
	s := mustEncode(t, &Message{Kind: KindResetApplicationSessionTimer, SessionID: "s1", SessionDuration: 60}, NSEd4)
	if !strings.Contains(s, `<ResetApplicationSessionTimer xmlns="`+NSAppSession+`">`) {
		t.Errorf("session message not in the ECMA-354 namespace: %s", s)
	}
}

func TestErrorCode(t *testing.T) {
	if s := CodeInvalidConnectionID.String(); s != "operation/invalidConnectionID" {
		t.Errorf("String() = %q", s)
	}
	if s := CodeResourceOutOfService.String(); s != "systemResourceAvailibility/resourceOutOfService" {
		t.Errorf("String() = %q (the schema's spelling)", s)
	}
	if s := CodeUnspecified.String(); s != "unspecified" {
		t.Errorf("CodeUnspecified.String() = %q", s)
	}
	if !(ErrorCode{}).IsZero() || CodeUnspecified.IsZero() || CodeGeneric.IsZero() {
		t.Error("IsZero is wrong")
	}
	for c, want := range map[Category]string{
		CatUnknown:                        "unspecified",
		CatOperation:                      "operation",
		CatSecurity:                       "security",
		CatStateIncompatibility:           "stateIncompatibility",
		CatSystemResourceAvailability:     "systemResourceAvailibility",
		CatSubscribedResourceAvailability: "subscribedResourceAvailability",
		CatPerformanceManagement:          "performanceManagement",
		CatPrivateData:                    "privateData",
		CatPrivateErrorCode:               "privateErrorCode",
		CatUnspecified:                    "unspecified",
		Category(200):                     "unspecified",
	} {
		if c.Element() != want || c.String() != want {
			t.Errorf("Category(%d).Element() = %q, want %q", c, c.Element(), want)
		}
	}
}

func TestErrorType(t *testing.T) {
	e := NewError(CodeResourceOutOfService, "link %s down", "pbx1")
	if got := e.Error(); got != "csta: systemResourceAvailibility/resourceOutOfService: link pbx1 down" {
		t.Errorf("Error() = %q", got)
	}
	if got := (&Error{Code: CodeNoActiveCall}).Error(); got != "csta: stateIncompatibility/noActiveCall" {
		t.Errorf("Error() without detail = %q", got)
	}

	wrapped := fmt.Errorf("southbound MakeCall: %w", e)
	twice := fmt.Errorf("session 42: %w", wrapped)
	if !errors.Is(twice, &Error{Code: CodeResourceOutOfService}) {
		t.Error("errors.Is does not find the code through two %w wraps")
	}
	if errors.Is(twice, &Error{Code: CodeResourceBusy}) {
		t.Error("errors.Is matches a different code")
	}
	if errors.Is(twice, ErrTooLarge) {
		t.Error("errors.Is matches an unrelated sentinel")
	}
	var target *Error
	if !errors.As(twice, &target) || target != e {
		t.Error("errors.As does not find the *Error")
	}

	if code, ok := CodeOf(twice); !ok || code != CodeResourceOutOfService {
		t.Errorf("CodeOf(wrapped) = %v, %v", code, ok)
	}
	if code, ok := CodeOf(e); !ok || code != CodeResourceOutOfService {
		t.Errorf("CodeOf(*Error) = %v, %v", code, ok)
	}
	if code, ok := CodeOf(errors.New("plain")); ok || !code.IsZero() {
		t.Errorf("CodeOf(plain) = %v, %v", code, ok)
	}
	if _, ok := CodeOf(nil); ok {
		t.Error("CodeOf(nil) reports a code")
	}
	// Another package's error type carrying a code.
	if code, ok := CodeOf(fmt.Errorf("pool: %w", linkDownErr{})); !ok || code != CodeResourceOutOfService {
		t.Errorf("CodeOf(CSTAError implementer) = %v, %v", code, ok)
	}
	var _ CSTAError = (*Error)(nil)

	m := ErrorMessage(CodeInvalidMonitorCrossRefID)
	if m.Kind != KindCSTAErrorCode || m.Error != CodeInvalidMonitorCrossRefID || m.Class() != ClassError || !m.IsReply() {
		t.Errorf("ErrorMessage = %+v", m)
	}
}

type linkDownErr struct{}

func (linkDownErr) Error() string       { return "link down" }
func (linkDownErr) CSTACode() ErrorCode { return CodeResourceOutOfService }

func TestEncodeErrorCode(t *testing.T) {
	const pre = `<?xml version="1.0" encoding="UTF-8"?><CSTAErrorCode xmlns="` + NSEd3 + `">`
	const post = `</CSTAErrorCode>`
	cases := []struct {
		code ErrorCode
		body string
	}{
		{CodeInvalidConnectionID, `<operation>invalidConnectionID</operation>`},
		{CodeResourceOutOfService, `<systemResourceAvailibility>resourceOutOfService</systemResourceAvailibility>`},
		{CodeOverallMonitorLimitExceeded, `<systemResourceAvailibility>overallMonitorLimitExceeded</systemResourceAvailibility>`},
		{CodeObjectMonitorLimitExceeded, `<subscribedResourceAvailability>objectMonitorLimitExceeded</subscribedResourceAvailability>`},
		{CodeNoConnectionToClear, `<stateIncompatibility>noConnectionToClear</stateIncompatibility>`},
		{ErrorCode{CatSecurity, "sequenceNumberViolated"}, `<security>sequenceNumberViolated</security>`},
		{ErrorCode{CatPerformanceManagement, "performanceLimitExceeded"}, `<performanceManagement>performanceLimitExceeded</performanceManagement>`},
		{ErrorCode{CatPrivateData, "cSTAPrivateDataInfoError"}, `<privateData>cSTAPrivateDataInfoError</privateData>`},
		{ErrorCode{CatPrivateErrorCode, "E42"}, `<privateErrorCode>E42</privateErrorCode>`},
		{CodeUnspecified, `<unspecified/>`},
		{ErrorCode{}, `<unspecified/>`},
		// An unknown category from a switch keeps its name as a private code.
		{ErrorCode{CatUnspecified, "vendorCategory"}, `<privateErrorCode>vendorCategory</privateErrorCode>`},
		{ErrorCode{CatUnknown, "vendorCategory"}, `<privateErrorCode>vendorCategory</privateErrorCode>`},
	}
	for _, c := range cases {
		if got := mustEncode(t, ErrorMessage(c.code), ""); got != pre+c.body+post {
			t.Errorf("%v:\n got %s\nwant %s", c.code, got, pre+c.body+post)
		}
	}

	// Decoding: both spellings of the resource category, unknown
	// categories and an empty body.
	dec := []struct {
		doc  string
		want ErrorCode
	}{
		{`<CSTAErrorCode><systemResourceAvailibility>resourceBusy</systemResourceAvailibility></CSTAErrorCode>`, CodeResourceBusy},
		{`<CSTAErrorCode><systemResourceAvailability>resourceBusy</systemResourceAvailability></CSTAErrorCode>`, CodeResourceBusy},
		{`<CSTAErrorCode><subscribedResourceAvailibility>trunkLimitExceeded</subscribedResourceAvailibility></CSTAErrorCode>`,
			ErrorCode{CatSubscribedResourceAvailability, "trunkLimitExceeded"}},
		{`<CSTAErrorCode><vendorCategory>x</vendorCategory></CSTAErrorCode>`, ErrorCode{CatUnspecified, "vendorCategory"}},
		{`<CSTAErrorCode/>`, CodeUnspecified},
		{`<CSTAErrorCode>  </CSTAErrorCode>`, CodeUnspecified},
		{`<CSTAErrorCodeResponse><operation> generic </operation></CSTAErrorCodeResponse>`, CodeGeneric},
	}
	for _, c := range dec {
		m := mustDecode(t, c.doc)
		if m.Kind != KindCSTAErrorCode || m.Error != c.want {
			t.Errorf("Decode(%s) = %v %v, want %v", c.doc, m.Kind, m.Error, c.want)
		}
	}
}

func TestEncodeEscaping(t *testing.T) {
	const nasty = `a&b<c>d"e'f]]>g`
	m := &Message{Kind: KindMakeCall, CallingDevice: Dev(nasty), Destination: Dev("tel:+1"), AccountCode: "&amp;"}
	s := mustEncode(t, m, "")
	for _, want := range []string{
		`<callingDevice>a&amp;b&lt;c&gt;d"e'f]]&gt;g</callingDevice>`,
		`<accountCode>&amp;amp;</accountCode>`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %s:\n%s", want, s)
		}
	}
	back := mustDecode(t, s)
	if back.CallingDevice.ID != nasty || back.AccountCode != "&amp;" {
		t.Errorf("round trip changed values: %q %q", back.CallingDevice.ID, back.AccountCode)
	}

	// Attribute values: the namespace and the login namespace.
	ns := `urn:x?a=1&b="2"<3>'`
	s = mustEncode(t, m, ns)
	if !strings.Contains(s, `xmlns="urn:x?a=1&amp;b=&quot;2&quot;&lt;3&gt;'"`) {
		t.Errorf("namespace not escaped as an attribute value:\n%s", s)
	}
	if back := mustDecode(t, s); back.Namespace != ns {
		t.Errorf("namespace round trip: %q", back.Namespace)
	}
	sess := &Message{Kind: KindStartApplicationSession, ApplicationID: "gw", LoginUser: "u<1>", LoginPassword: `p&"q`,
		LoginNamespace: `urn:v"&`, ProtocolVersions: []string{NSEd4}}
	s = mustEncode(t, sess, "")
	if !strings.Contains(s, `<SessionLoginInfo xmlns="urn:v&quot;&amp;"><userName>u&lt;1&gt;</userName><password>p&amp;"q</password></SessionLoginInfo>`) {
		t.Errorf("login not escaped:\n%s", s)
	}
	back = mustDecode(t, s)
	if back.LoginUser != "u<1>" || back.LoginPassword != `p&"q` || back.LoginNamespace != `urn:v"&` {
		t.Errorf("login round trip: %+v", back)
	}

	// lcs:line in extensions.
	s = mustEncode(t, &Message{Kind: KindRequestSystemStatus, Line: "tel:1;x=<&>"}, "")
	if !strings.Contains(s, `<extensions><privateData><private><lcs:line xmlns:lcs="`+NSLcs+`">tel:1;x=&lt;&amp;&gt;</lcs:line></private></privateData></extensions>`) {
		t.Errorf("lcs:line not written as expected:\n%s", s)
	}
	if back := mustDecode(t, s); back.Line != "tel:1;x=<&>" {
		t.Errorf("Line round trip: %q", back.Line)
	}

	// Characters XML cannot carry are dropped, never written: C0 controls
	// (tab, LF, CR stay), invalid UTF-8, U+FFFE and U+FFFF.
	m = &Message{Kind: KindMonitorStop, MonitorCrossRefID: "a\x00b\x01c\x1fd\te\nf\x7fg\xffh\uFFFEi\uFFFFj\xed\xa0\x80k✓"}
	s = mustEncode(t, m, "")
	if !strings.Contains(s, "<monitorCrossRefID>abcd\te\nf\x7fghij") || !strings.Contains(s, "k✓</monitorCrossRefID>") {
		t.Errorf("invalid characters not dropped: %q", s)
	}
}

func TestEncodeDeviceWrapper(t *testing.T) {
	// All device fields of a DeliveredEvent are required wrappers: empty
	// ones become <notKnown/>, never an empty <deviceIdentifier>.
	m := &Message{Kind: KindDeliveredEvent, MonitorCrossRefID: "1", Connection: cid("c", "")}
	s := mustEncode(t, m, "")
	for _, name := range []string{"alertingDevice", "callingDevice", "calledDevice", "lastRedirectionDevice"} {
		if !strings.Contains(s, "<"+name+"><notKnown/></"+name+">") {
			t.Errorf("%s is not <notKnown/>:\n%s", name, s)
		}
	}
	if strings.Contains(s, "<deviceIdentifier/>") || strings.Contains(s, "<deviceIdentifier></deviceIdentifier>") {
		t.Errorf("empty deviceIdentifier written:\n%s", s)
	}
	if !strings.Contains(s, "<connection><callID>c</callID></connection>") {
		t.Errorf("connection with an empty deviceID:\n%s", s)
	}

	cases := []struct {
		d    Device
		want string
	}{
		{Device{}, "<notKnown/>"},
		{Dev("2101"), "<deviceIdentifier>2101</deviceIdentifier>"},
		{Device{Status: DeviceNumberDialed}, "<notKnown/>"}, // numberDialed without digits
		{Device{ID: "555", Status: DeviceNumberDialed}, "<numberDialed>555</numberDialed>"},
		{Device{Status: DeviceNotKnown}, "<notKnown/>"},
		{Device{ID: "ignored", Status: DeviceRestricted}, "<restricted/>"},
		{Device{Status: DeviceNotRequired}, "<notRequired/>"},
		{Device{Status: DeviceNotSpecified}, "<notSpecified/>"},
		{Device{ID: "x", Status: DeviceStatus(77)}, "<notKnown/>"},
	}
	for _, c := range cases {
		m := &Message{Kind: KindDeliveredEvent, MonitorCrossRefID: "1", Connection: cid("c", "d"), LastRedirectionDevice: c.d}
		s := mustEncode(t, m, "")
		if want := "<lastRedirectionDevice>" + c.want + "</lastRedirectionDevice>"; !strings.Contains(s, want) {
			t.Errorf("%+v: output lacks %s:\n%s", c.d, want, s)
		}
	}

	// Optional wrappers (DivertedEvent callingDevice...) are left out when
	// empty; required ones are not.
	s = mustEncode(t, &Message{Kind: KindDivertedEvent, MonitorCrossRefID: "1", Connection: cid("c", "d")}, "")
	if strings.Contains(s, "<callingDevice>") || strings.Contains(s, "<lastRedirectionDevice>") {
		t.Errorf("empty optional wrapper written:\n%s", s)
	}
	if !strings.Contains(s, "<divertingDevice><notKnown/></divertingDevice><newDestination><notKnown/></newDestination>") {
		t.Errorf("required wrappers missing:\n%s", s)
	}

	// Plain (request) device fields are text, not wrappers.
	s = mustEncode(t, &Message{Kind: KindMakeCall, CallingDevice: Dev("2101"), Destination: Dev("2102")}, "")
	if !strings.Contains(s, "<callingDevice>2101</callingDevice><calledDirectoryNumber>2102</calledDirectoryNumber>") {
		t.Errorf("MakeCall devices:\n%s", s)
	}
}

func TestDecodeDeviceForms(t *testing.T) {
	ev := func(inner string) string {
		return `<DeliveredEvent xmlns="` + NSEd4 + `"><monitorCrossRefID>1</monitorCrossRefID>` + inner + `</DeliveredEvent>`
	}
	cases := []struct {
		inner string
		want  Device
	}{
		{`<callingDevice><deviceIdentifier>2101</deviceIdentifier></callingDevice>`, Dev("2101")},
		{`<callingDevice> 2101 </callingDevice>`, Dev("2101")}, // plain text, not the schema's wrapper
		{`<callingDevice><implicitPublic>2101</implicitPublic></callingDevice>`, Dev("2101")},
		{`<callingDevice><deviceIdentifier><explicitPublic><international>2101</international></explicitPublic></deviceIdentifier></callingDevice>`, Dev("2101")},
		{`<callingDevice><notKnown/></callingDevice>`, Device{Status: DeviceNotKnown}},
		{`<callingDevice><restricted/></callingDevice>`, Device{Status: DeviceRestricted}},
		{`<callingDevice><notRequired/></callingDevice>`, Device{Status: DeviceNotRequired}},
		{`<callingDevice><notSpecified/></callingDevice>`, Device{Status: DeviceNotSpecified}},
		{`<callingDevice><numberDialed>55</numberDialed></callingDevice>`, Device{ID: "55", Status: DeviceNumberDialed}},
		{`<callingDevice><vendorThing/></callingDevice>`, Device{Status: DeviceNotKnown}},
		{`<callingDevice/>`, Device{}},
	}
	for _, c := range cases {
		m := mustDecode(t, ev(c.inner))
		if m.CallingDevice != c.want {
			t.Errorf("%s: got %+v, want %+v", c.inner, m.CallingDevice, c.want)
		}
	}
	if !Dev("x").Known() || (Device{Status: DeviceRestricted}).Known() || (Device{}).Known() ||
		!(Device{ID: "1", Status: DeviceNumberDialed}).Known() {
		t.Error("Device.Known is wrong")
	}
	if !(Device{}).IsZero() || (Device{Status: DeviceNotKnown}).IsZero() || Dev("1").IsZero() {
		t.Error("Device.IsZero is wrong")
	}
	if !(ConnectionID{}).IsZero() || cid("1", "").IsZero() || cid("", "d").IsZero() {
		t.Error("ConnectionID.IsZero is wrong")
	}

	// Connection IDs: deviceID may wrap staticID/dynamicID, and some
	// implementations put those directly in the connection.
	for _, inner := range []string{
		`<callID>c</callID><deviceID>d</deviceID>`,
		`<callID>c</callID><deviceID><staticID>d</staticID></deviceID>`,
		`<callID>c</callID><deviceID><dynamicID>d</dynamicID></deviceID>`,
		`<callID>c</callID><staticID>d</staticID>`,
		`<deviceID>d</deviceID><callID>c</callID>`,
	} {
		m := mustDecode(t, `<AnswerCall><callToBeAnswered>`+inner+`</callToBeAnswered></AnswerCall>`)
		if m.Connection != cid("c", "d") {
			t.Errorf("%s: got %+v", inner, m.Connection)
		}
	}
}

func TestDecodeSimpleCallState(t *testing.T) {
	for simple, want := range map[string]string{
		"callNull": "null", "callPending": "initiated", "callOriginated": "connected", "callDelivered": "connected",
		"callReceived": "alerting", "callEstablished": "connected", "callHeld": "hold", "callFailed": "fail",
		"callQueued": "queued", "callVendorState": "callVendorState",
	} {
		doc := `<SnapshotDeviceResponse><crossRefIDorSnapshotData><snapshotData><snapshotDeviceResponseInfo>` +
			`<connectionIdentifier><callID>1</callID></connectionIdentifier>` +
			`<localCallState><simpleCallState>` + simple + `</simpleCallState></localCallState>` +
			`</snapshotDeviceResponseInfo></snapshotData></crossRefIDorSnapshotData></SnapshotDeviceResponse>`
		m := mustDecode(t, doc)
		if len(m.Snapshot) != 1 || m.Snapshot[0].LocalCallState != want {
			t.Errorf("%s: got %+v, want %s", simple, m.Snapshot, want)
		}
	}
	// An empty snapshot is written as an empty <snapshotData/>.
	s := mustEncode(t, &Message{Kind: KindSnapshotDeviceResponse}, "")
	if !strings.Contains(s, "<crossRefIDorSnapshotData><snapshotData/></crossRefIDorSnapshotData>") {
		t.Errorf("empty snapshot:\n%s", s)
	}
}

func TestDecodeIgnoresUnknownChildren(t *testing.T) {
	m := mustDecode(t, `<MakeCall xmlns="`+NSEd3+`"><vendorFlag>1</vendorFlag><callingDevice>a</callingDevice>`+
		`<calledDirectoryNumber>b</calledDirectoryNumber><extensions><privateData><private>`+
		`<x:y xmlns:x="`+NSOpenScape+`">z</x:y></private></privateData></extensions></MakeCall>`)
	want := &Message{Kind: KindMakeCall, Name: "MakeCall", CallingDevice: Dev("a"), Destination: Dev("b")}
	requireSameMessage(t, "MakeCall", m, want)

	// Children are read by local name whatever their prefix; the first of a
	// repeated text field wins.
	m = mustDecode(t, `<p:MonitorStop xmlns:p="`+NSEd4+`"><q:monitorCrossRefID xmlns:q="urn:q">1</q:monitorCrossRefID>`+
		`<p:monitorCrossRefID>2</p:monitorCrossRefID></p:MonitorStop>`)
	if m.Kind != KindMonitorStop || m.MonitorCrossRefID != "1" || m.Namespace != NSEd4 {
		t.Errorf("got %+v", m)
	}
	// Booleans and integers.
	m = mustDecode(t, `<SetForwarding><activateForward>TRUE</activateForward><ringCount>-3</ringCount></SetForwarding>`)
	if !m.ActivateForward || m.RingCount != 0 {
		t.Errorf("got %+v", m)
	}
	m = mustDecode(t, `<SetForwarding><activateForward>1</activateForward><ringCount> 7 </ringCount></SetForwarding>`)
	if !m.ActivateForward || m.RingCount != 7 {
		t.Errorf("got %+v", m)
	}
	m = mustDecode(t, `<SetForwarding><activateForward>yes</activateForward><ringCount>x</ringCount></SetForwarding>`)
	if m.ActivateForward || m.RingCount != 0 {
		t.Errorf("got %+v", m)
	}
}

func TestMessageFieldHelpers(t *testing.T) {
	m := &Message{}
	cf := m.ConnectionFields()
	if cf[0] != &m.Connection || cf[1] != &m.HeldCall || cf[2] != &m.ActiveCall || cf[3] != &m.PrimaryOldCall || cf[4] != &m.SecondaryOldCall {
		t.Error("ConnectionFields order")
	}
	df := m.DeviceFields()
	if df[0] != &m.Device || df[1] != &m.CallingDevice || df[2] != &m.CalledDevice || df[3] != &m.Destination ||
		df[4] != &m.SubjectDevice || df[5] != &m.ThirdParty || df[6] != &m.LastRedirectionDevice {
		t.Error("DeviceFields order")
	}
}

// DecodeInto resets the message it is given: callers recycle messages, and
// nothing of the last one may leak into the next.
func TestDecodeIntoResets(t *testing.T) {
	m := &Message{Kind: KindMakeCall, CallingDevice: Dev("x"), MonitorCrossRefID: "stale", Line: "l"}
	if err := DecodeInto(m, []byte(`<MonitorStop xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed3"/>`), DefaultLimits); err != nil {
		t.Fatal(err)
	}
	if m.MonitorCrossRefID != "" || !m.CallingDevice.IsZero() || m.Line != "" || m.Kind != KindMonitorStop {
		t.Errorf("not reset: %+v", m)
	}
}
