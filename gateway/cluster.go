package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/gateway/cluster"
	"github.com/cstagw/cstagw/sipstack"
)

// Cluster mode (a `cluster` section): the node writes each session to the
// shared store on sign-in, monitor start and stop, a move and its end, and
// holds a lease there. When another node's lease expires this node claims
// a share of its sessions, rebuilds their dialogs and moves them onto its
// own CTI links (move.go, reason "adopt"): the clients keep their dialogs
// and monitorCrossRefIDs and see one SystemStatus. A request that reaches
// this node for a dialog it does not have claims that dialog at once when
// its owner is gone. SIGTERM or POST /drain releases the node's sessions
// to the others before it exits. docs/cluster.md has the whole design.

// sessionRecord is what the store keeps of a session.
type sessionRecord struct {
	Dialog   sipstack.DialogState `json:"d"`
	User     string               `json:"u"`
	Line     string               `json:"l"` // the sign-in line as the client spelled it
	Link     string               `json:"k"`
	Created  int64                `json:"c"`
	Monitors []monitorRecord      `json:"m,omitempty"`
}

// monitorRecord is one monitor as the client knows it.
type monitorRecord struct {
	Xref   string `json:"x"`
	Line   string `json:"l"` // as the client spelled it
	Device string `json:"v"`
}

// How a session came to this node (the label of cstagw_cluster_adopted_total).
const (
	adoptTakeover = "takeover"  // its node's lease expired
	adoptOnDemand = "on_demand" // a request for it arrived here first
	adoptDrained  = "drained"   // its node released it while draining
	adoptRestart  = "restart"   // this node's previous run owned it
	adoptOrphan   = "orphan"    // ours in the store, not served here (a lost claim answer)
)

// clusterNode is the gateway's side of the cluster.
type clusterNode struct {
	g   *Gateway
	st  *cluster.Store
	cfg cluster.Config

	storeUp  atomic.Bool
	held     atomic.Bool  // we hold our lease (as of the last round trip)
	leaseOK  atomic.Int64 // unix ns when the last successful acquire/refresh was sent
	verified atomic.Bool  // after (re)acquiring, our sessions were checked
	epoch    atomic.Int64 // lease acquisitions: only the latest one's check counts
	// lapsed: events were held back or requests refused while not
	// serving; the next good refresh sends every session a resync.
	lapsed atomic.Bool
	settle atomic.Int64 // unix ns before which no other node's sessions are claimed

	mu    sync.Mutex
	dirty map[*Session]struct{}
	dels  map[string]int64 // Call-ID → generation to delete
	kick  chan struct{}

	adoptSem chan struct{} // adoptions in flight (their moves pace on admission)
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

func newClusterNode(g *Gateway, cfg cluster.Config, sipURI string) (*clusterNode, error) {
	cfg = cfg.WithDefaults()
	st, err := cluster.Open(cfg, sipURI)
	if err != nil {
		return nil, err
	}
	return &clusterNode{g: g, st: st, cfg: cfg, dirty: map[*Session]struct{}{}, dels: map[string]int64{},
		kick: make(chan struct{}, 1), adoptSem: make(chan struct{}, 1024)}, nil
}

// serving reports whether this node may serve its sessions: it holds its
// lease, refreshed recently enough that no other node can have claimed
// them (a claim needs the lease expired; a third of the TTL is kept as a
// margin for clocks and round trips).
func (c *clusterNode) serving() bool {
	if !c.held.Load() || !c.verified.Load() {
		return false
	}
	return time.Since(time.Unix(0, c.leaseOK.Load())) < c.cfg.LeaseTTL*2/3
}

func (c *clusterNode) start() {
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	c.wg.Add(3)
	go c.leaseLoop(ctx)
	go c.writeLoop(ctx)
	go c.claimLoop(ctx)
}

// close stops the loops; with drop, the lease is dropped too, so what the
// node still owns is taken over without waiting for the TTL.
func (c *clusterNode) close(drop bool) {
	if c.stop != nil {
		c.stop()
		c.wg.Wait()
	}
	if drop {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := c.st.DropLease(ctx); err != nil {
			c.g.log.Warn().Err(err).Msg("cluster: could not drop the lease: the other nodes wait for its TTL")
		}
		cancel()
	}
	_ = c.st.Close()
}

func (c *clusterNode) setStoreUp(up bool, err error) {
	if c.storeUp.Swap(up) != up {
		if up {
			c.g.log.Info().Msg("cluster: store reachable")
		} else {
			c.g.log.Error().Err(err).Msg("cluster: store unreachable: serving our sessions from memory, adopting nothing")
		}
	}
	v := 0.0
	if up {
		v = 1
	}
	c.g.metrics.storeUp.Set(v)
}

// leaseLoop acquires and refreshes the lease every TTL/3.
func (c *clusterNode) leaseLoop(ctx context.Context) {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.LeaseTTL / 3)
	defer t.Stop()
	first := true
	for {
		c.leaseRound(ctx, &first)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *clusterNode) leaseRound(ctx context.Context, first *bool) {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.LeaseTTL/3)
	defer cancel()
	sent := time.Now()
	if c.held.Load() {
		held, err := c.st.RefreshLease(rctx)
		if err != nil {
			c.setStoreUp(false, err)
			return
		}
		c.setStoreUp(true, nil)
		if held {
			c.leaseOK.Store(sent.UnixNano())
			if c.verified.Load() && c.lapsed.Swap(false) {
				// Not serving for a moment (refreshes late), the lease
				// kept: tell the clients what they missed.
				c.resyncAll()
			}
			return
		}
		// Expired under us (a pause, a partition, a store restart):
		// others may have claimed our sessions; stop serving until we
		// know which are still ours.
		c.held.Store(false)
		c.verified.Store(false)
		c.g.log.Warn().Msg("cluster: our lease expired: not serving until it is back and our sessions are checked")
	}
	ok, err := c.st.AcquireLease(rctx)
	if err != nil {
		c.setStoreUp(false, err)
		return
	}
	c.setStoreUp(true, nil)
	if !ok {
		if *first {
			c.g.log.Info().Msg("cluster: our node id's lease is still held (a previous run?): waiting for it to expire")
		}
		return
	}
	c.leaseOK.Store(sent.UnixNano())
	c.held.Store(true)
	// Other nodes get a TTL to take their leases back after an outage of
	// the store before we treat them as dead.
	c.settle.Store(time.Now().Add(c.cfg.LeaseTTL).UnixNano())
	wasFirst := *first
	*first = false
	epoch := c.epoch.Add(1)
	go func() {
		if wasFirst {
			// What an earlier run of this node owned is set aside before
			// anything of this run is written, then taken back.
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			n, err := c.st.TakeOverPrevious(pctx)
			cancel()
			c.verify(ctx, false, epoch)
			if err == nil && n > 0 {
				c.claimAll(ctx, c.st.Node(), adoptRestart, int(n))
			}
			return
		}
		c.verify(ctx, true, epoch)
	}()
}

