// Package ldaptest runs a throwaway OpenLDAP slapd on loopback for tests:
// an mdb database in a temporary directory, the distribution's core, cosine
// and inetOrgPerson schemas, and a small schema of our own with the three
// Lync attributes (msRTCSIP-PrimaryUserAddress, msRTCSIP-Line,
// msRTCSIP-LineServer) on an auxiliary class msRTCSIPUser.
package ldaptest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Names of the test directory.
const (
	Suffix   = "dc=example,dc=net"
	People   = "ou=people," + Suffix
	RootDN   = "cn=admin," + Suffix
	RootPW   = "admin-secret"
	ReaderDN = "cn=reader," + Suffix
	ReaderPW = "reader-secret"
)

// Schema defines the Lync attributes under a private arc (1.3.6.1.4.1.99999
// is not assigned to anyone; it is only for this test server).
const Schema = `# Test copies of the Lync / Skype for Business user attributes.
attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'msRTCSIP-PrimaryUserAddress'
	DESC 'SIP URI of the user'
	EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.99999.1.2 NAME 'msRTCSIP-Line'
	DESC 'line URI of the user (remote call control)'
	EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.99999.1.3 NAME 'msRTCSIP-LineServer'
	DESC 'SIP URI of the CSTA gateway serving the line'
	EQUALITY caseIgnoreMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'msRTCSIPUser'
	DESC 'a user enabled for remote call control'
	SUP top AUXILIARY
	MAY ( msRTCSIP-PrimaryUserAddress $ msRTCSIP-Line $ msRTCSIP-LineServer ) )
`

// Server is one slapd. Stop and Start keep its port and data.
type Server struct {
	Dir  string
	Port int
	URL  string // ldap://127.0.0.1:PORT
	t    testing.TB
	bin  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Find returns the slapd binary and the schema directory, or why they are
// not there.
func Find() (slapd, schemaDir string, err error) {
	slapd, err = exec.LookPath("slapd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/slapd", "/usr/local/sbin/slapd", "/usr/libexec/slapd"} {
			if _, e := os.Stat(p); e == nil {
				slapd, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return "", "", fmt.Errorf("slapd is not installed (Debian: apt-get install slapd ldap-utils; test/all.sh does it)")
	}
	if out, e := exec.Command("dpkg", "-L", "slapd").Output(); e == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasSuffix(l, "/core.schema") {
				schemaDir = filepath.Dir(l)
				break
			}
		}
	}
	if schemaDir == "" {
		for _, d := range []string{"/etc/ldap/schema", "/etc/openldap/schema", "/usr/local/etc/openldap/schema"} {
			if _, e := os.Stat(filepath.Join(d, "core.schema")); e == nil {
				schemaDir = d
				break
			}
		}
	}
	if schemaDir == "" {
		return "", "", fmt.Errorf("slapd is installed but core.schema was not found")
	}
	return slapd, schemaDir, nil
}

func moduleDir() string {
	for _, d := range []string{"/usr/lib/ldap", "/usr/lib64/openldap", "/usr/lib/openldap", "/usr/libexec/openldap", "/usr/local/libexec/openldap"} {
		if m, _ := filepath.Glob(filepath.Join(d, "back_mdb*")); len(m) > 0 {
			return d
		}
	}
	return "" // back_mdb built in
}

// New writes the configuration and the base entries (suffix, people OU,
// reader) with slapadd, plus the LDIF in seed if not empty, without starting
// slapd. It skips the test when slapd is not installed.
func New(t testing.TB, seed string) *Server {
	t.Helper()
	bin, schemaDir, err := Find()
	if err != nil {
		t.Skipf("LDAP tests need OpenLDAP: %v", err)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "msrtcsip.schema"), []byte(Schema), 0o644); err != nil {
		t.Fatal(err)
	}
	var conf strings.Builder
	for _, s := range []string{"core", "cosine", "inetorgperson"} {
		fmt.Fprintf(&conf, "include %s\n", filepath.Join(schemaDir, s+".schema"))
	}
	fmt.Fprintf(&conf, "include %s\n", filepath.Join(dir, "msrtcsip.schema"))
	if md := moduleDir(); md != "" {
		fmt.Fprintf(&conf, "modulepath %s\nmoduleload back_mdb\n", md)
	}
	fmt.Fprintf(&conf, `pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
database mdb
maxsize 1073741824
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/db
sizelimit unlimited
index objectClass eq
access to attrs=userPassword by anonymous auth by * none
access to * by dn.exact="%[5]s" read by * none
`, dir, Suffix, RootDN, RootPW, ReaderDN)
	if err := os.WriteFile(filepath.Join(dir, "slapd.conf"), []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf(`dn: %s
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: %s
objectClass: organizationalUnit
ou: people

dn: %s
objectClass: person
objectClass: simpleSecurityObject
cn: reader
sn: reader
userPassword: %s

`, Suffix, People, ReaderDN, ReaderPW)
	s := &Server{Dir: dir, t: t, bin: bin}
	s.slapadd(base + seed)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	s.URL = fmt.Sprintf("ldap://127.0.0.1:%d", s.Port)
	t.Cleanup(s.Stop)
	return s
}

