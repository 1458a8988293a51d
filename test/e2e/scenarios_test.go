package e2e

// The call-control half of the sipp scenario pack (test/sipp): click-to-dial,
// hold/retrieve, consultative transfer and CTI link loss, each run by a real
// sipp against an in-process gateway and simulated PBX, over UDP and TCP.
// The scenarios check the SIP/CSTA dialogue themselves (sipp exits 0 only if
// every check held); the tests below add what only the outside can see: in
// sipp's message trace, the order and content of the gateway's event INFOs
// (callIDs, the line's deviceID as the client spelt it, localConnectionInfo)
// and that the scenario answered each INFO exactly once; on the switch, the
// state of the calls afterwards; on the gateway, its link generation and
// counters.
//
// sipp plumbing (newSippRun, requireSippOK, the trace readers) comes from
// kamailio_test.go; the lab here differs from newE2ELab in what the
// scenarios need: far ends that answer by themselves, and a CTI link that
// is detected dead and reconnected within a fraction of a second.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/gateway"
	"github.com/cstagw/cstagw/test/ctisim"
)

// scAutoAnswer is how long external parties ring before they answer.
const scAutoAnswer = 300 * time.Millisecond

// scResume is how long linkloss.xml pauses for the link to come back.
const scResume = 2 * time.Second

// scSippLimit bounds one sipp run (exec timeout; sipp's own -timeout is 5 s
// shorter, and every <recv> waits at most 10-20 s).
const scSippLimit = 40 * time.Second

