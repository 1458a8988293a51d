package gateway_test

// The directory from LDAP (a real slapd started by the test): sign-in
// authorised from LDAP, a user added in LDAP signs in after a refresh, one
// removed loses their session, and with slapd stopped sign-ins go on from
// the last good copy.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/gateway"
	"github.com/cstagw/cstagw/gateway/ldapdir"
	"github.com/cstagw/cstagw/gateway/ldapdir/ldaptest"
)

func TestDirectoryFromLDAP(t *testing.T) {
	const (
		userHank = "sip:hank@example.com"
		lineHank = "tel:40008;phone-context=dialstring"
	)
	srv := ldaptest.Start(t, ldaptest.UserLDIF("gina", userGina, []string{lineGina}))
	pw := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(pw, []byte(ldaptest.ReaderPW+"\n"), 0o600))
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.Directory.LDAP = &ldapdir.Config{URL: srv.URL, BindDN: ldaptest.ReaderDN, PasswordFile: pw, BaseDN: ldaptest.People,
			Device: ldapdir.DeviceRule{Match: `^tel:(\d+)`, Replace: "$1"}, Refresh: time.Second}
	}})
	c := e.tcp()
	gina := signIn(t, c, userGina, lineGina) // from LDAP
	signIn(t, c, userAlice, lineAlice)       // from the file, merged
	_, res := c.invite(inviteOpts{user: userHank, line: lineHank})
	require.Equal(t, 403, res.StatusCode)

	srv.AddUser("hank", userHank, []string{lineHank}, nil)
	require.Eventually(t, func() bool {
		d, _ := e.tcp().invite(inviteOpts{user: userHank, line: lineHank})
		return d != nil
	}, waitLong, 200*time.Millisecond, "a user added in LDAP never signed in")

	srv.DeleteUser("gina")
	require.True(t, gina.waitFor(gina.byeReceived), "the user removed from LDAP kept the session")
	require.Eventually(t, func() bool { return simDevice(e.sim, devGina).Monitors == 0 }, waitLong, pollInterval)

	// LDAP down: the last good copy keeps serving.
	srv.Stop()
	require.Eventually(t, func() bool {
		return metricsHas(t, e, `cstagw_directory_source_up{source="ldap"} 0`)
	}, waitLong, 200*time.Millisecond)
	d := signIn(t, e.tcp(), userHank, lineHank)
	assert.Equal(t, csta.KindGetDoNotDisturbResponse, d.ok(getDND(lineHank)).Kind)
}

func metricsHas(t *testing.T, e *testEnv, line string) bool {
	return strings.Contains("\n"+metricsText(t, e), "\n"+line+"\n")
}
