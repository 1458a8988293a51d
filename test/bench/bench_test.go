package main

// End-to-end hot-path benchmarks through cstagw's exported API: an
// in-process gateway (gateway.New) in front of an in-process ctisim, driven
// by the harness's raw SIP client over TCP on loopback. They complement the
// codec benchmarks (csta) and the CTI round-trip benchmarks (ctipool):
//
//	BenchmarkGatewayRequest   INFO in → session lookup → CTI round trip → 200 out
//	BenchmarkGatewaySignIn    INVITE + ACK + MonitorStart (+ BYE): session creation
//	BenchmarkGatewayEventFanout  one PBX event → INFOs to 8 sessions monitoring the device
//
// Allocation figures cover the whole process (gateway, ctisim and the
// client). Compare runs with benchstat:
//
//	go test -run '^$' -bench . -benchmem -count 10 ./test/bench > new.txt

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/gateway"
	"github.com/cstagw/cstagw/sipstack"
	"github.com/cstagw/cstagw/test/ctisim"
)

type benchGW struct {
	sim *ctisim.Sim
	gw  *gateway.Gateway
	cl  *Client
}

// startBenchGW runs ctisim and a gateway with users u1..uN (line = station
// 100000+i) plus extra, and a client with conns connections (network tcp)
// or sockets (udp).
func startBenchGW(b *testing.B, network string, users int, extra []gateway.UserConfig, conns int) *benchGW {
	b.Helper()
	scfg := ctisim.DefaultConfig()
	scfg.Stations = stationRange
	sim, err := ctisim.New(scfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := sim.Start(); err != nil {
		b.Fatal(err)
	}
	cfg := gateway.Config{
		SIP: sipstack.Config{Listen: []string{network + ":127.0.0.1:0"}, TrustedHosts: []string{"127.0.0.0/8"}},
		CTI: ctipool.Config{HeartbeatInterval: 10 * time.Second, RequestTimeout: 5 * time.Second,
			Links: []ctipool.LinkConfig{{Name: "cti-a", Address: sim.Addrs()[0], AppSession: true}}},
		Admin: gateway.AdminConfig{Listen: "off"},
	}
	for i := 1; i <= users; i++ {
		cfg.Directory.Users = append(cfg.Directory.Users, gateway.UserConfig{URI: userURI(i),
			Lines: []gateway.LineConfig{{Line: lineURI(i), Device: station(i)}}})
	}
	cfg.Directory.Users = append(cfg.Directory.Users, extra...)
	gw, err := gateway.New(cfg, zerolog.Nop())
	if err != nil {
		sim.Close()
		b.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		sim.Close()
		b.Fatal(err)
	}
	if err := waitFor(10*time.Second, "CTI link up", func() bool { return gw.Pool().AnyUp() }); err != nil {
		b.Fatal(err)
	}
	cl, err := NewClient(ClientOptions{Network: network, Gateway: gw.SIPAddr(network), Conns: conns, AnswerEvents: true})
	if err != nil {
		b.Fatal(err)
	}
	bg := &benchGW{sim: sim, gw: gw, cl: cl}
	b.Cleanup(bg.close)
	return bg
}

func (bg *benchGW) close() {
	bg.cl.Close()
	// Shutdown is bounded: with sessions still open it may not return.
	done := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		bg.gw.Shutdown(ctx)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
	_ = bg.sim.Close()
}

func signInB(b *testing.B, ss []*Session) {
	b.Helper()
	if st := signInAll(ss, 64); st.OK != len(ss) {
		b.Fatalf("sign-in: %d of %d: %s", st.OK, len(ss), fmtCounts(st.Failed))
	}
}

func byeAll(ss []*Session) {
	var wg sync.WaitGroup
	for _, s := range ss {
		if !s.IsSigned() {
			continue
		}
		wg.Add(1)
		if s.Bye(func(*Response, time.Duration) { wg.Done() }) != nil {
			wg.Done()
		}
	}
	wg.Wait()
}

// BenchmarkGatewayRequest: GetDoNotDisturb INFOs on 64 sessions over 2 TCP
// connections, 32 in flight.
func BenchmarkGatewayRequest(b *testing.B) { benchRequests(b, "tcp") }

// BenchmarkGatewayRequestUDP: the same over 2 UDP sockets (sipgo keeps a
// server transaction per request for 32 s).
func BenchmarkGatewayRequestUDP(b *testing.B) { benchRequests(b, "udp") }

func benchRequests(b *testing.B, network string) {
	const n = 64
	bg := startBenchGW(b, network, n, nil, 2)
	ss := make([]*Session, n)
	for i := range ss {
		ss[i] = bg.cl.NewSession(i+1, userURI(i+1), lineURI(i+1))
	}
	signInB(b, ss)
	defer byeAll(ss)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var bad atomic.Int64
	b.ReportAllocs()
	start := time.Now()
	i := 0
	for b.Loop() {
		sem <- struct{}{}
		wg.Add(1)
		err := ss[i%n].Request("GetDoNotDisturb", func(r *Response, _ time.Duration) {
			if classify(r) != "" {
				bad.Add(1)
			}
			<-sem
			wg.Done()
		})
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	if bad.Load() > 0 {
		b.Fatalf("%d requests failed", bad.Load())
	}
}

// BenchmarkGatewaySignIn: a whole sign-in (INVITE, ACK, MonitorStart) and
// sign-out (BYE) per op, 16 at a time.
func BenchmarkGatewaySignIn(b *testing.B) {
	const n = 256
	bg := startBenchGW(b, "tcp", n, nil, 2)
	ss := make([]*Session, n)
	for i := range ss {
		ss[i] = bg.cl.NewSession(i+1, userURI(i+1), lineURI(i+1))
	}
	free := make(chan *Session, n)
	for _, s := range ss {
		free <- s
	}
	var wg sync.WaitGroup
	var bad atomic.Int64
	var firstErr atomic.Value
	b.ReportAllocs()
	sem := make(chan struct{}, 16)
	for b.Loop() {
		sem <- struct{}{}
		s := <-free
		wg.Add(1)
		s.SignIn(func(r SignInResult) {
			if r.Err != nil {
				bad.Add(1)
				firstErr.CompareAndSwap(nil, r.Err.Error())
				free <- s
				<-sem
				wg.Done()
				return
			}
			if err := s.Bye(func(*Response, time.Duration) { free <- s; <-sem; wg.Done() }); err != nil {
				free <- s
				<-sem
				wg.Done()
			}
		})
	}
	wg.Wait()
	if bad.Load() > 0 {
		b.Fatalf("%d sign-ins failed (first: %v)", bad.Load(), firstErr.Load())
	}
}

// BenchmarkGatewayEventFanout: one user with 8 sessions monitoring the same
// station; per op an external call rings it and is hung up, and the
// benchmark waits for every event INFO. Reported per delivered INFO too.
func BenchmarkGatewayEventFanout(b *testing.B) {
	const fan = 8
	dev := station(99000)
	user := gateway.UserConfig{URI: "sip:fan@" + benchDomain, Lines: []gateway.LineConfig{{Line: lineURI(99000), Device: dev}}}
	bg := startBenchGW(b, "tcp", 0, []gateway.UserConfig{user}, 1)
	ss := make([]*Session, fan)
	for i := range ss {
		ss[i] = bg.cl.NewSession(i, user.URI, lineURI(99000))
	}
	signInB(b, ss)
	defer byeAll(ss)
	call := func() error {
		id, err := bg.sim.PlaceCall("+12065550147", dev)
		if err != nil {
			return err
		}
		return bg.sim.Hangup(id, "")
	}
	// Learn how many INFOs one call produces.
	before := bg.cl.EventsRx.Load()
	if err := call(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	per := bg.cl.EventsRx.Load() - before
	if per == 0 {
		b.Fatal("no event INFO reached the sessions")
	}
	base := bg.cl.EventsRx.Load()
	b.ReportAllocs()
	start := time.Now()
	var calls uint64
	for b.Loop() {
		if err := call(); err != nil {
			b.Fatal(err)
		}
		calls++
		want := base + calls*per
		for deadline := time.Now().Add(5 * time.Second); bg.cl.EventsRx.Load() < want; {
			if time.Now().After(deadline) {
				b.Fatalf("got %d of %d event INFOs", bg.cl.EventsRx.Load()-base, calls*per)
			}
			time.Sleep(20 * time.Microsecond)
		}
	}
	el := time.Since(start)
	b.ReportMetric(float64(per), "infos/op")
	b.ReportMetric(float64(el.Nanoseconds())/float64(calls*per), "ns/info")
}

// TestRootElement keeps the small parsers honest.
func TestRootElement(t *testing.T) {
	for in, want := range map[string]string{
		`<?xml version="1.0"?><DeliveredEvent xmlns="x">`: "DeliveredEvent",
		`<SystemStatus><systemStatus>disabled`:            "SystemStatus",
		``:                                                "(none)",
	} {
		if got := rootElement([]byte(in)); got != want {
			t.Errorf("rootElement(%q) = %q, want %q", in, got, want)
		}
	}
	var p parsed
	msg := "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.2:5;branch=z9hG4bKx\r\nTo: <sip:gw@h>;tag=gw-1\r\ni: abc\r\nCSeq: 7 INFO\r\nl: 2\r\n\r\nok"
	if !parseMsg([]byte(msg), &p) || p.status != 200 || string(p.callID) != "abc" || p.cseq != 7 || string(p.cmeth) != "INFO" || string(p.toTag) != "gw-1" || string(p.body) != "ok" {
		t.Fatalf("parseMsg: %+v", p)
	}
	if fmt.Sprint(parseSteps("40000, 10000,x", "")) != "[10000 40000]" {
		t.Fatal("parseSteps")
	}
}
