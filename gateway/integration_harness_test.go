package gateway_test

// The integration harness: a ctisim PBX (1 or 2 CTI nodes) and a gateway
// built from a Config written here, both on ephemeral loopback ports, plus
// CSTA request builders in the shapes clients send.

import (
	"context"
	"encoding/xml"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/gateway"
	"github.com/cstagw/cstagw/sipstack"
	"github.com/cstagw/cstagw/test/ctisim"
)

// The directory every test gateway has.
const (
	userAlice = "sip:alice@example.com"
	lineAlice = "tel:40001;phone-context=dialstring"
	devAlice  = "40001"
	e164Alice = "tel:+12065550001" // an alias of alice's line

	userBob = "sip:bob@example.com"
	lineBob = "tel:40002;phone-context=dialstring"
	devBob  = "40002"
	e164Bob = "tel:+12065550002" // dialled through numbering.dial → 40002

	// carol and dave share one line.
	userCarol  = "sip:carol@example.com"
	userDave   = "sip:dave@example.com"
	lineShared = "tel:40003;phone-context=dialstring"
	devShared  = "40003"

	// erin's line lives in a CUCM partition.
	userErin      = "sip:erin@example.com"
	lineErin      = "tel:40004;phone-context=dialstring;partition=Internal_PT"
	lineErinOther = "tel:40004;phone-context=dialstring;partition=Other_PT"
	devErin       = "40004"

	// frank has one DN (40005) on two phones, chosen with device=.
	userFrank   = "sip:frank@example.com"
	lineFrankA  = "tel:40005;phone-context=dialstring;device=SEPAAAA00000001"
	lineFrankB  = "tel:40005;phone-context=dialstring;device=SEPBBBB00000002"
	devFrankA   = "40005"
	devFrankB   = "40006"
	userMallory = "sip:mallory@example.com" // not in the directory

	// External parties (behind the simulated trunk).
	extCaller  = "+12065550147"
	extCallerT = "tel:+12065550147"
	extOther   = "+14255550188"
	extOtherT  = "tel:+14255550188"
	extThird   = "+14255550199"
	extThirdT  = "tel:+14255550199"
)

func testDirectory() gateway.DirectoryConfig {
	return gateway.DirectoryConfig{Users: []gateway.UserConfig{
		{URI: userAlice, Lines: []gateway.LineConfig{{Line: lineAlice, Device: devAlice, Aliases: []string{e164Alice}}}},
		{URI: userBob, Lines: []gateway.LineConfig{{Line: lineBob, Device: devBob, Aliases: []string{e164Bob}}}},
		{URI: userCarol, Lines: []gateway.LineConfig{{Line: lineShared, Device: devShared}}},
		{URI: userDave, Lines: []gateway.LineConfig{{Line: lineShared, Device: devShared}}},
		{URI: userErin, Lines: []gateway.LineConfig{{Line: lineErin, Device: devErin}}},
		{URI: userFrank, Lines: []gateway.LineConfig{
			{Line: lineFrankA, Device: devFrankA},
			{Line: lineFrankB, Device: devFrankB},
		}},
	}}
}

// envOpts tune one test environment.
type envOpts struct {
	nodes int
	sim   func(*ctisim.Config)
	gw    func(*gateway.Config)
	// noWait: do not wait for the CTI links to come up.
	noWait bool
}

// testEnv is one PBX simulator and one gateway.
type testEnv struct {
	t   *testing.T
	sim *ctisim.Sim
	gw  *gateway.Gateway
	cfg gateway.Config

	shutdown bool
}

