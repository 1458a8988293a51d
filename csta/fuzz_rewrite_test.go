package csta

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/beevik/etree"
)

// FuzzRewriteEvent feeds RewriteEvent what a switch could send. It must
// refuse exactly what Decode refuses, leave a document alone when asked to
// change nothing, and always produce a well-formed document that carries
// the new monitorCrossRefID and the ed3 namespace.
func FuzzRewriteEvent(f *testing.F) {
	for _, files := range []map[string][]byte{readGolden(f), readPassthrough(f)} {
		for _, name := range sortedKeys(files) {
			f.Add(files[name])
		}
	}
	for _, s := range []string{
		`<FooEvent/>`,
		`<FooEvent><monitorCrossRefID/></FooEvent>`,
		`<p:FooEvent xmlns:p="` + NSEd4 + `"><p:monitorCrossRefID>1</p:monitorCrossRefID><p:deviceIdentifier/></p:FooEvent>`,
		`<FooEvent xmlns=""><monitorCrossRefID>1</monitorCrossRefID><d><deviceIdentifier xmlns="` + NSEd5 + `">9</deviceIdentifier></d></FooEvent>`,
	} {
		f.Add([]byte(s))
	}
	const xref = `n<&"'>`
	f.Fuzz(func(t *testing.T, data []byte) {
		_, decErr := Decode(data)
		same, err := RewriteEvent(data, EventRewrite{Device: func(id string, _ bool) string { return id }})
		if (err == nil) != (decErr == nil) {
			t.Fatalf("RewriteEvent error %v, Decode error %v", err, decErr)
		}
		if err != nil {
			var xe *XMLError
			if !errors.As(err, &xe) {
				t.Fatalf("error %T is not an *XMLError: %v", err, err)
			}
			return
		}
		switch strings.ToLower(declEncoding(data)) {
		case "", "utf-8", "utf8":
			if !bytes.Equal(same, data) {
				t.Fatalf("a rewrite that changes nothing changed the document:\n in %q\nout %q", data, same)
			}
		}

		n := 0
		out, err := RewriteEvent(data, EventRewrite{CrossRefID: xref, Namespace: NSEd3, Device: func(id string, _ bool) string {
			n++
			if n%3 == 0 {
				return ""
			}
			return "tel:" + id + "&<>"
		}})
		if errors.Is(err, ErrNoCrossRefID) {
			return
		}
		if err != nil {
			t.Fatalf("second rewrite failed after the first succeeded: %v", err)
		}
		doc := etree.NewDocument()
		if err := doc.ReadFromBytes(out); err != nil {
			t.Fatalf("output is not well-formed (%v):\n in %q\nout %q", err, data, out)
		}
		m, err := DecodeLimits(out, reLimits)
		if err != nil {
			t.Fatalf("output does not decode (%v):\n in %q\nout %q", err, data, out)
		}
		if x := doc.Root().SelectElement("monitorCrossRefID"); x == nil || x.Text() != xref {
			t.Fatalf("monitorCrossRefID not set:\n in %q\nout %q", data, out)
		}
		in, _ := Decode(data)
		if in.Namespace == "" || IsCSTANamespace(in.Namespace) {
			if !(m.Namespace == NSEd3 || (m.Namespace == "" && in.Namespace == "" && strings.Contains(rootQName(out), ":"))) {
				// An unprefixed root without a namespace gets ed3; a
				// prefixed one bound to nothing is left alone.
				if !declaresEmptyDefault(data) {
					t.Fatalf("root namespace %q after rewrite (was %q):\n in %q\nout %q", m.Namespace, in.Namespace, data, out)
				}
			}
		}
	})
}

// rootQName returns the root element's name as written.
func rootQName(doc []byte) string {
	d := getDoc()
	defer putDoc(d)
	if err := d.scan(doc, reLimits); err != nil {
		return ""
	}
	return d.nodes[0].qname
}

// declaresEmptyDefault reports whether the root says xmlns="".
func declaresEmptyDefault(doc []byte) bool {
	d := getDoc()
	defer putDoc(d)
	if err := d.scan(doc, reLimits); err != nil {
		return false
	}
	for _, x := range d.decls {
		if x.elem == 0 && x.prefix == "" && x.uri == "" {
			return true
		}
	}
	return false
}
