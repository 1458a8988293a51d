package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/gateway/cluster"
	"github.com/cstagw/cstagw/gateway/cluster/redistest"
)

func open(t *testing.T, addr, node string, ttl time.Duration) *cluster.Store {
	t.Helper()
	st, err := cluster.Open(cluster.Config{NodeID: node, LeaseTTL: ttl, Redis: cluster.RedisConfig{Address: addr}}, "sip:"+node)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	ok, err := st.AcquireLease(context.Background())
	require.NoError(t, err)
	require.True(t, ok)
	return st
}

// A node's sessions are claimed only once its lease is gone, each by one
// claimant, under a new generation that fences the old owner's writes.
func TestClaimFencesTheOldOwner(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a := open(t, srv.Addr, "a", time.Second)
	b := open(t, srv.Addr, "b", time.Second)
	c := open(t, srv.Addr, "c", time.Second)

	var writes []cluster.Write
	for i := 0; i < 20; i++ {
		writes = append(writes, cluster.Write{CallID: fmt.Sprintf("call-%d", i), Data: []byte(fmt.Sprintf(`{"n":%d}`, i))})
	}
	gens, err := a.Apply(ctx, writes)
	require.NoError(t, err)
	for _, g := range gens {
		require.Equal(t, int64(1), g)
	}
	// Alive: nothing to claim, one by one or in bulk.
	recs, err := b.Claim(ctx, "a", 100)
	require.NoError(t, err)
	assert.Empty(t, recs)
	_, owned, err := b.ClaimOne(ctx, "call-1")
	require.ErrorIs(t, err, cluster.ErrOwned)
	assert.Equal(t, "a", owned.Node)
	assert.Greater(t, owned.LeaseTTL, time.Duration(0))
	dead, err := b.DeadNodes(ctx)
	require.NoError(t, err)
	assert.Empty(t, dead)

	// a stops refreshing: its lease expires.
	require.Eventually(t, func() bool {
		for _, st := range []*cluster.Store{b, c} {
			held, err := st.RefreshLease(ctx)
			require.NoError(t, err)
			require.True(t, held)
		}
		d, err := b.DeadNodes(ctx)
		return err == nil && len(d) == 1 && d[0] == "a"
	}, 5*time.Second, 50*time.Millisecond)
	held, err := a.RefreshLease(ctx)
	require.NoError(t, err)
	assert.False(t, held, "an expired lease is not silently renewed")

	one, _, err := b.ClaimOne(ctx, "call-1")
	require.NoError(t, err)
	assert.Equal(t, int64(2), one.Gen)
	assert.JSONEq(t, `{"n":1}`, string(one.Data))
	got := map[string]string{"call-1": "b"}
	for {
		rb, err := b.Claim(ctx, "a", 3)
		require.NoError(t, err)
		rc, err := c.Claim(ctx, "a", 3)
		require.NoError(t, err)
		if len(rb)+len(rc) == 0 {
			break
		}
		for _, r := range rb {
			require.NotContains(t, got, r.CallID)
			got[r.CallID] = "b"
		}
		for _, r := range rc {
			require.NotContains(t, got, r.CallID)
			got[r.CallID] = "c"
			assert.Equal(t, int64(2), r.Gen)
		}
	}
	assert.Len(t, got, 20, "every session claimed exactly once")
	dead, err = b.DeadNodes(ctx)
	require.NoError(t, err)
	assert.Empty(t, dead, "a node with nothing left is forgotten")

	// The old owner's writes fail: it must stop serving.
	gens, err = a.Apply(ctx, []cluster.Write{{CallID: "call-1", Gen: 1, Data: []byte(`{}`)}, {CallID: "call-2", Gen: 1, Delete: true}})
	require.NoError(t, err)
	assert.Equal(t, []int64{0, 0}, gens)
	owner, gen, err := b.Owner(ctx, "call-1")
	require.NoError(t, err)
	assert.Equal(t, "b", owner)
	assert.Equal(t, int64(2), gen)
}

