package gateway

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMailboxToken(t *testing.T) {
	b := newMailbox(2)
	ok, run := b.push(item{kind: itemEvent}, false)
	require.True(t, ok)
	require.True(t, run, "the first item into an idle mailbox takes the token")
	ok, run = b.push(item{kind: itemLink}, false)
	require.True(t, ok)
	require.False(t, run, "the token is taken")
	ok, _ = b.push(item{kind: itemEvent}, false)
	require.False(t, ok, "full")
	ok, run = b.push(item{kind: itemRequest}, true)
	require.True(t, ok, "force ignores the bound")
	require.False(t, run)
	for _, want := range []itemKind{itemEvent, itemLink, itemRequest} {
		it, ok := b.next()
		require.True(t, ok)
		assert.Equal(t, want, it.kind, "in order")
	}
	_, ok = b.next()
	require.False(t, ok, "empty: the token is given back")
	_, run = b.push(item{}, false)
	assert.True(t, run, "and the next item takes it again")
}

// A mailbox that never runs empty still reuses its memory.
func TestMailboxCompacts(t *testing.T) {
	b := newMailbox(1 << 20)
	b.push(item{}, false)
	for range 100000 {
		b.push(item{}, false)
		_, ok := b.next()
		require.True(t, ok)
	}
	assert.LessOrEqual(t, cap(b.items), 256, "grew to %d items for one waiting", cap(b.items))
}

// Many goroutines push at once; whoever gets the token drains. Every item is
// run exactly once and never by two drainers at the same time.
func TestMailboxTokenConcurrent(t *testing.T) {
	b := newMailbox(1 << 20)
	var running, overlap, done atomic.Int64
	drain := func() {
		for {
			// Between an item and the next call the token is held; once
			// next says empty it is not (someone else may take it).
			if _, ok := b.next(); !ok {
				return
			}
			if running.Add(1) > 1 {
				overlap.Add(1)
			}
			done.Add(1)
			running.Add(-1)
		}
	}
	const pushers, each = 8, 5000
	var wg sync.WaitGroup
	for range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, run := b.push(item{kind: itemEvent}, false); run {
					drain()
				}
			}
		}()
	}
	wg.Wait()
	assert.EqualValues(t, pushers*each, done.Load(), "every item run once, none stranded")
	assert.Zero(t, overlap.Load(), "two drainers at once")
}