func testLogger() zerolog.Logger {
	if os.Getenv("CSTAGW_TEST_LOG") != "" {
		return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"}).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	}
	return zerolog.New(io.Discard)
}

// newEnv starts a simulator and a gateway; t.Cleanup stops both.
func newEnv(t *testing.T, o envOpts) *testEnv {
	t.Helper()
	if o.nodes == 0 {
		o.nodes = 1
	}
	scfg := ctisim.DefaultConfig()
	scfg.Listen = nil
	for i := 0; i < o.nodes; i++ {
		scfg.Listen = append(scfg.Listen, "127.0.0.1:0")
	}
	scfg.Stations = "40000-40999"
	scfg.RingTime = 200 * time.Millisecond
	scfg.MaxSessionDuration = 60 * time.Second
	if o.sim != nil {
		o.sim(&scfg)
	}
	sim, err := ctisim.New(scfg)
	require.NoError(t, err)
	require.NoError(t, sim.Start())
	t.Cleanup(func() { _ = sim.Close() })

	cfg := gateway.Config{
		SIP: sipstack.Config{
			Listen:       []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"},
			TrustedHosts: []string{"127.0.0.0/8"},
			RetryAfter:   7 * time.Second,
		},
		CTI: ctipool.Config{
			HeartbeatInterval: 200 * time.Millisecond,
			RequestTimeout:    time.Second,
			Reconnect: ctipool.ReconnectConfig{
				InitialBackoff: 20 * time.Millisecond,
				MaxBackoff:     100 * time.Millisecond,
				MaxRetries:     1000,
				HoldOff:        200 * time.Millisecond,
			},
		},
		Directory: testDirectory(),
		Numbering: gateway.NumberingConfig{
			// Our own E.164 range → 5-digit stations; other E.164 numbers
			// go out as they are.
			Dial:    []csta.Rule{{Match: `^\+1206555(\d{4})$`, Replace: "4${1}"}},
			Display: []csta.Rule{{Match: `^4(\d{4})$`, Replace: "+1206555${1}"}},
		},
		Admin: gateway.AdminConfig{Listen: "127.0.0.1:0"},
		Log:   gateway.LogConfig{Level: "debug", Format: "json"},
	}
	for i, a := range sim.Addrs() {
		cfg.CTI.Links = append(cfg.CTI.Links, ctipool.LinkConfig{Name: "cti-" + string(rune('a'+i)), Address: a, AppSession: true})
	}
	if o.gw != nil {
		o.gw(&cfg)
	}
	gw, err := gateway.New(cfg, testLogger())
	require.NoError(t, err)
	require.NoError(t, gw.Start())
	e := &testEnv{t: t, sim: sim, gw: gw, cfg: cfg}
	t.Cleanup(func() {
		if !e.shutdown {
			e.stop()
		}
	})
	if !o.noWait {
		e.waitLinks(ctipool.StateUp)
	}
	return e
}

// stop shuts the gateway down at the end of a test. The clients have
// signed out by then (their cleanups run first); Shutdown is still run on a
// goroutine and not waited for forever, so that a hang there (it once
// deadlocked with sessions open, see TestShutdownSendsByeAndRefusesInvites)
// cannot hang the whole suite.
func (e *testEnv) stop() {
	e.shutdown = true
	deadline := time.Now().Add(3 * time.Second)
	for e.gw.Sessions() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Already-cancelled context: no grace wait.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		e.gw.Shutdown(ctx)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		e.t.Logf("gateway Shutdown did not return (%d sessions left); leaving it", e.gw.Sessions())
	}
	// Status reads the SIP layer's atomic counters, which every event INFO
	// bumps after its write: this orders those writes before the next
	// test's gateway.New, which rewrites the global sip.UDPMTUSize (see
	// the report: a data race the race detector otherwise flags).
	_ = e.gw.Status()
}

// waitLinks waits until every CTI link is in state st.
func (e *testEnv) waitLinks(st ctipool.State) {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		for _, l := range e.gw.Status().Links {
			if l.State != st {
				return false
			}
		}
		return true
	}, waitLong, pollInterval, "CTI links never became %s: %+v", st, e.gw.Status().Links)
}

// link returns the status of one link by name.
func (e *testEnv) link(name string) gateway.LinkStatus {
	for _, l := range e.gw.Status().Links {
		if l.Name == name {
			return l
		}
	}
	e.t.Fatalf("no link %s", name)
	return gateway.LinkStatus{}
}

