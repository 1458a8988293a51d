package csta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// frameRawA builds a Profile A frame by hand: the given length in bytes 0-3,
// the invoke id bytes as they are, then the payload.
func frameRawA(length uint32, invokeID string, payload string) []byte {
	b := binary.BigEndian.AppendUint32(nil, length)
	b = append(b, invokeID...)
	return append(b, payload...)
}

// frameOpenScapePayload returns a 995-byte event payload, so that its frame
// is 1003 bytes long like the OpenScape sample of docs/wire.md §2.1.
func frameOpenScapePayload() []byte {
	const head = `<?xml version="1.0" encoding="UTF-8"?><DeliveredEvent xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed4">` +
		`<monitorCrossRefID>12</monitorCrossRefID><connection><callID>FF000100000000001B5C7E5C8A010000</callID>` +
		`<deviceID>N&lt;+12065550147&gt;</deviceID></connection><alertingDevice><deviceIdentifier>N&lt;+12065550147&gt;</deviceIdentifier></alertingDevice>` +
		`<callingDevice><deviceIdentifier>N&lt;+14255550188&gt;;displayNumber=4255550188;noa=nk</deviceIdentifier></callingDevice>` +
		`<calledDevice><deviceIdentifier>N&lt;+12065550147&gt;</deviceIdentifier></calledDevice>` +
		`<lastRedirectionDevice><notRequired/></lastRedirectionDevice><localConnectionInfo>alerting</localConnectionInfo>` +
		`<cause>newCall</cause><extensions><privateData><private>`
	const tail = `</private></privateData></extensions></DeliveredEvent>`
	pad := 995 - len(head) - len(tail)
	return []byte(head + strings.Repeat(" ", pad) + tail)
}

// frameSamples are frames used by several tests.
var frameSamples = []Frame{
	{InvokeID: 1, Payload: []byte(`<StartApplicationSession xmlns="http://www.ecma-international.org/standards/ecma-354/appl_session"/>`)},
	{InvokeID: EventInvokeID, Payload: frameOpenScapePayload()},
	{InvokeID: 0, Payload: []byte(`<SystemStatus/>`)},
	{InvokeID: MaxRequestInvokeID, Payload: []byte("<a/>")},
	{InvokeID: 42, Payload: []byte("x")}, // the smallest frame: 9 bytes
}

// frameEncodeAll encodes frames one after the other.
func frameEncodeAll(t testing.TB, frames []Frame, opt FrameOptions) []byte {
	var out []byte
	for _, f := range frames {
		var err error
		out, err = AppendFrame(out, f.InvokeID, f.Payload, opt)
		require.NoError(t, err)
	}
	return out
}

// frameReadAll reads frames until an error and returns copies of them and
// that error.
func frameReadAll(r io.Reader, opt FrameOptions) ([]Frame, error) {
	fr := NewFrameReader(r, opt)
	var frames []Frame
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return frames, err
		}
		frames = append(frames, Frame{InvokeID: f.InvokeID, Payload: bytes.Clone(f.Payload)})
	}
}

func TestFrameOpenScapeHeader(t *testing.T) {
	payload := frameOpenScapePayload()
	require.Len(t, payload, 995)
	b, err := AppendFrame(nil, EventInvokeID, payload, FrameOptions{})
	require.NoError(t, err)
	require.Len(t, b, 1003)
	assert.Equal(t, []byte{0x00, 0x00, 0x03, 0xEB, '9', '9', '9', '9'}, b[:8])
	assert.Equal(t, payload, b[8:])
}

func TestFrameRoundTripA(t *testing.T) {
	stream := frameEncodeAll(t, frameSamples, FrameOptions{})
	readers := map[string]func() io.Reader{
		"whole":              func() io.Reader { return bytes.NewReader(stream) },
		"one byte":           func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
		"half":               func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) },
		"data+EOF":           func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) },
		"one byte, data+EOF": func() io.Reader { return iotest.DataErrReader(iotest.OneByteReader(bytes.NewReader(stream))) },
	}
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			got, err := frameReadAll(mk(), FrameOptions{})
			assert.ErrorIs(t, err, io.EOF)
			assert.NotErrorIs(t, err, io.ErrUnexpectedEOF)
			assert.Equal(t, frameSamples, got)
		})
	}
}