// verify checks, after the lease was (re)acquired, that every session in
// memory is still ours (writes fail for those another node claimed: they
// are let go), then serves again. With resync (the lease had been lost,
// events were held back) each session kept is sent its lines' calls as
// they are now and one SystemStatus normal.
func (c *clusterNode) verify(ctx context.Context, resync bool, epoch int64) {
	all := c.g.allSessions()
	if len(all) > 0 {
		c.g.log.Info().Int("sessions", len(all)).Msg("cluster: lease acquired: checking our sessions are still ours")
	}
	for len(all) > 0 && ctx.Err() == nil && c.epoch.Load() == epoch {
		var err error
		if all, err = c.writeAll(ctx, all); err != nil {
			time.Sleep(c.cfg.LeaseTTL / 3)
		}
	}
	if c.epoch.Load() != epoch || ctx.Err() != nil {
		return // a later acquisition checks again
	}
	c.verified.Store(true)
	c.g.log.Info().Msg("cluster: serving")
	if resync {
		c.lapsed.Store(false)
		c.resyncAll()
	}
}

// resyncAll sends every session its lines' calls and SystemStatus normal.
func (c *clusterNode) resyncAll() {
	for _, s := range c.g.allSessions() {
		s.deliverForce(item{kind: itemResync})
	}
}

// resync tells the client the truth after events were held back: each
// monitored line's calls as after MonitorStart, then SystemStatus normal.
// (A call shown before and ended meanwhile is not cleared: nobody kept
// what was shown; see docs/cluster.md.)
func (s *Session) resync() {
	for _, m := range s.liveMonitors() {
		for _, ev := range m.w.current() {
			s.sendEvent(m, ev)
		}
	}
	s.sendRaw(&csta.Message{Kind: csta.KindSystemStatus, SystemStatus: "normal"})
}

// markDirty queues a session's state for the store.
func (c *clusterNode) markDirty(s *Session) {
	c.mu.Lock()
	c.dirty[s] = struct{}{}
	c.mu.Unlock()
	c.wake()
}

