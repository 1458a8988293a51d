// Package cluster is the shared state of several gateway nodes: a Redis
// store (a single server or a Sentinel-managed master) holding, per client
// dialog, which node owns it and what another node needs to carry it on,
// and, per node, a lease that says the node is alive.
//
// Keys (the prefix is fixed: the proxy configuration reads them too):
//
//	cstagw:s:<Call-ID>       hash: owner (node id, "" while free), gen
//	                         (claim generation), sip (the owner's SIP URI,
//	                         for the proxy), data (the node's record)
//	cstagw:n:<node>:s        set: Call-IDs the node owns
//	cstagw:n:<node>:lease    string: the node's lease token, with a TTL
//	cstagw:nodes             set: node ids that may own sessions
//	cstagw:free              set: Call-IDs released by a draining node
//
// Every change of a session hash is a Lua script, so each is atomic: a
// claim takes a session only from a node whose lease is gone (or from the
// free set) and raises its generation; a write of the owner goes through
// only while owner and generation are still the writer's. That is the
// fence: a node that lost its lease may still try to write, and fails.
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Prefix starts every key.
const Prefix = "cstagw:"

// Config is the gateway's cluster section.
type Config struct {
	// NodeID names this node; unique in the cluster, stable across
	// restarts (a restarted node takes back what its last run owned).
	NodeID string `yaml:"node_id"`
	// SIPURI is where a proxy sends this node's dialogs ("sip:host:port");
	// default: the node's UDP listener, when it is a specific address.
	SIPURI string      `yaml:"sip_uri"`
	Redis  RedisConfig `yaml:"redis"`
	// LeaseTTL: a node silent this long is dead and its sessions are
	// taken over (default 3s; refreshed every LeaseTTL/3).
	LeaseTTL time.Duration `yaml:"lease_ttl"`
}

// RedisConfig says how to reach the store.
type RedisConfig struct {
	Address      string `yaml:"address"` // host:port (unless Sentinel)
	PasswordFile string `yaml:"password_file"`
	DB           int    `yaml:"db"`
	TLS          bool   `yaml:"tls"`
	// Sentinel, when set, finds the master through Redis Sentinel and
	// follows its failovers.
	Sentinel *SentinelConfig `yaml:"sentinel"`
	// Timeout bounds each store round trip (default 1s).
	Timeout time.Duration `yaml:"timeout"`
}

// SentinelConfig names the master and the sentinels.
type SentinelConfig struct {
	Master    string   `yaml:"master"`
	Addresses []string `yaml:"addresses"`
}

// DefaultLeaseTTL is the lease's time to live.
const DefaultLeaseTTL = 3 * time.Second

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.Redis.Timeout <= 0 {
		c.Redis.Timeout = time.Second
	}
	return c
}

// Validate reports every problem with its key path under path.
func (c Config) Validate(path string) error {
	var errs []error
	if c.NodeID == "" || strings.ContainsAny(c.NodeID, ": \t\r\n") {
		errs = append(errs, fmt.Errorf("%s.node_id: required, without ':' or spaces", path))
	}
	if c.Redis.Sentinel == nil && c.Redis.Address == "" {
		errs = append(errs, fmt.Errorf("%s.redis.address: required (host:port), or %s.redis.sentinel", path, path))
	}
	if s := c.Redis.Sentinel; s != nil && (s.Master == "" || len(s.Addresses) == 0) {
		errs = append(errs, fmt.Errorf("%s.redis.sentinel: master and addresses are required", path))
	}
	if c.SIPURI != "" {
		// host:port exactly: Kamailio compares the owner with dispatcher
		// destinations as sip:host:port.
		hostport, ok := strings.CutPrefix(c.SIPURI, "sip:")
		if _, port, err := net.SplitHostPort(hostport); !ok || err != nil || port == "" || strings.ContainsAny(hostport, ";?@") {
			errs = append(errs, fmt.Errorf("%s.sip_uri: %q: expected sip:host:port", path, c.SIPURI))
		}
	}
	if c.LeaseTTL != 0 && c.LeaseTTL < 600*time.Millisecond {
		errs = append(errs, fmt.Errorf("%s.lease_ttl: at least 600ms", path))
	}
	return errors.Join(errs...)
}

