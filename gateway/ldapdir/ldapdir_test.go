package ldapdir

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/gateway/ldapdir/ldaptest"
)

func testConfig(t *testing.T, srv *ldaptest.Server) Config {
	pw := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(pw, []byte(ldaptest.ReaderPW+"\n"), 0o600))
	c := Config{
		URL:             srv.URL,
		BindDN:          ldaptest.ReaderDN,
		PasswordFile:    pw,
		BaseDN:          ldaptest.People,
		DeviceAttribute: "telephoneNumber",
		Device:          DeviceRule{Match: `ext=(\d+)`, Replace: "$1"},
		Refresh:         time.Second,
		PageSize:        10,
	}.WithDefaults()
	require.NoError(t, c.Validate("directory.ldap"))
	return c
}

const seed = `dn: uid=mila,ou=people,dc=example,dc=net
objectClass: inetOrgPerson
objectClass: msRTCSIPUser
uid: mila
cn: Mila Novak
sn: Novak
msRTCSIP-PrimaryUserAddress: sip:mila.novak@corp.example.net
msRTCSIP-Line: tel:+12065550125;ext=40125
msRTCSIP-LineServer: sip:cstagw@corp.example.net

dn: uid=omar,ou=people,dc=example,dc=net
objectClass: inetOrgPerson
objectClass: msRTCSIPUser
uid: omar
cn: Omar Haddad
sn: Haddad
telephoneNumber: 40200
msRTCSIP-PrimaryUserAddress: SIP:Omar.Haddad@corp.example.net
msRTCSIP-Line: tel:40200;phone-context=dialstring

dn: uid=noline,ou=people,dc=example,dc=net
objectClass: inetOrgPerson
objectClass: msRTCSIPUser
uid: noline
cn: No Line
sn: Line
msRTCSIP-PrimaryUserAddress: sip:noline@corp.example.net

dn: uid=nouser,ou=people,dc=example,dc=net
objectClass: inetOrgPerson
objectClass: msRTCSIPUser
uid: nouser
cn: No User
sn: User
msRTCSIP-Line: tel:+12065550999;ext=40999

dn: uid=nodevice,ou=people,dc=example,dc=net
objectClass: inetOrgPerson
objectClass: msRTCSIPUser
uid: nodevice
cn: No Device
sn: Device
msRTCSIP-PrimaryUserAddress: sip:nodevice@corp.example.net
msRTCSIP-Line: tel:+12065550998

dn: uid=twolines,ou=people,dc=example,dc=net
objectClass: inetOrgPerson
objectClass: msRTCSIPUser
uid: twolines
cn: Two Lines
sn: Lines
msRTCSIP-PrimaryUserAddress: twolines@corp.example.net
msRTCSIP-Line: tel:+12065550301;ext=40301
msRTCSIP-Line: tel:+12065550302;ext=40302

`

func TestLoadUsersAndLines(t *testing.T) {
	srv := ldaptest.Start(t, seed)
	c := testConfig(t, srv)
	r, err := c.Search(context.Background())
	require.NoError(t, err)

	assert.Equal(t, []User{
		{URI: "sip:Omar.Haddad@corp.example.net", Lines: []Line{{Line: "tel:40200;phone-context=dialstring", Device: "40200"}}},
		{URI: "sip:mila.novak@corp.example.net", Lines: []Line{{Line: "tel:+12065550125;ext=40125", Device: "40125"}}},
		{URI: "sip:twolines@corp.example.net", Lines: []Line{
			{Line: "tel:+12065550301;ext=40301", Device: "40301"},
			{Line: "tel:+12065550302;ext=40302", Device: "40302"},
		}},
	}, r.Users, "device from telephoneNumber for omar, from ext= for the others")
	assert.Equal(t, 5, r.Entries, "the default filter (msRTCSIP-Line=*) does not return noline")
	assert.Equal(t, 4, r.Lines)
	assert.Equal(t, 2, r.Skipped, "nouser (no user) and nodevice (its only line has no device)")
	assert.Equal(t, 1, r.SkippedLines)
	assert.NotEmpty(t, r.Examples)

	users, err := c.Load(context.Background())
	require.NoError(t, err)
	assert.Equal(t, r.Users, users)

	// With a filter that returns every person, the entry without a line is
	// skipped and counted too.
	c.Filter = "(objectClass=msRTCSIPUser)"
	r, err = c.Search(context.Background())
	require.NoError(t, err)
	assert.Len(t, r.Users, 3)
	assert.Equal(t, 3, r.Skipped)
}

