package gateway

import "sync"

// mailbox is a session's bounded inbox. Unlike a buffered channel it costs
// nothing until items arrive (a channel of event_queue items would reserve
// tens of kilobytes per session, gigabytes at a full Lync pool's 80,000).
type mailbox struct {
	mu     sync.Mutex
	items  []item
	head   int
	max    int
	signal chan struct{} // one pending wake-up at most
}

func newMailbox(max int) *mailbox {
	return &mailbox{max: max, signal: make(chan struct{}, 1)}
}

// push appends an item; false when the mailbox is full.
func (b *mailbox) push(it item) bool {
	b.mu.Lock()
	if len(b.items)-b.head >= b.max {
		b.mu.Unlock()
		return false
	}
	b.items = append(b.items, it)
	b.mu.Unlock()
	select {
	case b.signal <- struct{}{}:
	default:
	}
	return true
}

// forcePush appends an item whatever the bound (callers bound themselves).
func (b *mailbox) forcePush(it item) {
	b.mu.Lock()
	b.items = append(b.items, it)
	b.mu.Unlock()
	select {
	case b.signal <- struct{}{}:
	default:
	}
}

// pop takes the oldest item, if any.
func (b *mailbox) pop() (item, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.head == len(b.items) {
		if cap(b.items) > 64 {
			b.items = nil // give a burst's memory back
		} else {
			b.items = b.items[:0]
		}
		b.head = 0
		return item{}, false
	}
	it := b.items[b.head]
	b.items[b.head] = item{}
	b.head++
	return it, true
}

// len is the number of waiting items.
func (b *mailbox) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.items) - b.head
}
