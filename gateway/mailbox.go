package gateway

import "sync"

// mailbox is a session's bounded inbox and its run token. An idle session
// has no goroutine: whoever puts an item into a mailbox nobody is draining
// takes the token and drains it (a SIP request on the goroutine sipgo gave
// it, CTI events on a goroutine started for the burst). So 80,000 idle
// sessions cost no stacks, and a request is handled without waking another
// goroutine. Unlike a buffered channel the inbox costs nothing until items
// arrive (a channel of event_queue items would reserve tens of kilobytes
// per session).
type mailbox struct {
	mu      sync.Mutex
	items   []item
	head    int
	max     int
	running bool // the token: someone is draining
}

func newMailbox(max int) *mailbox {
	return &mailbox{max: max}
}

// push appends an item; ok is false when the mailbox is full (force
// ignores the bound: its callers bound themselves). run is true when the
// caller took the token and must drain.
func (b *mailbox) push(it item, force bool) (ok, run bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !force && len(b.items)-b.head >= b.max {
		return false, false
	}
	b.items = append(b.items, it)
	if b.running {
		return true, false
	}
	b.running = true
	return true, true
}

// next takes the oldest item for the token holder; when there is none it
// gives the token back.
func (b *mailbox) next() (item, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.head == len(b.items) {
		if cap(b.items) > 64 {
			b.items = nil // give a burst's memory back
		} else {
			b.items = b.items[:0]
		}
		b.head = 0
		b.running = false
		return item{}, false
	}
	it := b.items[b.head]
	b.items[b.head] = item{}
	b.head++
	if b.head >= 64 && b.head > len(b.items)/2 {
		// Never empty for long: compact, or the array grows for ever.
		n := copy(b.items, b.items[b.head:])
		clear(b.items[n:])
		b.items, b.head = b.items[:n], 0
	}
	return it, true
}
