package ctisim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log"
	"math/big"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cstagw/cstagw/csta"
	"github.com/stretchr/testify/require"
)

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t *testing.T) *log.Logger { return log.New(tWriter{t}, "", log.Lmicroseconds) }

func TestWireSessionBootstrap(t *testing.T) {
	s := startSim(t, func(c *Config) {
		c.RequireSession = true
		c.Login = "cti:secret"
		c.MaxSessionDuration = 120 * time.Second
	})

	// Before a session, CSTA requests are refused.
	c := dialNode(t, s, 0)
	r := c.call(&csta.Message{Kind: csta.KindMonitorStart, Device: csta.Dev(A)})
	require.Equal(t, csta.KindCSTAErrorCode, r.Kind)
	require.Equal(t, codeSecurityViolation, r.Error)

	// Versions the switch does not speak are refused; the link stays.
	r = c.call(&csta.Message{Kind: csta.KindStartApplicationSession, ApplicationID: "t", LoginUser: "cti", LoginPassword: "secret",
		ProtocolVersions: []string{csta.NSEd2, "urn:example:other"}})
	require.Equal(t, csta.KindStartApplicationSessionNegResponse, r.Kind)
	require.Equal(t, "requestedProtocolVersionNotSupported", r.Reason)

	// The first version it supports wins; the duration is capped.
	id := c.send(&csta.Message{Kind: csta.KindStartApplicationSession, ApplicationID: "t", LoginUser: "cti", LoginPassword: "secret",
		LoginNamespace: csta.NSEltex, ProtocolVersions: []string{csta.NSEd2, csta.NSEd5, csta.NSEd4}, SessionDuration: 600})
	f := c.reply(id)
	require.Equal(t, csta.KindStartApplicationSessionPosResponse, f.msg.Kind, f.raw)
	require.Equal(t, csta.NSAppSession, f.msg.Namespace)
	require.Equal(t, csta.NSEd5, f.msg.ProtocolVersion)
	require.Equal(t, 120, f.msg.SessionDuration)
	session := f.msg.SessionID
	require.NotEmpty(t, session)

	// Replies now come in the negotiated namespace, whatever the request's.
	c.ns = csta.NSEd3
	id = c.send(&csta.Message{Kind: csta.KindMonitorStart, Device: csta.Dev(A)})
	f = c.reply(id)
	require.Equal(t, csta.KindMonitorStartResponse, f.msg.Kind)
	require.Equal(t, csta.NSEd5, f.msg.Namespace)

	// Reset: unknown session refused, the right one accepted.
	r = c.call(&csta.Message{Kind: csta.KindResetApplicationSessionTimer, SessionID: "nope", SessionDuration: 60})
	require.Equal(t, csta.KindResetApplicationSessionTimerNegResponse, r.Kind)
	require.Equal(t, "invalidSessionID", r.Reason)
	r = c.call(&csta.Message{Kind: csta.KindResetApplicationSessionTimer, SessionID: session, SessionDuration: 60})
	require.Equal(t, csta.KindResetApplicationSessionTimerPosResponse, r.Kind)
	require.Equal(t, 60, r.SessionDuration)

	require.Eventually(t, func() bool {
		n := s.State().Nodes[0]
		return n.Sessions == 1 && n.Monitors == 1 && n.Clients[0].Namespace == csta.NSEd5
	}, wait, 5*time.Millisecond)

	// Stop: positive response, then the switch closes the connection.
	r = c.call(&csta.Message{Kind: csta.KindStopApplicationSession, SessionID: "nope"})
	require.Equal(t, csta.KindStopApplicationSessionNegResponse, r.Kind)
	r = c.call(&csta.Message{Kind: csta.KindStopApplicationSession, SessionID: session, Reason: "normal"})
	require.Equal(t, csta.KindStopApplicationSessionPosResponse, r.Kind)
	c.closed()
	require.Eventually(t, func() bool { return s.State().Nodes[0].ConnectedClients == 0 }, wait, 5*time.Millisecond)

	// A wrong login: NegResponse invalidApplicationInfo, then close.
	c2 := dialNode(t, s, 1)
	r = c2.call(&csta.Message{Kind: csta.KindStartApplicationSession, ApplicationID: "t", LoginUser: "cti", LoginPassword: "wrong",
		ProtocolVersions: []string{csta.NSEd4}})
	require.Equal(t, csta.KindStartApplicationSessionNegResponse, r.Kind)
	require.Equal(t, "invalidApplicationInfo", r.Reason)
	c2.closed()
}

