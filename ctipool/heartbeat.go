package ctipool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cstagw/cstagw/csta"
)

// Tick runs one heartbeat check on the link's current connection as of now.
// The link's own ticker calls it several times per interval; tests call it
// directly.
//
//   - Nothing received for two intervals: the link is dead.
//   - Nothing received for one interval and no probe out: send a
//     RequestSystemStatus probe (its answer is traffic, and its round trip is
//     recorded).
//   - With an application session: ResetApplicationSessionTimer every
//     actualSessionDuration/3 whatever the traffic; a refusal kills the link.
func (l *Link) Tick(now time.Time) {
	if c := l.current(); c != nil {
		l.tick(c, now)
	}
}

func (l *Link) tick(c *conn, now time.Time) {
	h := l.conf().HeartbeatInterval
	silence := now.Sub(time.Unix(0, c.lastRx.Load()))
	if silence >= 2*h {
		c.fail(&HeartbeatError{Silence: silence})
		return
	}
	if silence >= h && c.probing.CompareAndSwap(false, true) {
		c.missed.Add(1)
		go l.probe(c)
	}
	if dur := time.Duration(c.sessDur.Load()); c.sessionID != "" && dur > 0 {
		last := time.Unix(0, c.lastReset.Load())
		if now.Sub(last) >= dur/3 && c.resetting.CompareAndSwap(false, true) {
			go l.resetTimer(c)
		}
	}
}

// probe sends one RequestSystemStatus and records the round trip.
func (l *Link) probe(c *conn) {
	defer c.probing.Store(false)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*l.conf().HeartbeatInterval)
	defer cancel()
	resp, err := c.request(ctx, &csta.Message{Kind: csta.KindRequestSystemStatus})
	if err != nil {
		// Silence is judged by Tick; an error answer still proves the
		// switch is alive.
		return
	}
	c.rtt.Store(int64(time.Since(start)))
	if resp.Kind == csta.KindRequestSystemStatusResponse && resp.SystemStatus != "" {
		c.systemStatus(resp.SystemStatus)
	}
}

// resetTimer keeps the application session alive.
func (l *Link) resetTimer(c *conn) {
	defer c.resetting.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), l.conf().RequestTimeout)
	defer cancel()
	resp, err := c.request(ctx, &csta.Message{
		Kind:            csta.KindResetApplicationSessionTimer,
		SessionID:       c.sessionID,
		SessionDuration: int(time.Duration(c.sessDur.Load()) / time.Second),
	})
	if err != nil {
		if c.isDead() {
			return
		}
		// A NegResponse (invalidSessionID, serverCannotResetSessionTimer)
		// means the session is gone or about to be.
		if errors.Is(err, ErrSessionRefused) {
			c.fail(fmt.Errorf("%w: %v", ErrSessionTerminated, err))
		}
		return
	}
	c.lastReset.Store(time.Now().UnixNano())
	if resp.SessionDuration > 0 {
		c.sessDur.Store(int64(time.Duration(resp.SessionDuration) * time.Second))
	}
}

// HeartbeatError is why a silent link was declared dead.
type HeartbeatError struct{ Silence time.Duration }

func (e *HeartbeatError) Error() string {
	return fmt.Sprintf("%v (silent for %v)", ErrHeartbeat, e.Silence.Round(time.Millisecond))
}

func (e *HeartbeatError) Unwrap() error { return ErrHeartbeat }
