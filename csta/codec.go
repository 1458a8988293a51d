package csta

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Decode parses a CSTA or ECMA-354 document with DefaultLimits.
func Decode(data []byte) (*Message, error) { return DecodeLimits(data, DefaultLimits) }

// DecodeLimits parses a document under the given limits. The root is
// identified by its local name whatever its namespace; unknown children and
// extensions are ignored. A root that names no known message is not an error:
// the result has Kind KindUnknown and Name set, so callers can answer
// serviceNotSupported; when that root is an event (its name ends in Event)
// the result also carries its monitorCrossRefID and the document itself
// (Raw), so that it can be routed and passed on.
func DecodeLimits(data []byte, lim Limits) (*Message, error) {
	m := new(Message)
	if err := DecodeInto(m, data, lim); err != nil {
		return nil, err
	}
	return m, nil
}

// DecodeInto is DecodeLimits into a caller's Message (reset first), for
// callers that recycle them. On error *m is left reset or partly filled.
func DecodeInto(m *Message, data []byte, lim Limits) error {
	d := getDoc()
	defer putDoc(d)
	*m = Message{}
	if err := d.scan(data, lim); err != nil {
		return err
	}
	root := &d.nodes[0]
	m.Namespace = root.ns
	k := kindByName[root.local]
	m.Kind = k
	if k == KindUnknown {
		m.Name = root.local
		if classFromName(root.local) == ClassEvent {
			// An event we do not model: its monitor is still ours to
			// route to, and its document is kept to be passed on.
			if x := d.child(0, "monitorCrossRefID"); x >= 0 {
				m.MonitorCrossRefID = d.textOf(x)
			}
			m.Raw = append(make([]byte, 0, len(data)), data...)
		}
		return nil
	}
	info := &kindInfos[k]
	m.Name = info.name
	if k == KindCSTAErrorCode {
		decodeErrorCode(d, m)
		return nil
	}
	for c := root.first; c >= 0; c = d.nodes[c].next {
		local := d.nodes[c].local
		for i := range info.fields {
			f := &info.fields[i]
			if len(f.path) == 0 || f.path[0] != local {
				continue
			}
			n := c
			for _, seg := range f.path[1:] {
				if n = d.child(n, seg); n < 0 {
					break
				}
			}
			if n >= 0 {
				decodeField(d, n, f, m)
			}
		}
	}
	return nil
}