// Start is New then Start.
func Start(t testing.TB, seed string) *Server {
	s := New(t, seed)
	s.Start()
	return s
}

func (s *Server) slapadd(ldif string) {
	// slapadd is slapd in another mode; Debian links it to slapd.
	cmd := exec.Command(s.bin, "-T", "add", "-q", "-f", filepath.Join(s.Dir, "slapd.conf"))
	cmd.Stdin = strings.NewReader(ldif)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		s.t.Fatalf("slapadd: %v\n%s", err, out.String())
	}
}

// Start runs slapd in the foreground as a child process and waits until it
// accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	if s.cmd != nil {
		return
	}
	var out bytes.Buffer
	cmd := exec.Command(s.bin, "-d", "0", "-f", filepath.Join(s.Dir, "slapd.conf"), "-h", s.URL+"/")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("slapd: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			s.cmd = nil
			s.t.Fatalf("slapd exited at start: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			s.t.Fatalf("slapd did not listen on %s: %s", s.URL, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends slapd (SIGTERM, then SIGKILL after 10 s) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Admin connects as the root DN, for changing the directory in a test.
func (s *Server) Admin() *ldap.Conn {
	s.t.Helper()
	c, err := ldap.DialURL(s.URL)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := c.Bind(RootDN, RootPW); err != nil {
		c.Close()
		s.t.Fatal(err)
	}
	return c
}

// UserLDIF is the LDIF of one person with the Lync attributes; extra holds
// more "attr: value" lines.
func UserLDIF(uid, sipURI string, lines []string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: uid=%s,%s\nobjectClass: inetOrgPerson\nobjectClass: msRTCSIPUser\nuid: %s\ncn: %s\nsn: %s\n", uid, People, uid, uid, uid)
	if sipURI != "" {
		fmt.Fprintf(&b, "msRTCSIP-PrimaryUserAddress: %s\n", sipURI)
	}
	for _, l := range lines {
		fmt.Fprintf(&b, "msRTCSIP-Line: %s\n", l)
	}
	b.WriteString("msRTCSIP-LineServer: sip:cstagw@corp.example.net;gruu;opaque=srvr:cstagw\n")
	for _, e := range extra {
		b.WriteString(e + "\n")
	}
	b.WriteString("\n")
	return b.String()
}

// AddUser adds one person over LDAP.
func (s *Server) AddUser(uid, sipURI string, lines []string, attrs map[string][]string) {
	s.t.Helper()
	c := s.Admin()
	defer c.Close()
	req := ldap.NewAddRequest(fmt.Sprintf("uid=%s,%s", uid, People), nil)
	req.Attribute("objectClass", []string{"inetOrgPerson", "msRTCSIPUser"})
	req.Attribute("uid", []string{uid})
	req.Attribute("cn", []string{uid})
	req.Attribute("sn", []string{uid})
	if sipURI != "" {
		req.Attribute("msRTCSIP-PrimaryUserAddress", []string{sipURI})
	}
	if len(lines) > 0 {
		req.Attribute("msRTCSIP-Line", lines)
	}
	for k, v := range attrs {
		req.Attribute(k, v)
	}
	if err := c.Add(req); err != nil {
		s.t.Fatalf("add %s: %v", uid, err)
	}
}

// DeleteUser removes one person over LDAP.
func (s *Server) DeleteUser(uid string) {
	s.t.Helper()
	c := s.Admin()
	defer c.Close()
	if err := c.Del(ldap.NewDelRequest(fmt.Sprintf("uid=%s,%s", uid, People), nil)); err != nil {
		s.t.Fatalf("delete %s: %v", uid, err)
	}
}
