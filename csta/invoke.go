package csta

// Invoke ids (docs/wire.md §2.4): the gateway numbers its requests on a link
// 0000..9998, wrapping around and skipping ids still outstanding; 9999 is
// reserved for unsolicited events.

import (
	"errors"
	"fmt"
)

// ErrNoInvokeID is returned by InvokeIDs.Next when every request id is taken.
var ErrNoInvokeID = errors.New("csta: every invoke id is outstanding")

// invokeIDCount is the number of ids available to requests (0..9998).
const invokeIDCount = MaxRequestInvokeID + 1

// InvokeIDs hands out request invoke ids for one link. The zero value is
// ready to use and starts at 0. It is not safe for concurrent use: the link
// calls it under the same lock that guards its table of outstanding requests.
type InvokeIDs struct {
	next int // the id to try first; always in 0..MaxRequestInvokeID
}

// Next returns the next id in 0..9998 order, wrapping after 9998, skipping
// every id for which inUse reports true (inUse may be nil). When all 9,999
// ids are in use it returns ErrNoInvokeID and its position is unchanged.
func (a *InvokeIDs) Next(inUse func(id int) bool) (int, error) {
	for i := 0; i < invokeIDCount; i++ {
		id := (a.next + i) % invokeIDCount
		if inUse != nil && inUse(id) {
			continue
		}
		a.next = (id + 1) % invokeIDCount
		return id, nil
	}
	return 0, ErrNoInvokeID
}

// FormatInvokeID renders an invoke id as four zero-padded ASCII digits. Ids
// outside 0..9999 are reduced modulo 10,000 into that range (so -1, i.e.
// NoInvokeID, renders as 9999); it never panics.
func FormatInvokeID(id int) [4]byte {
	v := id % 10000
	if v < 0 {
		v += 10000
	}
	var b [4]byte
	for i := 3; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}

// ParseInvokeID parses exactly four ASCII digits. Anything else is a
// *FrameError wrapping ErrFrameInvokeID.
func ParseInvokeID(b []byte) (int, error) {
	if len(b) != 4 {
		return 0, frameErr(ErrFrameInvokeID, "invoke id %q is not 4 bytes long", frameQuote(b))
	}
	id := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, frameErr(ErrFrameInvokeID, "invoke id %q is not 4 ASCII digits", b)
		}
		id = id*10 + int(c-'0')
	}
	return id, nil
}

// frameQuote returns at most 16 bytes of b for an error message.
func frameQuote(b []byte) string {
	const limit = 16
	if len(b) > limit {
		return fmt.Sprintf("%s...", b[:limit])
	}
	return string(b)
}
