package gateway_test

// Events the gateway does not model reach their clients (issue 17): passed
// through byte for byte apart from what the client needs changed, in order
// with the monitor's other events, and never answered towards the switch.

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
)

// noRepliesToEvents requires that the switch received no response and no
// error from the gateway: it sends only requests (the switch of these tests
// asks nothing of it).
func noRepliesToEvents(t *testing.T, e *testEnv) {
	t.Helper()
	for _, n := range e.sim.State().Nodes {
		for name, count := range n.FramesIn {
			k := csta.KindByName(name)
			assert.False(t, k.IsReply() || strings.HasSuffix(name, "Response") || strings.HasSuffix(name, "Event") || name == "(unparseable)",
				"node %d received %d %s from the gateway", n.Index, count, name)
		}
	}
}

// queuedEvent is an ECMA-323 ed4 QueuedEvent the gateway does not model,
// as a switch would send it for the shared line (40003) queued at a hunt
// group: pretty-printed, with a comment, an attribute, vendor private data
// holding the PBX's own id, and an empty monitorCrossRefID for ctisim to
// fill in.
const queuedEvent = `<?xml version="1.0" encoding="UTF-8"?>
<!-- queued at the hunt group -->
<QueuedEvent xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed4">
  <monitorCrossRefID/>
  <queuedConnection><callID>CALLID</callID><deviceID>40003</deviceID></queuedConnection>
  <queue><deviceIdentifier>40900</deviceIdentifier></queue>
  <callingDevice><deviceIdentifier typeOfNumber="international">+12065550147</deviceIdentifier></callingDevice>
  <calledDevice><deviceIdentifier>40003</deviceIdentifier></calledDevice>
  <lastRedirectionDevice><numberDialed>40002</numberDialed></lastRedirectionDevice>
  <numberQueued>1</numberQueued>
  <localConnectionInfo>queued</localConnectionInfo>
  <cause>enteringDistribution</cause>
  <extensions><privateData><private><os:info xmlns:os="http://www.siemens.com/schema/csta"><os:deviceID>40003</os:deviceID></os:info></private></privateData></extensions>
</QueuedEvent>`

// wantQueued is queuedEvent as a client must get it: its own
// monitorCrossRefID, its line as it spells it, other parties through the
// display rules (40900 → tel:+12065550900, 40002 → tel:+12065550002, an
// E.164 number as a tel: URI), the ed3 namespace; every other byte as the
// switch sent it.
func wantQueued(t *testing.T, callID, xref string) string {
	s := strings.ReplaceAll(queuedEvent, "CALLID", callID)
	for _, r := range []struct{ old, new string }{
		{`xmlns="` + csta.NSEd4 + `"`, `xmlns="` + csta.NSEd3 + `"`},
		{`<monitorCrossRefID/>`, `<monitorCrossRefID>` + xref + `</monitorCrossRefID>`},
		{`<deviceID>40003</deviceID></queuedConnection>`, `<deviceID>` + lineShared + `</deviceID></queuedConnection>`},
		{`<deviceIdentifier>40900</deviceIdentifier>`, `<deviceIdentifier>tel:+12065550900</deviceIdentifier>`},
		{`international">+12065550147<`, `international">` + extCallerT + `<`},
		{`<calledDevice><deviceIdentifier>40003<`, `<calledDevice><deviceIdentifier>` + lineShared + `<`},
		{`<numberDialed>40002<`, `<numberDialed>tel:+12065550002<`},
	} {
		require.Equal(t, 1, strings.Count(s, r.old), r.old)
		s = strings.Replace(s, r.old, r.new, 1)
	}
	return s
}

func TestUnmodelledEventPassedThrough(t *testing.T) {
	e := newEnv(t, envOpts{})
	dc := signIn(t, e.udp(), userCarol, lineShared)
	dd := signIn(t, e.tcp(), userDave, lineShared)
	mc, md := dc.mark(), dd.mark()

	// In order with the monitor's other events: Delivered, the
	// QueuedEvent, then ConnectionCleared.
	id, err := e.sim.PlaceCall(extCaller, devShared)
	require.NoError(t, err)
	n, err := e.sim.SendEvent(devShared, []byte(strings.ReplaceAll(queuedEvent, "CALLID", id)))
	require.NoError(t, err)
	require.Equal(t, 1, n, "one southbound monitor for the shared line")
	require.NoError(t, e.sim.Hangup(id, ""))

	for _, x := range []struct {
		d    *dialog
		mark int
	}{{dc, mc}, {dd, md}} {
		d := x.d
		_, dlAt := d.waitEvent(x.mark, csta.KindDeliveredEvent, id)
		_, clAt := d.waitEvent(x.mark, csta.KindConnectionClearedEvent, id)
		qe, qAt := d.find(x.mark, func(m *csta.Message) bool { return m.Name == "QueuedEvent" })
		require.NotNil(t, qe, "no QueuedEvent; got %s", describe(d.events(x.mark)))
		assert.Greater(t, qAt, dlAt, "QueuedEvent before the DeliveredEvent that preceded it")
		assert.Less(t, qAt, clAt, "QueuedEvent after the ConnectionClearedEvent that followed it")
		req := d.entries()[qAt].req
		assert.Equal(t, wantQueued(t, id, d.xref), string(req.Body()), "byte for byte apart from the translated ids")
		assert.Equal(t, ctCSTA, header(req, "Content-Type"))
		assert.Equal(t, sip.INFO, req.CSeq().MethodName)
	}
	assert.NotEqual(t, dc.xref, dd.xref)

	_, body := httpGet(t, "http://"+e.gw.AdminAddr()+"/metrics")
	assert.Contains(t, body, `cstagw_events_passed_through_total{event="QueuedEvent"} 2`)
	noRepliesToEvents(t, e)
}