// wake tells the writer there is something to write.
func (c *clusterNode) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// ended forgets a session in the store, unless another node has it now
// or the node is stopping (then it stays for whoever takes it over).
func (c *clusterNode) ended(s *Session, reason CloseReason) {
	s.mu.Lock()
	gen := s.cgen
	s.mu.Unlock()
	c.mu.Lock()
	delete(c.dirty, s)
	if gen != 0 && reason != CloseHandedOff && reason != CloseShutdown {
		c.dels[s.dlg.CallID()] = gen
	}
	c.mu.Unlock()
	c.wake()
}

// writeLoop sends what changed, in pipelined batches.
func (c *clusterNode) writeLoop(ctx context.Context) {
	defer c.wg.Done()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-retry.C:
		}
		sess := c.takeDirty()
		c.mu.Lock()
		dels := c.dels
		c.dels = map[string]int64{}
		c.mu.Unlock()
		var failed bool
		if len(dels) > 0 {
			ws := make([]cluster.Write, 0, len(dels))
			for id, gen := range dels {
				ws = append(ws, cluster.Write{CallID: id, Gen: gen, Delete: true})
			}
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if _, err := c.st.Apply(wctx, ws); err != nil {
				failed = true
				c.mu.Lock()
				for id, gen := range dels {
					if _, again := c.dels[id]; !again {
						c.dels[id] = gen
					}
				}
				c.mu.Unlock()
			}
			cancel()
		}
		if rest, err := c.writeAll(ctx, sess); err != nil {
			failed = true
			c.mu.Lock()
			for _, s := range rest {
				c.dirty[s] = struct{}{}
			}
			c.mu.Unlock()
		}
		if failed {
			retry.Reset(c.cfg.LeaseTTL / 3)
		}
	}
}

// takeDirty empties the set of sessions waiting to be written.
func (c *clusterNode) takeDirty() []*Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Session, 0, len(c.dirty))
	for s := range c.dirty {
		out = append(out, s)
	}
	clear(c.dirty)
	return out
}

// writeAll writes sessions 256 to a pipeline; on a failure it returns
// those not written yet.
func (c *clusterNode) writeAll(ctx context.Context, sess []*Session) ([]*Session, error) {
	for len(sess) > 0 && ctx.Err() == nil {
		n := min(256, len(sess))
		if err := c.write(ctx, sess[:n]); err != nil {
			return sess, err
		}
		sess = sess[n:]
	}
	return sess, ctx.Err()
}

// write stores sessions (creating those never written); a session the
// store says is another node's now is let go here.
func (c *clusterNode) write(ctx context.Context, sess []*Session) error {
	ws := make([]cluster.Write, 0, len(sess))
	keep := sess[:0:0]
	for _, s := range sess {
		if s.State() == StateClosed {
			continue
		}
		data, gen := s.record()
		ws = append(ws, cluster.Write{CallID: s.dlg.CallID(), Gen: gen, Data: data})
		keep = append(keep, s)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	gens, err := c.st.Apply(wctx, ws)
	if err != nil {
		c.setStoreUp(false, err)
		return err
	}
	c.setStoreUp(true, nil)
	c.g.metrics.storeWrites.Add(float64(len(ws)))
	for i, s := range keep {
		if gens[i] == 0 {
			c.g.metrics.clusterLost.Inc()
			s.log.Warn().Msg("cluster: another node owns this session now: letting it go (no BYE)")
			s.dlg.Release()
			continue
		}
		s.mu.Lock()
		s.cgen = gens[i]
		closed := s.state == StateClosed
		reason := s.reason
		s.mu.Unlock()
		if closed {
			c.ended(s, reason) // it ended while being written
		}
	}
	return nil
}

// record snapshots a session for the store.
func (s *Session) record() ([]byte, int64) {
	rec := sessionRecord{Dialog: s.dlg.State(), User: s.user, Line: s.lineText, Created: s.created.Unix()}
	s.g.mu.Lock()
	rec.Link = s.link.Name()
	s.g.mu.Unlock()
	s.mu.Lock()
	for _, m := range s.monitors {
		if !m.ended {
			rec.Monitors = append(rec.Monitors, monitorRecord{Xref: m.xref, Line: m.lineText, Device: m.line.Device})
		}
	}
	gen := s.cgen
	s.mu.Unlock()
	b, _ := json.Marshal(&rec)
	return b, gen
}

// claimLoop takes over the sessions of dead nodes and released ones.
func (c *clusterNode) claimLoop(ctx context.Context) {
	defer c.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	tick := 0
	warned := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !c.serving() || c.g.draining.Load() || time.Now().UnixNano() < c.settle.Load() {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		n, err := c.st.OwnedCount(rctx, "")
		cancel()
		if err == nil && n > 0 {
			c.claimShare(ctx, "", n, adoptDrained)
		}
		if tick%40 == 39 {
			c.adoptOrphans(ctx)
		}
		c.claimDead(ctx, warned)
		tick++
	}
}

// claimDead takes this node's share of every dead node's sessions. Dead
// nodes are looked for every round (two round trips): the survivors must
// start their shares within a round of each other, or the first takes
// most (each share is what is left divided by the live nodes, when its
// pass starts). warned holds the dead nodes already logged.
func (c *clusterNode) claimDead(ctx context.Context, warned map[string]bool) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	dead, err := c.st.DeadNodes(rctx)
	cancel()
	if err != nil {
		dead = nil
	}
	for _, node := range dead {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		n, err := c.st.OwnedCount(rctx, node)
		cancel()
		if err != nil || n == 0 {
			continue
		}
		if !warned[node] {
			warned[node] = true
			c.g.log.Warn().Str("node", node).Int64("sessions", n).Msg("cluster: node's lease expired: taking over a share of its sessions")
		}
		c.claimShare(ctx, node, n, adoptTakeover)
	}
	for node := range warned {
		if !slices.Contains(dead, node) {
			delete(warned, node)
		}
	}
}

