package csta

import (
	"errors"
	"slices"
	"strings"
)

// Passing on events the codec does not model.
//
// A switch sends more events than Message models (QueuedEvent,
// NetworkReachedEvent, CallInformationEvent, vendor events...). The gateway
// passes them on to its clients as the switch wrote them, changing only
// what must change for the client to accept them: the monitorCrossRefID
// (the client's own), the device identifiers (the client's spelling of its
// line, other parties as it is shown them) and the CSTA namespace (the one
// edition clients are sent). RewriteEvent does that by splicing: it scans
// the document with the package's reader, finds those pieces by their byte
// offsets, and copies every other byte unchanged, so the output is the input
// byte for byte apart from the pieces listed below.

// EventRewrite says what RewriteEvent changes in an event document.
type EventRewrite struct {
	// CrossRefID replaces the content of the root's monitorCrossRefID
	// child. Empty leaves it as it is.
	CrossRefID string

	// Device maps a device identifier; nil leaves every one as it is. It is
	// called with the trimmed text of each element outside the root's
	// extensions that holds a device identifier in ECMA-323:
	//   - wrapped true: deviceIdentifier and numberDialed, the content of a
	//     device wrapper (callingDevice, queue, ...). An empty result
	//     replaces the element with <notKnown/> (an empty identifier is not
	//     valid there).
	//   - wrapped false: deviceID (a connection's device, an endpoint) and
	//     the staticID or dynamicID some switches put in it. An empty result
	//     leaves it as it is.
	// The element's content is replaced by the escaped result; an unchanged
	// result leaves its bytes alone. Private data (the root's extensions)
	// is never touched.
	Device func(id string, wrapped bool) string

	// Namespace, when set, replaces the value of every namespace
	// declaration naming an ECMA-323 namespace (any edition or spelling,
	// see Edition), and is declared on a root that has no namespace at all.
	// Other namespaces (vendor private data, lcs) are left as they are.
	Namespace string

	// Limits bound the scan; zero fields take the defaults.
	Limits Limits
}

// ErrNoCrossRefID is returned by RewriteEvent when asked to set the
// monitorCrossRefID of a document whose root has none.
var ErrNoCrossRefID = errors.New("csta: event has no monitorCrossRefID")

// RewriteEvent returns the event document doc changed as rw says; every
// other byte is copied as it came. One more change is made when needed:
// the output is UTF-8, so an XML declaration naming another encoding is
// made to say UTF-8 (a document declared ISO-8859-1 is transcoded, as
// Decode reads it). doc is not modified and the result never aliases it.
func RewriteEvent(doc []byte, rw EventRewrite) ([]byte, error) {
	d := getDoc()
	defer putDoc(d)
	if err := d.scan(doc, rw.Limits); err != nil {
		return nil, err
	}
	src := d.src
	var eds []edit

	// The declaration's encoding: the output is UTF-8 whatever it says.
	if i, j, ok := declEncodingSpan(src); ok {
		switch strings.ToLower(src[i:j]) {
		case "utf-8", "utf8":
		default:
			eds = append(eds, edit{i, j, "UTF-8"})
		}
	}

	root := &d.nodes[0]
	if rw.CrossRefID != "" {
		x := d.child(0, "monitorCrossRefID")
		if x < 0 {
			return nil, ErrNoCrossRefID
		}
		eds = append(eds, d.setText(x, rw.CrossRefID))
	}

	if rw.Device != nil {
		// The root's extensions are a contiguous run of node indexes: from
		// the element itself up to its next sibling.
		extFrom, extTo := int32(-1), int32(-1)
		if x := d.child(0, "extensions"); x >= 0 {
			extFrom, extTo = x, d.nodes[x].next
			if extTo < 0 {
				extTo = int32(len(d.nodes))
			}
		}
		for i := int32(1); i < int32(len(d.nodes)); i++ {
			if i == extFrom {
				i = extTo - 1
				continue
			}
			n := &d.nodes[i]
			var wrapped bool
			switch n.local {
			case "deviceIdentifier", "numberDialed":
				wrapped = true
			case "deviceID", "staticID", "dynamicID":
			default:
				continue
			}
			if n.hasKid {
				continue
			}
			id := d.textOf(i)
			if id == "" {
				continue
			}
			out := rw.Device(id, wrapped)
			switch {
			case out == id:
			case out != "":
				eds = append(eds, d.setText(i, out))
			case wrapped:
				prefix, _, ok := strings.Cut(n.qname, ":")
				if !ok {
					prefix = ""
				} else {
					prefix += ":"
				}
				eds = append(eds, edit{int(n.start), d.elementEnd(i), "<" + prefix + "notKnown/>"})
			}
		}
	}

	if rw.Namespace != "" {
		rootDefault := false
		for _, x := range d.decls {
			if x.elem == 0 && x.prefix == "" {
				rootDefault = true
			}
			if x.uri != rw.Namespace && IsCSTANamespace(x.uri) {
				eds = append(eds, edit{int(x.val[0]), int(x.val[1]), escapeAttr(rw.Namespace)})
			}
		}
		if !rootDefault && root.ns == "" && !strings.Contains(root.qname, ":") {
			at := int(root.start) + 1 + len(root.qname)
			eds = append(eds, edit{at, at, ` xmlns="` + escapeAttr(rw.Namespace) + `"`})
		}
	}

	return splice(src, eds), nil
}

