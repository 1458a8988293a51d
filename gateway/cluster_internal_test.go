package gateway

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// An on-demand claim looks again just after a dead owner's lease runs out,
// never less often than four times a TTL (a live owner's refresh must show
// between two looks), never in a busy loop.
func TestAdoptPoll(t *testing.T) {
	const ttl = 3 * time.Second
	for _, c := range []struct {
		left, want time.Duration
	}{
		{3 * time.Second, 750 * time.Millisecond},
		{700 * time.Millisecond, 720 * time.Millisecond},
		{200 * time.Millisecond, 220 * time.Millisecond},
		{10 * time.Millisecond, 50 * time.Millisecond},
		{0, 50 * time.Millisecond},
	} {
		assert.Equal(t, c.want, adoptPoll(c.left, ttl), "lease left %v", c.left)
	}
	// Shorter than the refresh period of a live owner for any TTL.
	for _, ttl := range []time.Duration{time.Second, 3 * time.Second, 30 * time.Second} {
		assert.Less(t, adoptPoll(ttl, ttl), ttl/3)
	}
}