// adoptOrphans adopts what the store says this node owns and it does not
// serve: a claim whose answer was lost, an adoption that failed. One it
// cannot adopt is released for another node.
func (c *clusterNode) adoptOrphans(ctx context.Context) {
	if !c.serving() || c.g.draining.Load() {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	owned, err := c.st.Owned(rctx)
	cancel()
	if err != nil || len(owned) == 0 {
		return
	}
	local := map[string]bool{}
	for _, s := range c.g.allSessions() {
		local[s.dlg.CallID()] = true
	}
	for _, id := range owned {
		if local[id] || ctx.Err() != nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		r, _, err := c.st.ClaimOne(rctx, id)
		cancel()
		if err != nil {
			continue
		}
		if _, err := c.adopt(r, adoptOrphan, false); err != nil && !errors.Is(err, sipstack.ErrDialogKnown) {
			c.g.log.Warn().Err(err).Str("call_id", id).Msg("cluster: a session of ours could not be adopted: releasing it for another node")
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, _ = c.st.Release(rctx, []cluster.Record{r})
			cancel()
		}
	}
}

// claimBatch is how many sessions one claim takes: small enough that the
// surviving nodes share a dead node's sessions, large enough to be quick.
const claimBatch = 64

// claimShare claims this node's share of the n sessions src has left:
// n divided by the live nodes, so that the survivors split a dead node's
// sessions (what a slower one leaves is taken in a later round).
func (c *clusterNode) claimShare(ctx context.Context, src string, n int64, how string) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	live, err := c.st.LiveNodes(rctx)
	cancel()
	if err != nil || live < 1 {
		live = 1
	}
	c.claimAll(ctx, src, how, int((n+int64(live)-1)/int64(live)))
}

