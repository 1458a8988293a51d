package gateway

import (
	"context"
	"time"

	"github.com/cstagw/cstagw/gateway/ldapdir"
)

// The directory may come from LDAP / Active Directory as well as from the
// file (directory.ldap). The source refreshes on its own; every refresh
// that changes the users applies like a reload of the directory: new
// users sign in at once, users or lines taken away end exactly their
// sessions or monitors, nobody else notices. Users in directory.users win
// over LDAP's for the same user. A failed refresh keeps the last good copy
// (the source never hands out an empty directory because a search
// failed).

// startLDAP starts the LDAP source, when one is configured, with a first
// load bounded by its timeout.
func (g *Gateway) startLDAP() {
	lc := g.conf().Directory.LDAP
	if lc == nil {
		return
	}
	src, err := ldapdir.NewSource(*lc, g.log.With().Str("component", "ldap").Logger())
	if err != nil {
		g.log.Error().Err(err).Msg("directory.ldap: source not started")
		return
	}
	g.ldapSrc = src
	ctx, cancel := context.WithTimeout(context.Background(), lc.WithDefaults().Timeout+time.Second)
	if err := src.Refresh(ctx); err != nil {
		g.log.Error().Err(err).Msg("directory.ldap: first load failed; serving the file's users until LDAP answers")
	}
	cancel()
	g.applyLDAP(src.Users())
	src.OnChange = g.applyLDAP
	rctx, rcancel := context.WithCancel(context.Background())
	g.ldapStop = rcancel
	go src.Run(rctx)
}

// applyLDAP merges LDAP's users with the file's and applies the result as
// the running directory.
func (g *Gateway) applyLDAP(users []ldapdir.User) {
	g.reload.mu.Lock()
	defer g.reload.mu.Unlock()
	cur := g.live.Load()
	dir, skipped := mergeDirectory(cur.cfg.Directory, users)
	if skipped > 0 {
		g.log.Warn().Int("skipped", skipped).Msg("directory.ldap: users whose lines do not parse were left out")
	}
	next := *cur
	next.dir = dir
	g.live.Store(&next)
	ended, stopped := g.applyDirectory(dir)
	g.log.Info().Int("ldap_users", len(users)).Int("sessions_ended", ended).Int("monitors_stopped", stopped).
		Msg("directory refreshed from LDAP")
}

// mergeDirectory builds the directory of the file's users plus LDAP's
// (the file wins for the same user); LDAP users that do not make a valid
// directory entry are left out and counted. The whole directory is built
// once; users are checked one by one only when that fails.
func mergeDirectory(file DirectoryConfig, users []ldapdir.User) (*Directory, int) {
	have := map[string]bool{}
	for _, u := range file.Users {
		have[normUser(u.URI)] = true
	}
	var extra []UserConfig
	for _, u := range users {
		if have[normUser(u.URI)] {
			continue
		}
		have[normUser(u.URI)] = true
		uc := UserConfig{URI: u.URI}
		for _, l := range u.Lines {
			uc.Lines = append(uc.Lines, LineConfig{Line: l.Line, Device: l.Device})
		}
		extra = append(extra, uc)
	}
	all := append(append([]UserConfig(nil), file.Users...), extra...)
	if dir, err := NewDirectory(DirectoryConfig{Users: all}); err == nil {
		return dir, 0
	}
	skipped := 0
	all = append([]UserConfig(nil), file.Users...)
	for _, uc := range extra {
		if _, err := NewDirectory(DirectoryConfig{Users: []UserConfig{uc}}); err != nil {
			skipped++
			continue
		}
		all = append(all, uc)
	}
	dir, err := NewDirectory(DirectoryConfig{Users: all})
	if err != nil {
		// The file's part was validated; keep the file's directory
		// whatever happens.
		dir, _ = NewDirectory(file)
	}
	return dir, skipped
}

// stopLDAP ends the refresh loop.
func (g *Gateway) stopLDAP() {
	if g.ldapStop != nil {
		g.ldapStop()
	}
}