// TestSippCallControl runs makecall.xml, hold.xml and transfer.xml over UDP
// and over TCP, each as its own demo user (rows of test/sipp/calls.csv).
func TestSippCallControl(t *testing.T) {
	sippBin := needSipp(t)
	lab := newScLab(t)
	for i, tr := range []string{"udp", "tcp"} {
		t.Run(tr+"/makecall", func(t *testing.T) {
			row := scCallsRow(t, 6+i)
			r := lab.runScenario(t, sippBin, tr, "makecall.xml", row)
			requireSippOK(t, r)
			trc := scReadTrace(t, r)
			callID := trc.responseField(t, "MakeCallResponse", `<callingDevice><callID>([^<]+)</callID>`)
			trc.requireDeviceEcho(t, "MakeCallResponse", row.line)
			evs := trc.requireEventsAfter(t, "MakeCallResponse", callID,
				"ServiceInitiatedEvent", "OriginatedEvent", "DeliveredEvent", "EstablishedEvent")
			scCheckEvent(t, evs[0], "initiatedConnection", callID, row.line, "initiated")
			scCheckEvent(t, evs[1], "originatedConnection", callID, row.line, "connected")
			scCheckEvent(t, evs[2], "connection", callID, "tel:"+row.extX, "connected")
			scCheckEvent(t, evs[3], "establishedConnection", callID, "tel:"+row.extX, "connected")
			evs = trc.requireEventsAfter(t, "ClearConnectionResponse", callID, "ConnectionClearedEvent")
			scCheckEvent(t, evs[0], "droppedConnection", callID, row.line, "null")
			lab.requireIdle(t, row)
		})
		t.Run(tr+"/hold", func(t *testing.T) {
			row := scCallsRow(t, 8+i)
			r := lab.runScenario(t, sippBin, tr, "hold.xml", row)
			requireSippOK(t, r)
			trc := scReadTrace(t, r)
			callID := trc.responseField(t, "MakeCallResponse", `<callingDevice><callID>([^<]+)</callID>`)
			trc.requireDeviceEcho(t, "MakeCallResponse", row.line)
			trc.requireEventsAfter(t, "MakeCallResponse", callID, "EstablishedEvent")
			evs := trc.requireEventsAfter(t, "HoldCallResponse", callID, "HeldEvent")
			scCheckEvent(t, evs[0], "heldConnection", callID, row.line, "hold")
			evs = trc.requireEventsAfter(t, "RetrieveCallResponse", callID, "RetrievedEvent")
			scCheckEvent(t, evs[0], "retrievedConnection", callID, row.line, "connected")
			evs = trc.requireEventsAfter(t, "ClearConnectionResponse", callID, "ConnectionClearedEvent")
			scCheckEvent(t, evs[0], "droppedConnection", callID, row.line, "null")
			lab.requireIdle(t, row)
		})
		t.Run(tr+"/transfer", func(t *testing.T) {
			row := scCallsRow(t, 10+i)
			r := lab.runScenario(t, sippBin, tr, "transfer.xml", row)
			requireSippOK(t, r)
			trc := scReadTrace(t, r)
			first := trc.responseField(t, "MakeCallResponse", `<callingDevice><callID>([^<]+)</callID>`)
			second := trc.responseField(t, "ConsultationCallResponse", `<initiatedCall><callID>([^<]+)</callID>`)
			require.NotEqual(t, first, second, "the consultation call has its own callID")
			trc.requireEventsAfter(t, "MakeCallResponse", first, "EstablishedEvent")
			evs := trc.requireEventsAfter(t, "ConsultationCallResponse", first, "HeldEvent")
			scCheckEvent(t, evs[0], "heldConnection", first, row.line, "hold")
			evs = trc.requireEventsAfter(t, "ConsultationCallResponse", second,
				"ServiceInitiatedEvent", "OriginatedEvent", "DeliveredEvent", "EstablishedEvent")
			scCheckEvent(t, evs[0], "initiatedConnection", second, row.line, "initiated")
			scCheckEvent(t, evs[1], "originatedConnection", second, row.line, "connected")
			scCheckEvent(t, evs[2], "connection", second, "tel:"+row.extY, "connected")
			scCheckEvent(t, evs[3], "establishedConnection", second, "tel:"+row.extY, "connected")
			evs = trc.requireEventsAfter(t, "TransferCallResponse", "", "TransferedEvent")
			scCheckEvent(t, evs[0], "primaryOldCall", first, row.line, "null")
			scCheckEvent(t, evs[0], "secondaryOldCall", second, row.line, "null")
			assert.Contains(t, evs[0], "<transferredToDevice><deviceIdentifier>tel:"+row.extY+"</deviceIdentifier></transferredToDevice>", "TransferedEvent transferredToDevice")

			// On the switch: the two far ends talk to each other in one
			// call, and the line is out of it.
			st := lab.sim.State()
			var merged *ctisim.CallState
			for k, c := range st.Calls {
				if scCallHas(c, row.extX) || scCallHas(c, row.extY) {
					require.Nil(t, merged, "the external parties are in more than one call: %+v", st.Calls)
					merged = &st.Calls[k]
				}
			}
			require.NotNil(t, merged, "no call with %s or %s on the switch after the transfer: %+v", row.extX, row.extY, st.Calls)
			require.Len(t, merged.Connections, 2, "transferred call %+v", merged)
			for _, c := range merged.Connections {
				assert.True(t, c.External, "party %s of the transferred call", c.Device)
				assert.Equal(t, "connected", c.State, "party %s of the transferred call", c.Device)
			}
			assert.True(t, scCallHas(*merged, row.extX) && scCallHas(*merged, row.extY), "transferred call %+v joins %s and %s", merged, row.extX, row.extY)
			lab.requireIdle(t, scCallsLine{station: row.station})
			require.NoError(t, lab.sim.Hangup(merged.ID, ""))
		})
	}
	lab.requireCleanSends(t)
}