// claimAll claims batch after batch from src while this node serves, as
// fast as its adoptions go, up to limit sessions (0: all).
func (c *clusterNode) claimAll(ctx context.Context, src, how string, limit int) {
	total := 0
	start := time.Now()
	for ctx.Err() == nil && (c.serving() || how == adoptRestart) && !c.g.draining.Load() {
		// Room for a whole batch of adoptions in flight.
		for i := 0; i < claimBatch; i++ {
			select {
			case c.adoptSem <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		want := claimBatch
		if limit > 0 {
			want = min(claimBatch, limit-total)
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		recs, err := c.st.Claim(rctx, src, want)
		cancel()
		for i := len(recs); i < claimBatch; i++ {
			<-c.adoptSem
		}
		if err != nil {
			c.setStoreUp(false, err)
			break
		}
		for _, r := range recs {
			if _, err := c.adopt(r, how, true); err != nil {
				c.g.log.Warn().Err(err).Str("call_id", r.CallID).Msg("cluster: claimed session could not be adopted")
			}
		}
		total += len(recs)
		if len(recs) < want || limit > 0 && total >= limit {
			break
		}
	}
	if total > 0 {
		c.g.log.Info().Str("from", src).Str("how", how).Int("sessions", total).Dur("took", time.Since(start)).
			Msg("cluster: sessions claimed")
	}
}

// adopt rebuilds a claimed session here: its dialog, its monitors (moved
// onto one of our links through the admission budget), its place in the
// tables. With sem, the caller holds an adoptSem slot the move gives back.
func (c *clusterNode) adopt(r cluster.Record, how string, sem bool) (*Session, error) {
	g := c.g
	give := func() {
		if sem {
			<-c.adoptSem
		}
	}
	var rec sessionRecord
	if err := json.Unmarshal(r.Data, &rec); err != nil {
		give()
		return nil, fmt.Errorf("cluster: session record: %w", err)
	}
	d, err := g.sip.AdoptDialog(rec.Dialog)
	if errors.Is(err, sipstack.ErrDialogKnown) {
		give()
		// Ours already (a claim raced with our own adoption): only the
		// generation moves on.
		for _, s := range g.allSessions() {
			if s.dlg.CallID() == r.CallID {
				s.mu.Lock()
				s.cgen = max(s.cgen, r.Gen)
				s.mu.Unlock()
				return s, nil
			}
		}
		return nil, err
	}
	if err != nil {
		give()
		return nil, err
	}
	lines, line, lerr := signInLine(g.directory(), rec.User, rec.Line)
	// Placed at once when a link is up: requests are served from now on
	// (they need the link, not the monitors); the monitors follow.
	link, perr := g.pool.Place()
	gen, state := uint64(0), StateLinkDown
	if perr == nil {
		gen, state = link.Generation(), StateActive
	} else if ls := g.pool.Links(); len(ls) > 0 {
		link = ls[0] // placed by its adopt move once a link is up
	}
	if link == nil {
		give()
		d.Release()
		return nil, errors.New("cluster: no CTI link configured")
	}
	s := &Session{
		g:        g,
		id:       newSessionID(),
		dlg:      d,
		user:     rec.User,
		lines:    lines,
		line:     line,
		lineText: rec.Line,
		link:     link,
		gen:      gen,
		created:  time.Unix(rec.Created, 0),
		inbox:    newMailbox(g.conf().Gateway.EventQueue),
		done:     make(chan struct{}),
		monitors: map[string]*monitorRef{},
		state:    state,
		cgen:     r.Gen,
	}
	s.log = g.log.With().Str("session", s.id).Str("call_id", r.CallID).Logger()
	if lerr == nil {
		for _, m := range rec.Monitors {
			ml, err := findLine(lines, m.Line)
			if err != nil {
				continue // no longer the user's: its events stop, as after a reload
			}
			s.monitors[m.Xref] = &monitorRef{s: s, xref: m.Xref, line: ml, lineText: m.Line}
		}
	}
	if gen == 0 {
		// No link: the adopt move (under the run token) places it; requests
		// queue behind it meanwhile.
		s.inbox.running = true
		s.moving.Store(true)
		s.queued.Store(true)
	}
	g.mu.Lock()
	g.add(s)
	g.perUser[s.user]++ // counted, never refused: the user had it already
	g.mu.Unlock()
	g.metrics.monitors.Add(float64(len(s.monitors)))
	d.SetOwner(s)
	d.OnCSeqMark(func() { c.markDirty(s) })
	g.metrics.adopted.With(how).Inc()
	if d.Ended() {
		// A BYE came while the session was being built.
		give()
		s.close(CloseClientBye, false)
		return s, nil
	}
	c.markDirty(s) // our link, and a fresh CSeq reservation
	if lerr != nil {
		// The user or the sign-in line left the directory meanwhile.
		give()
		s.log.Warn().Str("user", rec.User).Msg("cluster: adopted session's user or line is not in our directory: ending it")
		s.close(CloseDirectory, true)
		return s, nil
	}
	s.log.Info().Str("user", s.user).Str("how", how).Int64("claim_generation", r.Gen).Str("link", link.Name()).
		Msg("cluster: session adopted")
	go func() {
		defer give()
		if gen == 0 {
			c.runAdoptMove(s)
			return
		}
		c.adoptMonitors(s)
	}()
	return s, nil
}

// adoptJob hands the watches started for an adopted session's monitors to
// the session (under its run token).
type adoptJob struct {
	mons []*monitorRef
	ws   []*deviceWatch
	link *ctipool.Link
	gen  uint64
	done chan bool
}

// adoptMonitors starts the watches of an adopted session's monitors on its
// link (through the admission budget, without its run token: requests are
// served meanwhile), then has the session attach them, replay its lines'
// calls and say SystemStatus normal. A failure is tried again every second
// while the session stays on that link generation (a move off it re-creates
// the monitors itself).
func (c *clusterNode) adoptMonitors(s *Session) { c.adoptMonitorsAfter(s, 0) }

// adoptMonitorsAfter is adoptMonitors, tried again after wait on failure
// (doubling to 30 s).
func (c *clusterNode) adoptMonitorsAfter(s *Session, wait time.Duration) {
	g := c.g
	s.mu.Lock()
	link, gen := s.link, s.gen
	var todo []*monitorRef
	for _, m := range s.monitors {
		if m.w == nil && !m.dead && !m.ended {
			todo = append(todo, m)
		}
	}
	closed := s.state == StateClosed
	s.mu.Unlock()
	if closed || gen == 0 || !link.Up() || link.Generation() != gen {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.conf().CTI.RequestTimeout*time.Duration(2+2*len(todo)))
	defer cancel()
	ws := make([]*deviceWatch, 0, len(todo))
	release := func() {
		for _, w := range ws {
			w.releaseIfUnused()
		}
	}
	var err error
	for _, m := range todo {
		var w *deviceWatch
		if w, err = g.watch(ctx, link, gen, m.line.Device); err != nil {
			break
		}
		ws = append(ws, w)
	}
	ok := err == nil
	if ok {
		j := &adoptJob{mons: todo, ws: ws, link: link, gen: gen, done: make(chan bool, 1)}
		s.deliverForce(item{kind: itemAdopted, adopt: j})
		select {
		case ok = <-j.done:
			g.metrics.moves.With(moveAdopt, moveOK).Inc()
		case <-s.done:
			release()
			return
		}
	} else {
		release()
	}
	if !ok {
		g.metrics.moves.With(moveAdopt, moveFailed).Inc()
		wait = min(max(2*wait, time.Second), 30*time.Second)
		s.log.Warn().AnErr("error", err).Dur("retry_in", wait).Msg("cluster: adopted session's monitors not started yet: trying again")
		time.AfterFunc(wait, func() { c.adoptMonitorsAfter(s, wait) })
	}
}

// attachAdopted attaches the watches adoptMonitors started, under the
// run token: the client gets each line's calls and one SystemStatus normal.
func (s *Session) attachAdopted(j *adoptJob) {
	ok := true
	for i, m := range j.mons {
		s.mu.Lock()
		cur := s.monitors[m.xref] == m && !m.dead && s.link == j.link && s.gen == j.gen
		s.mu.Unlock()
		if !cur {
			j.ws[i].releaseIfUnused()
			continue // stopped, or the session moved meanwhile (the move re-created it)
		}
		evs, attached := j.ws[i].attach(m)
		if !attached {
			ok = false
			continue
		}
		s.mu.Lock()
		m.w = j.ws[i]
		s.mu.Unlock()
		for _, ev := range evs {
			s.sendEvent(m, ev)
		}
	}
	if ok {
		s.sendRaw(&csta.Message{Kind: csta.KindSystemStatus, SystemStatus: "normal"})
	}
	j.done <- ok
}

// runAdoptMove places an adopted session on a link under its run token,
// then lets the requests that queued meanwhile run. A session no link can
// take yet is tried again every second.
func (c *clusterNode) runAdoptMove(s *Session) {
	r := s.move(&moveJob{s: s, reason: moveAdopt})
	s.moving.Store(false)
	s.queued.Store(false)
	c.g.metrics.moves.With(moveAdopt, r.outcome).Inc()
	s.drain(nil)
	if r.outcome == moveFailed {
		s.log.Warn().AnErr("error", r.err).Msg("cluster: adopted session not placed yet: trying again")
		time.AfterFunc(time.Second, func() { c.retryAdopt(s) })
	}
}

func (c *clusterNode) retryAdopt(s *Session) {
	if s.State() == StateClosed || !s.queued.CompareAndSwap(false, true) {
		return
	}
	r := c.g.mover.run(&moveJob{s: s, reason: moveAdopt})
	if r.outcome == moveFailed {
		time.AfterFunc(time.Second, func() { c.retryAdopt(s) })
	}
}

// Adopt implements sipstack.Adopter: a request for a dialog this node
// does not have. When the store says its owner is gone (or it is free),
// it is claimed and adopted here and the request is served; while its
// owner's lease may still be alive the claim is retried, then 503.
func (g *Gateway) Adopt(callID, localTag, remoteTag string) (*sipstack.Dialog, sipstack.Reply) {
	c := g.cluster
	if c == nil {
		return nil, sipstack.Reply{}
	}
	busy := sipstack.Reply{Status: 503, RetryAfter: time.Second}
	if g.draining.Load() || !c.serving() {
		return nil, busy
	}
	deadline := time.Now().Add(min(g.conf().SIP.HandlerTimeout/2, c.cfg.LeaseTTL+time.Second))
	var (
		first   cluster.Owned
		firstAt time.Time // when the first answer naming the owner arrived
	)
	for {
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r, owned, err := c.st.ClaimOne(ctx, callID)
		cancel()
		switch {
		case err == nil:
			s, aerr := c.adopt(r, adoptOnDemand, false)
			if aerr != nil || s.dlg.ID() != sipstack.DialogID(callID, localTag, remoteTag) {
				return nil, sipstack.Reply{}
			}
			return s.dlg, sipstack.Reply{}
		case errors.Is(err, cluster.ErrUnknown):
			return nil, sipstack.Reply{}
		case errors.Is(err, cluster.ErrOwned):
			// Its owner's lease has not run out: a dead owner's only runs
			// down, a live one refreshes it every third of the TTL. A
			// live owner (or a new one, claimed meanwhile) serves the
			// dialog: 503 at once, the proxy looks the owner up again.
			switch {
			case first.Node == "":
				first, firstAt = owned, time.Now()
			case owned.Node != first.Node || leaseRefreshed(first.LeaseTTL, owned.LeaseTTL, sent.Sub(firstAt)):
				return nil, sipstack.Reply{Status: 503, Reason: sipstack.ReasonElsewhere, RetryAfter: time.Second}
			}
		default:
			c.setStoreUp(false, err)
			return nil, busy
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, busy
		}
		// What the first look found left, less the time since.
		expect := first.LeaseTTL - time.Since(firstAt)
		time.Sleep(min(adoptPoll(expect, c.cfg.LeaseTTL), left+time.Millisecond))
	}
}

// leaseRefreshed tells whether a lease that had first left was renewed
// meanwhile: a later look, sent at least elapsed after the first answer
// arrived, finds more left than the first look's figure less that time
// (which is what an untouched lease can have left at most). Elapsed time,
// not the look before, is the reference: a refresh shows however slow the
// store's answers or the looks' rhythm.
func leaseRefreshed(first, now, elapsed time.Duration) bool {
	return now > first-elapsed+time.Millisecond
}

// adoptPoll is how long an on-demand claim waits before it looks again,
// given how much of the owner's lease can be left: until just after it
// runs out, but at most a quarter of the TTL (a live owner refreshes every
// third, so its refresh shows at the next look or the one after), and at
// least 50 ms. Under a takeover every request for the dead node's sessions
// waits here: a fixed 100 ms made each request cost up to 30 round trips,
// and the store's latency under them cost claims their timeout.
func adoptPoll(left, ttl time.Duration) time.Duration {
	return max(50*time.Millisecond, min(left+20*time.Millisecond, ttl/4))
}

// Ready implements sipstack.Readiness: OPTIONS is answered 503 while the
// node is draining, has no CTI link up, or (in a cluster) does not serve.
func (g *Gateway) Ready() bool { return g.notReady() == "" }

// notReady says why the node takes no sign-ins ("" when it does): the
// answer of /readyz and of OPTIONS.
func (g *Gateway) notReady() string {
	switch {
	case g.draining.Load():
		return "draining"
	case !g.pool.AnyUp():
		return "no CTI link up"
	case g.cluster != nil && !g.cluster.serving():
		return "cluster lease not held"
	}
	return ""
}

// allSessions returns the live sessions.
func (g *Gateway) allSessions() []*Session {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*Session, 0, len(g.sessions))
	for _, s := range g.sessions {
		out = append(out, s)
	}
	return out
}

// handOff releases the node's sessions to the other nodes (drain): in
// batches of 256, each once most of the previous one has been claimed, so the CTI side
// of the nodes taking them sees no more than their admission budget. It
// returns when all are gone, no other node is alive, or ctx ends; what is
// left stays in the store for whoever takes it over.
func (c *clusterNode) handOff(ctx context.Context) {
	// Sessions never written yet are written first, or nobody could take
	// them.
	_, _ = c.writeAll(ctx, c.takeDirty())
	all := c.g.allSessions()
	start := time.Now()
	released := 0
	for len(all) > 0 && ctx.Err() == nil {
		live, err := c.st.LiveNodes(ctx)
		if err != nil || live < 2 {
			c.g.log.Warn().AnErr("error", err).Int("sessions", len(all)).
				Msg("cluster: no other node to take our sessions: they stay in the store for our next start")
			break
		}
		n := min(4*claimBatch, len(all))
		batch := all[:n]
		all = all[n:]
		recs := make([]cluster.Record, 0, n)
		keep := make([]*Session, 0, n)
		// Each session stops sending and answering first, so that the
		// node taking it is the only one to speak on the dialog.
		for _, s := range batch {
			s.handingOff.Store(true)
		}
		for _, s := range batch {
			if s.State() == StateClosed {
				continue
			}
			data, gen := s.record()
			if gen == 0 {
				continue // never written: nobody could take it
			}
			recs = append(recs, cluster.Record{CallID: s.dlg.CallID(), Gen: gen, Data: data})
			keep = append(keep, s)
		}
		ok, err := c.st.Release(ctx, recs)
		if err != nil {
			c.g.log.Warn().Err(err).Msg("cluster: store unreachable while draining: the rest stays for takeover")
			break
		}
		for i, s := range keep {
			if ok[i] {
				released++
				c.g.metrics.released.Inc()
			}
			s.dlg.Release() // ours no more either way
		}
		// Wait for the others to claim before releasing more.
		for ctx.Err() == nil {
			n, err := c.st.OwnedCount(ctx, "")
			if err != nil || n < 2*claimBatch {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	c.g.log.Info().Int("released", released).Dur("took", time.Since(start)).Msg("cluster: sessions handed to the other nodes")
}

// Kill stops the gateway as a crash would, for tests and benchmarks of a
// cluster: no BYE, nothing more written to the store, the lease left to
// expire, the CTI connections dropped.
func (g *Gateway) Kill() {
	g.draining.Store(true)
	if c := g.cluster; c != nil {
		if c.stop != nil {
			c.stop()
			c.wg.Wait()
		}
		_ = c.st.Close()
	}
	g.stopContinuity()
	g.stopLDAP()
	g.sip.Close()
	g.pool.Close()
	if g.admin != nil {
		_ = g.admin.Close()
	}
}

// ClusterStatus is the cluster part of /status.
type ClusterStatus struct {
	NodeID     string `json:"node_id"`
	StoreUp    bool   `json:"store_up"`
	LeaseHeld  bool   `json:"lease_held"`
	Serving    bool   `json:"serving"`
	LiveNodes  int    `json:"live_nodes"`
	RoundTrips uint64 `json:"store_round_trips"`
	BytesOut   uint64 `json:"store_bytes_written"`
	BytesIn    uint64 `json:"store_bytes_read"`
}

func (c *clusterNode) status() *ClusterStatus {
	st := c.st.Stats()
	out := &ClusterStatus{NodeID: c.st.Node(), StoreUp: c.storeUp.Load(), LeaseHeld: c.held.Load(), Serving: c.serving(),
		RoundTrips: st.RoundTrips, BytesOut: st.BytesOut, BytesIn: st.BytesIn}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if n, err := c.st.LiveNodes(ctx); err == nil {
		out.LiveNodes = n
	}
	return out
}

// resolveSIPURI fills the URI proxies use to reach this node, from the
// UDP (else TCP) listener when none is configured.
func (c *clusterNode) resolveSIPURI() error {
	if c.st.SIPURI() != "" {
		return nil
	}
	addr := c.g.sip.Addr("udp")
	if addr == "" {
		addr = c.g.sip.Addr("tcp")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("cluster.sip_uri: required: no SIP listener address to derive it from (%q)", addr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		// Listening on every address: the advertised host, else loopback
		// (a proxy on the same host), said loudly.
		host = "127.0.0.1"
		if adv := c.g.conf().SIP.Advertise; adv != "" {
			if h, _, err := net.SplitHostPort(adv); err == nil {
				host = h
			} else {
				host = adv
			}
		}
		c.g.log.Warn().Str("listener", addr).Str("sip_uri", "sip:"+net.JoinHostPort(host, port)).
			Msg("cluster.sip_uri not set and the SIP listener is on every address: proxies are told this URI; set cluster.sip_uri")
	}
	c.st.SetSIPURI("sip:" + net.JoinHostPort(host, port))
	c.g.log.Info().Str("sip_uri", c.st.SIPURI()).Str("node", c.st.Node()).Msg("cluster: this node's address for proxies")
	return nil
}

// placeAdopted picks the link an adopted session moves to.
func (g *Gateway) placeAdopted(from *ctipool.Link) (*ctipool.Link, error) {
	if from != nil && from.Up() && !from.Removed() {
		return from, nil
	}
	return g.pool.Place()
}
