package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

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
	n, err := b.FreeCount(ctx)
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
	recs, err = a2.Claim(ctx, "a", 10)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, "y", recs[0].CallID)
	assert.Equal(t, int64(2), recs[0].Gen)
}
