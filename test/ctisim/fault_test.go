package ctisim

import (
	"net"
	"testing"
	"time"

	"github.com/cstagw/cstagw/csta"
	"github.com/stretchr/testify/require"
)

// What a client sees for each fault kind.

func TestFaultDrop(t *testing.T) {
	s := startSim(t, nil)
	c := dialNode(t, s, 0)
	c.monitor(A)
	other := dialNode(t, s, 1)
	other.monitor(B)

	require.NoError(t, s.SetFault(0, Fault{Kind: FaultDrop}))
	c.closed() // EOF
	require.Eventually(t, func() bool {
		st := s.State()
		return st.Nodes[0].ConnectedClients == 0 && st.Nodes[0].Monitors == 0 && st.Nodes[1].Monitors == 1
	}, wait, 5*time.Millisecond)

	// The other node carries on, and node 0 takes new connections.
	require.Equal(t, "normal", other.call(req(csta.KindRequestSystemStatus)).SystemStatus)
	c = dialNode(t, s, 0)
	require.Equal(t, "normal", c.call(req(csta.KindRequestSystemStatus)).SystemStatus)
}

func TestFaultSilent(t *testing.T) {
	s := startSim(t, nil)
	c := dialNode(t, s, 0)
	c.monitor(B)

	require.NoError(t, s.SetFault(0, Fault{Kind: FaultSilent}))
	c.send(req(csta.KindRequestSystemStatus)) // a heartbeat that will never be answered
	_, err := s.PlaceCall(X, B)               // its event is not written either
	require.NoError(t, err)
	c.silentFor(300 * time.Millisecond) // a read timeout, not EOF: TCP is still open
	st := s.State().Nodes[0]
	require.Equal(t, 1, st.ConnectedClients)
	require.True(t, st.Faults.Silent)
	require.Empty(t, st.InFlight, "swallowed requests are not in flight")

	// Cleared: the next heartbeat is answered, and it is the first frame.
	s.ClearFaults(0)
	id := c.send(req(csta.KindRequestSystemStatus))
	f := c.mustRead()
	require.Equal(t, id, f.id)
	require.Equal(t, csta.KindRequestSystemStatusResponse, f.msg.Kind)
}

func TestFaultSilentExpires(t *testing.T) {
	s := startSim(t, nil)
	c := dialNode(t, s, 0)
	require.NoError(t, s.SetFault(0, Fault{Kind: FaultSilent, Duration: 500 * time.Millisecond}))
	require.NotEmpty(t, s.State().Nodes[0].Faults.SilentUntil)
	require.Eventually(t, func() bool { return !s.State().Nodes[0].Faults.Silent }, wait, 5*time.Millisecond)
	require.Equal(t, "normal", c.call(req(csta.KindRequestSystemStatus)).SystemStatus)
}

func TestFaultRefuse(t *testing.T) {
	s := startSim(t, nil)
	require.NoError(t, s.SetFault(0, Fault{Kind: FaultRefuse}))

	// The connect succeeds, then the switch closes at once.
	for i := 0; i < 3; i++ {
		dialNode(t, s, 0).closed()
	}
	require.Equal(t, uint64(3), s.State().Nodes[0].Refused)
	// Node 1 is not affected.
	require.Equal(t, "normal", dialNode(t, s, 1).call(req(csta.KindRequestSystemStatus)).SystemStatus)
	s.ClearFaults(0)
	require.Equal(t, "normal", dialNode(t, s, 0).call(req(csta.KindRequestSystemStatus)).SystemStatus)

	// With a duration, node 0 takes connections again once it has passed.
	require.NoError(t, s.SetFault(0, Fault{Kind: FaultRefuse, Duration: 300 * time.Millisecond}))
	require.Eventually(t, func() bool {
		nc, err := net.DialTimeout("tcp", s.Addrs()[0], wait)
		if err != nil {
			return false
		}
		defer nc.Close()
		c := newTClient(t, nc, s.fopt)
		c.write(7, req(csta.KindRequestSystemStatus))
		f, err := c.read(wait)
		return err == nil && f.id == 7 && f.msg.SystemStatus == "normal"
	}, wait, 20*time.Millisecond)
}

func TestFaultDelay(t *testing.T) {
	const delay = 250 * time.Millisecond
	s := startSim(t, nil)
	require.NoError(t, s.SetFault(0, Fault{Kind: FaultDelay, Delay: delay}))
	c := dialNode(t, s, 0)

	// Times are taken before each write: the switch cannot have received a
	// request earlier than that.
	sent := map[int]time.Time{}
	for _, d := range []string{A, B, C} {
		at := time.Now()
		sent[c.send(&csta.Message{Kind: csta.KindMonitorStart, Device: csta.Dev(d)})] = at
	}
	for _, d := range []string{A, B} {
		at := time.Now()
		sent[c.send(&csta.Message{Kind: csta.KindSnapshotDevice, Device: csta.Dev(d)})] = at
	}
	for n := len(sent); n > 0; n-- {
		f := c.mustRead()
		at, ok := sent[f.id]
		require.True(t, ok, "unexpected frame %s", f.raw)
		require.NotEqual(t, csta.KindCSTAErrorCode, f.msg.Kind, f.raw)
		require.GreaterOrEqual(t, time.Since(at), delay, "response to %d came early", f.id)
		delete(sent, f.id)
	}
	st := s.State().Nodes[0]
	require.GreaterOrEqual(t, st.InFlightMonitorSnapshotHighWater, 5, "all five were outstanding together")
	require.Equal(t, 0, st.InFlightMonitorSnapshot)
	require.Empty(t, st.InFlight)
	require.Equal(t, delay.String(), st.Faults.Delay)

	s.ClearFaults(0)
	require.Empty(t, s.State().Nodes[0].Faults.Delay)
	require.Equal(t, "normal", c.call(req(csta.KindRequestSystemStatus)).SystemStatus)
}
