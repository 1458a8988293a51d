package ctipool

import (
	"math/rand/v2"
	"time"
)

// backoff is the reconnect policy: capped exponential backoff with jitter
// for max_retries consecutive failures, then one hold-off period, then the
// same again.
type backoff struct {
	cfg      ReconnectConfig
	failures int // consecutive failures since the last success or hold-off
	rnd      func() float64
}

func newBackoff(cfg ReconnectConfig) *backoff {
	return &backoff{cfg: cfg, rnd: rand.Float64}
}

// next records a failure and returns how long to wait before the next try,
// and whether that wait is the hold-off.
func (b *backoff) next() (time.Duration, bool) {
	b.failures++
	if b.failures > b.cfg.MaxRetries {
		b.failures = 0
		return b.cfg.HoldOff, true
	}
	d := b.cfg.InitialBackoff
	for i := 1; i < b.failures && d < b.cfg.MaxBackoff; i++ {
		d *= 2
	}
	if d > b.cfg.MaxBackoff {
		d = b.cfg.MaxBackoff
	}
	// Equal jitter: half fixed, half random, so a fleet of gateways that
	// lost the same CTI server does not come back in lockstep.
	half := d / 2
	return half + time.Duration(b.rnd()*float64(d-half)), false
}

// reset forgets past failures after a successful connection.
func (b *backoff) reset() { b.failures = 0 }