// Record is one session as the store has it.
type Record struct {
	CallID string
	Gen    int64
	Data   []byte
}

// Stats counts the store's traffic.
type Stats struct {
	RoundTrips uint64 // commands or pipelines sent
	BytesOut   uint64 // session data written
	BytesIn    uint64 // session data read by claims
}

// Store is one node's handle on the shared state.
type Store struct {
	rdb   redis.UniversalClient
	node  string
	sip   string
	ttl   time.Duration
	token atomic.Value // string: our lease's token

	roundTrips, bytesOut, bytesIn atomic.Uint64
}

// quietLog keeps go-redis's own messages (a failed dial, once per pool
// attempt) off stderr: the store's state is logged once per change by the
// gateway and exported as cstagw_cluster_store_up.
type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...interface{}) {}

func init() { redis.SetLogger(quietLog{}) }

// Open connects (lazily: nothing is sent until the first command).
func Open(c Config, sipURI string) (*Store, error) {
	c = c.WithDefaults()
	pw := ""
	if c.Redis.PasswordFile != "" {
		b, err := os.ReadFile(c.Redis.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("cluster.redis.password_file: %w", err)
		}
		pw = strings.TrimSpace(string(b))
	}
	var tc *tls.Config
	if c.Redis.TLS {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	to := c.Redis.Timeout
	var rdb redis.UniversalClient
	if s := c.Redis.Sentinel; s != nil {
		rdb = redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: s.Master, SentinelAddrs: s.Addresses, Password: pw, DB: c.Redis.DB, TLSConfig: tc,
			DialTimeout: to, ReadTimeout: to, WriteTimeout: to, MaxRetries: 1,
		})
	} else {
		rdb = redis.NewClient(&redis.Options{
			Addr: c.Redis.Address, Password: pw, DB: c.Redis.DB, TLSConfig: tc,
			DialTimeout: to, ReadTimeout: to, WriteTimeout: to, MaxRetries: 1,
		})
	}
	st := &Store{rdb: rdb, node: c.NodeID, sip: sipURI, ttl: c.LeaseTTL}
	st.token.Store("")
	return st, nil
}

// SetSIPURI sets the URI written as the owner's address (before use).
func (s *Store) SetSIPURI(uri string) { s.sip = uri }

// SIPURI is the URI written as the owner's address.
func (s *Store) SIPURI() string { return s.sip }

// Close drops the connections.
func (s *Store) Close() error { return s.rdb.Close() }

// Node is this node's id.
func (s *Store) Node() string { return s.node }

// TTL is the lease's time to live.
func (s *Store) TTL() time.Duration { return s.ttl }

// Stats returns the traffic so far.
func (s *Store) Stats() Stats {
	return Stats{RoundTrips: s.roundTrips.Load(), BytesOut: s.bytesOut.Load(), BytesIn: s.bytesIn.Load()}
}

func sessKey(id string) string                  { return Prefix + "s:" + id }
func ownedKey(node string) string               { return Prefix + "n:" + node + ":s" }
func leaseKey(node string) string               { return Prefix + "n:" + node + ":lease" }
func nodesKey() string                          { return Prefix + "nodes" }
func freeKey() string                           { return Prefix + "free" }
func (s *Store) rt()                            { s.roundTrips.Add(1) }
func newToken(node string) string               { return node + "." + strconv.FormatInt(time.Now().UnixNano(), 36) }
func (s *Store) tok() string                    { return s.token.Load().(string) }
func (s *Store) setTok(t string)                { s.token.Store(t) }
func asInt(v any) int64                         { n, _ := v.(int64); return n }
func asStr(v any) string                        { x, _ := v.(string); return x }
func isNil(err error) bool                      { return errors.Is(err, redis.Nil) }
func (s *Store) Ping(ctx context.Context) error { s.rt(); return s.rdb.Ping(ctx).Err() }