func (e *testEnv) udp() *sipClient { return newClient(e.t, "udp", e.gw.SIPAddr("udp")) }
func (e *testEnv) tcp() *sipClient { return newClient(e.t, "tcp", e.gw.SIPAddr("tcp")) }

// signIn does what sipe does: INVITE (RequestSystemStatus with lcs:line),
// ACK, GetCSTAFeatures, MonitorStart of the line. It returns the dialog with
// its monitorCrossRefID set.
func signIn(t *testing.T, c *sipClient, user, line string) *dialog {
	t.Helper()
	d := invited(t, c, user, line)
	f := d.ok(getFeatures(line))
	require.NotEmpty(t, f.SupportedServices)
	ms := d.ok(monitorStart(line))
	require.NotEmpty(t, ms.MonitorCrossRefID)
	d.xref = ms.MonitorCrossRefID
	return d
}

// invited opens a dialog and checks the sign-in answer.
func invited(t *testing.T, c *sipClient, user, line string) *dialog {
	t.Helper()
	d, res := c.invite(inviteOpts{user: user, line: line})
	require.NotNil(t, d, "INVITE for %s/%s answered %d %s", user, line, res.StatusCode, res.Reason)
	m, err := csta.Decode(res.Body())
	require.NoError(t, err, "INVITE 200 body: %s", res.Body())
	require.Equal(t, csta.KindRequestSystemStatusResponse, m.Kind)
	require.Equal(t, "normal", m.SystemStatus)
	return d
}

// killNode drops a ctisim node for good: every connection closed, new ones
// refused.
func killNode(t *testing.T, e *testEnv, i int) {
	t.Helper()
	require.NoError(t, e.sim.SetFault(i, ctisim.Fault{Kind: ctisim.FaultRefuse}))
	require.NoError(t, e.sim.SetFault(i, ctisim.Fault{Kind: ctisim.FaultDrop}))
}

// simCall returns a call of the switch by id.
func simCall(sim *ctisim.Sim, id string) (ctisim.CallState, bool) {
	for _, c := range sim.State().Calls {
		if c.ID == id {
			return c, true
		}
	}
	return ctisim.CallState{}, false
}

// connState returns a device's connection state in a call ("" if absent).
func connState(sim *ctisim.Sim, callID, dev string) string {
	c, ok := simCall(sim, callID)
	if !ok {
		return ""
	}
	for _, cn := range c.Connections {
		if cn.Device == dev {
			return cn.State
		}
	}
	return ""
}

// simDevice returns the switch's view of a device.
func simDevice(sim *ctisim.Sim, id string) ctisim.DeviceState {
	for _, d := range sim.State().Devices {
		if d.ID == id {
			return d
		}
	}
	return ctisim.DeviceState{ID: id}
}

// waitConn waits until the switch shows dev in state st in callID.
func waitConn(t *testing.T, sim *ctisim.Sim, callID, dev, st string) {
	t.Helper()
	require.Eventually(t, func() bool { return connState(sim, callID, dev) == st }, waitLong, pollInterval,
		"switch: %s never %q in call %s: %+v", dev, st, callID, sim.State().Calls)
}

// httpGet fetches an admin URL.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	cl := &http.Client{Timeout: 5 * time.Second}
	res, err := cl.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b)
}

// ---- CSTA request bodies, ed3 namespace, no whitespace (as sipe writes) ----

func xmlEsc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func doc(root, inner string) []byte {
	return []byte(`<?xml version="1.0"?><` + root + ` xmlns="` + csta.NSEd3 + `">` + inner + `</` + root + `>`)
}

func el(name, text string) string { return "<" + name + ">" + xmlEsc(text) + "</" + name + ">" }

func connEl(name, callID, dev string) string {
	return "<" + name + ">" + el("callID", callID) + el("deviceID", dev) + "</" + name + ">"
}

func lcsExt(line string) string {
	return `<extensions><privateData><private><lcs:line xmlns:lcs="http://schemas.microsoft.com/Lcs/2005/04/RCCExtension">` +
		xmlEsc(line) + `</lcs:line></private></privateData></extensions>`
}

