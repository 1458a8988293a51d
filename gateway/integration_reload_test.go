package gateway_test

// Live configuration changes (reload): what changes, and that nobody else
// notices.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/gateway"
)

const (
	userGina = "sip:gina@example.com"
	lineGina = "tel:40007;phone-context=dialstring"
	devGina  = "40007"
)

// monitorEnded returns the MonitorEnded events the client got.
func monitorEnded(d *dialog) []*csta.Message { return eventsOf(d, csta.KindMonitorEndedEvent) }

func TestReloadDirectory(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.tcp()
	// gina is not in the directory yet.
	_, res := c.invite(inviteOpts{user: userGina, line: lineGina})
	require.Equal(t, 403, res.StatusCode)

	alice := signIn(t, c, userAlice, lineAlice)
	bob := signIn(t, c, userBob, lineBob)
	frank := signIn(t, c, userFrank, lineFrankA)
	xrefB := frank.ok(monitorStart(lineFrankB)).MonitorCrossRefID
	require.Equal(t, 1, simDevice(e.sim, devFrankB).Monitors)
	bobMonitors := simDevice(e.sim, devBob).Monitors

	cfg := e.cfg
	var users []gateway.UserConfig
	for _, u := range cfg.Directory.Users {
		switch u.URI {
		case userAlice: // removed
		case userFrank: // loses his second phone
			u.Lines = u.Lines[:1]
			users = append(users, u)
		default:
			users = append(users, u)
		}
	}
	users = append(users, gateway.UserConfig{URI: userGina, Lines: []gateway.LineConfig{{Line: lineGina, Device: devGina}}})
	cfg.Directory.Users = users
	r, err := e.gw.Apply(cfg)
	require.NoError(t, err)
	assert.Contains(t, r.Changed, "directory")
	assert.Equal(t, 1, r.SessionsEnded)
	assert.Equal(t, 1, r.MonitorsStopped)
	assert.Equal(t, 2, r.Generation)

	// alice: BYE, and her PBX monitor stopped.
	require.True(t, alice.waitFor(alice.byeReceived), "no BYE for the removed user")
	require.Eventually(t, func() bool { return simDevice(e.sim, devAlice).Monitors == 0 }, waitLong, pollInterval)
	// frank: his second monitor ended, his session goes on.
	require.True(t, frank.waitFor(func() bool { return len(monitorEnded(frank)) == 1 }))
	assert.Equal(t, xrefB, monitorEnded(frank)[0].MonitorCrossRefID)
	require.Eventually(t, func() bool { return simDevice(e.sim, devFrankB).Monitors == 0 }, waitLong, pollInterval)
	frank.fails(getDND(lineFrankB), errPrivDevice)
	assert.Equal(t, csta.KindGetDoNotDisturbResponse, frank.ok(getDND(lineFrankA)).Kind)
	assert.False(t, frank.byeReceived())
	// bob: untouched (same dialog, no re-monitor, no SystemStatus).
	assert.Equal(t, bobMonitors, simDevice(e.sim, devBob).Monitors)
	assert.Empty(t, bob.events(0))
	assert.Equal(t, csta.KindGetDoNotDisturbResponse, bob.ok(getDND(lineBob)).Kind)
	// gina signs in at once.
	signIn(t, c, userGina, lineGina)
	assert.Contains(t, metricsText(t, e), `cstagw_config_reloads_total{result="ok"} 1`)
}

func TestReloadNumbering(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice := signIn(t, e.tcp(), userAlice, lineAlice)
	signIn(t, e.tcp(), userBob, lineBob)
	const other = "tel:+14255550002" // outside the dial rule: goes out as is
	callTo := func() ctisimCall {
		t.Helper()
		id := alice.ok(makeCall(lineAlice, other)).Connection.CallID
		waitConn(t, e.sim, id, devAlice, "connected")
		c, _ := simCall(e.sim, id)
		alice.ok(clearConnection(id, lineAlice))
		return ctisimCall{id: id, called: c.Called}
	}
	before := callTo()
	assert.NotEqual(t, devBob, before.called)
	cfg := e.cfg
	cfg.Numbering.Dial = append(cfg.Numbering.Dial, csta.Rule{Match: `^\+1425555(\d{4})$`, Replace: "4${1}"})
	r, err := e.gw.Apply(cfg)
	require.NoError(t, err)
	assert.Equal(t, []string{"numbering"}, r.Changed)
	after := callTo()
	assert.Equal(t, devBob, after.called, "the next MakeCall dials the new form")
}

type ctisimCall struct{ id, called string }