// AcquireLease takes this node's lease if nobody holds it (a previous run
// of this node may, until its TTL passes). ok is false while it is held.
func (s *Store) AcquireLease(ctx context.Context) (ok bool, err error) {
	t := newToken(s.node)
	s.rt()
	ok, err = s.rdb.SetNX(ctx, leaseKey(s.node), t, s.ttl).Result()
	if err != nil || !ok {
		return false, err
	}
	s.setTok(t)
	s.rt()
	if err := s.rdb.SAdd(ctx, nodesKey(), s.node).Err(); err != nil {
		return true, err
	}
	// The scripts, before any pipeline needs them (a NOSCRIPT answer to a
	// pipelined EVALSHA is handled, but costs a round trip).
	return true, s.loadScripts(ctx)
}

var refreshScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`)

// RefreshLease extends the lease; held is false when it expired (or was
// dropped) meanwhile: other nodes may have claimed our sessions.
func (s *Store) RefreshLease(ctx context.Context) (held bool, err error) {
	t := s.tok()
	if t == "" {
		return false, nil
	}
	s.rt()
	n, err := refreshScript.Run(ctx, s.rdb, []string{leaseKey(s.node)}, t, s.ttl.Milliseconds()).Int64()
	if err != nil {
		return false, err
	}
	if n == 0 {
		s.setTok("")
	}
	return n == 1, nil
}

var dropLeaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
if redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[2])
end
return 1`)

// DropLease ends this node's lease at once (a node that stops): what it
// still owns is taken over without waiting for the TTL.
func (s *Store) DropLease(ctx context.Context) error {
	t := s.tok()
	s.setTok("")
	s.rt()
	return dropLeaseScript.Run(ctx, s.rdb, []string{leaseKey(s.node), ownedKey(s.node), nodesKey()}, t, s.node).Err()
}

// putScript writes a session. ARGV: me, sip, id, gen, data, create.
// create: the session is new here (a sign-in): it is ours when the hash
// is missing, free or ours already, under a new generation; never taken
// from another node (a create retried after a lost lease must fail).
// Otherwise owner and generation must still be ours. Returns the
// generation, 0 when we lost it.
var putScript = redis.NewScript(`
local k = KEYS[1]
local owner = redis.call('HGET', k, 'owner')
local gen = tonumber(redis.call('HGET', k, 'gen') or '0')
if ARGV[6] == '1' then
  if owner and owner ~= '' and owner ~= ARGV[1] then
    return 0
  elseif owner == '' then
    redis.call('SREM', KEYS[3] .. 'free', ARGV[3])
  end
  gen = gen + 1
  redis.call('HSET', k, 'owner', ARGV[1], 'gen', gen, 'sip', ARGV[2], 'data', ARGV[5])
  redis.call('SADD', KEYS[2], ARGV[3])
  return gen
end
if not owner then
  -- The store lost it (restarted empty): nobody can have claimed it.
  redis.call('HSET', k, 'owner', ARGV[1], 'gen', ARGV[4], 'sip', ARGV[2], 'data', ARGV[5])
  redis.call('SADD', KEYS[2], ARGV[3])
  return tonumber(ARGV[4])
end
if owner ~= ARGV[1] or gen ~= tonumber(ARGV[4]) then
  return 0
end
redis.call('HSET', k, 'data', ARGV[5])
return gen`)

// Write is one session write of a batch.
type Write struct {
	CallID string
	Gen    int64 // 0: create
	Data   []byte
	Delete bool
}

// ownsGuard opens a script that acts on a session only while we own it
// at the generation we know: KEYS[1] the session, ARGV[1] us, ARGV[3]
// the generation. Otherwise the script answers 0.
const ownsGuard = `
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner ~= ARGV[1] or tonumber(redis.call('HGET', KEYS[1], 'gen') or '0') ~= tonumber(ARGV[3]) then
  return 0
end
`

// delScript deletes a session we own. ARGV: me, id, gen.
var delScript = redis.NewScript(ownsGuard + `
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return 1`)

