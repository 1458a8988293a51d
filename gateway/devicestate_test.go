package gateway

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestServiceBook(t *testing.T) {
	b := newServiceBook()
	now := time.Now()
	_, out := b.replay("40001", now)
	assert.False(t, out)

	assert.True(t, b.markOut("40001", "maintenance"))
	assert.False(t, b.markOut("40001", "maintenance"), "already out: no news")
	cause, out := b.replay("40001", now)
	assert.True(t, out)
	assert.Equal(t, "maintenance", cause, "the switch's cause is replayed")
	assert.True(t, b.markIn("40001"))
	assert.False(t, b.markIn("40001"), "already in: no news")
	_, out = b.replay("40001", now)
	assert.False(t, out)

	// The last session left: the gateway stops watching and forgets.
	b.markOut("40002", "")
	b.unwatched("40002", true, now)
	assert.False(t, b.has("40002"))

	// The link died: kept for the sessions' return...
	b.markOut("40003", "")
	b.unwatched("40003", false, now)
	_, out = b.replay("40003", now.Add(serviceMemory/2))
	assert.True(t, out, "a session back within the memory is told")
	// ...and a watch that replays it adopts it: no expiry while watched.
	_, out = b.replay("40003", now.Add(3*serviceMemory))
	assert.True(t, out)

	// Unwatched for longer than the memory: forgotten.
	b.markOut("40004", "")
	b.unwatched("40004", false, now)
	b.unwatched("40004", false, now.Add(serviceMemory)) // the first orphaning counts
	_, out = b.replay("40004", now.Add(serviceMemory+time.Second))
	assert.False(t, out)
	assert.False(t, b.has("40004"))

	// Heard again from the switch: fresh.
	b.markOut("40005", "")
	b.unwatched("40005", false, now)
	b.markOut("40005", "")
	_, out = b.replay("40005", now.Add(2*serviceMemory))
	assert.True(t, out)
}