// TestSippLinkLoss runs linkloss.xml while the test cuts the CTI link
// (drop, then refuse reconnects), waits for the scenario to have seen the
// SystemStatus(disabled) INFO and a resourceOutOfService answer, restores
// the node, and waits for the new link generation; the scenario's next
// request must get 481. A fresh sign-in (signin.xml, the client's new
// INVITE) must then succeed on the new link.
func TestSippLinkLoss(t *testing.T) {
	sippBin := needSipp(t)
	lab := newScLab(t)
	users, err := filepath.Abs("../sipp/users.csv")
	require.NoError(t, err)
	t.Cleanup(func() { lab.sim.ClearFaults(0) })
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			t.Cleanup(func() { lab.sim.ClearFaults(0) })
			gen := lab.link(t).Generation
			stale := lab.metric(t, "cstagw_stale_481_total")
			refused := lab.sim.State().Nodes[0].Refused

			r := newSippRun(t, sippBin, lab.gwAddr(tr), tr, "linkloss.xml", users, scSippLimit)
			r.cmd.Args = append(r.cmd.Args, "-set", "resume_ms", strconv.Itoa(int(scResume/time.Millisecond)))
			require.NoError(t, r.start())
			lab.waitLog(t, r, "monitor-up", "the monitor to be up")

			// Cut the link: refuse reconnects, drop the open connection.
			require.NoError(t, lab.sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultRefuse}))
			require.NoError(t, lab.sim.SetFault(0, ctisim.Fault{Kind: ctisim.FaultDrop}))
			// The scenario logs outage-checked once it has answered the
			// SystemStatus INFO and seen MakeCall refused; its pause runs
			// from there.
			lab.waitLog(t, r, "outage-checked", "the SystemStatus INFO and the resourceOutOfService answer")
			restoreBy := time.Now().Add(scResume)
			require.Eventually(t, func() bool { return lab.sim.State().Nodes[0].Refused > refused },
				5*time.Second, 10*time.Millisecond, "the gateway never tried to reconnect during the outage")
			lab.sim.ClearFaults(0)
			ls := lab.awaitLink(gen+1, restoreBy)
			require.Equal(t, scLinkStatus{Name: ls.Name, State: ctipool.StateUp.String(), Generation: gen + 1}, ls,
				"the link was not back as generation %d before the scenario's pause ended", gen+1)

			r.wait(t)
			scMaybeDump(t, r, "linkloss.xml")
			requireSippOK(t, r)
			trc := scReadTrace(t, r)
			sys := trc.received("SystemStatus")
			require.Len(t, sys, 1, "SystemStatus INFOs")
			assert.Contains(t, sys[0], "<systemStatus>disabled</systemStatus>")
			assert.Len(t, trc.receivedResponses(481), 1, "481 to the stale session's request")
			assert.Equal(t, stale+1, lab.metric(t, "cstagw_stale_481_total"), "cstagw_stale_481_total")
			assert.Equal(t, gen+1, lab.link(t).Generation, "link generation after the scenario (one reconnect)")

			// The client's new INVITE after the 481: a fresh session on
			// the new link, whose MonitorStart reaches the PBX again.
			starts := lab.sim.State().Nodes[0].FramesIn["MonitorStart"]
			res := lab.runSignin(t, sippBin, tr)
			requireSippOK(t, res)
			scReadTrace(t, res)
			assert.Greater(t, lab.sim.State().Nodes[0].FramesIn["MonitorStart"], starts, "MonitorStart frames at the PBX after the new sign-in")
		})
	}
	lab.requireCleanSends(t)
}

// ---------------------------------------------------------------------------
// The lab.

type scLab struct {
	sim     *ctisim.Sim
	gw      *gateway.Gateway
	logPath string
}