// A draining node's released sessions go to whoever claims them.
func TestReleaseAndClaimFree(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a := open(t, srv.Addr, "a", 3*time.Second)
	b := open(t, srv.Addr, "b", 3*time.Second)
	_, err := a.Apply(ctx, []cluster.Write{{CallID: "x", Data: []byte("1")}, {CallID: "y", Data: []byte("1")}})
	require.NoError(t, err)
	ok, err := a.Release(ctx, []cluster.Record{{CallID: "x", Gen: 1, Data: []byte("2")}, {CallID: "y", Gen: 7, Data: []byte("2")}})
	require.NoError(t, err)
	assert.Equal(t, []bool{true, false}, ok, "only a session still ours at that generation is released")
	n, err := b.OwnedCount(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	recs, err := b.Claim(ctx, "", 10)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, "x", recs[0].CallID)
	assert.Equal(t, "2", string(recs[0].Data))
	owner, _, err := a.Owner(ctx, "x")
	require.NoError(t, err)
	assert.Equal(t, "b", owner)

	// A restarted node takes back what its previous run owned.
	require.NoError(t, a.DropLease(ctx))
	a2 := open(t, srv.Addr, "a", 3*time.Second)
	n, err = a2.TakeOverPrevious(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	recs, err = a2.Claim(ctx, "a", 10)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, "y", recs[0].CallID)
	assert.Equal(t, int64(2), recs[0].Gen)
	recs, err = a2.Claim(ctx, "a", 10)
	require.NoError(t, err)
	assert.Empty(t, recs, "what was taken back is not taken again")
	owned, err := a2.Owned(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"y"}, owned)

	// A create never takes a session from another node.
	gens, err := b.Apply(ctx, []cluster.Write{{CallID: "y", Data: []byte("b")}})
	require.NoError(t, err)
	assert.Equal(t, []int64{0}, gens)
}

// Through Sentinel: the store follows a failover of the master to its
// replica, and the lease and sessions are there on the new master.
func TestSentinelFailover(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	sentinel := redistest.StartSentinel(t, "cstagw", master)
	ctx := context.Background()
	st, err := cluster.Open(cluster.Config{NodeID: "a", LeaseTTL: 3 * time.Second,
		Redis: cluster.RedisConfig{Sentinel: &cluster.SentinelConfig{Master: "cstagw", Addresses: []string{sentinel.Addr}}}}, "sip:a")
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	ok, err := st.AcquireLease(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	gens, err := st.Apply(ctx, []cluster.Write{{CallID: "x", Data: []byte("1")}})
	require.NoError(t, err)
	require.Len(t, gens, 1)
	require.Positive(t, gens[0])
	gen := gens[0]
	// Wait until the replica has the data, then lose the master.
	probe, err := cluster.Open(cluster.Config{NodeID: "probe", Redis: cluster.RedisConfig{Address: replica.Addr}}, "")
	require.NoError(t, err)
	t.Cleanup(func() { _ = probe.Close() })
	require.Eventually(t, func() bool {
		owner, _, err := probe.Owner(ctx, "x")
		return err == nil && owner == "a"
	}, 15*time.Second, 20*time.Millisecond, "the replica never got the session")
	// Sentinel learns of the replica from the master's INFO.
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr})
	t.Cleanup(func() { _ = sc.Close() })
	require.Eventually(t, func() bool {
		r, err := sc.Replicas(ctx, "cstagw").Result()
		return err == nil && len(r) == 1
	}, 20*time.Second, 100*time.Millisecond, "sentinel never saw the replica")
	master.Stop()
	// Writes reach the promoted replica, with what the old master had.
	var last []any
	reached := false
	for deadline := time.Now().Add(30 * time.Second); !reached && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		gens, err := st.Apply(ctx, []cluster.Write{{CallID: "x", Gen: gen, Data: []byte("2")}})
		m, _ := sc.GetMasterAddrByName(ctx, "cstagw").Result()
		last = []any{gens, err, m}
		reached = err == nil && len(gens) == 1 && gens[0] == gen
	}
	require.True(t, reached, "the store never reached the promoted replica: %v", last)
	m, err := sc.GetMasterAddrByName(ctx, "cstagw").Result()
	require.NoError(t, err)
	assert.Equal(t, []string{"127.0.0.1", fmt.Sprint(replica.Port)}, m, "the replica is the master now")
	// The lease came along (it was replicated): still ours, unless the
	// failover outlasted its TTL; then it is taken again.
	held, err := st.RefreshLease(ctx)
	require.NoError(t, err)
	if !held {
		ok, err := st.AcquireLease(ctx)
		require.NoError(t, err)
		assert.True(t, ok, "the lease, expired during the failover, is taken again")
	}
}

// sip_uri must be sip:host:port exactly: the proxy compares owners with
// its dispatcher destinations spelled that way.
func TestConfigSIPURI(t *testing.T) {
	base := cluster.Config{NodeID: "a", Redis: cluster.RedisConfig{Address: "127.0.0.1:6379"}}
	for uri, ok := range map[string]bool{
		"":                         true, // derived from the listener
		"sip:10.0.0.11:5060":       true,
		"sip:[2001:db8::1]:5060":   true,
		"sip:gw1.example.net:5070": true,
		"sip:gw1.example.net":      false,
		"sips:10.0.0.11:5061":      false,
		"sip:10.0.0.11:5060;lr":    false,
		"sip:gw@10.0.0.11:5060":    false,
		"10.0.0.11:5060":           false,
		"sip:10.0.0.11:5060?x=y":   false,
	} {
		c := base
		c.SIPURI = uri
		err := c.Validate("cluster")
		if ok {
			assert.NoError(t, err, uri)
		} else {
			assert.ErrorContains(t, err, "cluster.sip_uri", uri)
		}
	}
}
