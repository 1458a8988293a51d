package gateway

import (
	"errors"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/ctipool"
)

// liveConfig is what a reload replaces at once: readers load the pointer
// and use that one value for the request at hand.
type liveConfig struct {
	cfg        Config
	dir        *Directory
	num        *numbering
	limits     csta.Limits
	generation int
	loadedAt   time.Time
}

func (g *Gateway) conf() *Config           { return &g.live.Load().cfg }
func (g *Gateway) directory() *Directory   { return g.live.Load().dir }
func (g *Gateway) numbers() *numbering     { return g.live.Load().num }
func (g *Gateway) csLimits() csta.Limits   { return g.live.Load().limits }
func (g *Gateway) configGeneration() int   { return g.live.Load().generation }
func (g *Gateway) configLoaded() time.Time { return g.live.Load().loadedAt }

// ReloadResult says what a reload changed.
type ReloadResult struct {
	Generation int      `json:"generation"`
	Changed    []string `json:"changed"`
	// NeedsRestart names the settings that changed in the file but only
	// take effect at the next start; the rest of the file was applied.
	NeedsRestart    []string `json:"needs_restart,omitempty"`
	SessionsEnded   int      `json:"sessions_ended"`
	MonitorsStopped int      `json:"monitors_stopped"`
	LinksAdded      []string `json:"links_added,omitempty"`
	LinksRemoved    []string `json:"links_removed,omitempty"`
}

// reloadState is the reload bookkeeping (its own lock: one reload at a
// time).
type reloadState struct {
	mu   sync.Mutex // one reload at a time
	path string

	emu       sync.Mutex
	lastError string

	// Under Gateway.mu: removed links waiting for their sessions to move
	// before they close.
	removing map[*ctipool.Link]time.Time
}

// SetConfigPath names the file Reload reads.
func (g *Gateway) SetConfigPath(path string) {
	g.reload.mu.Lock()
	g.reload.path = path
	g.reload.mu.Unlock()
}

// Reload re-reads the configuration file and applies it (SIGHUP, POST
// /reload). A file that does not pass the same checks as -check changes
// nothing: the error is logged, kept for /status and returned.
func (g *Gateway) Reload() (ReloadResult, error) {
	g.reload.mu.Lock()
	path := g.reload.path
	g.reload.mu.Unlock()
	if path == "" {
		return ReloadResult{}, g.reloadFailed(errors.New("no configuration file to reload (the demo runs without one)"))
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		return ReloadResult{}, g.reloadFailed(err)
	}
	return g.Apply(cfg)
}

func (g *Gateway) reloadFailed(err error) error {
	g.reload.emu.Lock()
	g.reload.lastError = err.Error()
	g.reload.emu.Unlock()
	g.metrics.reloads.With("error").Inc()
	g.log.Error().Err(err).Msg("configuration reload refused: the running configuration is unchanged")
	return err
}

