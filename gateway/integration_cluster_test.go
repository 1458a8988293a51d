package gateway_test

// Cluster: gateway nodes share their sessions in a real redis-server; a
// killed node's sessions are adopted by the others on their original
// dialogs, a draining node hands its sessions over without BYE, and a node
// that cannot reach the store stops serving until it can. The tests play
// the proxy's part by pointing a client at another node.

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/gateway"
	"github.com/cstagw/cstagw/gateway/cluster"
	"github.com/cstagw/cstagw/gateway/cluster/redistest"
	"github.com/cstagw/cstagw/sipstack"
)

const testLease = time.Second

func clusterOpt(node, redisAddr string) func(*gateway.Config) {
	return clusterOptLease(node, redisAddr, testLease)
}

func clusterOptLease(node, redisAddr string, lease time.Duration) func(*gateway.Config) {
	return func(c *gateway.Config) {
		c.Cluster = &cluster.Config{NodeID: node, LeaseTTL: lease, Redis: cluster.RedisConfig{Address: redisAddr}}
	}
}

// addNode starts another gateway node on e's simulator and store.
func addNode(t *testing.T, e *testEnv, node, redisAddr string) *gateway.Gateway {
	t.Helper()
	return addNodeWith(t, e, clusterOpt(node, redisAddr))
}

func addNodeWith(t *testing.T, e *testEnv, opt func(*gateway.Config)) *gateway.Gateway {
	t.Helper()
	cfg := e.cfg
	opt(&cfg)
	g, err := gateway.New(cfg, testLogger())
	require.NoError(t, err)
	require.NoError(t, g.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		g.Shutdown(ctx)
	})
	waitServing(t, g)
	return g
}

func waitServing(t *testing.T, gs ...*gateway.Gateway) {
	t.Helper()
	for _, g := range gs {
		require.Eventually(t, func() bool {
			st := g.Status()
			return st.Cluster != nil && st.Cluster.Serving && g.Ready()
		}, waitLong, 10*time.Millisecond, "node never served")
	}
}