// Apply sends a batch of writes in one pipeline. gens[i] is the new
// generation of writes[i] (for a delete: 1 when done), 0 when the session
// is no longer ours (another node claimed it: the caller must stop serving
// it).
func (s *Store) Apply(ctx context.Context, writes []Write) (gens []int64, err error) {
	return s.evalAll(ctx, len(writes), func(pipe redis.Pipeliner, i int) *redis.Cmd {
		w := writes[i]
		keys := []string{sessKey(w.CallID), ownedKey(s.node), Prefix}
		if w.Delete {
			return delScript.EvalSha(ctx, pipe, keys[:2], s.node, w.CallID, w.Gen)
		}
		create := "0"
		if w.Gen == 0 {
			create = "1"
		}
		s.bytesOut.Add(uint64(len(w.Data)))
		return putScript.EvalSha(ctx, pipe, keys, s.node, s.sip, w.CallID, w.Gen, w.Data, create)
	})
}

// evalAll sends n script calls (cmd builds the i-th) in one pipeline and
// returns their integer answers. A server that does not know a script (a
// new or promoted master) ran none of the calls it refused: the scripts
// are loaded and exactly those calls are sent again.
func (s *Store) evalAll(ctx context.Context, n int, cmd func(pipe redis.Pipeliner, i int) *redis.Cmd) ([]int64, error) {
	if n == 0 {
		return nil, nil
	}
	return s.evalSome(ctx, seq(n), cmd, true)
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func (s *Store) evalSome(ctx context.Context, idx []int, cmd func(pipe redis.Pipeliner, i int) *redis.Cmd, retry bool) ([]int64, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(idx))
	for k, i := range idx {
		cmds[k] = cmd(pipe, i)
	}
	s.rt()
	if _, err := pipe.Exec(ctx); err != nil && !isNil(err) && !isNoScript(err) {
		return nil, err
	}
	out := make([]int64, len(idx))
	var again, at []int
	for k, c := range cmds {
		v, err := c.Int64()
		switch {
		case isNoScript(err) && retry:
			again, at = append(again, idx[k]), append(at, k)
		case err != nil:
			return nil, err
		default:
			out[k] = v
		}
	}
	if len(again) > 0 {
		if err := s.loadScripts(ctx); err != nil {
			return nil, err
		}
		vs, err := s.evalSome(ctx, again, cmd, false)
		if err != nil {
			return nil, err
		}
		for j, k := range at {
			out[k] = vs[j]
		}
	}
	return out, nil
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

var allScripts = []*redis.Script{refreshScript, dropLeaseScript, putScript, delScript, releaseScript, claimScript, claimOneScript, prevScript}

// loadScripts makes sure the server knows every script (EVALSHA in a
// pipeline cannot fall back to EVAL by itself).
func (s *Store) loadScripts(ctx context.Context) error {
	for _, sc := range allScripts {
		s.rt()
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			return err
		}
	}
	return nil
}

// releaseScript frees a session we own for another node (drain). ARGV:
// me, id, gen, data.
var releaseScript = redis.NewScript(ownsGuard + `
redis.call('HSET', KEYS[1], 'owner', '', 'sip', '', 'data', ARGV[4])
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
return 1`)

// Release hands sessions we own to whichever node claims them first; the
// data is their last state. ok[i] is false for one we no longer owned.
func (s *Store) Release(ctx context.Context, recs []Record) (ok []bool, err error) {
	vs, err := s.evalAll(ctx, len(recs), func(pipe redis.Pipeliner, i int) *redis.Cmd {
		r := recs[i]
		s.bytesOut.Add(uint64(len(r.Data)))
		return releaseScript.EvalSha(ctx, pipe, []string{sessKey(r.CallID), ownedKey(s.node), freeKey()}, s.node, r.CallID, r.Gen, r.Data)
	})
	if err != nil {
		return nil, err
	}
	ok = make([]bool, len(recs))
	for i, v := range vs {
		ok[i] = v == 1
	}
	return ok, nil
}