func decodeField(d *xdoc, n int32, f *fieldSpec, m *Message) {
	switch f.typ {
	case tText:
		if p := f.str(m); *p == "" {
			*p = d.textOf(n)
		}
	case tBool:
		*f.bol(m) = parseBool(d.textOf(n))
	case tInt:
		*f.num(m) = parseInt(d.textOf(n))
	case tConn:
		*f.con(m) = decodeConn(d, n)
	case tDev:
		*f.dev(m) = Device{ID: d.textOf(n)}
	case tDevW:
		*f.dev(m) = decodeDevW(d, n)
	case tConnList:
		for c := d.nodes[n].first; c >= 0; c = d.nodes[c].next {
			if d.nodes[c].local != f.item {
				continue
			}
			var it ConnectionListItem
			if x := d.child(c, "newConnection"); x >= 0 {
				it.NewConnection = decodeConn(d, x)
			}
			if x := d.child(c, "oldConnection"); x >= 0 {
				it.OldConnection = decodeConn(d, x)
			}
			if x := d.child(c, "endpoint"); x >= 0 {
				it.Endpoint = d.textOf(x)
			}
			m.Connections = append(m.Connections, it)
		}
	case tFwdList:
		for c := d.nodes[n].first; c >= 0; c = d.nodes[c].next {
			if d.nodes[c].local != f.item {
				continue
			}
			var it ForwardListItem
			for x := d.nodes[c].first; x >= 0; x = d.nodes[x].next {
				switch d.nodes[x].local {
				case "forwardingType":
					it.ForwardingType = d.textOf(x)
				case "forwardStatus":
					it.ForwardStatus = parseBool(d.textOf(x))
				case "forwardDN":
					it.ForwardDN = d.textOf(x)
				case "forwardDefault":
					it.ForwardDefault = d.textOf(x)
				case "ringCount":
					it.RingCount = parseInt(d.textOf(x))
				}
			}
			m.ForwardingList = append(m.ForwardingList, it)
		}
	case tSnapshot:
		m.Snapshot = m.Snapshot[:0]
		for c := d.nodes[n].first; c >= 0; c = d.nodes[c].next {
			if d.nodes[c].local != f.item {
				continue
			}
			var it SnapshotItem
			if x := d.child(c, "connectionIdentifier"); x >= 0 {
				it.Connection = decodeConn(d, x)
			}
			if x := d.child(c, "endpointDevice"); x >= 0 {
				it.Endpoint = d.textOf(x)
			}
			if x := d.child(c, "localCallState"); x >= 0 {
				it.LocalCallState = decodeCallState(d, x)
			}
			m.Snapshot = append(m.Snapshot, it)
		}
		if m.Snapshot == nil {
			m.Snapshot = []SnapshotItem{}
		}
	case tStrList:
		p := f.strs(m)
		for c := d.nodes[n].first; c >= 0; c = d.nodes[c].next {
			if d.nodes[c].local == f.item {
				*p = append(*p, d.textOf(c))
			}
		}
	case tFeatures:
		p := f.feats(m)
		for c := d.nodes[n].first; c >= 0; c = d.nodes[c].next {
			fl := FeatureList{List: d.nodes[c].local}
			for x := d.nodes[c].first; x >= 0; x = d.nodes[x].next {
				fl.Items = append(fl.Items, d.nodes[x].local)
			}
			*p = append(*p, fl)
		}
	case tExt:
		if x := findLcsLine(d, n, 0); x >= 0 {
			m.Line = d.textOf(x)
		}
	case tLogin:
		if first := d.nodes[n].first; first >= 0 {
			m.LoginNamespace = d.nodes[first].ns
		}
		if x := findDesc(d, n, "userName", 0); x >= 0 {
			m.LoginUser = d.textOf(x)
		}
		if x := findDesc(d, n, "password", 0); x >= 0 {
			m.LoginPassword = d.textOf(x)
		}
	}
}

func decodeConn(d *xdoc, n int32) ConnectionID {
	var c ConnectionID
	for x := d.nodes[n].first; x >= 0; x = d.nodes[x].next {
		switch d.nodes[x].local {
		case "callID":
			c.CallID = d.textOf(x)
		case "deviceID", "staticID", "dynamicID":
			// ed3 allows deviceID to wrap a staticID/dynamicID; some
			// implementations also put those directly in the connection.
			c.DeviceID = d.textOf(x)
		}
	}
	return c
}

func decodeDevW(d *xdoc, n int32) Device {
	c := d.nodes[n].first
	if c < 0 {
		// Not the schema's wrapper, but plain text is what some switches send.
		return Device{ID: d.textOf(n)}
	}
	switch d.nodes[c].local {
	case "deviceIdentifier":
		return Device{ID: d.textOf(c)}
	case "numberDialed":
		return Device{ID: d.textOf(c), Status: DeviceNumberDialed}
	case "notKnown":
		return Device{Status: DeviceNotKnown}
	case "restricted":
		return Device{Status: DeviceRestricted}
	case "notRequired":
		return Device{Status: DeviceNotRequired}
	case "notSpecified":
		return Device{Status: DeviceNotSpecified}
	}
	// implicitPublic, explicitPublic, otherPlan...: the text is the device.
	if id := d.textOf(c); id != "" {
		return Device{ID: id}
	}
	return Device{Status: DeviceNotKnown}
}

// decodeCallState reads localCallState: compoundCallState/localConnectionState
// as the schema has it, or simpleCallState, or plain text.
func decodeCallState(d *xdoc, n int32) string {
	if x := findDesc(d, n, "localConnectionState", 0); x >= 0 {
		return d.textOf(x)
	}
	if x := findDesc(d, n, "simpleCallState", 0); x >= 0 {
		return simpleCallState(d.textOf(x))
	}
	return d.textOf(n)
}

