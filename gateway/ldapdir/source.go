package ldapdir

import (
	"context"
	"reflect"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// SourceName is the value of the source label of
// cstagw_directory_source_up for this package's Source.
const SourceName = "ldap"

// downRetry caps the wait between attempts while the server is failing, so
// that the directory catches up soon after an outage even with a long
// refresh.
const downRetry = 30 * time.Second

// Source keeps the last directory that loaded and refreshes it every
// Config.Refresh. A failed load never replaces it: until the next success
// the previous users stay (an outage is logged once, and Up reports false).
type Source struct {
	cfg Config
	log zerolog.Logger
	// OnChange is called, from the refreshing goroutine, after a successful
	// load whose users differ from the previous ones (the first success
	// included). Set it before Refresh or Run; it must not block for long.
	OnChange func([]User)

	load func(context.Context) (Result, error) // Config.Search; tests swap it

	refreshMu sync.Mutex // one load at a time

	mu          sync.Mutex
	users       []User
	loaded      bool
	up          bool
	lastSuccess time.Time
	lastErr     error
	downSince   time.Time
	last        Result // counts of the last success
}

// NewSource checks cfg (defaults applied) and returns a Source that has
// loaded nothing yet: call Refresh for a first load, then Run.
func NewSource(cfg Config, log zerolog.Logger) (*Source, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate("directory.ldap"); err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, log: log.With().Str("directory_source", SourceName).Logger()}
	s.load = cfg.Search
	return s, nil
}

// Name is the source label.
func (s *Source) Name() string { return SourceName }

// Refresh loads the directory now. On success it stores the users, marks
// the source up and calls OnChange if they changed; on failure it keeps the
// previous users, marks the source down and returns the error (a
// *LoadError). The load is bounded by the larger of Refresh and a minute,
// and by ctx.
func (s *Source) Refresh(ctx context.Context) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	limit := s.cfg.Refresh
	if limit < time.Minute {
		limit = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	start := time.Now()
	r, err := s.load(ctx)
	took := time.Since(start)

	s.mu.Lock()
	if err != nil {
		firstFailure := s.downSince.IsZero() // log once per outage
		s.up = false
		s.lastErr = err
		if s.downSince.IsZero() {
			s.downSince = start
		}
		keeping := len(s.users)
		s.mu.Unlock()
		if firstFailure {
			s.log.Error().Err(err).Int("users_kept", keeping).
				Msg("directory source down: keeping the last good directory until a search succeeds")
		} else {
			s.log.Debug().Err(err).Msg("directory source still down")
		}
		return err
	}
	changed := !s.loaded || !reflect.DeepEqual(s.users, r.Users)
	wasDown := !s.downSince.IsZero()
	outage := time.Duration(0)
	if wasDown {
		outage = time.Since(s.downSince)
	}
	s.users = r.Users
	s.loaded = true
	s.up = true
	s.lastErr = nil
	s.lastSuccess = time.Now()
	s.downSince = time.Time{}
	s.last = r
	s.last.Users = nil
	cb := s.OnChange
	s.mu.Unlock()

	ev := s.log.Debug()
	if wasDown {
		ev = s.log.Info().Dur("outage", outage)
	} else if changed {
		ev = s.log.Info()
	}
	ev.Int("users", len(r.Users)).Int("lines", r.Lines).Int("entries", r.Entries).
		Int("skipped", r.Skipped).Int("skipped_lines", r.SkippedLines).Strs("skipped_examples", r.Examples).
		Bool("changed", changed).Dur("took", took).Msg("directory loaded")
	if changed && cb != nil {
		cb(r.Users)
	}
	return nil
}

// Run refreshes until ctx ends: at once if no load has succeeded yet, then
// every Refresh (every 30 s at most while the server is failing).
func (s *Source) Run(ctx context.Context) {
	wait := time.Duration(0)
	if s.Loaded() {
		wait = s.cfg.Refresh
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.Refresh(ctx)
		if ctx.Err() != nil {
			return
		}
		wait = s.cfg.Refresh
		if err != nil && wait > downRetry {
			wait = downRetry
		}
		t.Reset(wait)
	}
}

// Users is the last good directory (nil before the first success). The
// slice is shared: do not modify it.
func (s *Source) Users() []User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users
}

// Loaded reports whether a load has ever succeeded.
func (s *Source) Loaded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loaded
}

// Up reports whether the last load succeeded
// (cstagw_directory_source_up{source="ldap"}).
func (s *Source) Up() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up
}

// LastSuccess is when a load last succeeded (zero if never).
func (s *Source) LastSuccess() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSuccess
}

// LastError is the error of the last load, nil after a success.
func (s *Source) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Counts are the entry, line and skip counts of the last success.
func (s *Source) Counts() Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}