// edit replaces src[from:to] with text.
type edit struct {
	from, to int
	text     string
}

// splice applies edits to src. An edit that starts inside an earlier one
// (a namespace declaration inside an element replaced whole) is dropped.
func splice(src string, eds []edit) []byte {
	slices.SortStableFunc(eds, func(a, b edit) int { return a.from - b.from })
	n := len(src)
	for _, e := range eds {
		n += len(e.text)
	}
	out := make([]byte, 0, n)
	at := 0
	for _, e := range eds {
		if e.from < at {
			continue
		}
		out = append(out, src[at:e.from]...)
		out = append(out, e.text...)
		at = e.to
	}
	return append(out, src[at:]...)
}

// setText returns the edit that makes text (escaped) the whole content of
// leaf element i. A self-closed element is opened and closed around it.
func (d *xdoc) setText(i int32, text string) edit {
	n := &d.nodes[i]
	esc := string(appendEscaped(nil, text, false))
	from, to := int(n.inner[0]), int(n.inner[1])
	if from == to && from >= 2 && d.src[from-2:from] == "/>" {
		return edit{from - 2, from, ">" + esc + "</" + n.qname + ">"}
	}
	return edit{from, to, esc}
}

// elementEnd returns the offset just past element i's end tag.
func (d *xdoc) elementEnd(i int32) int {
	n := &d.nodes[i]
	end := int(n.inner[1])
	if end >= 2 && d.src[end-2:end] == "/>" && n.inner[0] == n.inner[1] {
		return end // self-closed: inner is the offset after "/>"
	}
	if k := strings.IndexByte(d.src[end:], '>'); k >= 0 {
		return end + k + 1
	}
	return len(d.src)
}

// declEncodingSpan finds the encoding value of the XML declaration at the
// start of src (after a byte order mark), quotes excluded.
func declEncodingSpan(src string) (i, j int, ok bool) {
	off := 0
	if strings.HasPrefix(src, "\xef\xbb\xbf") {
		off = 3
	}
	s := src[off:]
	if len(s) < 6 || s[:5] != "<?xml" || (s[5] != ' ' && s[5] != '\t' && s[5] != '\r' && s[5] != '\n') {
		return 0, 0, false
	}
	end := strings.Index(s, "?>")
	if end < 0 {
		return 0, 0, false
	}
	i, j, ok = declValueSpan(s[5:end], "encoding")
	return off + 5 + i, off + 5 + j, ok
}

// escapeAttr escapes s for an attribute value in either kind of quotes.
func escapeAttr(s string) string {
	return strings.ReplaceAll(string(appendEscaped(nil, s, true)), "'", "&apos;")
}