// simpleCallState maps ECMA-269's two-letter-style simple call states to the
// local connection state of the first party.
func simpleCallState(s string) string {
	switch s {
	case "callNull":
		return "null"
	case "callPending":
		return "initiated"
	case "callOriginated", "callDelivered", "callReceived", "callEstablished":
		if s == "callReceived" {
			return "alerting"
		}
		return "connected"
	case "callHeld":
		return "hold"
	case "callFailed":
		return "fail"
	case "callQueued":
		return "queued"
	}
	return s
}

func findDesc(d *xdoc, n int32, local string, depth int) int32 {
	if depth > DefaultMaxDepth {
		return -1
	}
	for c := d.nodes[n].first; c >= 0; c = d.nodes[c].next {
		if d.nodes[c].local == local {
			return c
		}
		if x := findDesc(d, c, local, depth+1); x >= 0 {
			return x
		}
	}
	return -1
}

func findLcsLine(d *xdoc, n int32, depth int) int32 {
	if depth > DefaultMaxDepth {
		return -1
	}
	for c := d.nodes[n].first; c >= 0; c = d.nodes[c].next {
		x := &d.nodes[c]
		if x.local == "line" && (x.ns == NSLcs || strings.HasPrefix(x.qname, "lcs:")) {
			return c
		}
		if r := findLcsLine(d, c, depth+1); r >= 0 {
			return r
		}
	}
	return -1
}

func decodeErrorCode(d *xdoc, m *Message) {
	c := d.nodes[0].first
	if c < 0 {
		m.Error = CodeUnspecified
		return
	}
	cat, ok := categoryByElem[d.nodes[c].local]
	if !ok {
		m.Error = ErrorCode{Category: CatUnspecified, Value: d.nodes[c].local}
		return
	}
	m.Error = ErrorCode{Category: cat, Value: d.textOf(c)}
}

func parseBool(s string) bool { return s == "true" || s == "1" || strings.EqualFold(s, "true") }