// probe reads the store as an outsider.
func probe(t *testing.T, addr string) *cluster.Store {
	st, err := cluster.Open(cluster.Config{NodeID: "probe", Redis: cluster.RedisConfig{Address: addr}}, "")
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func ownerOf(t *testing.T, st *cluster.Store, d *dialog) string {
	owner, _, err := st.Owner(context.Background(), d.callID)
	if err != nil {
		return ""
	}
	return owner
}

// aliceAndBobOnA signs alice and bob in on node a, on one client, and
// waits until the store has both.
func aliceAndBobOnA(t *testing.T, e *testEnv, st *cluster.Store) (*sipClient, *dialog, *dialog) {
	t.Helper()
	cl := e.udp()
	alice := signIn(t, cl, userAlice, lineAlice)
	bob := signIn(t, cl, userBob, lineBob)
	for _, d := range []*dialog{alice, bob} {
		require.Eventually(t, func() bool { return ownerOf(t, st, d) == "a" }, waitLong, 10*time.Millisecond)
	}
	return cl, alice, bob
}

func TestClusterTakeoverKeepsDialogs(t *testing.T) {
	rds := redistest.Start(t)
	e := newEnv(t, envOpts{nodes: 2, gw: clusterOpt("a", rds.Addr)})
	waitServing(t, e.gw)
	b := addNode(t, e, "b", rds.Addr)
	c := addNode(t, e, "c", rds.Addr)
	st := probe(t, rds.Addr)
	nodes := map[string]*gateway.Gateway{"b": b, "c": c}

	type user struct{ uri, line, dev string }
	users := []user{{userAlice, lineAlice, devAlice}, {userBob, lineBob, devBob}, {userErin, lineErin, devErin}}
	var cls []*sipClient
	var ds []*dialog
	for _, u := range users {
		cl := e.udp()
		cls = append(cls, cl)
		ds = append(ds, signIn(t, cl, u.uri, u.line))
	}
	// frank signs in on b and must notice nothing.
	frank := signIn(t, newClient(t, "udp", b.SIPAddr("udp")), userFrank, lineFrankA)
	for _, d := range ds {
		require.Eventually(t, func() bool { return ownerOf(t, st, d) == "a" }, waitLong, 10*time.Millisecond)
	}
	live := incomingAnswered(t, e, ds[0], extCaller, devAlice)
	marks := make([]int, len(ds))
	for i, d := range ds {
		marks[i] = d.mark()
	}
	frankMark := frank.mark()

	killed := time.Now()
	e.gw.Kill()
	e.shutdown = true

	// The proxy sends alice's next request to b: b claims her dialog once
	// a's lease is gone, and answers it on the original dialog.
	cls[0].gwAddr = b.SIPAddr("udp")
	dnd := ds[0].ok(getDND(lineAlice))
	assert.Equal(t, csta.KindGetDoNotDisturbResponse, dnd.Kind)
	took := time.Since(killed)
	assert.Less(t, took, testLease+3*time.Second, "alice's request waited %v", took)
	assert.Equal(t, "b", ownerOf(t, st, ds[0]))
	// Her live call came along and is hers to control.
	ds[0].waitEvent(marks[0], csta.KindEstablishedEvent, live)
	ds[0].ok(holdCall(live, lineAlice))
	waitConn(t, e.sim, live, devAlice, "hold")

	// The others are taken over without a request of theirs: each sees
	// SystemStatus normal, then the events of a new call, with the
	// monitorCrossRefID it had.
	for i, d := range ds[1:] {
		i++
		require.True(t, d.waitFor(func() bool {
			for _, m := range systemStatusEvents(d) {
				if m.SystemStatus == "normal" {
					return true
				}
			}
			return false
		}), "%s: no SystemStatus normal after the takeover", users[i].uri)
		owner := ownerOf(t, st, d)
		require.Contains(t, nodes, owner, "%s owned by %q", users[i].uri, owner)
		id, err := e.sim.PlaceCall(extOther, users[i].dev)
		require.NoError(t, err)
		d.waitEvent(marks[i], csta.KindDeliveredEvent, id)
		cls[i].gwAddr = nodes[owner].SIPAddr("udp")
		d.ok(answerCall(id, users[i].line))
		waitConn(t, e.sim, id, users[i].dev, "connected")
		d.ok(clearConnection(id, users[i].line))
	}
	assert.Equal(t, 4, b.Sessions()+c.Sessions())
	for _, u := range users {
		assert.Equal(t, 1, simDevice(e.sim, u.dev).Monitors, "%s monitored once, by its new node", u.dev)
	}
	// No dialog was ended: no BYE, no re-INVITE.
	for _, d := range ds {
		assert.False(t, d.byeReceived())
	}
	// frank's session noticed nothing.
	for _, m := range frank.events(frankMark) {
		assert.NotEqual(t, csta.KindSystemStatus, m.Kind, "frank was told %s", m.SystemStatus)
	}
	frank.ok(getDND(lineFrankA))
	_, metrics := httpGet(t, "http://"+b.AdminAddr()+"/metrics")
	assert.Contains(t, metrics, `cstagw_cluster_sessions_adopted_total{how="on_demand"} 1`)
	assert.Contains(t, metrics, "cstagw_cluster_store_up 1")
}

func TestClusterDrainHandsSessionsOver(t *testing.T) {
	rds := redistest.Start(t)
	e := newEnv(t, envOpts{gw: clusterOpt("a", rds.Addr)})
	waitServing(t, e.gw)
	b := addNode(t, e, "b", rds.Addr)
	st := probe(t, rds.Addr)
	cl, alice, bob := aliceAndBobOnA(t, e, st)
	mark := alice.mark()

	// POST /drain, as an operator before an upgrade.
	res, err := http.Post("http://"+e.gw.AdminAddr()+"/drain", "text/plain", nil)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusAccepted, res.StatusCode)
	select {
	case <-e.gw.DrainRequested():
	case <-time.After(time.Second):
		t.Fatal("POST /drain did not ask for a drain")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	e.gw.Shutdown(ctx)
	e.shutdown = true
	t.Logf("drain took %v", time.Since(start))

	require.Eventually(t, func() bool { return b.Sessions() == 2 }, waitLong, 10*time.Millisecond)
	for _, d := range []*dialog{alice, bob} {
		assert.Equal(t, "b", ownerOf(t, st, d))
		assert.False(t, d.byeReceived(), "a drain sends no BYE")
	}
	cl.gwAddr = b.SIPAddr("udp")
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	alice.waitEvent(mark, csta.KindDeliveredEvent, id)
	alice.ok(answerCall(id, lineAlice))
	waitConn(t, e.sim, id, devAlice, "connected")
	bob.ok(getDND(lineBob))
	_, metrics := httpGet(t, "http://"+b.AdminAddr()+"/metrics")
	assert.Contains(t, metrics, `cstagw_cluster_sessions_adopted_total{how="drained"} 2`)
}

// A request that reaches a draining node while it hands the session over
// is answered only once the session is free in the store, and says so
// ("Dialog Elsewhere"): the proxy's retry then finds the session free or
// claimed, never still owned by the draining node. Redis writes are paused
// to hold the hand-off between the session's refusal and its release.
func TestClusterDrainAnswersAfterRelease(t *testing.T) {
	rds := redistest.Start(t)
	// A lease long enough that the pause costs no node its lease, and a
	// store timeout longer than the pause (the release must wait it out,
	// not fail).
	opt := func(node string) func(*gateway.Config) {
		return func(c *gateway.Config) {
			clusterOptLease(node, rds.Addr, 3*time.Second)(c)
			c.Cluster.Redis.Timeout = 3 * time.Second
		}
	}
	e := newEnv(t, envOpts{gw: opt("a")})
	waitServing(t, e.gw)
	b := addNodeWith(t, e, opt("b"))
	st := probe(t, rds.Addr)
	alice := signIn(t, e.udp(), userAlice, lineAlice)
	require.Eventually(t, func() bool { return ownerOf(t, st, alice) == "a" }, waitLong, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // the sign-in's writes are all done

	rdb := redis.NewClient(&redis.Options{Addr: rds.Addr})
	defer rdb.Close()
	const pause = 600 * time.Millisecond
	require.NoError(t, rdb.Do(context.Background(), "CLIENT", "PAUSE", pause.Milliseconds(), "WRITE").Err())
	paused := time.Now()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.gw.Shutdown(ctx)
	}()
	e.shutdown = true

	// Requests until the first refusal: served while the drain has not
	// reached the session, then held until its release.
	var res *sip.Response
	var owner string
	for i := 0; i < 100; i++ {
		res = alice.info(getDND(lineAlice))
		owner = ownerOf(t, st, alice)
		if res.StatusCode != 200 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(paused)
	require.Equal(t, 503, res.StatusCode)
	assert.Equal(t, sipstack.ReasonElsewhere, res.Reason)
	assert.NotEqual(t, "a", owner, "answered while the store still named the draining node")
	// (A little slack: the pause began at the server before its answer
	// reached us.)
	assert.GreaterOrEqual(t, took, pause-20*time.Millisecond, "answered before the paused release could reach the store")
	<-drained

	// The proxy's retry, on the other node, is served there (once b has
	// adopted what it claimed).
	require.Eventually(t, func() bool { return ownerOf(t, st, alice) == "b" && b.Sessions() == 1 }, waitLong, 10*time.Millisecond)
	alice.c.gwAddr = b.SIPAddr("udp")
	alice.ok(getDND(lineAlice))
	assert.False(t, alice.byeReceived())
}

func TestClusterStoreOutage(t *testing.T) {
	rds := redistest.Start(t)
	e := newEnv(t, envOpts{gw: clusterOpt("a", rds.Addr)})
	waitServing(t, e.gw)
	st := probe(t, rds.Addr)
	alice := signIn(t, e.udp(), userAlice, lineAlice)
	require.Eventually(t, func() bool { return ownerOf(t, st, alice) == "a" }, waitLong, 10*time.Millisecond)

	rds.Stop() // its data goes with it
	require.Eventually(t, func() bool {
		cs := e.gw.Status().Cluster
		return !cs.StoreUp && !cs.Serving
	}, waitLong, 10*time.Millisecond)
	assert.Contains(t, metricsText(t, e), "cstagw_cluster_store_up 0")
	// Not sure it still owns the dialog: the client is told to retry, the
	// dialog is kept.
	res := alice.info(getDND(lineAlice))
	assert.Equal(t, 503, res.StatusCode)
	code, _ := httpGet(t, "http://"+e.gw.AdminAddr()+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	// A dispatching proxy's OPTIONS probe takes the node out of rotation.
	probeCl := e.udp()
	assert.Equal(t, 503, probeCl.mustDo(probeCl.outOfDialog(sip.OPTIONS, userAlice, "")).StatusCode)

	mark := alice.mark()
	rds.Start()
	waitServing(t, e.gw)
	// Told that the system is back (events may have been held back).
	require.True(t, alice.waitFor(func() bool {
		for _, m := range alice.events(mark) {
			if m.Kind == csta.KindSystemStatus && m.SystemStatus == "normal" {
				return true
			}
		}
		return false
	}), "no SystemStatus normal once serving again")
	alice.ok(getDND(lineAlice))
	assert.Equal(t, 200, probeCl.mustDo(probeCl.outOfDialog(sip.OPTIONS, userAlice, "")).StatusCode)
	// Its state was written again.
	require.Eventually(t, func() bool { return ownerOf(t, st, alice) == "a" }, waitLong, 10*time.Millisecond)
	assert.False(t, alice.byeReceived())
	assert.True(t, strings.Contains(metricsText(t, e), "cstagw_cluster_store_up 1"))
}

// A lone cluster node killed and started again under the same node_id
// takes its sessions back: same dialogs, monitors re-created.
func TestClusterRestartTakesSessionsBack(t *testing.T) {
	rds := redistest.Start(t)
	e := newEnv(t, envOpts{gw: clusterOpt("a", rds.Addr)})
	waitServing(t, e.gw)
	st := probe(t, rds.Addr)
	cl, alice, bob := aliceAndBobOnA(t, e, st)
	e.gw.Kill()
	e.shutdown = true
	mark := alice.mark()

	again := addNode(t, e, "a", rds.Addr)
	require.Eventually(t, func() bool { return again.Sessions() == 2 }, waitLong, 10*time.Millisecond)
	cl.gwAddr = again.SIPAddr("udp")
	bob.ok(getDND(lineBob))
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	alice.waitEvent(mark, csta.KindDeliveredEvent, id)
	// Taken back once: the store's set of the node holds exactly them.
	time.Sleep(3 * testLease)
	assert.Equal(t, 2, again.Sessions())
	_, metrics := httpGet(t, "http://"+again.AdminAddr()+"/metrics")
	assert.Contains(t, metrics, `cstagw_cluster_sessions_adopted_total{how="restart"} 2`)
	assert.Contains(t, metrics, "cstagw_cluster_sessions_lost_total 0")
}