func newScLab(t *testing.T) *scLab {
	t.Helper()
	lab := &scLab{}

	scfg := ctisim.DefaultConfig()
	scfg.Listen = []string{"127.0.0.1:0"}
	scfg.Control = ""
	scfg.AutoAnswer = scAutoAnswer
	sim, err := ctisim.New(scfg)
	require.NoError(t, err)
	require.NoError(t, sim.Start())
	lab.sim = sim
	t.Cleanup(func() { _ = sim.Close() })

	cfg := gateway.DemoConfig(sim.Addrs())
	cfg.SIP.Listen = []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}
	cfg.SIP.TrustedHosts = []string{"127.0.0.0/8"}
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Log = gateway.LogConfig{Level: "debug", Format: "json"}
	cfg.Gateway.ShutdownGrace = time.Second
	cfg.CTI.HeartbeatInterval = 200 * time.Millisecond
	cfg.CTI.RequestTimeout = 2 * time.Second
	cfg.CTI.Reconnect = ctipool.ReconnectConfig{
		InitialBackoff: 50 * time.Millisecond,
		MaxBackoff:     250 * time.Millisecond,
		MaxRetries:     1000,
		HoldOff:        time.Second,
	}

	lab.logPath = filepath.Join(t.TempDir(), "cstagw.log")
	lab.gw = startLoggedGateway(t, cfg, lab.logPath, 80)
	require.Eventually(t, func() bool {
		ls, err := lab.linkStatus()
		return err == nil && ls.State == ctipool.StateUp.String()
	}, 15*time.Second, 20*time.Millisecond, "the CTI link never came up")
	return lab
}

func (l *scLab) gwAddr(transport string) string { return l.gw.SIPAddr(transport) }

// runScenario runs one scenario of test/sipp as the user of row.
func (l *scLab) runScenario(t *testing.T, sippBin, transport, scenario string, row scCallsLine) *sippRun {
	t.Helper()
	users := filepath.Join(t.TempDir(), "calls.csv")
	require.NoError(t, os.WriteFile(users, []byte("SEQUENTIAL\n"+row.text+"\n"), 0o644))
	r := newSippRun(t, sippBin, l.gwAddr(transport), transport, scenario, users, scSippLimit)
	if x := os.Getenv("SC_SIPP_ARGS"); x != "" {
		// Extra sipp options for debugging, e.g. "-trace_calldebug".
		r.cmd.Args = append(r.cmd.Args, strings.Fields(x)...)
	}
	require.NoError(t, r.start())
	r.wait(t)
	scMaybeDump(t, r, scenario)
	return r
}