// Apply makes cfg the running configuration, live: the directory, number
// rules, limits, log level, trust and CTI links change for the next
// request; sessions that lost their authority end (BYE, audited), monitors
// of lines taken away stop, and a removed link's sessions move to the
// others before it closes. Everything else keeps running untouched.
func (g *Gateway) Apply(cfg Config) (ReloadResult, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return ReloadResult{}, g.reloadFailed(err)
	}
	dir, err := NewDirectory(cfg.Directory)
	if err != nil {
		return ReloadResult{}, g.reloadFailed(err)
	}
	num, err := newNumbering(cfg.Numbering)
	if err != nil {
		return ReloadResult{}, g.reloadFailed(err)
	}
	g.reload.mu.Lock()
	defer g.reload.mu.Unlock()
	old := g.live.Load()
	res := ReloadResult{Generation: old.generation + 1}
	// What cannot change live is kept as it runs and named.
	if g.ldapSrc != nil || cfg.Directory.LDAP != nil {
		// The LDAP source runs with the settings it started with; its
		// users are merged into the new file's.
		keep(&res, "directory.ldap", &cfg.Directory.LDAP, old.cfg.Directory.LDAP)
		if g.ldapSrc != nil {
			dir, _ = mergeDirectory(cfg.Directory, g.ldapSrc.Users())
		}
	}
	keep(&res, "sip.listen", &cfg.SIP.Listen, old.cfg.SIP.Listen)
	keep(&res, "sip.tls", &cfg.SIP.TLS, old.cfg.SIP.TLS)
	keep(&res, "sip.advertise", &cfg.SIP.Advertise, old.cfg.SIP.Advertise)
	keep(&res, "sip.udp_max_message", &cfg.SIP.UDPMaxMessage, old.cfg.SIP.UDPMaxMessage)
	keep(&res, "admin", &cfg.Admin, old.cfg.Admin)
	keep(&res, "cluster", &cfg.Cluster, old.cfg.Cluster)
	keep(&res, "log.format", &cfg.Log.Format, old.cfg.Log.Format)
	keep(&res, "runtime", &cfg.Runtime, old.cfg.Runtime)

	changed := func(name string, a, b any) bool {
		if reflect.DeepEqual(a, b) {
			return false
		}
		res.Changed = append(res.Changed, name)
		return true
	}
	dirChanged := changed("directory", old.cfg.Directory, cfg.Directory)
	changed("numbering", old.cfg.Numbering, cfg.Numbering)
	changed("gateway", old.cfg.Gateway, cfg.Gateway)
	levelChanged := changed("log.level", old.cfg.Log.Level, cfg.Log.Level)
	if changed("sip", old.cfg.SIP, cfg.SIP) {
		if err := g.sip.Reconfigure(cfg.SIP); err != nil {
			return ReloadResult{}, g.reloadFailed(err)
		}
	}
	oldLinks, newLinks := old.cfg.CTI.Links, cfg.CTI.Links
	oc, nc := old.cfg.CTI, cfg.CTI
	oc.Links, nc.Links = nil, nil
	if changed("cti", oc, nc) {
		g.pool.Reconfigure(cfg.CTI)
	}

	if levelChanged { // only now: a reload refused above changes nothing
		setLogLevel(cfg.Log.Level)
	}
	g.live.Store(&liveConfig{cfg: cfg, dir: dir, num: num, limits: csta.Limits{MaxBytes: cfg.SIP.MaxBodyBytes},
		generation: res.Generation, loadedAt: time.Now()})
	g.reload.emu.Lock()
	g.reload.lastError = ""
	g.reload.emu.Unlock()

	res.LinksAdded, res.LinksRemoved = g.applyLinks(oldLinks, newLinks, cfg.CTI)
	if len(res.LinksAdded)+len(res.LinksRemoved) > 0 {
		res.Changed = append(res.Changed, "cti.links")
	}
	if dirChanged {
		res.SessionsEnded, res.MonitorsStopped = g.applyDirectory(dir)
	}
	if res.Changed == nil {
		res.Changed = []string{}
	}
	g.metrics.reloads.With("ok").Inc()
	ev := g.log.Info()
	if len(res.NeedsRestart) > 0 {
		ev = g.log.Warn().Strs("needs_restart", res.NeedsRestart)
	}
	ev.Int("generation", res.Generation).Strs("changed", res.Changed).Strs("links_added", res.LinksAdded).
		Strs("links_removed", res.LinksRemoved).Int("sessions_ended", res.SessionsEnded).
		Int("monitors_stopped", res.MonitorsStopped).Msg("configuration reloaded")
	return res, nil
}

// keep puts back a setting that cannot change while running and, when the
// file changed it, names it in res.NeedsRestart.
func keep[T any](res *ReloadResult, name string, setting *T, running T) {
	if !reflect.DeepEqual(*setting, running) {
		res.NeedsRestart = append(res.NeedsRestart, name)
	}
	*setting = running
}

// setLogLevel applies log.level to every logger of the process: loggers
// are built at trace level and the global level filters (NewLogger).
func setLogLevel(level string) {
	l, err := zerolog.ParseLevel(strings.ToLower(level))
	if err != nil || level == "" {
		l = zerolog.InfoLevel
	}
	zerolog.SetGlobalLevel(l)
}

// applyLinks adds the links that are new and removes the ones that are
// gone; a link whose connection settings changed is removed and added
// again. A removed link leaves placement at once; its sessions move to the
// other links (the scan does it), then it closes.
func (g *Gateway) applyLinks(oldLinks, newLinks []ctipool.LinkConfig, cfg ctipool.Config) (added, removed []string) {
	keep := map[string]bool{}
	for _, n := range newLinks {
		for _, o := range oldLinks {
			if o.Name == n.Name && reflect.DeepEqual(o, n) {
				keep[n.Name] = true
			}
		}
	}
	for _, l := range g.pool.Links() {
		if keep[l.Name()] {
			continue
		}
		g.pool.RemoveLink(l)
		g.mu.Lock()
		g.reload.removing[l] = time.Now()
		g.mu.Unlock()
		removed = append(removed, l.Name())
	}
	for _, n := range newLinks {
		if keep[n.Name] {
			continue
		}
		if g.pool.Link(n.Name) != nil {
			continue
		}
		if _, err := g.pool.AddLink(n, cfg); err != nil {
			g.log.Error().Err(err).Str("link", n.Name).Msg("reload: link not added")
			continue
		}
		added = append(added, n.Name)
	}
	if len(removed) > 0 {
		g.kickContinuity()
	}
	return added, removed
}

