package gateway

import (
	"sync"
	"time"
)

// Device service state (issue 17).
//
// A switch says once that a device went out of service (OutOfServiceEvent)
// and once that it is back (BackInServiceEvent), to the monitors it has at
// that moment. A client that signs in later, or whose session is moved to
// another link, monitors the device through a monitor the switch started
// after the event and will not be told again; so the gateway remembers
// which devices are out of service, by PBX device id (not per link
// generation: the monitor that heard it may be gone), and deviceWatch.replay
// tells every session that attaches to a watch of such a device.
//
// The gateway only hears about devices it watches. When it stops watching a
// device because the last session monitoring it left, it forgets the mark:
// the switch would not tell it the device came back. When the watch ended
// because its link or the switch ended it, the sessions are expected back
// (a re-INVITE, a move to another link) and the mark is kept, but not for
// longer than serviceMemory without any watch of the device.

// serviceMemory bounds how long an out-of-service mark outlives every watch
// of its device (the same hour the ghost book keeps calls for).
const serviceMemory = time.Hour

// serviceBook holds the devices the switch said are out of service. Its
// lock is a leaf: taken under deviceWatch.mu and Gateway.mu, never the
// other way round.
type serviceBook struct {
	mu  sync.Mutex
	out map[string]*outOfService // by PBX device id
}

type outOfService struct {
	cause string // the event's cause, replayed as it came
	// orphaned is when the last watch of the device ended without its
	// sessions leaving; zero while a watch hears from the switch.
	orphaned time.Time
}

func newServiceBook() *serviceBook { return &serviceBook{out: map[string]*outOfService{}} }

// markOut records that a device went out of service. It reports whether
// that is news (the gateway did not hold it out of service already).
func (b *serviceBook) markOut(device, cause string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, had := b.out[device]
	b.out[device] = &outOfService{cause: cause}
	return !had
}

// markIn records that a device is back in service, reporting whether that
// is news.
func (b *serviceBook) markIn(device string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, had := b.out[device]
	delete(b.out, device)
	return had
}

// replay reports whether a device is out of service (and the cause), for a
// watch of it that is replaying the device's state to a session: a watch
// hears from the switch again, so an orphaned mark is adopted by it, unless
// it was left without a watch for longer than serviceMemory.
func (b *serviceBook) replay(device string, now time.Time) (cause string, out bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.out[device]
	if m == nil {
		return "", false
	}
	if !m.orphaned.IsZero() {
		if now.Sub(m.orphaned) > serviceMemory {
			delete(b.out, device)
			return "", false
		}
		m.orphaned = time.Time{}
	}
	return m.cause, true
}

func (b *serviceBook) has(device string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out[device] != nil
}

// unwatched applies the end of the last watch of a device: left says its
// last session left, else its link or the switch ended it.
func (b *serviceBook) unwatched(device string, left bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.out[device]
	switch {
	case m == nil:
	case left:
		delete(b.out, device)
	case m.orphaned.IsZero():
		m.orphaned = now
	}
}

// watchEnded is told that a watch of device has ended (and left the
// watches table); left as for serviceBook.unwatched. It matters only for a
// device held out of service, and only when no other watch of the device
// (on another link or generation) is left.
func (g *Gateway) watchEnded(device string, left bool) {
	if !g.service.has(device) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for k := range g.watches {
		if k.device == device {
			return
		}
	}
	g.service.unwatched(device, left, time.Now())
}