// scMaybeDump keeps a run's scenario log and message trace when SC_TRACE
// names a directory (SC_TRACE=/tmp/x go test ./test/e2e/), for reading the
// dialogue afterwards.
func scMaybeDump(t *testing.T, r *sippRun, scenario string) {
	t.Helper()
	dir := os.Getenv("SC_TRACE")
	if dir == "" {
		return
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + "_" + strings.TrimSuffix(scenario, ".xml")
	_ = os.WriteFile(filepath.Join(dir, name+".messages"), []byte(readFile(r.msgFile)), 0o644)
	_ = os.WriteFile(filepath.Join(dir, name+".log"), []byte(readFile(r.logFile)+readFile(r.errFile)), 0o644)
}

// runSignin runs test/sipp/signin.xml as the first user of users.csv.
func (l *scLab) runSignin(t *testing.T, sippBin, transport string) *sippRun {
	t.Helper()
	users, err := filepath.Abs("../sipp/users.csv")
	require.NoError(t, err)
	r := newSippRun(t, sippBin, l.gwAddr(transport), transport, "signin.xml", users, scSippLimit)
	require.NoError(t, r.start())
	r.wait(t)
	scMaybeDump(t, r, "signin.xml")
	return r
}

// waitLog waits for a line of the scenario's log (its <log> actions).
func (l *scLab) waitLog(t *testing.T, r *sippRun, marker, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(readFile(r.logFile), marker) {
		if r.exited() || time.Now().After(deadline) {
			r.wait(t)
			t.Fatalf("waiting for %s: no %q in the scenario log (sipp exit %d)%s", what, marker, r.exitCode, r.diagnostics())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// requireIdle checks that the row's station is in no call any more and
// that no call of the switch involves its external numbers.
func (l *scLab) requireIdle(t *testing.T, row scCallsLine) {
	t.Helper()
	var last ctisim.State
	ok := assert.Eventually(t, func() bool {
		last = l.sim.State()
		for _, d := range last.Devices {
			if d.ID == row.station && len(d.Calls) > 0 {
				return false
			}
		}
		for _, c := range last.Calls {
			if scCallHas(c, row.station) || (row.extX != "" && scCallHas(c, row.extX)) || (row.extY != "" && scCallHas(c, row.extY)) {
				return false
			}
		}
		return true
	}, 3*time.Second, 20*time.Millisecond, "station %s still has a call", row.station)
	if !ok {
		b, _ := json.MarshalIndent(last.Calls, "", "  ")
		t.Logf("calls on the switch: %s", b)
	}
}

// requireCleanSends checks that the gateway wrote every event INFO.
func (l *scLab) requireCleanSends(t *testing.T) {
	t.Helper()
	assert.Zero(t, l.metric(t, "cstagw_sip_info_failed_total"), "cstagw_sip_info_failed_total")
	assert.Zero(t, l.metric(t, "cstagw_event_send_failures_total"), "cstagw_event_send_failures_total")
}

func (l *scLab) metric(t *testing.T, name string) float64 {
	t.Helper()
	st, body, err := httpGet("http://" + l.gw.AdminAddr() + "/metrics")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, st)
	v := metricValue(body, name)
	require.GreaterOrEqual(t, v, float64(0), "metric %s is missing", name)
	return v
}

// scLinkStatus is the part of a /status link the tests read.
type scLinkStatus struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	Generation uint64 `json:"generation"`
}

// linkStatus reads the one CTI link of the gateway's /status; safe to call
// from any goroutine (require.Eventually polls).
func (l *scLab) linkStatus() (scLinkStatus, error) {
	st, body, err := httpGet("http://" + l.gw.AdminAddr() + "/status")
	if err != nil {
		return scLinkStatus{}, err
	}
	if st != http.StatusOK {
		return scLinkStatus{}, fmt.Errorf("/status: %d %s", st, body)
	}
	var s struct {
		Links []scLinkStatus `json:"links"`
	}
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		return scLinkStatus{}, fmt.Errorf("/status: %w: %s", err, body)
	}
	if len(s.Links) != 1 {
		return scLinkStatus{}, fmt.Errorf("/status: want one link: %s", body)
	}
	return s.Links[0], nil
}

// awaitLink polls /status until the link is up with generation gen or the
// deadline passes, and returns the last status read.
func (l *scLab) awaitLink(gen uint64, deadline time.Time) scLinkStatus {
	for {
		ls, err := l.linkStatus()
		if err == nil && ls.Generation == gen && ls.State == ctipool.StateUp.String() {
			return ls
		}
		if time.Now().After(deadline) {
			return ls
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *scLab) link(t *testing.T) scLinkStatus {
	t.Helper()
	ls, err := l.linkStatus()
	require.NoError(t, err)
	return ls
}

// ---------------------------------------------------------------------------
// test/sipp/calls.csv

// scCallsLine is one row of calls.csv: user;line;station;external X;external Y.
type scCallsLine struct {
	text                string
	user, line, station string
	extX, extY          string
}

// scCallsRow returns the row of demo user n.
func scCallsRow(t *testing.T, n int) scCallsLine {
	t.Helper()
	b, err := os.ReadFile("../sipp/calls.csv")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Equal(t, "SEQUENTIAL", strings.TrimSpace(lines[0]), "first line of calls.csv")
	want := fmt.Sprintf("sip:user%d@", n)
	for _, ln := range lines[1:] {
		ln = strings.TrimSpace(ln)
		f := strings.Split(ln, ";")
		if len(f) == 5 && strings.HasPrefix(f[0], want) {
			return scCallsLine{text: ln, user: f[0], line: f[1], station: strconv.Itoa(40000 + n), extX: f[3], extY: f[4]}
		}
	}
	t.Fatalf("calls.csv has no 5-field row for user %d", n)
	return scCallsLine{}
}

// scCallHas tells whether a device takes part in a call; external numbers
// match with or without their leading +.
func scCallHas(c ctisim.CallState, device string) bool {
	want := strings.TrimPrefix(device, "+")
	for _, cn := range c.Connections {
		if strings.TrimPrefix(cn.Device, "+") == want {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// Reading sipp's message trace.

type scTrace struct {
	msgs []traceMsg
	xref string // monitorCrossRefID of the MonitorStartResponse
}

var (
	scRootRe = regexp.MustCompile(`<([A-Za-z]+)[ >/]`)
	scXrefRe = regexp.MustCompile(`<monitorCrossRefID>([^<]*)</monitorCrossRefID>`)
	scCallRe = regexp.MustCompile(`<callID>([^<]*)</callID>`)
)

// scBody returns a SIP message's body.
func scBody(msg string) string {
	msg = strings.ReplaceAll(msg, "\r\n", "\n")
	_, body, _ := strings.Cut(msg, "\n\n")
	return strings.TrimSpace(body)
}

// scRoot returns the name of a CSTA body's root element.
func scRoot(body string) string {
	if _, rest, ok := strings.Cut(body, "?>"); ok && strings.HasPrefix(body, "<?xml") {
		body = rest
	}
	if m := scRootRe.FindStringSubmatch(strings.TrimSpace(body)); m != nil {
		return m[1]
	}
	return ""
}

// scReadTrace reads the trace and checks what every INFO of the gateway
// must carry (the CSTA content type and disposition, and for events the
// dialog's monitorCrossRefID) and that the scenario answered each one with
// a 200 copying its Via, Call-ID and CSeq and carrying no body.
func scReadTrace(t *testing.T, r *sippRun) *scTrace {
	t.Helper()
	tr := &scTrace{msgs: r.trace()}
	require.NotEmpty(t, tr.msgs, "empty sipp message trace %s", r.msgFile)
	for _, m := range tr.msgs {
		if m.received && scRoot(scBody(m.text)) == "MonitorStartResponse" {
			x := scXrefRe.FindStringSubmatch(m.text)
			require.NotNil(t, x, "MonitorStartResponse without monitorCrossRefID:\n%s", m.text)
			tr.xref = x[1]
		}
	}
	infos := map[string]int{}   // transaction key → times received
	answers := map[string]int{} // transaction key → 200s sent
	for _, m := range tr.msgs {
		switch {
		case m.received && strings.HasPrefix(m.text, "INFO "):
			infos[scTxnKey(m.text)]++
			assert.Equal(t, []string{"application/csta+xml"}, headerValues(m.text, "Content-Type"), "Content-Type of the gateway's INFO:\n%s", m.text)
			assert.Equal(t, []string{"signal;handling=required"}, headerValues(m.text, "Content-Disposition"), "Content-Disposition of the gateway's INFO:\n%s", m.text)
			body := scBody(m.text)
			if strings.HasSuffix(scRoot(body), "Event") {
				x := scXrefRe.FindStringSubmatch(body)
				if assert.NotNil(t, x, "event without monitorCrossRefID:\n%s", m.text) {
					assert.Equal(t, tr.xref, x[1], "monitorCrossRefID of %s", scRoot(body))
				}
			}
		case !m.received && strings.HasPrefix(m.text, "SIP/2.0 "):
			assert.True(t, strings.HasPrefix(m.text, "SIP/2.0 200 "), "the scenario answers only 200:\n%s", m.text)
			assert.Equal(t, []string{"0"}, headerValues(m.text, "Content-Length"), "Content-Length of the scenario's 200:\n%s", m.text)
			answers[scTxnKey(m.text)]++
		}
	}
	for k, n := range infos {
		assert.True(t, answers[k] >= 1 && answers[k] <= n, "INFO %s received %d times, answered %d times", k, n, answers[k])
	}
	for k := range answers {
		assert.Contains(t, infos, k, "a 200 for %s, which the gateway never sent", k)
	}
	return tr
}

// scTxnKey identifies a transaction by the top Via branch, Call-ID and CSeq.
func scTxnKey(msg string) string {
	branch := ""
	if v := headerValues(msg, "Via"); len(v) > 0 {
		if _, b, ok := strings.Cut(v[0], "branch="); ok {
			branch, _, _ = strings.Cut(b, ";")
		}
	}
	return strings.Join([]string{branch, strings.Join(headerValues(msg, "Call-ID"), ","), strings.Join(headerValues(msg, "CSeq"), ",")}, " ")
}

// scCheckEvent checks an event's connection (element conn: callID and
// deviceID; the line's own connection must carry the line exactly as the
// client spelt it) and its localConnectionInfo (the line's state).
func scCheckEvent(t *testing.T, body, conn, callID, device, local string) {
	t.Helper()
	assert.Contains(t, body, "<"+conn+"><callID>"+callID+"</callID><deviceID>"+device+"</deviceID></"+conn+">", "%s of %s", conn, scRoot(body))
	assert.Contains(t, body, "<localConnectionInfo>"+local+"</localConnectionInfo>", "localConnectionInfo of %s", scRoot(body))
}

// receivedResponses returns the received responses with this status code.
func (tr *scTrace) receivedResponses(code int) []string {
	var out []string
	for _, m := range tr.msgs {
		if m.received && strings.HasPrefix(m.text, "SIP/2.0 "+strconv.Itoa(code)+" ") {
			out = append(out, m.text)
		}
	}
	return out
}

// response returns the index and body of the first received response whose
// body's root element is root.
func (tr *scTrace) response(t *testing.T, root string) (int, string) {
	t.Helper()
	for i, m := range tr.msgs {
		if m.received && strings.HasPrefix(m.text, "SIP/2.0 ") {
			if b := scBody(m.text); scRoot(b) == root {
				return i, b
			}
		}
	}
	t.Fatalf("no %s received", root)
	return 0, ""
}

// responseField returns the first submatch of re in the response body root.
func (tr *scTrace) responseField(t *testing.T, root, re string) string {
	t.Helper()
	_, body := tr.response(t, root)
	m := regexp.MustCompile(re).FindStringSubmatch(body)
	require.NotNil(t, m, "%s does not match %s:\n%s", root, re, body)
	return m[1]
}

// requireDeviceEcho checks that a response's callingDevice deviceID is the
// line exactly as the client spelled it.
func (tr *scTrace) requireDeviceEcho(t *testing.T, root, line string) {
	t.Helper()
	_, body := tr.response(t, root)
	assert.Contains(t, body, "<deviceID>"+line+"</deviceID>", "%s must echo the line byte for byte", root)
}

// received returns the bodies of the received INFOs whose root is root.
func (tr *scTrace) received(root string) []string {
	var out []string
	for _, m := range tr.msgs {
		if m.received && strings.HasPrefix(m.text, "INFO ") {
			if b := scBody(m.text); scRoot(b) == root {
				out = append(out, b)
			}
		}
	}
	return out
}

// requireEventsAfter checks that events of the given kinds arrived, in
// this order, after the response `after`, each about callID (its first
// <callID>; "" accepts any), and returns their bodies. Other events may
// come in between.
func (tr *scTrace) requireEventsAfter(t *testing.T, after, callID string, kinds ...string) []string {
	t.Helper()
	i, _ := tr.response(t, after)
	var got []string
	var seen []string
	k := 0
	for _, m := range tr.msgs[i+1:] {
		if k == len(kinds) {
			break
		}
		if !m.received || !strings.HasPrefix(m.text, "INFO ") {
			continue
		}
		b := scBody(m.text)
		c := ""
		if x := scCallRe.FindStringSubmatch(b); x != nil {
			c = x[1]
		}
		seen = append(seen, scRoot(b)+"("+c+")")
		if scRoot(b) == kinds[k] && (callID == "" || c == callID) {
			got = append(got, b)
			k++
		}
	}
	require.Equal(t, len(kinds), k, "after %s: want %v about call %q in this order; the INFOs were %v", after, kinds, callID, seen)
	return got
}
