package csta

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/beevik/etree"
)

// reLimits bounds the re-decoding of encoder output in the fuzz target. The
// encoder may legitimately produce a document larger than its input (escaping
// '<' read from CDATA as &lt;, wrapping a plain-text device in
// <deviceIdentifier>, writing the full localCallState path of an empty
// snapshot item), so the output is re-read under limits that only guard
// against runaway growth, not under DefaultLimits.
var reLimits = Limits{MaxBytes: 16 << 20, MaxDepth: 64, MaxElements: 1 << 20}

// declaresLatin1 reports whether the decoder will read data as ISO-8859-1.
// etree (encoding/xml with a pass-through CharsetReader) reads such input as
// UTF-8, so the differential check does not apply to it.
func declaresLatin1(data []byte) bool {
	switch strings.ToLower(declEncoding(data)) {
	case "iso-8859-1", "latin1", "latin-1", "iso8859-1":
		return true
	}
	return false
}

func FuzzDecode(f *testing.F) {
	files := readGolden(f)
	for _, name := range sortedKeys(files) {
		f.Add(files[name])
	}
	pass := readPassthrough(f)
	for _, name := range sortedKeys(pass) {
		f.Add(pass[name])
	}
	// A few refusals and edge shapes, so the corpus starts on both sides of
	// every check.
	for _, s := range []string{
		``,
		`<a/>`,
		`<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>`,
		`<CSTAErrorCode><foo>bar</foo></CSTAErrorCode>`,
		`<SnapshotDeviceResponse><crossRefIDorSnapshotData><snapshotData><snapshotDeviceResponseInfo/></snapshotData></crossRefIDorSnapshotData></SnapshotDeviceResponse>`,
		`<GetCSTAFeaturesResponse><supportedServices><x:l xmlns:x="u"><x:i/></x:l></supportedServices></GetCSTAFeaturesResponse>`,
		"\xef\xbb\xbf<MonitorStop><monitorCrossRefID>&#x41;</monitorCrossRefID></MonitorStop>",
	} {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			var xe *XMLError
			if !errors.As(err, &xe) {
				t.Fatalf("Decode error %T is not an *XMLError: %v", err, err)
			}
			if xe.TooLarge() != errors.Is(err, ErrTooLarge) {
				t.Fatalf("TooLarge() disagrees with errors.Is(ErrTooLarge): %v", err)
			}
			return
		}

		// Differential check: whatever we accept, etree (encoding/xml in
		// strict mode) must accept too. We are deliberately stricter in
		// many places (no DTD, ASCII names, declared encodings, text outside
		// the root...), never more lenient.
		if !declaresLatin1(data) {
			doc := etree.NewDocument()
			if err := doc.ReadFromBytes(data); err != nil {
				t.Fatalf("Decode accepted a document etree refuses (%v):\n%q", err, data)
			}
		}

		if m.Kind == KindUnknown {
			if m.Name == "" {
				t.Fatalf("unknown root decoded without a Name: %q", data)
			}
			if _, err := Encode(m, ""); !errors.Is(err, ErrEncodeUnknown) {
				t.Fatalf("Encode(KindUnknown) = %v, want ErrEncodeUnknown", err)
			}
			return
		}

		for _, ns := range []string{m.Namespace, NSEd3} {
			out, err := Encode(m, ns)
			if err != nil {
				t.Fatalf("Encode(%v, %q): %v", m.Kind, ns, err)
			}
			doc := etree.NewDocument()
			if err := doc.ReadFromBytes(out); err != nil {
				t.Fatalf("encoder output is not well-formed (%v):\n%s\ninput: %q", err, out, data)
			}
			m2, err := DecodeLimits(out, reLimits)
			if err != nil {
				t.Fatalf("encoder output does not decode (%v):\n%s\ninput: %q", err, out, data)
			}
			if m2.Kind != m.Kind {
				t.Fatalf("kind changed over a round trip: %v -> %v", m.Kind, m2.Kind)
			}
			out2, err := Encode(m2, ns)
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			if !bytes.Equal(out, out2) {
				t.Fatalf("encode∘decode is not idempotent:\n first %s\nsecond %s\ninput: %q", out, out2, data)
			}
		}
	})
}