// claimScript moves up to n sessions of node src (its lease gone; "" =
// the free set; src = me: what a previous run of this node left, set
// aside by TakeOverPrevious) to us.
// ARGV: me, sip, n, prefix, src. Returns id, gen, data triples.
var claimScript = redis.NewScript(`
local me, src, p = ARGV[1], ARGV[5], ARGV[4]
local set = p .. 'free'
if src == me then
  set = p .. 'n:' .. me .. ':prev'
elseif src ~= '' then
  set = p .. 'n:' .. src .. ':s'
  if redis.call('EXISTS', p .. 'n:' .. src .. ':lease') == 1 then
    return {}
  end
end
local ids = redis.call('SPOP', set, tonumber(ARGV[3]))
local out = {}
local mine = p .. 'n:' .. me .. ':s'
for _, id in ipairs(ids) do
  local k = p .. 's:' .. id
  if redis.call('HGET', k, 'owner') == src then
    local g = redis.call('HINCRBY', k, 'gen', 1)
    redis.call('HSET', k, 'owner', me, 'sip', ARGV[2])
    redis.call('SADD', mine, id)
    out[#out + 1] = id
    out[#out + 1] = g
    out[#out + 1] = redis.call('HGET', k, 'data') or ''
  end
end
if src ~= '' and src ~= me and redis.call('SCARD', set) == 0 then
  redis.call('SREM', p .. 'nodes', src)
end
return out`)

// prevScript sets aside what an earlier run of this node owned, so that
// this run claims it like a dead node's (and its own set holds only what
// it serves).
var prevScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SUNIONSTORE', KEYS[2], KEYS[2], KEYS[1])
  redis.call('DEL', KEYS[1])
end
return redis.call('SCARD', KEYS[2])`)

// TakeOverPrevious sets aside the sessions an earlier run of this node
// owned (call it once, right after the first lease of a run) and returns
// how many there are; Claim with src = this node then takes them.
func (s *Store) TakeOverPrevious(ctx context.Context) (int64, error) {
	s.rt()
	return prevScript.Run(ctx, s.rdb, []string{ownedKey(s.node), Prefix + "n:" + s.node + ":prev"}).Int64()
}

// Claim takes up to n sessions of a dead node (src), of the free set
// (src ""), or left by an earlier run of this node (src = our id, after
// TakeOverPrevious).
func (s *Store) Claim(ctx context.Context, src string, n int) ([]Record, error) {
	s.rt()
	v, err := claimScript.Run(ctx, s.rdb, []string{nodesKey()}, s.node, s.sip, n, Prefix, src).Slice()
	if err != nil {
		if isNil(err) {
			return nil, nil
		}
		return nil, err
	}
	out := make([]Record, 0, len(v)/3)
	for i := 0; i+2 < len(v); i += 3 {
		d := asStr(v[i+2])
		s.bytesIn.Add(uint64(len(d)))
		out = append(out, Record{CallID: asStr(v[i]), Gen: asInt(v[i+1]), Data: []byte(d)})
	}
	return out, nil
}

// claimOneScript takes one session when its owner is gone or it is free.
// ARGV: me, sip, id, prefix. Returns {1, gen, data} (claimed), {0, owner,
// the owner's lease's remaining ms} (its owner's lease is alive), {-1}
// (unknown).
var claimOneScript = redis.NewScript(`
local me, id, p = ARGV[1], ARGV[3], ARGV[4]
local k = p .. 's:' .. id
local owner = redis.call('HGET', k, 'owner')
if not owner then
  return {-1}
end
if owner == me then
  -- Ours already (claimed in a batch a moment ago): nothing changes.
  return {1, tonumber(redis.call('HGET', k, 'gen')), redis.call('HGET', k, 'data') or ''}
end
if owner ~= '' then
  local ttl = redis.call('PTTL', p .. 'n:' .. owner .. ':lease')
  if ttl > 0 then
    return {0, owner, ttl}
  end
end
if owner == '' then
  redis.call('SREM', p .. 'free', id)
else
  redis.call('SREM', p .. 'n:' .. owner .. ':s', id)