func TestFrameReaderSmallMaxGrowsBuffer(t *testing.T) {
	// Frames larger than the initial buffer, and a limit exactly at the
	// largest frame.
	big := bytes.Repeat([]byte("<x/>"), 5000)
	frames := []Frame{{InvokeID: 7, Payload: big}, {InvokeID: 8, Payload: []byte("<y/>")}, {InvokeID: 9, Payload: big[:9000]}}
	opt := FrameOptions{MaxFrame: FrameHeaderLen + len(big)}
	stream := frameEncodeAll(t, frames, opt)
	got, err := frameReadAll(iotest.HalfReader(bytes.NewReader(stream)), opt)
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, frames, got)
}

func TestFrameReaderErrorsA(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		opt   FrameOptions
		good  int   // frames read before the error
		want  error // errors.Is target
	}{
		{"clean EOF on empty stream", nil, FrameOptions{}, 0, io.EOF},
		{"clean EOF after a frame", frameRawA(12, "0001", "<a/>"), FrameOptions{}, 1, io.EOF},
		{"EOF inside the header", []byte{0, 0, 0}, FrameOptions{}, 0, io.ErrUnexpectedEOF},
		{"EOF inside the body", frameRawA(20, "0001", "<a/>"), FrameOptions{}, 0, io.ErrUnexpectedEOF},
		{"EOF inside the second frame", append(frameRawA(12, "0001", "<a/>"), 0, 0), FrameOptions{}, 1, io.ErrUnexpectedEOF},
		{"length 8", frameRawA(8, "0001", "<a/>"), FrameOptions{}, 0, ErrFrameShort},
		{"length 0", frameRawA(0, "0001", ""), FrameOptions{}, 0, ErrFrameShort},
		// Only the header is there: too large must be found without the body.
		{"too large", frameRawA(101, "0001", ""), FrameOptions{MaxFrame: 100}, 0, ErrFrameTooLarge},
		{"too large for the default", frameRawA(DefaultMaxFrame+1, "0001", ""), FrameOptions{}, 0, ErrFrameTooLarge},
		{"32-bit length over the limit", frameRawA(0xFFFFFFFF, "0001", ""), FrameOptions{}, 0, ErrFrameTooLarge},
		{"non-digit invoke id", frameRawA(12, "00a1", "<a/>"), FrameOptions{}, 0, ErrFrameInvokeID},
		{"space in invoke id", frameRawA(12, " 001", "<a/>"), FrameOptions{}, 0, ErrFrameInvokeID},
		{"strict header", frameRawA(0x00010010, "0001", ""), FrameOptions{Strict16BitHeader: true}, 0, ErrFrameHeader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fr := NewFrameReader(bytes.NewReader(tc.input), tc.opt)
			for range tc.good {
				_, err := fr.ReadFrame()
				require.NoError(t, err)
			}
			_, err := fr.ReadFrame()
			require.ErrorIs(t, err, tc.want)
			var fe *FrameError
			if errors.As(err, &fe) {
				assert.NotEmpty(t, fe.Detail)
				assert.True(t, strings.HasPrefix(err.Error(), tc.want.Error()+": "), err.Error())
				// Framing errors are final.
				_, err2 := fr.ReadFrame()
				assert.Same(t, fe, err2)
			}
		})
	}
}

func TestFrameReaderGrowsWithData(t *testing.T) {
	// A header claiming a frame at the limit, followed by little data, must
	// not make the reader allocate the whole frame.
	fr := NewFrameReader(bytes.NewReader(frameRawA(DefaultMaxFrame, "0001", "<a/>")), FrameOptions{})
	_, err := fr.ReadFrame()
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.LessOrEqual(t, len(fr.buf), frameInitialBuf)
}

