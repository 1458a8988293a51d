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

// A renewed lease is told from one running down by the time since the
// first look, whatever the rhythm of the looks.
func TestLeaseRefreshed(t *testing.T) {
	const s = time.Second
	// Running down: 3 s left, 1.2 s later 1.8 s or a little less.
	assert.False(t, leaseRefreshed(3*s, 1800*time.Millisecond, 1200*time.Millisecond))
	assert.False(t, leaseRefreshed(3*s, 1700*time.Millisecond, 1200*time.Millisecond))
	// Renewed 1 s after the first look (TTL 3 s), seen 1.2 s after it:
	// 2.8 s left, where an untouched lease had at most 1.8 s.
	assert.True(t, leaseRefreshed(3*s, 2800*time.Millisecond, 1200*time.Millisecond))
	// Renewed just before the first look, seen after a slow look (the
	// looks 1.1 s apart, more than a third of the TTL): the old rule
	// (more left than at the look before) missed this.
	assert.True(t, leaseRefreshed(2900*time.Millisecond, 2100*time.Millisecond, 1100*time.Millisecond))
}
