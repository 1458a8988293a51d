package sipstack

import (
	"sync"
	"time"
)

// Password guessing and replayed credentials.
//
// failBook counts failed digest authentications per (source, user) and per
// source. After max_failures within failure_window the pair (or the whole
// source) is locked out: its attempts are refused with 403 and Retry-After
// without looking at the password, for a back-off that doubles with every
// lockout of the same key (from lockout, capped at lockout_max). Another
// source is never affected, so the real user keeps signing in from their
// own address; a trusted proxy is counted per user behind it, never as a
// whole.
//
// nonceBook remembers the highest nonce count (nc) used with each nonce:
// RFC 7616 requires nc to grow, so a captured Authorization header replayed
// as it was is stale. Nonces are also bound to the source they were issued
// to and live only nonce_ttl.

// Defaults of the guessing limits (sip.auth).
const (
	DefaultMaxAuthFailures   = 10
	DefaultAuthFailureWindow = time.Minute
	DefaultAuthLockout       = time.Minute
	DefaultAuthLockoutMax    = time.Hour
	// Per source, all users together: this many times max_failures.
	sourceFailureFactor = 5
	// Entries kept at most (each a few hundred bytes); beyond, the oldest
	// idle ones are dropped.
	maxFailEntries  = 100000
	maxNonceEntries = 200000
)

type failEntry struct {
	fails    []time.Time // within the window, oldest first
	until    time.Time   // locked until
	lockouts int
	seen     time.Time
}

type failBook struct {
	max      int
	window   time.Duration
	base     time.Duration
	capDelay time.Duration

	mu sync.Mutex
	m  map[string]*failEntry
}

func newFailBook(max int, window, base, capDelay time.Duration) *failBook {
	if max <= 0 {
		max = DefaultMaxAuthFailures
	}
	if window <= 0 {
		window = DefaultAuthFailureWindow
	}
	if base <= 0 {
		base = DefaultAuthLockout
	}
	if capDelay <= 0 {
		capDelay = DefaultAuthLockoutMax
	}
	return &failBook{max: max, window: window, base: base, capDelay: capDelay, m: map[string]*failEntry{}}
}

func pairKey(src, user string) string { return "u\x00" + src + "\x00" + user }
func srcKey(src string) string        { return "s\x00" + src }

// locked reports how long the pair or the source stays locked (0: not).
func (b *failBook) locked(src, user string, trusted bool, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	left := time.Duration(0)
	if e := b.m[pairKey(src, user)]; e != nil && now.Before(e.until) {
		left = e.until.Sub(now)
	}
	if !trusted {
		if e := b.m[srcKey(src)]; e != nil && now.Before(e.until) {
			left = max(left, e.until.Sub(now))
		}
	}
	return left
}

// fail records a failed attempt and returns the lockout it started (0:
// none), so that a lockout is reported once, not every failure.
func (b *failBook) fail(src, user string, trusted bool, now time.Time) (lockedFor time.Duration, bySource bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d := b.add(pairKey(src, user), b.max, now); d > 0 {
		return d, false
	}
	if !trusted {
		if d := b.add(srcKey(src), b.max*sourceFailureFactor, now); d > 0 {
			return d, true
		}
	}
	return 0, false
}

func (b *failBook) add(key string, limit int, now time.Time) time.Duration {
	e := b.m[key]
	if e == nil {
		if len(b.m) >= maxFailEntries {
			b.prune(now)
		}
		e = &failEntry{}
		b.m[key] = e
	}
	e.seen = now
	cut := 0
	for cut < len(e.fails) && now.Sub(e.fails[cut]) > b.window {
		cut++
	}
	e.fails = append(e.fails[:0], e.fails[cut:]...)
	e.fails = append(e.fails, now)
	if len(e.fails) < limit || now.Before(e.until) {
		return 0
	}
	e.lockouts++
	d := b.base
	for i := 1; i < e.lockouts && d < b.capDelay; i++ {
		d *= 2
	}
	d = min(d, b.capDelay)
	e.until = now.Add(d)
	e.fails = e.fails[:0]
	return d
}

// prune drops entries that are neither locked nor recently used (b.mu
// held); if that frees nothing, it drops anything not locked.
func (b *failBook) prune(now time.Time) {
	for k, e := range b.m {
		if now.After(e.until) && now.Sub(e.seen) > b.window {
			delete(b.m, k)
		}
	}
	for k, e := range b.m {
		if len(b.m) < maxFailEntries {
			return
		}
		if now.After(e.until) {
			delete(b.m, k)
		}
	}
}

// nonceBook tracks the nonce counts used with live nonces.
type nonceBook struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]nonceUse
}

type nonceUse struct {
	nc      uint64
	expires time.Time
}

func newNonceBook(ttl time.Duration) *nonceBook {
	return &nonceBook{ttl: ttl, m: map[string]nonceUse{}}
}

// use records nc for nonce and reports whether it is new: strictly above
// every count used before with that nonce. Without qop there is no count
// and a nonce answers once.
func (b *nonceBook) use(nonce string, count int, qop bool, now time.Time) bool {
	if qop && count <= 0 {
		return false
	}
	nc := uint64(max(count, 0))
	b.mu.Lock()
	defer b.mu.Unlock()
	if u, ok := b.m[nonce]; ok {
		if !qop || nc <= u.nc {
			return false
		}
		u.nc = nc
		b.m[nonce] = u
		return true
	}
	if len(b.m) >= maxNonceEntries {
		for k, u := range b.m {
			if now.After(u.expires) {
				delete(b.m, k)
			}
		}
		if len(b.m) >= maxNonceEntries {
			return false // flooded: the client gets a fresh challenge
		}
	}
	b.m[nonce] = nonceUse{nc: nc, expires: now.Add(b.ttl + time.Minute)}
	return true
}