func TestWireSessionExpiry(t *testing.T) {
	s := startSim(t, func(c *Config) { c.MaxSessionDuration = 150 * time.Millisecond })
	c := dialNode(t, s, 0)
	start := time.Now() // before the request: the timer cannot start earlier
	r := startSession(c, csta.NSEd6)
	require.Equal(t, csta.KindStartApplicationSessionPosResponse, r.Kind)
	require.Equal(t, 1, r.SessionDuration, "sub-second test durations round up to 1 s on the wire")
	f := c.mustRead()
	require.Equal(t, csta.KindApplicationSessionTerminated, f.msg.Kind, f.raw)
	require.Equal(t, r.SessionID, f.msg.SessionID)
	require.Equal(t, "sessionTimerExpired", f.msg.Reason)
	require.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond)
	c.closed()
}

func TestWireSessionResetKeepsAlive(t *testing.T) {
	// Margins are wide (a 1 s session kept alive for 2 s) so a loaded
	// machine that stalls the process for a few hundred ms still passes.
	s := startSim(t, func(c *Config) { c.MaxSessionDuration = time.Second })
	c := dialNode(t, s, 0)
	r := startSession(c, csta.NSEd4)
	require.Equal(t, csta.KindStartApplicationSessionPosResponse, r.Kind)
	session := r.SessionID
	expires := func() time.Time {
		ts, err := time.Parse(time.RFC3339Nano, s.State().Nodes[0].Clients[0].SessionEnd)
		require.NoError(t, err)
		return ts
	}
	first := expires()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		<-tick.C
		r := c.call(&csta.Message{Kind: csta.KindResetApplicationSessionTimer, SessionID: session})
		require.Equal(t, csta.KindResetApplicationSessionTimerPosResponse, r.Kind)
	}
	require.True(t, expires().After(first.Add(time.Second)), "each reset moves the expiry")
	r = c.call(req(csta.KindRequestSystemStatus))
	require.Equal(t, "normal", r.SystemStatus)
	require.Empty(t, c.events)
}

func TestWireSpeakFirstWithoutSession(t *testing.T) {
	s := startSim(t, func(c *Config) { c.SpeakFirst = true; c.Namespace = "ed3" })
	c := dialNode(t, s, 0)
	f := c.mustRead()
	require.Equal(t, csta.KindSystemStatus, f.msg.Kind, f.raw)
	require.Equal(t, "normal", f.msg.SystemStatus)
	require.NotEqual(t, csta.EventInvokeID, f.id)
	require.Equal(t, csta.NSEd3, f.msg.Namespace)
	require.Eventually(t, func() bool {
		cl := s.State().Nodes[0].Clients
		return len(cl) == 1 && cl[0].AwaitingSystemStatus
	}, wait, 5*time.Millisecond)
	c.write(f.id, &csta.Message{Kind: csta.KindSystemStatusResponse})
	require.Eventually(t, func() bool { return !s.State().Nodes[0].Clients[0].AwaitingSystemStatus }, wait, 5*time.Millisecond)

	// No session: the configured namespace, every service available.
	id := c.send(req(csta.KindRequestSystemStatus))
	f = c.reply(id)
	require.Equal(t, csta.KindRequestSystemStatusResponse, f.msg.Kind)
	require.Equal(t, "normal", f.msg.SystemStatus)
	require.Equal(t, csta.NSEd3, f.msg.Namespace)

	r := c.call(&csta.Message{Kind: csta.KindSystemRegister, RegisterSystemStatus: true})
	require.Equal(t, csta.KindSystemRegisterResponse, r.Kind)
	require.NotEmpty(t, r.SysStatRegisterID)

	// A switch-style SystemStatus request from the client is answered too.
	r = c.call(&csta.Message{Kind: csta.KindSystemStatus, SystemStatus: "normal"})
	require.Equal(t, csta.KindSystemStatusResponse, r.Kind)

	r = c.ok(req(csta.KindGetCSTAFeatures))
	require.NotEmpty(t, r.SupportedServices)
	require.Equal(t, "capExchangeServList", r.SupportedServices[0].List)
}

func TestWireInvokeIDsAndEvents(t *testing.T) {
	s := startSim(t, nil)
	c := dialNode(t, s, 0)
	for _, id := range []int{0, 1234, 9998} {
		c.write(id, &csta.Message{Kind: csta.KindMonitorStart, Device: csta.Dev(A)})
		f := c.mustRead()
		require.Equal(t, id, f.id)
		require.Equal(t, csta.KindMonitorStartResponse, f.msg.Kind)
	}
	// Three monitors on A: every event comes three times, each copy with its
	// own monitorCrossRefID, all with invoke id 9999.
	r := c.ok(makeCallReq(A, B))
	require.Equal(t, A, r.Connection.DeviceID)
	xrefs := map[string]int{}
	for _, k := range []csta.Kind{csta.KindServiceInitiatedEvent, csta.KindOriginatedEvent, csta.KindDeliveredEvent} {
		for i := 0; i < 3; i++ {
			m := c.event(k)
			xrefs[m.MonitorCrossRefID]++
		}
	}
	require.Len(t, xrefs, 3)
}

