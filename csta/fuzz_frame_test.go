package csta

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

// Seed streams for FuzzFrameReader. Files named frames_a*.bin hold Profile A
// streams, frames_b*.bin Profile B streams. TestFrameSeedFiles checks them
// against frameSeedStreams; run it with CSTA_UPDATE_FRAME_SEEDS=1 to rewrite
// them.
const frameSeedGlob = "testdata/frames_*.bin"

// frameSeedStreams builds the seed streams, by file name.
func frameSeedStreams(t testing.TB) map[string][]byte {
	b := FrameOptions{Profile: ProfileB}
	var docsB []byte
	for _, d := range []string{
		`<?xml version="1.0" encoding="UTF-8"?><MonitorStart xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed6"><monitorObject><deviceObject>2101</deviceObject></monitorObject></MonitorStart>`,
		"",
		`<EstablishedEvent xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed6"><monitorCrossRefID>1</monitorCrossRefID></EstablishedEvent>`,
	} {
		var err error
		docsB, err = AppendFrame(docsB, NoInvokeID, []byte(d), b)
		require.NoError(t, err)
	}
	docsB = append(docsB, '\r', '\n', 0)
	return map[string][]byte{
		"testdata/frames_a.bin": frameEncodeAll(t, frameSamples, FrameOptions{}),
		"testdata/frames_b.bin": docsB,
	}
}

func TestFrameSeedFiles(t *testing.T) {
	want := frameSeedStreams(t)
	if os.Getenv("CSTA_UPDATE_FRAME_SEEDS") == "1" {
		for name, data := range want {
			require.NoError(t, os.WriteFile(name, data, 0o644))
		}
	}
	names, err := filepath.Glob(frameSeedGlob)
	require.NoError(t, err)
	require.NotEmpty(t, names)
	for _, name := range names {
		got, err := os.ReadFile(name)
		require.NoError(t, err)
		if w, ok := want[name]; ok {
			require.Equal(t, w, got, "%s is stale: rerun with CSTA_UPDATE_FRAME_SEEDS=1", name)
		}
		// Every seed stream reads to a clean end.
		_, err = frameReadAll(bytes.NewReader(got), frameSeedOptions(name, 0))
		require.ErrorIs(t, err, io.EOF, name)
	}
}

// frameSeedOptions returns the options a seed file is read with, adjusted by
// the fuzz mode bits.
func frameSeedOptions(name string, mode uint8) FrameOptions {
	opt := frameFuzzOptions(mode)
	if strings.HasPrefix(filepath.Base(name), "frames_b") {
		opt.Profile = ProfileB
	}
	return opt
}

// Fuzz mode bits.
const (
	frameFuzzProfileB = 1 << iota // read as Profile B
	frameFuzzSmallMax             // MaxFrame 64
	frameFuzzStrict               // Strict16BitHeader
	frameFuzzOneByte              // feed the reader one byte per Read
)

// frameFuzzOptions turns fuzz mode bits into reader options.
func frameFuzzOptions(mode uint8) FrameOptions {
	var opt FrameOptions
	if mode&frameFuzzProfileB != 0 {
		opt.Profile = ProfileB
	}
	if mode&frameFuzzSmallMax != 0 {
		opt.MaxFrame = 64
	}
	opt.Strict16BitHeader = mode&frameFuzzStrict != 0
	return opt
}

func FuzzFrameReader(f *testing.F) {
	names, err := filepath.Glob(frameSeedGlob)
	require.NoError(f, err)
	for _, name := range names {
		data, err := os.ReadFile(name)
		require.NoError(f, err)
		base := uint8(0)
		if strings.HasPrefix(filepath.Base(name), "frames_b") {
			base = frameFuzzProfileB
		}
		for _, extra := range []uint8{0, frameFuzzSmallMax, frameFuzzStrict, frameFuzzOneByte} {
			f.Add(data, base|extra)
		}
	}
	f.Add(frameRawA(8, "0001", ""), uint8(0))
	f.Add(frameRawA(12, "00a1", "<a/>"), uint8(0))
	f.Add(frameRawA(0x00010010, "0001", "<a/>"), uint8(frameFuzzStrict))
	f.Add([]byte("<a/>\x00\x00<b/>"), uint8(frameFuzzProfileB))
	f.Add(frameRawA(DefaultMaxFrame, "9999", "<a/>"), uint8(0))

	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		opt := frameFuzzOptions(mode)
		var r io.Reader = bytes.NewReader(data)
		if mode&frameFuzzOneByte != 0 {
			r = iotest.OneByteReader(r)
		}
		fr := NewFrameReader(r, opt)
		off := 0 // where the next frame's segment must start in data
		for {
			fm, err := fr.ReadFrame()
			if err != nil {
				frameFuzzCheckEnd(t, data, off, opt, err)
				return
			}
			if len(fm.Payload) > opt.frameMax() {
				t.Fatalf("payload of %d bytes over the limit %d", len(fm.Payload), opt.frameMax())
			}
			enc, err := AppendFrame(nil, fm.InvokeID, fm.Payload, FrameOptions{
				Profile: opt.Profile, MaxFrame: opt.MaxFrame, Allow32BitLength: true,
			})
			if err != nil {
				t.Fatalf("re-encoding a frame read: %v", err)
			}
			if opt.Profile == ProfileB {
				off = frameSkipKeepAlives(data, off)
			}
			if !bytes.HasPrefix(data[off:], enc) {
				t.Fatalf("frame at offset %d re-encodes to %q, input has %q", off, enc, data[off:min(len(data), off+len(enc))])
			}
			off += len(enc)
		}
	})
}

// frameSkipKeepAlives returns the offset after the blank documents (white
// space followed by NUL) that start at data[off:].
func frameSkipKeepAlives(data []byte, off int) int {
	for {
		i := bytes.IndexByte(data[off:], 0)
		if i < 0 || !isSpace(data[off:off+i]) {
			return off
		}
		off += i + 1
	}
}

// frameFuzzCheckEnd checks the error that ended a fuzz read.
func frameFuzzCheckEnd(t *testing.T, data []byte, off int, opt FrameOptions, err error) {
	t.Helper()
	var fe *FrameError
	switch {
	case errors.As(err, &fe):
		if fe.Err != ErrFrameHeader && fe.Err != ErrFrameInvokeID && fe.Err != ErrFrameShort && fe.Err != ErrFrameTooLarge {
			t.Fatalf("FrameError with unknown sentinel: %v", err)
		}
	case err == io.EOF:
		rest := data[off:]
		if opt.Profile == ProfileB {
			rest = bytes.Trim(rest, " \t\r\n\x00")
		}
		if len(rest) != 0 {
			t.Fatalf("io.EOF with %d bytes unread", len(rest))
		}
	case err == io.ErrUnexpectedEOF:
		if off >= len(data) {
			t.Fatalf("io.ErrUnexpectedEOF with nothing left")
		}
	default:
		t.Fatalf("unexpected error %v", err)
	}
}
