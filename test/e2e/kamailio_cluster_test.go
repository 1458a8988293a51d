package e2e

// The proxy's in-dialog retries in cluster mode (WITH_REDIS), checked
// against configs/kamailio/kamailio.cfg with a real Kamailio and a real
// redis-server: three stand-in gateways on loopback answer the client's
// INFO as the test tells them, and change the dialog's owner in Redis the
// way a takeover or a drain does, at the moment they answer.

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/gateway/cluster/redistest"
)

// standIn is a gateway stand-in: it answers OPTIONS 200 (the dispatcher's
// probes) and each INFO with what answer returns for it.
type standIn struct {
	name    string
	conn    *net.UDPConn
	uri     string       // sip:127.0.0.1:port
	options atomic.Int32 // the answer to OPTIONS (0: 200)
}

// standIns runs n stand-ins; answer is called for every INFO one of them
// receives, in arrival order.
func standIns(t *testing.T, n int, answer func(s *standIn) (int, string)) []*standIn {
	t.Helper()
	var mu sync.Mutex // one INFO at a time, so that answer sees them in order
	out := make([]*standIn, n)
	for i := range out {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		s := &standIn{name: string(rune('A' + i)), conn: conn, uri: "sip:" + conn.LocalAddr().String()}
		out[i] = s
		go func() {
			buf := make([]byte, 65535)
			for {
				n, from, err := conn.ReadFromUDP(buf)
				if err != nil {
					return
				}
				msg := string(buf[:n])
				var code int
				var reason string
				switch {
				case strings.HasPrefix(msg, "OPTIONS "):
					code, reason = 200, "OK"
					if c := s.options.Load(); c != 0 {
						code, reason = int(c), "Draining"
					}
				case strings.HasPrefix(msg, "INFO "):
					mu.Lock()
					code, reason = answer(s)
					mu.Unlock()
				default:
					continue
				}
				_, _ = conn.WriteToUDP([]byte(responseTo(msg, code, reason)), from)
			}
		}()
	}
	return out
}

// responseTo builds the answer to a request: its Via, From, To, Call-ID
// and CSeq, no body.
func responseTo(req string, code int, reason string) string {
	res := fmt.Sprintf("SIP/2.0 %d %s\r\n", code, reason)
	for _, v := range headerValues(req, "Via") {
		res += "Via: " + v + "\r\n"
	}
	for _, h := range []string{"From", "To", "Call-ID", "CSeq"} {
		res += h + ": " + strings.Join(headerValues(req, h), "") + "\r\n"
	}
	return res + "Content-Length: 0\r\n\r\n"
}