func TestWireEventsBeforeResponse(t *testing.T) {
	for _, first := range []bool{true, false} {
		s := startSim(t, func(c *Config) { c.EventsFirst = first })
		c := dialNode(t, s, 0)
		c.monitor(A)
		id := c.send(makeCallReq(A, B))
		var kinds []string
		for i := 0; i < 4; i++ {
			kinds = append(kinds, c.mustRead().msg.Kind.String())
		}
		want := []string{"ServiceInitiatedEvent", "OriginatedEvent", "MakeCallResponse", "DeliveredEvent"}
		if !first {
			want = []string{"MakeCallResponse", "ServiceInitiatedEvent", "OriginatedEvent", "DeliveredEvent"}
		}
		require.Equal(t, want, kinds, "eventsFirst=%v (request %d)", first, id)
	}
}

func TestWireMonitorSeesCallFromOtherNode(t *testing.T) {
	s := startSim(t, nil)
	watcher := dialNode(t, s, 0)
	xrefB := watcher.monitor(B)
	driver := dialNode(t, s, 1)
	xrefA := driver.monitor(A)

	r := driver.ok(makeCallReq(A, B))
	call := r.Connection.CallID
	for _, k := range []csta.Kind{csta.KindServiceInitiatedEvent, csta.KindOriginatedEvent} {
		m := driver.event(k)
		require.Equal(t, xrefA, m.MonitorCrossRefID)
	}
	m := driver.event(csta.KindDeliveredEvent)
	require.Equal(t, "connected", m.LocalConnectionInfo)
	m = watcher.event(csta.KindDeliveredEvent)
	require.Equal(t, xrefB, m.MonitorCrossRefID)
	require.Equal(t, "alerting", m.LocalConnectionInfo)
	require.Equal(t, "newCall", m.Cause)
	require.Equal(t, conn(call, B), m.Connection)
	require.Equal(t, csta.Dev(A), m.CallingDevice)

	// The watcher answers on node 0; both see Established.
	watcher.ok(connReq(csta.KindAnswerCall, call, B))
	require.Equal(t, "connected", watcher.event(csta.KindEstablishedEvent).LocalConnectionInfo)
	require.Equal(t, "connected", driver.event(csta.KindEstablishedEvent).LocalConnectionInfo)

	// A control-API hangup reaches both nodes' monitors.
	require.NoError(t, s.Hangup(call, B))
	m = watcher.event(csta.KindConnectionClearedEvent)
	require.Equal(t, "null", m.LocalConnectionInfo)
	require.Equal(t, "connected", driver.event(csta.KindConnectionClearedEvent).LocalConnectionInfo)
	require.Equal(t, "null", driver.event(csta.KindConnectionClearedEvent).LocalConnectionInfo)
}

func TestWireBadInput(t *testing.T) {
	s := startSim(t, nil)
	c := dialNode(t, s, 0)

	// Well framed, not XML: CSTAErrorCode with the same invoke id.
	c.writeDoc(42, []byte(`<MonitorStart><monitorObject>`))
	f := c.mustRead()
	require.Equal(t, 42, f.id)
	require.Equal(t, csta.KindCSTAErrorCode, f.msg.Kind)
	require.Equal(t, csta.CodeGeneric, f.msg.Error)

	// Well formed, not a service the switch implements.
	c.writeDoc(43, []byte(`<?xml version="1.0"?><SetAgentState xmlns="`+csta.NSEd4+`"><device>40001</device></SetAgentState>`))
	f = c.mustRead()
	require.Equal(t, 43, f.id)
	require.Equal(t, csta.CodeServiceNotSupported, f.msg.Error)

	// A response or event from the client is not answered.
	c.writeDoc(44, []byte(`<MakeCallResponse xmlns="`+csta.NSEd4+`"/>`))
	c.silentFor(100 * time.Millisecond)

	// Any namespace is accepted on input.
	c.writeDoc(45, []byte(`<RequestSystemStatus xmlns="http://www.ecma.ch/standards/ecma-323/csta/ed2"/>`))
	f = c.mustRead()
	require.Equal(t, 45, f.id)
	require.Equal(t, csta.KindRequestSystemStatusResponse, f.msg.Kind)
	require.Eventually(t, func() bool {
		n := s.State().Nodes[0]
		return n.FramesIn[unparseable] == 1 && n.FramesIn["SetAgentState"] == 1 && n.FramesOut["CSTAErrorCode"] == 2
	}, wait, 5*time.Millisecond)

	// A non-digit invoke id is a framing error: the connection is closed.
	doc := []byte(`<RequestSystemStatus/>`)
	bad := append([]byte{0, 0, 0, byte(8 + len(doc)), '1', '2', 'a', '4'}, doc...)
	c.writeRaw(bad)
	c.closed()

	// So is a header with a length below the minimum.
	c = dialNode(t, s, 0)
	c.writeRaw([]byte{0, 0, 0, 3, '0', '0', '0', '1'})
	c.closed()
}

