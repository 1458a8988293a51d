package csta

// Framing of CSTA XML on a CTI link (docs/wire.md §2.1).
//
// Profile A ("CSTA XML without SOAP", ECMA-323 annex) puts an 8-byte header
// before each XML document:
//
//	bytes 0-3  big-endian length of the whole frame, header included
//	           (on the wire bytes 0-1 are zero for frames below 64 KiB)
//	bytes 4-7  invoke id, four ASCII digits 0000-9999
//	bytes 8-   the XML document
//
// Profile B sends each XML document followed by one NUL byte, with no header
// and no invoke id.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Profile selects the framing of a CTI link.
type Profile int

const (
	// ProfileA is the 8-byte length + invoke id header.
	ProfileA Profile = iota
	// ProfileB is NUL-terminated XML documents.
	ProfileB
)

// String returns "A" or "B".
func (p Profile) String() string {
	switch p {
	case ProfileA:
		return "A"
	case ProfileB:
		return "B"
	}
	return fmt.Sprintf("Profile(%d)", int(p))
}

const (
	// DefaultMaxFrame is the frame size limit used when FrameOptions.MaxFrame
	// is zero: 1 MiB.
	DefaultMaxFrame = 1 << 20

	// FrameHeaderLen is the size of the Profile A header.
	FrameHeaderLen = 8

	// EventInvokeID is the invoke id of unsolicited events.
	EventInvokeID = 9999
	// MaxRequestInvokeID is the largest invoke id the gateway gives its own
	// requests.
	MaxRequestInvokeID = 9998
	// NoInvokeID is the invoke id of frames that carry none (Profile B).
	NoInvokeID = -1

	// frameMinLen is the smallest valid Profile A frame: a header and at
	// least one payload byte.
	frameMinLen = FrameHeaderLen + 1
	// frame16BitMax is the largest length bytes 2-3 alone can hold.
	frame16BitMax = math.MaxUint16
	// frameInitialBuf is the reader's starting buffer size.
	frameInitialBuf = 4096
	// frameMaxEmptyReads is how many (0, nil) reads in a row the reader
	// tolerates before giving up with io.ErrNoProgress.
	frameMaxEmptyReads = 100
)

// Sentinel errors of the framing layer, carried in a *FrameError.
var (
	// ErrFrameHeader: a Profile A header the options reject (nonzero bytes
	// 0-1 with Strict16BitHeader), or a Profile B payload containing a NUL.
	ErrFrameHeader = errors.New("csta: bad frame header")
	// ErrFrameInvokeID: an invoke id that is not four ASCII digits, or one
	// outside 0..9999 given to the writer.
	ErrFrameInvokeID = errors.New("csta: bad invoke id")
	// ErrFrameShort: a Profile A length below 9 (header plus one byte).
	ErrFrameShort = errors.New("csta: frame too short")
	// ErrFrameTooLarge: a frame over the size limit.
	ErrFrameTooLarge = errors.New("csta: frame too large")
)

// FrameError is a framing violation. Err is one of the ErrFrame* sentinels,
// so errors.Is(err, ErrFrameTooLarge) and the like work.
type FrameError struct {
	Err    error
	Detail string
}

// Error returns the sentinel's text followed by the detail.
func (e *FrameError) Error() string {
	if e.Detail == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Detail
}

// Unwrap returns the sentinel.
func (e *FrameError) Unwrap() error { return e.Err }

// frameErr builds a *FrameError.
func frameErr(sentinel error, format string, args ...any) *FrameError {
	return &FrameError{Err: sentinel, Detail: fmt.Sprintf(format, args...)}
}