func parseInt(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// ErrEncodeUnknown is returned when asked to encode a message of KindUnknown.
var ErrEncodeUnknown = errors.New("csta: cannot encode a message of unknown kind")

// xmlDecl is the declaration every encoded document starts with.
const xmlDecl = `<?xml version="1.0" encoding="UTF-8"?>`

// Encode returns the document for m in namespace ns (NSEd3 when empty;
// ECMA-354 messages always use NSAppSession), compact, with an XML
// declaration, children in schema order and the schema's spellings.
func Encode(m *Message, ns string) ([]byte, error) {
	return AppendEncode(make([]byte, 0, 512), m, ns)
}

// AppendEncode is Encode appending to dst.
func AppendEncode(dst []byte, m *Message, ns string) ([]byte, error) {
	if m.Kind == KindUnknown || m.Kind >= kindCount {
		return dst, ErrEncodeUnknown
	}
	info := &kindInfos[m.Kind]
	if info.class == ClassSession {
		ns = NSAppSession
	} else if ns == "" {
		ns = NSEd3
	}
	w := xw{b: dst}
	w.b = append(w.b, xmlDecl...)
	w.b = append(w.b, '<')
	w.b = append(w.b, info.name...)
	w.b = append(w.b, ` xmlns="`...)
	w.b = appendEscaped(w.b, ns, true)
	w.b = append(w.b, `">`...)
	var open []string
	var openBuf [4]string
	open = openBuf[:0]
	for i := range info.fields {
		f := &info.fields[i]
		if f.inOnly || (!f.req && !present(f, m)) {
			continue
		}
		if f.typ == tErrCode {
			encodeErrorCode(&w, m.Error)
			continue
		}
		parents := f.path[:len(f.path)-1]
		common := 0
		for common < len(open) && common < len(parents) && open[common] == parents[common] {
			common++
		}
		for j := len(open) - 1; j >= common; j-- {
			w.close(open[j])
		}
		open = open[:common]
		for _, p := range parents[common:] {
			w.open(p)
			open = append(open, p)
		}
		encodeField(&w, f, m)
	}
	for j := len(open) - 1; j >= 0; j-- {
		w.close(open[j])
	}
	w.close(info.name)
	return w.b, nil
}

func present(f *fieldSpec, m *Message) bool {
	switch f.typ {
	case tText:
		return *f.str(m) != ""
	case tBool:
		return *f.bol(m)
	case tInt:
		return *f.num(m) != 0
	case tConn:
		return !f.con(m).IsZero()
	case tDev, tDevW:
		return !f.dev(m).IsZero()
	case tConnList:
		return len(m.Connections) > 0
	case tFwdList:
		return len(m.ForwardingList) > 0
	case tSnapshot:
		return true
	case tStrList:
		return len(*f.strs(m)) > 0
	case tFeatures:
		return len(*f.feats(m)) > 0
	case tErrCode:
		return true
	case tExt:
		return m.Line != ""
	case tLogin:
		return m.LoginUser != "" || m.LoginPassword != ""
	}
	return false
}

func encodeField(w *xw, f *fieldSpec, m *Message) {
	name := f.path[len(f.path)-1]
	switch f.typ {
	case tText:
		w.leaf(name, *f.str(m))
	case tBool:
		w.leaf(name, strconv.FormatBool(*f.bol(m)))
	case tInt:
		w.open(name)
		w.b = strconv.AppendInt(w.b, int64(*f.num(m)), 10)
		w.close(name)
	case tConn:
		w.conn(name, *f.con(m))
	case tDev:
		w.leaf(name, f.dev(m).ID)
	case tDevW:
		w.devW(name, *f.dev(m))
	case tConnList:
		w.open(name)
		for _, it := range m.Connections {
			w.open("connectionListItem")
			if !it.NewConnection.IsZero() {
				w.conn("newConnection", it.NewConnection)
			}
			if !it.OldConnection.IsZero() {
				w.conn("oldConnection", it.OldConnection)
			}
			if it.Endpoint != "" {
				w.open("endpoint")
				w.leaf("deviceID", it.Endpoint)
				w.close("endpoint")
			}
			w.close("connectionListItem")
		}
		w.close(name)
	case tFwdList:
		w.open(name)
		for _, it := range m.ForwardingList {
			w.open("forwardListItem")
			w.leaf("forwardingType", it.ForwardingType)
			w.leaf("forwardStatus", strconv.FormatBool(it.ForwardStatus))
			if it.ForwardDN != "" {
				w.leaf("forwardDN", it.ForwardDN)
			}
			if it.ForwardDefault != "" {
				w.leaf("forwardDefault", it.ForwardDefault)
			}
			if it.RingCount > 0 {
				w.open("ringCount")
				w.b = strconv.AppendInt(w.b, int64(it.RingCount), 10)
				w.close("ringCount")
			}
			w.close("forwardListItem")
		}
		w.close(name)
	case tSnapshot:
		if len(m.Snapshot) == 0 {
			w.empty(name)
			return
		}
		w.open(name)
		for _, it := range m.Snapshot {
			w.open(f.item)
			w.conn("connectionIdentifier", it.Connection)
			if it.Endpoint != "" {
				w.devW("endpointDevice", Dev(it.Endpoint))
			}
			w.open("localCallState")
			w.open("compoundCallState")
			w.leaf("localConnectionState", it.LocalCallState)
			w.close("compoundCallState")
			w.close("localCallState")
			w.close(f.item)
		}
		w.close(name)
	case tStrList:
		w.open(name)
		for _, s := range *f.strs(m) {
			w.leaf(f.item, s)
		}
		w.close(name)
	case tFeatures:
		w.open(name)
		for _, fl := range *f.feats(m) {
			w.open(fl.List)
			for _, it := range fl.Items {
				w.empty(it)
			}
			w.close(fl.List)
		}
		w.close(name)
	case tExt:
		w.b = append(w.b, `<extensions><privateData><private><lcs:line xmlns:lcs="`+NSLcs+`">`...)
		w.b = appendEscaped(w.b, m.Line, false)
		w.b = append(w.b, `</lcs:line></private></privateData></extensions>`...)
	case tLogin:
		ns := m.LoginNamespace
		if ns == "" {
			ns = NSAvaya
		}
		w.open(name)
		w.b = append(w.b, `<SessionLoginInfo xmlns="`...)
		w.b = appendEscaped(w.b, ns, true)
		w.b = append(w.b, `">`...)
		w.leaf("userName", m.LoginUser)
		w.leaf("password", m.LoginPassword)
		w.close("SessionLoginInfo")
		w.close(name)
	}
}

func encodeErrorCode(w *xw, c ErrorCode) {
	cat := c.Category
	if cat == CatUnknown {
		cat = CatUnspecified
	}
	if cat == CatUnspecified && c.Value == "" {
		w.empty("unspecified")
		return
	}
	if cat == CatUnspecified {
		// An unknown category received from a switch: keep its name as the
		// value so nothing is lost, but write something schema-valid.
		w.leaf("privateErrorCode", c.Value)
		return
	}
	w.leaf(cat.Element(), c.Value)
}

// xw appends compact XML.
type xw struct{ b []byte }

func (w *xw) open(name string) {
	w.b = append(w.b, '<')
	w.b = append(w.b, name...)
	w.b = append(w.b, '>')
}

func (w *xw) close(name string) {
	w.b = append(w.b, '<', '/')
	w.b = append(w.b, name...)
	w.b = append(w.b, '>')
}

func (w *xw) empty(name string) {
	w.b = append(w.b, '<')
	w.b = append(w.b, name...)
	w.b = append(w.b, '/', '>')
}

func (w *xw) leaf(name, text string) {
	if text == "" {
		w.empty(name)
		return
	}
	w.open(name)
	w.b = appendEscaped(w.b, text, false)
	w.close(name)
}

func (w *xw) conn(name string, c ConnectionID) {
	w.open(name)
	if c.CallID != "" {
		w.leaf("callID", c.CallID)
	}
	if c.DeviceID != "" {
		w.leaf("deviceID", c.DeviceID)
	}
	w.close(name)
}

// devW writes a device wrapper. An empty identifier is never written: it
// becomes <notKnown/>.
func (w *xw) devW(name string, d Device) {
	w.open(name)
	st := d.Status
	if (st == DeviceIdentifier || st == DeviceNumberDialed) && d.ID == "" {
		st = DeviceNotKnown
	}
	if int(st) >= len(deviceStatusElems) {
		st = DeviceNotKnown
	}
	if st == DeviceIdentifier || st == DeviceNumberDialed {
		w.leaf(deviceStatusElems[st], d.ID)
	} else {
		w.empty(deviceStatusElems[st])
	}
	w.close(name)
}

// appendEscaped writes s as XML character data (or an attribute value),
// dropping characters XML 1.0 cannot carry.
func appendEscaped(b []byte, s string, attr bool) []byte {
	last := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		var rep string
		switch {
		case c == '<':
			rep = "&lt;"
		case c == '>':
			rep = "&gt;"
		case c == '&':
			rep = "&amp;"
		case c == '"' && attr:
			rep = "&quot;"
		case c < 0x20 && c != '\t' && c != '\n' && c != '\r':
			rep = ""
		case c >= utf8.RuneSelf:
			// Invalid UTF-8 and U+FFFE/U+FFFF are not XML characters.
			r, n := utf8.DecodeRuneInString(s[i:])
			if (r != utf8.RuneError || n > 1) && xmlChar(r) {
				i += n - 1
				continue
			}
			b = append(b, s[last:i]...)
			last = i + n
			i += n - 1
			continue
		default:
			continue
		}
		b = append(b, s[last:i]...)
		b = append(b, rep...)
		last = i + 1
	}
	return append(b, s[last:]...)
}
