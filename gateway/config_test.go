package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// contractYAML is the configuration contract of docs/architecture.md §5, key for key.
const contractYAML = `
sip:
  listen: ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]   # also tls:host:port
  trusted_hosts: ["127.0.0.0/8"]       # who may send requests; empty list = anyone
  max_body_bytes: 65536
  session_expires: 1800s
  tls:                                 # used by tls: listeners
    cert_file: /etc/cstagw/tls/server.crt
    key_file: /etc/cstagw/tls/server.key
    client_ca_file: /etc/cstagw/tls/clients-ca.crt   # when set, clients must present a cert
cti:
  heartbeat_interval: 10s              # dead after 2 intervals of silence
  request_timeout: 5s
  reconnect:
    initial_backoff: 500ms
    max_backoff: 30s
    max_retries: 10
    hold_off: 6m
  links:                               # 1 to 8, in priority order
    - name: cti-a
      address: 127.0.0.1:4001
      app_session: true                # ECMA-354 StartApplicationSession first
    - name: cti-b
      address: 127.0.0.1:4002
      app_session: true
      tls: {ca_file: PBXCA, server_name: cti-b.pbx.example.net}
directory:
  users:
    - uri: sip:mila.novak@corp.example.net
      lines:
        - line: "tel:40125;phone-context=dialstring;partition=PT_Internal"
          device: "40125"              # the PBX device id on the CTI side
numbering:
  dial:                                # E.164 → what the PBX dials; first match wins
    - {match: '^\+1206555(\d{4})$', replace: '$1'}
    - {match: '^\+1(\d{10})$', replace: '91$1'}
  display:                             # PBX number → tel URI shown to clients
    - {match: '^(\d{4})$', replace: '+1206555$1'}
admin:
  listen: 127.0.0.1:8080
log:
  level: info
  format: json
`

func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "pbx-ca.crt")
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	return p
}

func TestContractConfigParses(t *testing.T) {
	y := strings.Replace(contractYAML, "PBXCA", writeCA(t), 1)
	cfg, err := ParseConfig([]byte(y))
	require.NoError(t, err)
	assert.Equal(t, 10*time.Second, cfg.CTI.HeartbeatInterval)
	assert.Equal(t, 6*time.Minute, cfg.CTI.Reconnect.HoldOff)
	assert.Len(t, cfg.CTI.Links, 2)
	assert.Equal(t, "cti-b.pbx.example.net", cfg.CTI.Links[1].TLS.ServerName)
	assert.Equal(t, 1800*time.Second, cfg.SIP.SessionExpires)
	assert.Equal(t, "40125", cfg.Directory.Users[0].Lines[0].Device)
	assert.Len(t, cfg.Numbering.Dial, 2)
	// And it builds a gateway (nothing is dialled or bound until Start).
	_, err = New(cfg, NewLogger(LogConfig{Level: "error"}, os.Stderr))
	require.NoError(t, err)
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"sip:\n  listn: []\n", "listn"},
		{"cti:\n  heartbeat_interval: soon\n", "soon"},
		{"cti:\n  links: [{name: a, address: nowhere}]\n", "cti.links[0].address"},
		{"sip:\n  listen: [\"sctp:1.2.3.4:5060\"]\ncti:\n  links: [{address: 127.0.0.1:1}]\n", "sip.listen[0]"},
		{"cti:\n  links: [{address: 127.0.0.1:1}]\nnumbering:\n  dial: [{match: '(', replace: x}]\n", "numbering.dial"},
		{"cti:\n  links: [{address: 127.0.0.1:1}]\nlog:\n  level: loud\n", "log.level"},
	}
	for _, tt := range tests {
		_, err := ParseConfig([]byte(tt.yaml))
		require.Error(t, err, tt.yaml)
		assert.Contains(t, err.Error(), tt.want, tt.yaml)
	}
}

