package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/gateway/ldapdir/ldaptest"
)

// TestMain lets a test run this binary's main as a child process.
func TestMain(m *testing.M) {
	if os.Getenv("CSTAGW_TEST_RUN_MAIN") == "1" {
		os.Args = append([]string{"cstagw"}, os.Args[1:]...)
		for i, a := range os.Args {
			if a == "--" {
				os.Args = append([]string{"cstagw"}, os.Args[i+1:]...)
				break
			}
		}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runCheck(t *testing.T, yaml string) (string, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gateway.yaml")
	require.NoError(t, os.WriteFile(p, []byte(yaml), 0o600))
	cmd := exec.Command(os.Args[0], "-test.run=^$", "--", "-config", p, "-check")
	cmd.Env = append(os.Environ(), "CSTAGW_TEST_RUN_MAIN=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestCheckTriesLDAP(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.UserLDIF("mila", "sip:mila@corp.example.net", []string{"tel:+12065550125;ext=40125"})+
		ldaptest.UserLDIF("omar", "sip:omar@corp.example.net", []string{"tel:+12065550126;ext=40126", "tel:+12065550127;ext=40127"})+
		ldaptest.UserLDIF("nouser", "", []string{"tel:+12065550128;ext=40128"}))
	pw := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(pw, []byte(ldaptest.ReaderPW), 0o600))
	conf := func(bindDN string) string {
		return fmt.Sprintf(`cti:
  links: [{address: 127.0.0.1:1}]
directory:
  ldap:
    url: %s
    bind_dn: %q
    password_file: %s
    base_dn: %q
    device: {match: 'ext=(\d+)'}
`, srv.URL, bindDN, pw, ldaptest.People)
	}
	out, err := runCheck(t, conf(ldaptest.ReaderDN))
	require.NoError(t, err, out)
	assert.Contains(t, out, "2 users, 3 lines from 3 entries")
	assert.Contains(t, out, "skipped 1 entries")
	assert.Contains(t, out, "is valid")

	out, err = runCheck(t, conf("cn=nobody,"+ldaptest.Suffix))
	require.Error(t, err, out)
	assert.Contains(t, out, "directory.ldap.bind_dn: bind as cn=nobody")
	assert.NotContains(t, out, ldaptest.ReaderPW)

	srv.Stop()
	out, err = runCheck(t, conf(ldaptest.ReaderDN))
	require.Error(t, err, out)
	assert.Contains(t, out, "directory.ldap.url: ")
}