// FrameOptions configure framing for one link.
type FrameOptions struct {
	// Profile is the framing in use.
	Profile Profile
	// MaxFrame limits a frame: in Profile A the whole frame including the
	// header, in Profile B the document without its NUL. Zero or negative
	// means DefaultMaxFrame.
	MaxFrame int
	// Allow32BitLength lets the writer produce Profile A frames larger than
	// 65,535 bytes, whose length then spills into bytes 0-1. The reader
	// always accepts such lengths unless Strict16BitHeader is set.
	Allow32BitLength bool
	// Strict16BitHeader makes the reader reject Profile A headers whose bytes
	// 0-1 are not zero (ErrFrameHeader), and the writer refuse frames larger
	// than 65,535 bytes even when Allow32BitLength is set.
	Strict16BitHeader bool
}

// frameMax returns the effective size limit.
func (o FrameOptions) frameMax() int {
	if o.MaxFrame <= 0 {
		return DefaultMaxFrame
	}
	return o.MaxFrame
}

// Frame is one decoded frame.
type Frame struct {
	// InvokeID is the header's invoke id (0..9999), or NoInvokeID in
	// Profile B.
	InvokeID int
	// Payload is the XML document. It aliases the reader's buffer and is
	// valid only until the next ReadFrame; copy it to keep it.
	Payload []byte
}

// FrameReader reads frames from a byte stream. It buffers on its own (wrap
// the connection directly, not a bufio.Reader), growing its buffer up to the
// frame limit and reusing it from frame to frame. It is not safe for
// concurrent use.
type FrameReader struct {
	rd    io.Reader
	opt   FrameOptions
	max   int    // effective frame limit
	limit int    // largest buffer ever needed
	buf   []byte // unread data is buf[r:w]
	r, w  int
	scan  int   // Profile B: bytes of buf[r:w] already searched for a NUL
	rerr  error // error from rd, returned once the buffered data is used up
	fail  error // sticky framing error: the stream is unusable
}

// NewFrameReader returns a reader of the frames in r.
func NewFrameReader(r io.Reader, opt FrameOptions) *FrameReader {
	fr := &FrameReader{rd: r, opt: opt, max: opt.frameMax()}
	fr.limit = fr.max
	if opt.Profile == ProfileB {
		fr.limit = fr.max + 1 // room for the terminating NUL
	}
	fr.limit = max(fr.limit, FrameHeaderLen)
	return fr
}

// ReadFrame returns the next frame.
//
// At a frame boundary the end of the stream is io.EOF; inside a frame it is
// io.ErrUnexpectedEOF. Framing violations are a *FrameError: in Profile A a
// length below 9 (ErrFrameShort), a length over the limit (ErrFrameTooLarge,
// found from the header before any of the body is read), an invoke id that is
// not four digits (ErrFrameInvokeID), or nonzero bytes 0-1 under
// Strict16BitHeader (ErrFrameHeader); in Profile B a document longer than the
// limit (ErrFrameTooLarge). After a *FrameError the stream is out of step and
// every later call returns the same error; the caller should close the link.
// Other errors of the underlying reader are returned as they are and a later
// call reads on, so a read deadline can be retried without losing data.
//
// In Profile B, empty documents (keep-alive NULs) and documents of white
// space only are skipped.
func (fr *FrameReader) ReadFrame() (Frame, error) {
	if fr.fail != nil {
		return Frame{}, fr.fail
	}
	switch fr.opt.Profile {
	case ProfileA:
		return fr.frameReadA()
	case ProfileB:
		return fr.frameReadB()
	}
	fr.fail = fmt.Errorf("csta: unknown frame profile %v", fr.opt.Profile)
	return Frame{}, fr.fail
}