const ldapYAML = `
cti:
  links: [{address: 127.0.0.1:1}]
directory:
  ldap:
    url: ldaps://dc1.corp.example.net
    bind_dn: "CN=svc-cstagw,OU=Service,DC=corp,DC=example,DC=net"
    password_env: CSTAGW_TEST_LDAP_PW
    base_dn: "OU=Users,DC=corp,DC=example,DC=net"
    device: {match: 'ext=(\d+)', replace: '$1'}
    refresh: 2m
    page_size: 1000
`

func TestConfigLDAPParses(t *testing.T) {
	t.Setenv("CSTAGW_TEST_LDAP_PW", "not-used")
	cfg, err := ParseConfig([]byte(ldapYAML))
	require.NoError(t, err)
	l := cfg.Directory.LDAP
	require.NotNil(t, l)
	assert.Equal(t, 2*time.Minute, l.Refresh)
	assert.Equal(t, 1000, l.PageSize)
	assert.Equal(t, `ext=(\d+)`, l.Device.Match)
	assert.Equal(t, "(msRTCSIP-Line=*)", l.Filter, "defaults applied")
	assert.Equal(t, "msRTCSIP-PrimaryUserAddress", l.UserAttribute)
	assert.Equal(t, "msRTCSIP-Line", l.LineAttribute)

	cfg, err = ParseConfig([]byte("cti:\n  links: [{address: 127.0.0.1:1}]\n"))
	require.NoError(t, err)
	assert.Nil(t, cfg.Directory.LDAP, "no directory.ldap: no LDAP source")
}

func TestConfigLDAPErrorsNameTheKey(t *testing.T) {
	t.Setenv("CSTAGW_TEST_LDAP_PW", "not-used")
	tests := []struct{ from, to, want string }{
		{"refresh: 2m", "refresh: often", "directory.ldap.refresh (line"},
		{"refresh: 2m", "refresh: 10ms", "directory.ldap.refresh: 10ms"},
		{"page_size: 1000", "page_size: many", "directory.ldap.page_size (line"},
		{"page_size: 1000", "pagesize: 1000", "directory.ldap.pagesize (line"},
		{"device: {match: 'ext=(\\d+)', replace: '$1'}", "device: {match: 'ext=(\\d+)', replace: '$2'}", "directory.ldap.device: replace"},
		{"device: {match: 'ext=(\\d+)', replace: '$1'}", "device: {mtch: x}", "directory.ldap.device.mtch (line"},
		{"device: {match: 'ext=(\\d+)', replace: '$1'}", "device_attribute: ''", "directory.ldap.device: neither"},
		{"url: ldaps://dc1.corp.example.net", "url: ldap://dc1.corp.example.net", "directory.ldap.start_tls"},
		{"url: ldaps://dc1.corp.example.net", "url: http://dc1", "directory.ldap.url"},
		{"password_env: CSTAGW_TEST_LDAP_PW", "password_env: CSTAGW_TEST_LDAP_UNSET", "directory.ldap.password_env"},
		{"password_env: CSTAGW_TEST_LDAP_PW", "password_file: /nonexistent/pw", "directory.ldap.password_file"},
		{`base_dn: "OU=Users,DC=corp,DC=example,DC=net"`, "base_dn: ''", "directory.ldap.base_dn: missing"},
		{"page_size: 1000", "filter: '(msRTCSIP-Line=*'", "directory.ldap.filter"},
	}
	for _, tt := range tests {
		y := strings.Replace(ldapYAML, tt.from, tt.to, 1)
		require.NotEqual(t, ldapYAML, y, tt.from)
		_, err := ParseConfig([]byte(y))
		require.Error(t, err, tt.to)
		assert.Contains(t, err.Error(), tt.want, tt.to)
	}
	// Every problem at once.
	y := strings.NewReplacer("refresh: 2m", "refresh: 1ms", "page_size: 1000", "page_size: -1").Replace(ldapYAML)
	_, err := ParseConfig([]byte(y))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "directory.ldap.refresh")
	assert.Contains(t, err.Error(), "directory.ldap.page_size")
}
