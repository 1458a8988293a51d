package main

// The cluster end to end, as operators run it: Kamailio with the project's
// configuration (WITH_REDIS), three cstagw processes in cluster mode, one
// redis-server, the CTI simulator; 300 clients signed in through the proxy.
// A node is killed with SIGKILL: each of its clients' next request is
// answered on its original dialog by a surviving node, and the events of a
// new call reach it with the monitorCrossRefID it had; the other clients
// notice nothing. Then all three nodes are restarted one by one (SIGTERM,
// start, next) under request traffic and a sipp sign-in load: no dialog is
// lost, no request waits more than a few seconds, the switch never sees
// more MonitorStart/Snapshot requests in flight than the nodes' budgets.
//
// It lives here, not in test/e2e, because it drives the load client and the
// process rig of this package.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/gateway/cluster"
)

const clusterUsers = 300

// eventLog remembers, per session, the events received with their
// monitorCrossRefIDs.
type eventLog struct {
	mu  sync.Mutex
	evs map[int][]loggedEvent
}

type loggedEvent struct {
	kind, xref string
	at         time.Time
}

func (l *eventLog) add(s *Session, kind, xref string) {
	l.mu.Lock()
	l.evs[s.Idx] = append(l.evs[s.Idx], loggedEvent{kind, xref, time.Now()})
	l.mu.Unlock()
}