// frameReadA reads one Profile A frame.
func (fr *FrameReader) frameReadA() (Frame, error) {
	if err := fr.frameFill(FrameHeaderLen); err != nil {
		return Frame{}, fr.frameEOF(err)
	}
	h := fr.buf[fr.r : fr.r+FrameHeaderLen]
	if fr.opt.Strict16BitHeader && (h[0] != 0 || h[1] != 0) {
		return fr.frameFail(frameErr(ErrFrameHeader, "bytes 0-1 are %02x %02x, want 00 00", h[0], h[1]))
	}
	n := uint64(binary.BigEndian.Uint32(h[:4]))
	switch {
	case n < frameMinLen:
		return fr.frameFail(frameErr(ErrFrameShort, "length %d, want at least %d", n, frameMinLen))
	case n > uint64(fr.max):
		return fr.frameFail(frameErr(ErrFrameTooLarge, "length %d exceeds the limit of %d bytes", n, fr.max))
	}
	id, err := ParseInvokeID(h[4:8])
	if err != nil {
		return fr.frameFail(err)
	}
	size := int(n)
	if err := fr.frameFill(size); err != nil {
		return Frame{}, fr.frameEOF(err)
	}
	start := fr.r
	fr.r += size
	// The capacity is clipped so that appending to a payload cannot
	// overwrite the next frame in the buffer.
	return Frame{InvokeID: id, Payload: fr.buf[start+FrameHeaderLen : fr.r : fr.r]}, nil
}

// frameReadB reads one Profile B document.
func (fr *FrameReader) frameReadB() (Frame, error) {
	for {
		if i := bytes.IndexByte(fr.buf[fr.r+fr.scan:fr.w], 0); i >= 0 {
			end := fr.r + fr.scan + i
			doc := fr.buf[fr.r:end:end]
			fr.r, fr.scan = end+1, 0
			if len(doc) > fr.max {
				return fr.frameFail(frameErr(ErrFrameTooLarge, "document of %d bytes exceeds the limit of %d", len(doc), fr.max))
			}
			if isSpace(doc) {
				continue // keep-alive
			}
			return Frame{InvokeID: NoInvokeID, Payload: doc}, nil
		}
		fr.scan = fr.w - fr.r
		if fr.scan > fr.max {
			return fr.frameFail(frameErr(ErrFrameTooLarge, "no NUL within %d bytes", fr.max))
		}
		if err := fr.frameFill(fr.scan + 1); err != nil {
			if err == io.EOF && isSpace(fr.buf[fr.r:fr.w]) {
				// Trailing white space after the last NUL is not a document.
				fr.r, fr.w, fr.scan = 0, 0, 0
			}
			return Frame{}, fr.frameEOF(err)
		}
	}
}

// frameFill makes at least n bytes (n <= fr.limit) available in buf[r:w],
// reading as much as the buffer has room for in each call to the underlying
// reader. It returns the reader's error once the buffered data is not
// enough, and forgets it, so a later call reads again.
func (fr *FrameReader) frameFill(n int) error {
	empty := 0
	for fr.w-fr.r < n {
		if fr.rerr != nil {
			err := fr.rerr
			fr.rerr = nil
			return err
		}
		if fr.w == len(fr.buf) {
			fr.frameMakeRoom(n)
		}
		m, err := fr.rd.Read(fr.buf[fr.w:])
		if m < 0 || m > len(fr.buf)-fr.w {
			return fmt.Errorf("csta: reader returned an invalid count %d", m)
		}
		fr.w += m
		switch {
		case err != nil:
			fr.rerr = err
		case m == 0:
			if empty++; empty >= frameMaxEmptyReads {
				fr.rerr = io.ErrNoProgress
			}
		default:
			empty = 0
		}
	}
	return nil
}

// frameMakeRoom frees space after buf[w] when the buffer is full and n bytes
// are wanted in buf[r:]: it moves the unread data to the front if n bytes fit
// the buffer, and otherwise grows the buffer, doubling it up to the limit. The
// buffer grows with the data that actually arrives, not with the length a
// header claims, so a peer cannot make the reader allocate MaxFrame bytes by
// sending a header alone.
func (fr *FrameReader) frameMakeRoom(n int) {
	if n <= len(fr.buf) {
		fr.w = copy(fr.buf, fr.buf[fr.r:fr.w])
		fr.r = 0
		return
	}
	size := min(max(2*len(fr.buf), frameInitialBuf), fr.limit)
	nb := make([]byte, size)
	fr.w = copy(nb, fr.buf[fr.r:fr.w])
	fr.buf, fr.r = nb, 0
}

