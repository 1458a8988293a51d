package csta

import (
	"testing"

	"github.com/beevik/etree"
)

const benchDelivered = `<?xml version="1.0" encoding="UTF-8"?><DeliveredEvent xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed4"><monitorCrossRefID>a1c07e3b</monitorCrossRefID><connection><callID>0_a1c30a44</callID><deviceID>2101</deviceID></connection><alertingDevice><deviceIdentifier>2101</deviceIdentifier></alertingDevice><callingDevice><deviceIdentifier>14255550188</deviceIdentifier></callingDevice><calledDevice><deviceIdentifier>2101</deviceIdentifier></calledDevice><lastRedirectionDevice><notRequired/></lastRedirectionDevice><localConnectionInfo>alerting</localConnectionInfo><cause>newCall</cause></DeliveredEvent>`

const benchMakeCall = `<?xml version="1.0"?><MakeCall xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed3"><callingDevice>tel:+14255550100;ext=100</callingDevice><calledDirectoryNumber>tel:+14255550188</calledDirectoryNumber><autoOriginate>doNotPrompt</autoOriginate></MakeCall>`

func benchRoundTrip(b *testing.B, doc string) {
	in := []byte(doc)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		m, err := Decode(in)
		if err != nil {
			b.Fatal(err)
		}
		buf, err = AppendEncode(buf[:0], m, NSEd3)
		if err != nil {
			b.Fatal(err)
		}
	}
}

func benchDecode(b *testing.B, doc string) {
	in := []byte(doc)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(in); err != nil {
			b.Fatal(err)
		}
	}
}

func benchEncode(b *testing.B, doc string) {
	m, err := Decode([]byte(doc))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendEncode(buf[:0], m, NSEd3)
	}
}

func BenchmarkDecodeDeliveredEvent(b *testing.B)    { benchDecode(b, benchDelivered) }
func BenchmarkEncodeDeliveredEvent(b *testing.B)    { benchEncode(b, benchDelivered) }
func BenchmarkRoundTripDeliveredEvent(b *testing.B) { benchRoundTrip(b, benchDelivered) }
func BenchmarkDecodeMakeCall(b *testing.B)          { benchDecode(b, benchMakeCall) }
func BenchmarkEncodeMakeCall(b *testing.B)          { benchEncode(b, benchMakeCall) }
func BenchmarkRoundTripMakeCall(b *testing.B)       { benchRoundTrip(b, benchMakeCall) }

// BenchmarkEtreeRoundTripDeliveredEvent is the reference the codec was
// measured against: the same event parsed and written back by etree.
func BenchmarkEtreeRoundTripDeliveredEvent(b *testing.B) {
	in := []byte(benchDelivered)
	b.ReportAllocs()
	for b.Loop() {
		doc := etree.NewDocument()
		if err := doc.ReadFromBytes(in); err != nil {
			b.Fatal(err)
		}
		if _, err := doc.WriteToBytes(); err != nil {
			b.Fatal(err)
		}
	}
}