func (l *eventLog) since(idx int, t time.Time, kind string) []loggedEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []loggedEvent
	for _, e := range l.evs[idx] {
		if !e.at.Before(t) && e.kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// request sends one GetDoNotDisturb and waits for its final answer.
func request(s *Session) (status int, rtt time.Duration) {
	done := make(chan struct{})
	err := s.Request("GetDoNotDisturb", func(r *Response, d time.Duration) {
		if r != nil && strings.Contains(string(r.Body), "GetDoNotDisturbResponse") {
			status = r.Status
		} else if r != nil {
			status = -r.Status // answered, but not with the CSTA response
		}
		rtt = d
		close(done)
	})
	if err != nil {
		return 0, 0
	}
	<-done
	return status, rtt
}

func TestClusterThroughKamailio(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	dir := t.TempDir()
	gwBin, simBin, err := build(root, dir, false)
	require.NoError(t, err)
	lab, err := startClusterLab(ClusterOptions{Dir: filepath.Join(dir, "lab"), Root: root, GWBin: gwBin, SimBin: simBin,
		Nodes: 3, Users: clusterUsers + 40, Lease: 2 * time.Second, Budget: 8}, false)
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*Proc{lab.Kam, lab.Nodes[0].Proc, lab.Nodes[1].Proc, lab.Nodes[2].Proc} {
				if p != nil {
					t.Logf("--- %s (last lines):\n%s", p.Log, tail(p.Log, 30))
				}
			}
		}
		lab.Stop()
	})
	store, err := cluster.Open(cluster.Config{NodeID: "test-probe", Redis: cluster.RedisConfig{Address: lab.RedisAdr}}, "")
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	owner := func(s *Session) string {
		s.mu.Lock()
		id := s.callID
		s.mu.Unlock()
		o, _, _ := store.Owner(context.Background(), id)
		return o
	}
	// Kamailio probes every node once a second: wait until it uses all three.
	require.NoError(t, waitFor(20*time.Second, "three active gateways in Kamailio", func() bool {
		out, _ := exec.Command(findBinary("kamcmd", "/usr/sbin/kamcmd"), "-s", "unix:"+lab.KamCtl, "dispatcher.list").CombinedOutput()
		return strings.Count(string(out), "FLAGS: AP") == 3
	}))

	events := &eventLog{evs: map[int][]loggedEvent{}}
	cl, err := NewClient(ClientOptions{Network: "udp", Gateway: lab.KamAddr, Conns: 4, AnswerEvents: true,
		Timeout: 15 * time.Second, Domain: benchDomain})
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	cl.OnEventXref = events.add
	sess := cl.UserSessions(clusterUsers)
	var wg sync.WaitGroup
	var signErr atomic.Value
	for i := range sess {
		wg.Add(1)
		sess[i].SignIn(func(r SignInResult) {
			if r.Err != nil {
				signErr.Store(r.Err)
			}
			wg.Done()
		})
		if i%20 == 19 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	wg.Wait()
	require.Nil(t, signErr.Load(), "sign-in through the proxy")
	byNode := map[string][]*Session{}
	require.NoError(t, waitFor(10*time.Second, "every session in the store with its monitor", func() bool {
		byNode = map[string][]*Session{}
		for _, s := range sess {
			byNode[owner(s)] = append(byNode[owner(s)], s)
		}
		return len(byNode[""]) == 0
	}))
	for _, n := range lab.Nodes {
		t.Logf("%s: %d sessions", n.ID, len(byNode[n.ID]))
		require.NotEmpty(t, byNode[n.ID], "the proxy spreads sign-ins over every node")
	}

	// 1. SIGKILL one node.
	victim := lab.Nodes[0]
	orphans := byNode[victim.ID]
	others := append(append([]*Session(nil), byNode[lab.Nodes[1].ID]...), byNode[lab.Nodes[2].ID]...)
	killed := time.Now()
	victim.Kill()
	var worst atomic.Int64
	var bad atomic.Int32
	for _, s := range orphans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, _ := request(s)
			if st != 200 {
				bad.Add(1)
				t.Errorf("u%d: request after the kill answered %d", s.Idx, st)
			}
			if d := time.Since(killed); int64(d) > worst.Load() {
				worst.Store(int64(d))
			}
		}()
	}
	wg.Wait()
	t.Logf("%d orphaned sessions: every one answered 200 within %v of the kill", len(orphans), time.Duration(worst.Load()))
	assert.Less(t, time.Duration(worst.Load()), 10*time.Second)
	for _, s := range orphans {
		assert.Contains(t, []string{lab.Nodes[1].ID, lab.Nodes[2].ID}, owner(s), "u%d's owner", s.Idx)
	}
	// Events of a new call, with the monitorCrossRefID the client had.
	mark := time.Now()
	for _, s := range orphans {
		_, err := lab.PlaceCall(s.Idx)
		require.NoError(t, err)
	}
	missing := func() []string {
		var out []string
		for _, s := range orphans {
			if len(events.since(s.Idx, mark, "DeliveredEvent")) == 0 {
				out = append(out, fmt.Sprintf("u%d@%s", s.Idx, owner(s)))
			}
		}
		return out
	}
	err = waitFor(10*time.Second, "DeliveredEvent at every orphaned session", func() bool { return len(missing()) == 0 })
	require.NoError(t, err, "events after the takeover; missing at %v", missing())
	for _, s := range orphans {
		for _, e := range events.since(s.Idx, mark, "DeliveredEvent") {
			assert.Equal(t, s.Xref, e.xref, "u%d's events carry its monitorCrossRefID", s.Idx)
		}
	}
	t.Logf("the new calls' DeliveredEvents reached every orphaned session %v after the kill", time.Since(killed))
	// The other nodes' clients noticed nothing.
	for _, s := range others {
		assert.Empty(t, events.since(s.Idx, killed, "SystemStatus"), "u%d was told about the takeover", s.Idx)
	}
	st, _ := request(others[0])
	assert.Equal(t, 200, st)
	require.NoError(t, victim.Start())

	// 2. Rolling restart under traffic.
	var sent, failed, slow atomic.Int64
	var maxRTT atomic.Int64
	stop := make(chan struct{})
	var traffic sync.WaitGroup
	for w := 0; w < 8; w++ {
		traffic.Add(1)
		go func() {
			defer traffic.Done()
			for i := w; ; i += 8 {
				select {
				case <-stop:
					return
				default:
				}
				s := sess[i%len(sess)]
				st, rtt := request(s)
				sent.Add(1)
				if st != 200 {
					failed.Add(1)
					t.Errorf("u%d: request during the rolling restart answered %d after %v", s.Idx, st, rtt)
				}
				if rtt > 4*time.Second {
					slow.Add(1)
				}
				if int64(rtt) > maxRTT.Load() {
					maxRTT.Store(int64(rtt))
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	sipp := startSippSignins(t, lab, clusterUsers+1, 40, filepath.Join(dir, "sipp"))
	for _, n := range lab.Nodes {
		start := time.Now()
		require.NoError(t, n.Drain(30*time.Second))
		t.Logf("%s drained and exited in %v", n.ID, time.Since(start))
		require.NoError(t, n.Start())
		time.Sleep(time.Second)
	}
	close(stop)
	traffic.Wait()
	sippErr := sipp.Wait()
	t.Logf("rolling restart: %d requests, %d failed, %d over 4 s, slowest %v; BYEs received %d",
		sent.Load(), failed.Load(), slow.Load(), time.Duration(maxRTT.Load()), cl.ByeRx.Load())
	assert.Zero(t, failed.Load())
	assert.Zero(t, slow.Load(), "no request unanswered for more than a few seconds")
	assert.Zero(t, cl.ByeRx.Load(), "no dialog ended")
	assert.NoError(t, sippErr, "sipp sign-ins during the restart: %s", tail(filepath.Join(dir, "sipp", "out.log"), 20))
	for _, s := range sess {
		st, _ := request(s)
		require.Equal(t, 200, st, "u%d after the rolling restart", s.Idx)
		assert.False(t, s.Dead)
	}
	nodes, err := lab.SimState()
	require.NoError(t, err)
	for _, nd := range nodes {
		t.Logf("switch node %d: MonitorStart+Snapshot in flight at most %d", nd.Index, nd.InFlightMonitorSnapshotHighWater)
		assert.LessOrEqual(t, nd.InFlightMonitorSnapshotHighWater, lab.Opt.Budget*len(lab.Nodes),
			"never more than each node's admission budget per link")
	}
}

// sippRun is one sipp process.
type sippProc struct {
	cmd  *exec.Cmd
	done chan error
}

func (p *sippProc) Wait() error { return <-p.done }

// startSippSignins runs test/sipp/signin.xml through the proxy for users
// first..first+n-1, two calls a second, four at a time.
func startSippSignins(t *testing.T, lab *ClusterLab, first, n int, dir string) *sippProc {
	t.Helper()
	bin := findBinary("sipp", "/usr/bin/sipp")
	require.NotEmpty(t, bin, "sipp not found (apt-get install sip-tester, or run test/all.sh)")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	var b strings.Builder
	b.WriteString("SEQUENTIAL\n")
	for i := first; i < first+n; i++ {
		fmt.Fprintf(&b, "%s;tel:%s;%s\n", userURI(i), station(i), station(1))
	}
	users := filepath.Join(dir, "users.csv")
	require.NoError(t, os.WriteFile(users, []byte(b.String()), 0o644))
	out, err := os.Create(filepath.Join(dir, "out.log"))
	require.NoError(t, err)
	cmd := exec.Command(bin, lab.KamAddr, "-sf", filepath.Join(lab.Opt.Root, "test", "sipp", "signin.xml"), "-inf", users,
		"-i", "127.0.0.1", "-p", strconv.Itoa(freePort()), "-t", "u1", "-m", strconv.Itoa(n), "-r", "2", "-l", "4",
		"-aa", "-nostdin", "-timeout", "120s", "-timeout_error", "-recv_timeout", "15s",
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"))
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	p := &sippProc{cmd: cmd, done: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		out.Close()
		p.done <- err
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return p
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