// frameEOF translates an end of stream: io.EOF stays io.EOF only when no
// partial frame is buffered.
func (fr *FrameReader) frameEOF(err error) error {
	if err == io.EOF && fr.w > fr.r {
		return io.ErrUnexpectedEOF
	}
	return err
}

// frameFail records a framing error as final and returns it.
func (fr *FrameReader) frameFail(err error) (Frame, error) {
	fr.fail = err
	return Frame{}, err
}

// AppendFrame appends the frame carrying payload to dst and returns the
// extended slice; on error dst is returned unchanged.
//
// Profile A: invokeID must be 0..9999 (ErrFrameInvokeID) and the payload
// non-empty (ErrFrameShort). A frame over the limit, or over 65,535 bytes
// without Allow32BitLength (or with Strict16BitHeader), is ErrFrameTooLarge.
//
// Profile B: invokeID is ignored; a payload containing a NUL is
// ErrFrameHeader, one longer than the limit ErrFrameTooLarge. An empty
// payload gives a lone NUL, which readers skip as a keep-alive.
func AppendFrame(dst []byte, invokeID int, payload []byte, opt FrameOptions) ([]byte, error) {
	return AppendFrameWith(dst, invokeID, opt, func(b []byte) ([]byte, error) { return append(b, payload...), nil })
}

// AppendFrameWith is AppendFrame with the payload written in place by body
// (an encoder appending to the slice it is given), so a document goes
// straight into its frame without an intermediate buffer. The same checks
// apply; on any error, body's included, dst is returned unchanged.
func AppendFrameWith(dst []byte, invokeID int, opt FrameOptions, body func([]byte) ([]byte, error)) ([]byte, error) {
	limit := opt.frameMax()
	start := len(dst)
	switch opt.Profile {
	case ProfileA:
		if invokeID < 0 || invokeID > EventInvokeID {
			return dst, frameErr(ErrFrameInvokeID, "invoke id %d outside 0..%d", invokeID, EventInvokeID)
		}
		out, err := body(append(dst, 0, 0, 0, 0, 0, 0, 0, 0))
		if err != nil {
			return dst, err
		}
		n := len(out) - start - FrameHeaderLen
		if n == 0 {
			return dst, frameErr(ErrFrameShort, "empty payload")
		}
		if n > limit-FrameHeaderLen {
			return dst, frameErr(ErrFrameTooLarge, "frame of %d bytes exceeds the limit of %d", FrameHeaderLen+n, limit)
		}
		total := FrameHeaderLen + n
		if total > frame16BitMax && (!opt.Allow32BitLength || opt.Strict16BitHeader) {
			return dst, frameErr(ErrFrameTooLarge, "frame of %d bytes needs a 32-bit length, which the link does not allow", total)
		}
		if uint64(total) > math.MaxUint32 {
			return dst, frameErr(ErrFrameTooLarge, "frame of %d bytes does not fit a 32-bit length", total)
		}
		id := FormatInvokeID(invokeID)
		binary.BigEndian.PutUint32(out[start:], uint32(total))
		copy(out[start+4:start+FrameHeaderLen], id[:])
		return out, nil
	case ProfileB:
		out, err := body(dst)
		if err != nil {
			return dst, err
		}
		payload := out[start:]
		if i := bytes.IndexByte(payload, 0); i >= 0 {
			return dst, frameErr(ErrFrameHeader, "payload contains a NUL at offset %d", i)
		}
		if len(payload) > limit {
			return dst, frameErr(ErrFrameTooLarge, "document of %d bytes exceeds the limit of %d", len(payload), limit)
		}
		return append(out, 0), nil
	}
	return dst, fmt.Errorf("csta: unknown frame profile %v", opt.Profile)
}