func TestLoadPaged(t *testing.T) {
	var ldif strings.Builder
	const n = 137
	for i := 0; i < n; i++ {
		ldif.WriteString(ldaptest.UserLDIF(fmt.Sprintf("u%03d", i), fmt.Sprintf("sip:u%03d@corp.example.net", i),
			[]string{fmt.Sprintf("tel:+1206556%04d;ext=5%04d", i, i)}))
	}
	srv := ldaptest.Start(t, ldif.String())
	c := testConfig(t, srv)
	c.PageSize = 10 // 14 pages
	r, err := c.Search(context.Background())
	require.NoError(t, err)
	assert.Len(t, r.Users, n)
	assert.Equal(t, n, r.Entries)
	assert.Equal(t, 14, r.Pages, "137 entries in pages of 10")
	assert.Equal(t, "50136", r.Users[n-1].Lines[0].Device)

	c.MaxEntries = 100
	_, err = c.Search(context.Background())
	var le *LoadError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "max_entries", le.Key)
}

func TestLoadErrorsNameTheKey(t *testing.T) {
	srv := ldaptest.Start(t, seed)
	ctx := context.Background()
	key := func(c Config) string {
		_, err := c.Search(ctx)
		var le *LoadError
		require.ErrorAs(t, err, &le)
		return le.Key
	}
	c := testConfig(t, srv)
	bad := c
	badPW := filepath.Join(t.TempDir(), "bad")
	require.NoError(t, os.WriteFile(badPW, []byte("wrong-password"), 0o600))
	bad.PasswordFile = badPW
	_, err := bad.Search(ctx)
	assert.Equal(t, "bind_dn", key(bad))
	assert.NotContains(t, err.Error(), "wrong-password", "the password never shows")

	bad = c
	bad.BaseDN = "ou=nobody," + ldaptest.Suffix
	assert.Equal(t, "base_dn", key(bad))

	srv.Stop()
	assert.Equal(t, "url", key(c))
}

func TestSourceRefreshOutageAndBack(t *testing.T) {
	srv := ldaptest.Start(t, seed)
	c := testConfig(t, srv)
	var logBuf syncBuffer
	s, err := NewSource(c, zerolog.New(&logBuf))
	require.NoError(t, err)
	changes := make(chan []User, 10)
	s.OnChange = func(u []User) { changes <- u }

	assert.False(t, s.Up())
	assert.True(t, s.LastSuccess().IsZero())
	require.NoError(t, s.Refresh(context.Background()))
	assert.True(t, s.Up())
	first := <-changes
	assert.Len(t, first, 3)
	t0 := s.LastSuccess()

	// No change: no callback.
	require.NoError(t, s.Refresh(context.Background()))
	assert.Empty(t, changes)
	assert.True(t, s.LastSuccess().After(t0))

	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { s.Run(ctx); close(runDone) }()
	defer func() { cancel(); <-runDone }()

	// A user added in LDAP appears after a refresh.
	srv.AddUser("new", "sip:new.user@corp.example.net", []string{"tel:+12065550777;ext=40777"}, nil)
	got := waitChange(t, changes)
	assert.Len(t, got, 4)
	assert.Contains(t, got, User{URI: "sip:new.user@corp.example.net", Lines: []Line{{Line: "tel:+12065550777;ext=40777", Device: "40777"}}})

	// A removed one disappears.
	srv.DeleteUser("mila")
	got = waitChange(t, changes)
	assert.Len(t, got, 3)
	for _, u := range got {
		assert.NotEqual(t, "sip:mila.novak@corp.example.net", u.URI)
	}
	good := s.Users()

	// The server goes away: the last good copy stays, the source is down,
	// and the outage is logged once however many refreshes fail.
	srv.Stop()
	require.Eventually(t, func() bool { return !s.Up() }, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, good, s.Users(), "never an empty directory because a search failed")
	assert.Error(t, s.LastError())
	time.Sleep(2500 * time.Millisecond) // two more failing refreshes
	assert.Equal(t, good, s.Users())
	assert.Equal(t, 1, strings.Count(logBuf.String(), "directory source down"), logBuf.String())
	assert.Empty(t, changes)

	// Back: up again, and no OnChange since nothing changed.
	srv.Start()
	require.Eventually(t, s.Up, 5*time.Second, 20*time.Millisecond)
	assert.NoError(t, s.LastError())
	assert.Equal(t, good, s.Users())
	assert.Empty(t, changes)
	assert.Contains(t, logBuf.String(), `"outage"`)
	assert.NotContains(t, logBuf.String(), ldaptest.ReaderPW)
}

func waitChange(t *testing.T, ch chan []User) []User {
	t.Helper()
	select {
	case u := <-ch:
		return u
	case <-time.After(5 * time.Second):
		t.Fatal("no OnChange after a refresh")
		return nil
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