func TestFrameReader32BitLength(t *testing.T) {
	payload := bytes.Repeat([]byte("a"), 70000)
	_, err := AppendFrame(nil, 1, payload, FrameOptions{})
	require.ErrorIs(t, err, ErrFrameTooLarge)
	_, err = AppendFrame(nil, 1, payload, FrameOptions{Allow32BitLength: true, Strict16BitHeader: true})
	require.ErrorIs(t, err, ErrFrameTooLarge)

	b, err := AppendFrame(nil, 1, payload, FrameOptions{Allow32BitLength: true})
	require.NoError(t, err)
	assert.Equal(t, []byte{0x00, 0x01, 0x11, 0x78}, b[:4]) // 70008

	// The reader accepts it unless it is strict.
	got, err := frameReadAll(bytes.NewReader(b), FrameOptions{})
	assert.ErrorIs(t, err, io.EOF)
	require.Len(t, got, 1)
	assert.Equal(t, payload, got[0].Payload)

	_, err = frameReadAll(bytes.NewReader(b), FrameOptions{Strict16BitHeader: true})
	assert.ErrorIs(t, err, ErrFrameHeader)
}

func TestFrameReaderRetriesAfterReadError(t *testing.T) {
	// iotest.TimeoutReader fails its second read with ErrTimeout and then
	// reads on; the frame in progress must survive the error.
	stream := frameEncodeAll(t, frameSamples[:2], FrameOptions{})
	fr := NewFrameReader(iotest.TimeoutReader(iotest.OneByteReader(bytes.NewReader(stream))), FrameOptions{})
	_, err := fr.ReadFrame()
	require.ErrorIs(t, err, iotest.ErrTimeout)
	for _, want := range frameSamples[:2] {
		f, err := fr.ReadFrame()
		require.NoError(t, err)
		assert.Equal(t, want, f)
	}
	_, err = fr.ReadFrame()
	assert.ErrorIs(t, err, io.EOF)
}

func TestFrameReaderNoProgress(t *testing.T) {
	fr := NewFrameReader(frameZeroReader{}, FrameOptions{})
	_, err := fr.ReadFrame()
	assert.ErrorIs(t, err, io.ErrNoProgress)
}

// frameZeroReader always returns (0, nil).
type frameZeroReader struct{}

func (frameZeroReader) Read([]byte) (int, error) { return 0, nil }

func TestFrameRoundTripB(t *testing.T) {
	opt := FrameOptions{Profile: ProfileB}
	docs := []string{`<a/>`, `<?xml version="1.0"?><b>text</b>`, "\n<c/>"}
	var stream []byte
	for i, d := range docs {
		var err error
		stream, err = AppendFrame(stream, 1234, []byte(d), opt) // invoke id ignored
		require.NoError(t, err)
		if i == 0 {
			stream = append(stream, 0, 0, '\r', '\n', 0) // keep-alives between documents
		}
	}
	stream = append(stream, '\n') // trailing white space is not a document
	assert.Equal(t, "<a/>\x00\x00\x00\r\n\x00<?xml version=\"1.0\"?><b>text</b>\x00\n<c/>\x00\n", string(stream))

	for name, r := range map[string]io.Reader{
		"whole":    bytes.NewReader(stream),
		"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := frameReadAll(r, opt)
			assert.ErrorIs(t, err, io.EOF)
			require.Len(t, got, len(docs))
			for i, d := range docs {
				assert.Equal(t, NoInvokeID, got[i].InvokeID)
				assert.Equal(t, d, string(got[i].Payload))
			}
		})
	}
}

