package ctisim

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cstagw/cstagw/csta"
	"github.com/stretchr/testify/require"
)

// A station taken out of service and back: its monitors on every node are
// told, it cannot dial or be called meanwhile, and a repeated request sends
// nothing.
func TestControlOutOfServiceAndBack(t *testing.T) {
	s := startSim(t, nil)
	a := newAPI(t, s)
	m0, m1 := dialNode(t, s, 0), dialNode(t, s, 1)
	x0, x1 := m0.monitor(A), m1.monitor(A)
	xb := m1.monitor(B)

	a.ok("POST", "/devices/"+A+"/outofservice", ``)
	for _, c := range []struct {
		cl   *tclient
		xref string
	}{{m0, x0}, {m1, x1}} {
		ev := c.cl.event(csta.KindOutOfServiceEvent)
		require.Equal(t, c.xref, ev.MonitorCrossRefID)
		require.Equal(t, csta.Dev(A), ev.Device)
	}
	a.ok("POST", "/devices/"+A+"/outofservice", ``) // already: nothing sent
	m0.silentFor(100 * time.Millisecond)
	require.True(t, simDevice(a.state(), A).OutOfService)

	// It cannot dial...
	r := m0.call(&csta.Message{Kind: csta.KindMakeCall, CallingDevice: csta.Dev(A), Destination: csta.Dev(B)})
	require.Equal(t, csta.CodeDeviceOutOfService, r.Error)
	a.fails("POST", "/calls", `{"from":"`+A+`","to":"`+B+`"}`, http.StatusConflict)
	// ...nor be reached: the caller fails, cause destOutOfOrder.
	r = m1.call(&csta.Message{Kind: csta.KindMakeCall, CallingDevice: csta.Dev(B), Destination: csta.Dev(A)})
	require.Equal(t, csta.KindMakeCallResponse, r.Kind)
	m1.event(csta.KindServiceInitiatedEvent)
	m1.event(csta.KindOriginatedEvent)
	f := m1.event(csta.KindFailedEvent)
	require.Equal(t, xb, f.MonitorCrossRefID)
	require.Equal(t, "destOutOfOrder", f.Cause)
	m1.call(&csta.Message{Kind: csta.KindClearConnection, Connection: r.Connection})
	m1.event(csta.KindConnectionClearedEvent)

	require.NoError(t, s.SetInService(A, true)) // the Go call does what the HTTP one does
	require.Equal(t, x0, m0.event(csta.KindBackInServiceEvent).MonitorCrossRefID)
	require.Equal(t, x1, m1.event(csta.KindBackInServiceEvent).MonitorCrossRefID)
	require.False(t, simDevice(a.state(), A).OutOfService)
	r = m0.call(&csta.Message{Kind: csta.KindMakeCall, CallingDevice: csta.Dev(A), Destination: csta.Dev(C)})
	require.Equal(t, csta.KindMakeCallResponse, r.Kind, "back in service, it dials again: %v", r.Error)

	// A station nobody monitors is remembered while out of service.
	a.ok("POST", "/devices/"+D+"/outofservice", ``)
	require.True(t, simDevice(a.state(), D).OutOfService)
	a.ok("POST", "/devices/"+D+"/backinservice", ``)
	require.Equal(t, DeviceState{}, simDevice(a.state(), D), "an idle station is forgotten again")

	a.fails("POST", "/devices/"+X+"/outofservice", ``, http.StatusNotFound)
	a.fails("POST", "/devices/4x/outofservice", ``, http.StatusBadRequest)
	a.fails("GET", "/devices/"+A+"/outofservice", ``, http.StatusMethodNotAllowed)
}

func simDevice(st State, id string) DeviceState {
	for _, d := range st.Devices {
		if d.ID == id {
			return d
		}
	}
	return DeviceState{}
}

// A given event document reaches every monitor of the station with that
// monitor's monitorCrossRefID, every other byte as given.
func TestControlSendEvent(t *testing.T) {
	s := startSim(t, nil)
	a := newAPI(t, s)
	m0, m1 := dialNode(t, s, 0), dialNode(t, s, 1)
	x0, x1 := m0.monitor(A), m1.monitor(A)
	const doc = "<?xml version=\"1.0\"?>\n<QueuedEvent xmlns=\"" + csta.NSEd4 + "\">\n  <monitorCrossRefID/>\n" +
		"  <queuedConnection><callID>77</callID><deviceID>40001</deviceID></queuedConnection>\n" +
		"  <queue><deviceIdentifier>2600</deviceIdentifier></queue><numberQueued>1</numberQueued>\n</QueuedEvent>"
	got := a.ok("POST", "/devices/"+A+"/events", doc)
	require.EqualValues(t, 2, got["monitors"])
	for _, c := range []struct {
		cl   *tclient
		xref string
	}{{m0, x0}, {m1, x1}} {
		f := c.cl.mustRead()
		require.Equal(t, csta.EventInvokeID, f.id)
		require.Equal(t, strings.Replace(doc, "<monitorCrossRefID/>", "<monitorCrossRefID>"+c.xref+"</monitorCrossRefID>", 1), f.raw)
		require.Equal(t, "QueuedEvent", f.msg.Name)
		require.Equal(t, c.xref, f.msg.MonitorCrossRefID)
	}
	st := a.state()
	require.EqualValues(t, 1, st.Nodes[0].FramesOut["QueuedEvent"])
	require.EqualValues(t, 1, st.Nodes[1].FramesOut["QueuedEvent"])

	// The Go call; a modelled event works too; no monitors, no copies.
	n, err := s.SendEvent(B, []byte(`<DoNotDisturbEvent xmlns="`+csta.NSEd3+`"><monitorCrossRefID>0</monitorCrossRefID><device><deviceIdentifier>40002</deviceIdentifier></device><doNotDisturbOn>true</doNotDisturbOn></DoNotDisturbEvent>`))
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = s.SendEvent(A, []byte(`<DoNotDisturbEvent xmlns="`+csta.NSEd3+`"><monitorCrossRefID>0</monitorCrossRefID><device><deviceIdentifier>40001</deviceIdentifier></device><doNotDisturbOn>true</doNotDisturbOn></DoNotDisturbEvent>`))
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, x0, m0.event(csta.KindDoNotDisturbEvent).MonitorCrossRefID)

	a.fails("POST", "/devices/"+A+"/events", `not xml`, http.StatusBadRequest)
	a.fails("POST", "/devices/"+A+"/events", `<MakeCall xmlns="`+csta.NSEd3+`"/>`, http.StatusBadRequest)
	a.fails("POST", "/devices/"+A+"/events", `<QueuedEvent xmlns="`+csta.NSEd3+`"/>`, http.StatusBadRequest)
	a.fails("POST", "/devices/"+X+"/events", `<QueuedEvent><monitorCrossRefID/></QueuedEvent>`, http.StatusNotFound)
	a.fails("POST", "/devices/"+A+"/events", strings.Repeat(" ", 64<<10)+`<QueuedEvent/>`, http.StatusBadRequest)
}