func TestWireProfileB(t *testing.T) {
	s := startSim(t, func(c *Config) { c.Profile = csta.ProfileB })
	c := dialNode(t, s, 0)
	r := c.call(req(csta.KindRequestSystemStatus))
	require.Equal(t, "normal", r.SystemStatus)
	c.monitor(A)
	c.ok(makeCallReq(A, B))
	c.event(csta.KindServiceInitiatedEvent)
}

func TestWireTLS(t *testing.T) {
	cert := selfSigned(t)
	s := startSim(t, func(c *Config) {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		c.SpeakFirst = true
	})
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	c := dialTLS(t, s.Addrs()[0], &tls.Config{RootCAs: pool, ServerName: "ctisim.test"}, s.fopt)
	f := c.mustRead()
	require.Equal(t, csta.KindSystemStatus, f.msg.Kind)
	c.write(f.id, &csta.Message{Kind: csta.KindSystemStatusResponse})
	require.Equal(t, "normal", c.call(req(csta.KindRequestSystemStatus)).SystemStatus)
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "ctisim.test"},
		DNSNames:     []string{"ctisim.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// TestSlowConsumerDisconnected: a client that stops reading is cut off once
// the kernel buffers and its queue are full; a client monitoring the same
// device that keeps reading gets every event and stays.
func TestSlowConsumerDisconnected(t *testing.T) {
	s := startSim(t, func(c *Config) { c.QueueSize = 256 })
	lazy := dialNode(t, s, 0)
	lazy.monitor(B)
	good := dialNode(t, s, 1)
	good.monitor(B)
	events := make(chan csta.Kind, 16)
	go func() {
		defer close(events)
		for {
			_ = good.nc.SetReadDeadline(time.Now().Add(wait))
			f, err := good.fr.ReadFrame()
			if err != nil {
				return
			}
			m, err := csta.Decode(f.Payload)
			if err != nil {
				return
			}
			events <- m.Kind
		}
	}()
	iterations := 0
	for ; iterations < 100000; iterations++ {
		if iterations%100 == 0 && s.State().Nodes[0].ConnectedClients == 0 {
			break
		}
		id, err := s.PlaceCall(X, B)
		require.NoError(t, err)
		require.NoError(t, s.Hangup(id, ""))
		for _, want := range []csta.Kind{csta.KindDeliveredEvent, csta.KindConnectionClearedEvent, csta.KindConnectionClearedEvent} {
			select {
			case k := <-events:
				require.Equal(t, want, k)
			case <-time.After(wait):
				t.Fatalf("the reading client stopped getting events after %d calls", iterations)
			}
		}
	}
	t.Logf("lazy client cut off after %d calls", iterations)
	require.Equal(t, 0, s.State().Nodes[0].ConnectedClients)
	require.Equal(t, 1, s.State().Nodes[1].ConnectedClients)
}

// TestNoGoroutineLeak: after Close, every goroutine the simulator started is
// gone, with clients, sessions, monitors, calls and timers in flight.
func TestNoGoroutineLeak(t *testing.T) {
	// Counted from inside Eventually both times: it runs the condition on a
	// goroutine of its own.
	var before int
	require.Eventually(t, func() bool { before = runtime.NumGoroutine(); return true }, wait, time.Millisecond)
	func() {
		cfg := DefaultConfig()
		cfg.Listen = []string{"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"}
		cfg.Control = "127.0.0.1:0"
		cfg.AutoAnswer = time.Hour
		cfg.SpeakFirst = true
		s, err := New(cfg)
		require.NoError(t, err)
		require.NoError(t, s.Start())
		var conns []net.Conn
		for i := 0; i < 3; i++ {
			c := dialNode(t, s, i)
			c.mustRead() // SystemStatus
			startSession(c, csta.NSEd4)
			c.monitor(A)
			conns = append(conns, c.nc)
		}
		_, err = s.PlaceCall(A, XDial)
		require.NoError(t, err)
		require.NoError(t, s.SetFault(1, Fault{Kind: FaultDelay, Delay: time.Hour}))
		c := newTClient(t, conns[1], s.fopt)
		c.send(req(csta.KindRequestSystemStatus)) // held by the delay fault
		require.NoError(t, s.Close())
		for _, nc := range conns {
			_ = nc.Close()
		}
	}()
	var after int
	require.Eventually(t, func() bool { after = runtime.NumGoroutine(); return after <= before }, wait, 10*time.Millisecond)
	require.LessOrEqual(t, after, before)
}