// closeRemovedLinks closes removed links once their sessions have moved,
// or when the wait is over (their sessions then fail over like any whose
// link died). Runs from the scan.
func (g *Gateway) closeRemovedLinks(now time.Time) {
	wait := max(4*g.conf().CTI.RequestTimeout, 5*time.Second)
	var done []*ctipool.Link
	g.mu.Lock()
	for l, since := range g.reload.removing {
		if len(g.byLink[l]) == 0 || now.Sub(since) > wait {
			done = append(done, l)
			delete(g.reload.removing, l)
		}
	}
	g.mu.Unlock()
	for _, l := range done {
		go func() {
			g.pool.CloseLink(l)
			g.log.Info().Str("link", l.Name()).Msg("removed CTI link closed")
		}()
	}
}

// applyDirectory ends the sessions whose user is gone or whose sign-in
// line was taken away, and stops the monitors of other lines taken away.
// Sessions whose lines did not change are not touched.
func (g *Gateway) applyDirectory(dir *Directory) (ended, stopped int) {
	all := g.allSessions()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, s := range all {
		lines := dir.Lines(s.user)
		if sameLines(s.linesNow(), lines) {
			continue
		}
		if lines == nil {
			g.audit(s, "user removed from the directory")
			s.close(CloseDirectory, true)
			ended++
			continue
		}
		wg.Add(1)
		done := make(chan int, 1)
		s.deliverForce(item{kind: itemAuthority, lines: lines, result: done})
		go func() {
			defer wg.Done()
			select {
			case n := <-done:
				mu.Lock()
				if n < 0 {
					ended++
				} else {
					stopped += n
				}
				mu.Unlock()
			case <-s.done:
				mu.Lock()
				ended++
				mu.Unlock()
			case <-time.After(g.conf().CTI.RequestTimeout):
			}
		}()
	}
	wg.Wait()
	return ended, stopped
}

func (g *Gateway) audit(s *Session, why string) {
	s.log.Info().Bool("audit", true).Str("user", s.user).Str("line", s.line.URI).Str("result", why).
		Msg("session ended by a configuration change")
}

// linesNow returns the session's line appearances.
func (s *Session) linesNow() []*Line {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lines
}

// sameLines compares two users' line appearances by what they grant.
func sameLines(a, b []*Line) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if lineSig(a[i]) != lineSig(b[i]) {
			return false
		}
	}
	return true
}

func lineSig(l *Line) string {
	var b strings.Builder
	b.WriteString(l.URI)
	b.WriteByte(0)
	b.WriteString(l.Device)
	b.WriteByte(0)
	b.WriteString(l.select_)
	keys := make([]string, 0, len(l.keys))
	for _, k := range l.keys {
		keys = append(keys, k.Number+"\x01"+strings.ToLower(k.Partition))
	}
	sort.Strings(keys)
	b.WriteString(strings.Join(keys, "\x02"))
	return b.String()
}

// onAuthority applies a directory change to the session (run token held):
// the lines it keeps stay the same values (its monitors are untouched),
// new ones are granted, monitors of lines taken away stop with a
// MonitorEnded to the client, and a session whose sign-in line was taken
// away ends. It returns the monitors stopped, or -1 when the session ended.
func (s *Session) onAuthority(lines []*Line) int {
	old := map[string]*Line{}
	for _, l := range s.linesNow() {
		old[lineSig(l)] = l
	}
	next := make([]*Line, 0, len(lines))
	kept := map[*Line]bool{}
	for _, l := range lines {
		if o := old[lineSig(l)]; o != nil {
			next = append(next, o)
			kept[o] = true
		} else {
			next = append(next, l)
		}
	}
	if !kept[s.line] {
		s.g.audit(s, "sign-in line taken away by the directory")
		s.close(CloseDirectory, true)
		return -1
	}
	s.mu.Lock()
	s.lines = next
	var gone []*monitorRef
	for x, m := range s.monitors {
		if !kept[m.line] {
			gone = append(gone, m)
			delete(s.monitors, x)
		}
	}
	s.mu.Unlock()
	for _, m := range gone {
		wasLive := !m.dead
		m.dead = true
		if m.w != nil {
			m.w.detach(m)
		}
		s.g.metrics.monitors.Dec()
		s.log.Info().Bool("audit", true).Str("user", s.user).Str("line", m.line.URI).Str("monitor", m.xref).
			Msg("monitor stopped: line taken away by the directory")
		if wasLive {
			s.sendRaw(&csta.Message{Kind: csta.KindMonitorEndedEvent, MonitorCrossRefID: m.xref, Cause: "normal"})
		}
	}
	return len(gone)
}

// ReloadStatus is the config part of /status.
type ReloadStatus struct {
	Generation int       `json:"generation"`
	LoadedAt   time.Time `json:"loaded_at"`
	LastError  string    `json:"last_error,omitempty"`
}

func (g *Gateway) reloadStatus() ReloadStatus {
	g.reload.emu.Lock()
	defer g.reload.emu.Unlock()
	return ReloadStatus{Generation: g.configGeneration(), LoadedAt: g.configLoaded(), LastError: g.reload.lastError}
}