func requestSystemStatus(line string) []byte { return sipeInviteBody(line) }
func getFeatures(line string) []byte         { return doc("GetCSTAFeatures", lcsExt(line)) }
func monitorStart(dev string) []byte {
	return doc("MonitorStart", "<monitorObject>"+el("deviceObject", dev)+"</monitorObject>")
}
func monitorStop(xref string) []byte { return doc("MonitorStop", el("monitorCrossRefID", xref)) }
func makeCall(calling, called string) []byte {
	return doc("MakeCall", el("callingDevice", calling)+el("calledDirectoryNumber", called)+el("autoOriginate", "doNotPrompt"))
}
func clearConnection(callID, dev string) []byte {
	return doc("ClearConnection", connEl("connectionToBeCleared", callID, dev))
}
func answerCall(callID, dev string) []byte {
	return doc("AnswerCall", connEl("callToBeAnswered", callID, dev))
}
func holdCall(callID, dev string) []byte { return doc("HoldCall", connEl("callToBeHeld", callID, dev)) }
func retrieveCall(callID, dev string) []byte {
	return doc("RetrieveCall", connEl("callToBeRetrieved", callID, dev))
}
func alternateCall(held, active, dev string) []byte {
	return doc("AlternateCall", connEl("heldCall", held, dev)+connEl("activeCall", active, dev))
}
func reconnectCall(active, held, dev string) []byte {
	return doc("ReconnectCall", connEl("activeCall", active, dev)+connEl("heldCall", held, dev))
}
func consultationCall(existing, dev, consulted string) []byte {
	return doc("ConsultationCall", connEl("existingCall", existing, dev)+el("consultedDevice", consulted))
}
func transferCall(held, active, dev string) []byte {
	return doc("TransferCall", connEl("heldCall", held, dev)+connEl("activeCall", active, dev))
}
func singleStepTransfer(active, dev, to string) []byte {
	return doc("SingleStepTransferCall", connEl("activeCall", active, dev)+el("transferredTo", to))
}
func conferenceCall(held, active, dev string) []byte {
	return doc("ConferenceCall", connEl("heldCall", held, dev)+connEl("activeCall", active, dev))
}
func deflectCall(callID, dev, to string) []byte {
	return doc("DeflectCall", connEl("callToBeDiverted", callID, dev)+el("newDestination", to))
}
func generateDigits(callID, dev, digits string) []byte {
	return doc("GenerateDigits", connEl("connectionToSendDigits", callID, dev)+el("charactersToSend", digits))
}
func setForwarding(dev, typ string, on bool, dn string) []byte {
	inner := el("device", dev) + el("forwardingType", typ) + el("activateForward", boolText(on))
	if dn != "" {
		inner += el("forwardDN", dn)
	}
	return doc("SetForwarding", inner)
}
func getForwarding(dev string) []byte { return doc("GetForwarding", el("device", dev)) }
func setDND(dev string, on bool) []byte {
	return doc("SetDoNotDisturb", el("device", dev)+el("doNotDisturbOn", boolText(on)))
}
func getDND(dev string) []byte         { return doc("GetDoNotDisturb", el("device", dev)) }
func snapshotDevice(dev string) []byte { return doc("SnapshotDevice", el("snapshotObject", dev)) }

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// Error codes as the gateway must write them (docs/wire.md §1.9).
const (
	errOutOfService     = "systemResourceAvailibility/resourceOutOfService"
	errResourceBusy     = "systemResourceAvailibility/resourceBusy"
	errPrivCalling      = "operation/privilegeViolationCallingDevice"
	errPrivDevice       = "operation/privilegeViolationSpecifiedDevice"
	errInvalidXref      = "operation/invalidMonitorCrossRefID"
	errInvalidConn      = "operation/invalidConnectionID"
	errNotSupported     = "operation/serviceNotSupported"
	errInvalidConnState = "stateIncompatibility/invalidConnectionState"
)