// TestKamailioInDialogFollowsOwner sends one in-dialog INFO per case
// through the proxy and checks which stand-ins it reached, in order, and
// what the client got.
func TestKamailioInDialogFollowsOwner(t *testing.T) {
	kamBin := findKamailio()
	require.NotEmpty(t, kamBin, "kamailio not found (test/all.sh installs it)")
	// WITH_REDIS needs ndb_redis.so (kamailio-redis-modules): without it
	// Kamailio exits at start, and startKamailioWith says so.
	rds := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: rds.Addr})
	defer rdb.Close()
	ctx := context.Background()
	// (Called from the stand-ins' goroutines too: assert, not require.)
	setOwner := func(callID string, s *standIn) {
		assert.NoError(t, rdb.HSet(ctx, "cstagw:s:"+callID, "owner", s.name, "sip", s.uri).Err())
	}
	setLease := func(s *standIn, alive bool) {
		if alive {
			require.NoError(t, rdb.Set(ctx, "cstagw:n:"+s.name+":lease", "token", time.Minute).Err())
		} else {
			require.NoError(t, rdb.Del(ctx, "cstagw:n:"+s.name+":lease").Err())
		}
	}

	// Each case: what the stand-ins answer, given the INFO's arrivals so
	// far (the one being answered last), and what may change in Redis.
	type step func(arrived []*standIn, callID string) (int, string)
	var (
		mu      sync.Mutex
		callID  string
		arrived []*standIn
		current step
	)
	gws := standIns(t, 3, func(s *standIn) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		arrived = append(arrived, s)
		return current(arrived, callID)
	})
	var list strings.Builder
	for i, s := range gws {
		fmt.Fprintf(&list, "1 %s 0 0 duid=standin-%d\n", s.uri, i)
	}
	host, port, err := net.SplitHostPort(rds.Addr)
	require.NoError(t, err)
	kam := startKamailioWith(t, kamBin, list.String(), "WITH_REDIS",
		fmt.Sprintf(`REDIS_SERVER="name=cstagw;addr=%s;port=%s"`, host, port), "DLG_FR_TIMER=1500")
	ua := newRawUA(t)

	// other returns the stand-in that is neither a nor b.
	other := func(a, b *standIn) *standIn {
		for _, s := range gws {
			if s != a && s != b {
				return s
			}
		}
		return nil
	}
	run := func(name string, owner *standIn, st step) (int, []string) {
		mu.Lock()
		callID = "e2e-owner-" + name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		arrived = nil
		current = st
		id := callID
		mu.Unlock()
		setOwner(id, owner)
		code := inDialogInfo(t, ua, kam.addr, owner.uri, id)
		mu.Lock()
		defer mu.Unlock()
		var names []string
		for _, s := range arrived {
			names = append(names, s.name)
		}
		return code, names
	}

	t.Run("owner serves", func(t *testing.T) {
		code, path := run("direct", gws[0], func(arrived []*standIn, _ string) (int, string) { return 200, "OK" })
		assert.Equal(t, 200, code)
		assert.Equal(t, []string{"A"}, path)
	})

	t.Run("takeover: the retry goes to the new owner", func(t *testing.T) {
		// A answers 503 after B took the dialog over.
		code, path := run("takeover", gws[0], func(arrived []*standIn, id string) (int, string) {
			if len(arrived) == 1 {
				setOwner(id, gws[1])
				return 503, "Service Unavailable"
			}
			return 200, "OK"
		})
		assert.Equal(t, 200, code)
		assert.Equal(t, []string{"A", "B"}, path)
	})

	t.Run("drain race: a third try on the owner named meanwhile", func(t *testing.T) {
		// A is handing the dialog off: 503. The proxy tries another node,
		// which finds that the third one claimed it meanwhile: 503 Dialog
		// Elsewhere. The third node serves it.
		var second, third *standIn
		code, path := run("drain", gws[0], func(arrived []*standIn, id string) (int, string) {
			switch len(arrived) {
			case 1:
				return 503, "Service Unavailable"
			case 2:
				second = arrived[1]
				third = other(gws[0], second)
				setOwner(id, third)
				return 503, "Dialog Elsewhere"
			}
			return 200, "OK"
		})
		assert.Equal(t, 200, code, "the client's INFO was served")
		require.Len(t, path, 3)
		assert.Equal(t, []string{"A", second.name, third.name}, path)
	})

	t.Run("no third try without a new owner", func(t *testing.T) {
		// Redis names A all along: after A and one other node, the proxy
		// gives up rather than ask A again.
		code, path := run("nonew", gws[0], func(arrived []*standIn, _ string) (int, string) {
			return 503, "Service Unavailable"
		})
		assert.Equal(t, 503, code)
		assert.Len(t, path, 2, "tried A and one other node: %v", path)
	})

	t.Run("three tries at most", func(t *testing.T) {
		// The owner changes at every answer, to a node not tried yet or
		// not just tried: the proxy still stops after the third try.
		code, path := run("bounded", gws[0], func(arrived []*standIn, id string) (int, string) {
			last := arrived[len(arrived)-1]
			if last == gws[0] {
				setOwner(id, gws[1])
			} else {
				setOwner(id, other(gws[0], last))
			}
			return 503, "Dialog Elsewhere"
		})
		assert.Equal(t, 503, code)
		assert.Len(t, path, 3, "%v", path)
	})

	// C answers OPTIONS 503 from now on, as a draining node does: the
	// probes take it out of rotation.
	gws[2].options.Store(503)
	kam.waitDispatcherFlags(t, gws[2].uri, "IP", 10*time.Second)
	served := func(arrived []*standIn, _ string) (int, string) { return 200, "OK" }

	t.Run("a draining owner keeps its dialogs", func(t *testing.T) {
		// Out of rotation, but its lease is alive: it is handing its
		// sessions over and serves them until then.
		setLease(gws[2], true)
		code, path := run("draining", gws[2], served)
		assert.Equal(t, 200, code)
		assert.Equal(t, []string{"C"}, path)
	})

	t.Run("a dead owner's dialogs go to another node", func(t *testing.T) {
		// Out of rotation and its lease gone: another node claims them.
		setLease(gws[2], false)
		code, path := run("dead", gws[2], served)
		assert.Equal(t, 200, code)
		require.Len(t, path, 1)
		assert.NotEqual(t, "C", path[0])
	})
	if t.Failed() {
		t.Logf("kamailio log (tail):\n%s", tailFile(kam.logPath, 60))
	}
}

// inDialogInfo sends an INFO inside an established dialog through the
// proxy (Route: the proxy; Request-URI: the gateway's Contact) and returns
// the final status the client got.
func inDialogInfo(t *testing.T, ua *rawUA, proxy, gwURI, callID string) int {
	t.Helper()
	branch := "z9hG4bK-e2e-info-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	msg := "INFO " + strings.Replace(gwURI, "sip:", "sip:gw@", 1) + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + ua.advertised + ";branch=" + branch + ";rport\r\n" +
		"Route: <sip:" + proxy + ";lr>\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@cstagw.test>;tag=ua-" + callID + "\r\n" +
		"To: <sip:gw@cstagw.test>;tag=gw-" + callID + "\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 2 INFO\r\n" +
		"Content-Length: 0\r\n\r\n"
	ua.send(t, proxy, msg)
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, _, err := ua.read(deadline)
		require.NoError(t, err, "no final answer to the INFO")
		var code int
		if _, err := fmt.Sscanf(res, "SIP/2.0 %d", &code); err != nil || code < 200 {
			continue
		}
		if !strings.Contains(strings.Join(headerValues(res, "Via"), ","), branch) {
			continue // a late answer to an earlier case
		}
		return code
	}
}