func TestFrameReaderErrorsB(t *testing.T) {
	small := FrameOptions{Profile: ProfileB, MaxFrame: 10}
	tests := []struct {
		name  string
		input string
		opt   FrameOptions
		good  int
		want  error
	}{
		{"clean EOF", "", small, 0, io.EOF},
		{"only keep-alives", "\x00\x00 \x00", small, 0, io.EOF},
		{"document at the limit", "0123456789\x00", small, 1, io.EOF},
		{"document without NUL at EOF", "<a/>\x00<b/>", small, 1, io.ErrUnexpectedEOF},
		{"too large without NUL", "0123456789A", small, 0, ErrFrameTooLarge},
		{"too large with NUL", "0123456789A\x00", small, 0, ErrFrameTooLarge},
		{"too large after a good one", "<a/>\x00" + strings.Repeat("x", 50), small, 1, ErrFrameTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for name, r := range map[string]io.Reader{
				"whole":    strings.NewReader(tc.input),
				"one byte": iotest.OneByteReader(strings.NewReader(tc.input)),
			} {
				got, err := frameReadAll(r, tc.opt)
				assert.ErrorIs(t, err, tc.want, name)
				assert.Len(t, got, tc.good, name)
			}
		})
	}
}

func TestAppendFrameErrors(t *testing.T) {
	a := FrameOptions{}
	b := FrameOptions{Profile: ProfileB}
	tests := []struct {
		name    string
		id      int
		payload []byte
		opt     FrameOptions
		want    error
	}{
		{"negative invoke id", -1, []byte("<a/>"), a, ErrFrameInvokeID},
		{"invoke id over 9999", 10000, []byte("<a/>"), a, ErrFrameInvokeID},
		{"empty payload", 1, nil, a, ErrFrameShort},
		{"over MaxFrame", 1, make([]byte, 93), FrameOptions{MaxFrame: 100}, ErrFrameTooLarge},
		{"over 65535", 1, make([]byte, 65535-7), a, ErrFrameTooLarge},
		{"NUL in profile B", 1, []byte("<a>\x00</a>"), b, ErrFrameHeader},
		{"profile B over MaxFrame", 1, bytes.Repeat([]byte("x"), 11), FrameOptions{Profile: ProfileB, MaxFrame: 10}, ErrFrameTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("keep")
			out, err := AppendFrame(dst, tc.id, tc.payload, tc.opt)
			require.ErrorIs(t, err, tc.want)
			var fe *FrameError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, "keep", string(out))
		})
	}

	// Limits are inclusive.
	out, err := AppendFrame(nil, 1, make([]byte, 92), FrameOptions{MaxFrame: 100})
	require.NoError(t, err)
	assert.Len(t, out, 100)
	out, err = AppendFrame(nil, 1, make([]byte, 65535-8), a)
	require.NoError(t, err)
	assert.Equal(t, []byte{0, 0, 0xFF, 0xFF}, out[:4])
	out, err = AppendFrame([]byte("x"), 5, nil, b)
	require.NoError(t, err)
	assert.Equal(t, "x\x00", string(out), "an empty profile B document is a keep-alive")
}

func TestFrameUnknownProfile(t *testing.T) {
	opt := FrameOptions{Profile: Profile(7)}
	_, err := AppendFrame(nil, 1, []byte("<a/>"), opt)
	assert.ErrorContains(t, err, "Profile(7)")
	_, err = NewFrameReader(strings.NewReader("x"), opt).ReadFrame()
	assert.ErrorContains(t, err, "Profile(7)")
	assert.Equal(t, "A", ProfileA.String())
	assert.Equal(t, "B", ProfileB.String())
}

func TestFrameErrorText(t *testing.T) {
	e := &FrameError{Err: ErrFrameShort, Detail: "length 8"}
	assert.Equal(t, "csta: frame too short: length 8", e.Error())
	assert.Equal(t, "csta: frame too short", (&FrameError{Err: ErrFrameShort}).Error())
	assert.ErrorIs(t, e, ErrFrameShort)
}

// frameCycleReader reads the same bytes over and over.
type frameCycleReader struct {
	data []byte
	off  int
}

func (c *frameCycleReader) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

func BenchmarkReadFrame(b *testing.B) {
	stream := frameEncodeAll(b, frameSamples, FrameOptions{})
	fr := NewFrameReader(&frameCycleReader{data: stream}, FrameOptions{})
	b.SetBytes(int64(len(stream) / len(frameSamples)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fr.ReadFrame(); err != nil {
			b.Fatal(err)
		}
	}
}