end
local g = redis.call('HINCRBY', k, 'gen', 1)
redis.call('HSET', k, 'owner', me, 'sip', ARGV[2])
redis.call('SADD', p .. 'n:' .. me .. ':s', id)
return {1, g, redis.call('HGET', k, 'data') or ''}`)

// ErrOwned is returned by ClaimOne for a session whose owner is alive.
var ErrOwned = errors.New("cluster: session owned by a live node")

// ErrUnknown is returned by ClaimOne for a session the store does not have.
var ErrUnknown = errors.New("cluster: session unknown")

// Owned describes the live owner of a session ClaimOne could not take.
type Owned struct {
	Node     string
	LeaseTTL time.Duration // what is left of its lease
}

// ClaimOne takes one session (by Call-ID) whose owner is dead or that is
// free: a request for it reached this node first. ErrOwned comes with the
// owner and what is left of its lease (a live owner refreshes it, a dead
// one's runs out).
func (s *Store) ClaimOne(ctx context.Context, callID string) (Record, Owned, error) {
	s.rt()
	v, err := claimOneScript.Run(ctx, s.rdb, []string{sessKey(callID)}, s.node, s.sip, callID, Prefix).Slice()
	if err != nil {
		return Record{}, Owned{}, err
	}
	switch asInt(v[0]) {
	case 1:
		d := asStr(v[2])
		s.bytesIn.Add(uint64(len(d)))
		return Record{CallID: callID, Gen: asInt(v[1]), Data: []byte(d)}, Owned{}, nil
	case 0:
		return Record{}, Owned{Node: asStr(v[1]), LeaseTTL: time.Duration(asInt(v[2])) * time.Millisecond}, ErrOwned
	}
	return Record{}, Owned{}, ErrUnknown
}

// DeadNodes returns the nodes that may own sessions and hold no lease
// (this node excluded).
func (s *Store) DeadNodes(ctx context.Context) ([]string, error) {
	s.rt()
	nodes, err := s.rdb.SMembers(ctx, nodesKey()).Result()
	if err != nil {
		return nil, err
	}
	var others []string
	for _, n := range nodes {
		if n != s.node {
			others = append(others, n)
		}
	}
	if len(others) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(others))
	for i, n := range others {
		cmds[i] = pipe.Exists(ctx, leaseKey(n))
	}
	s.rt()
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	var dead []string
	for i, c := range cmds {
		if c.Val() == 0 {
			dead = append(dead, others[i])
		}
	}
	return dead, nil
}

// LiveNodes counts the nodes holding a lease (this one included).
func (s *Store) LiveNodes(ctx context.Context) (int, error) {
	s.rt()
	nodes, err := s.rdb.SMembers(ctx, nodesKey()).Result()
	if err != nil {
		return 0, err
	}
	pipe := s.rdb.Pipeline()
	for _, n := range nodes {
		pipe.Exists(ctx, leaseKey(n))
	}
	s.rt()
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		return 0, err
	}
	live := 0
	for _, c := range cmds {
		if c.(*redis.IntCmd).Val() == 1 {
			live++
		}
	}
	return live, nil
}

// OwnedCount is the number of sessions node owns (or, for "", the free
// ones).
func (s *Store) OwnedCount(ctx context.Context, node string) (int64, error) {
	s.rt()
	if node == "" {
		return s.rdb.SCard(ctx, freeKey()).Result()
	}
	return s.rdb.SCard(ctx, ownedKey(node)).Result()
}

// Owned returns the Call-IDs this node owns in the store.
func (s *Store) Owned(ctx context.Context) ([]string, error) {
	s.rt()
	return s.rdb.SMembers(ctx, ownedKey(s.node)).Result()
}

// Owner returns a session's owner and generation ("" when free; ErrUnknown
// when the store does not have it).
func (s *Store) Owner(ctx context.Context, callID string) (string, int64, error) {
	s.rt()
	v, err := s.rdb.HMGet(ctx, sessKey(callID), "owner", "gen").Result()
	if err != nil {
		return "", 0, err
	}
	if v[0] == nil {
		return "", 0, ErrUnknown
	}
	g, _ := strconv.ParseInt(asStr(v[1]), 10, 64)
	return asStr(v[0]), g, nil
}