// The file path: SIGHUP and POST /reload read the file; a broken file
// changes nothing and shows in /status.
func TestReloadFromFile(t *testing.T) {
	e := newEnv(t, envOpts{})
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	write := func(extraUser string) {
		var b strings.Builder
		fmt.Fprintf(&b, "sip:\n  listen: [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"]\n  trusted_hosts: [\"127.0.0.0/8\"]\n  retry_after: 7s\n")
		fmt.Fprintf(&b, "cti:\n  heartbeat_interval: 200ms\n  request_timeout: 1s\n  links:\n")
		for _, l := range e.cfg.CTI.Links {
			fmt.Fprintf(&b, "    - {name: %s, address: %q, app_session: true}\n", l.Name, l.Address)
		}
		fmt.Fprintf(&b, "directory:\n  users:\n")
		fmt.Fprintf(&b, "    - uri: %s\n      lines: [{line: %q, device: %q}]\n", userBob, lineBob, devBob)
		if extraUser != "" {
			fmt.Fprintf(&b, "    - uri: %s\n      lines: [{line: %q, device: %q}]\n", extraUser, lineGina, devGina)
		}
		fmt.Fprintf(&b, "admin:\n  listen: \"127.0.0.1:0\"\nlog:\n  level: debug\n")
		require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
	}
	e.gw.SetConfigPath(path)
	write(userGina)
	base := "http://" + e.gw.AdminAddr()
	post := func() (int, map[string]any) {
		res, err := http.Post(base+"/reload", "", nil)
		require.NoError(t, err)
		defer res.Body.Close()
		var m map[string]any
		require.NoError(t, json.NewDecoder(res.Body).Decode(&m))
		return res.StatusCode, m
	}
	code, body := post()
	require.Equal(t, 200, code, "%v", body)
	assert.Contains(t, body["changed"], "directory")
	assert.Empty(t, body["needs_restart"], "the file says what runs")
	signIn(t, e.tcp(), userGina, lineGina)

	// A broken file: 400 with the error, nothing changes.
	require.NoError(t, os.WriteFile(path, []byte("cti:\n  links: []\n  bogus: 1\n"), 0o600))
	code, body = post()
	assert.Equal(t, 400, code)
	assert.Contains(t, body["error"], "bogus")
	st := e.gw.Status()
	assert.Equal(t, 2, st.Config.Generation)
	assert.Contains(t, st.Config.LastError, "bogus")
	signIn(t, e.tcp(), userGina, lineGina) // the old configuration still serves
	assert.Contains(t, metricsText(t, e), `cstagw_config_reloads_total{result="error"} 1`)

	// What needs a restart is named, the rest applied.
	write("")
	cfgText, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(string(cfgText), "127.0.0.1:0\"\nlog", "127.0.0.1:1\"\nlog", 1)), 0o600))
	code, body = post()
	require.Equal(t, 200, code, "%v", body)
	assert.Contains(t, body["needs_restart"], "admin")
	assert.Empty(t, e.gw.Status().Config.LastError)
	_, res := e.tcp().invite(inviteOpts{user: userGina, line: lineGina})
	assert.Equal(t, 403, res.StatusCode, "gina was removed by the applied part")
}

// A link added by a reload joins placement and fallback; a removed link's
// sessions move to the others without a 481, then it closes.
func TestReloadLinks(t *testing.T) {
	e := newEnv(t, envOpts{nodes: 2, gw: func(c *gateway.Config) {
		c.CTI.Links = c.CTI.Links[:1] // cti-b comes with a reload
		c.Gateway.MaxSessionsPerUser = 100
	}})
	all := e.cfg.CTI.Links
	bAddr := e.sim.Addrs()[1]
	c := e.tcp()
	var ds []*dialog
	for i := 0; i < 6; i++ {
		ds = append(ds, signIn(t, c, userAlice, lineAlice))
	}
	cfg := e.cfg
	cfg.CTI.Links = append(append([]ctipool.LinkConfig{}, all...), ctipool.LinkConfig{Name: "cti-b", Address: bAddr, AppSession: true})
	r, err := e.gw.Apply(cfg)
	require.NoError(t, err)
	assert.Equal(t, []string{"cti-b"}, r.LinksAdded)
	// Fallback spreads idle sessions to the added link until both are
	// within max(1, 5 %) of the mean of 3: 4/2.
	require.Eventually(t, func() bool { return e.sessionsOn()["cti-b"] == 2 }, waitLong, pollInterval)
	assert.Equal(t, 4, e.sessionsOn()["cti-a"])

	// Remove cti-a: its sessions move to cti-b, same dialogs.
	cfg.CTI.Links = cfg.CTI.Links[1:]
	r, err = e.gw.Apply(cfg)
	require.NoError(t, err)
	assert.Equal(t, []string{"cti-a"}, r.LinksRemoved)
	require.Eventually(t, func() bool { return e.sessionsOn()["cti-b"] == 6 }, waitLong, pollInterval)
	for _, d := range ds {
		assert.Equal(t, csta.KindGetDoNotDisturbResponse, d.ok(getDND(lineAlice)).Kind)
		assert.False(t, d.byeReceived())
	}
	require.Eventually(t, func() bool { return e.sim.State().Nodes[0].ConnectedClients == 0 }, waitLong, pollInterval,
		"the removed link was not closed")
	assert.Len(t, e.gw.Status().Links, 1)
	assert.Contains(t, metricsText(t, e), "cstagw_stale_481_total 0")
	mark := ds[0].mark()
	id, err := e.sim.PlaceCall(extCaller, devAlice)
	require.NoError(t, err)
	ds[0].waitEvent(mark, csta.KindDeliveredEvent, id)

}
