package ldapdir

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{URL: "ldap://127.0.0.1:3890", BaseDN: "dc=example,dc=net", DeviceAttribute: "telephoneNumber"}.WithDefaults()
	assert.NoError(t, ok.Validate("directory.ldap"), "plain ldap:// is allowed to loopback only")

	tests := []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.URL = "ldap://dc1.example.net" }, "directory.ldap.start_tls: ldap:// to dc1.example.net"},
		{func(c *Config) { c.URL = "ldaps://dc1.example.net"; c.StartTLS = true }, "directory.ldap.start_tls: true with ldaps://"},
		{func(c *Config) { c.URL = "ldaps://dc1.example.net/dc=x" }, "directory.ldap.url"},
		{func(c *Config) { c.URL = "" }, "directory.ldap.url: missing"},
		{func(c *Config) { c.BindDN = "cn=reader,dc=example,dc=net" }, "directory.ldap.password_file: missing"},
		{func(c *Config) { c.PasswordEnv = "X" }, "directory.ldap.bind_dn: missing"},
		{func(c *Config) { c.BindDN = "not a dn"; c.PasswordEnv = "PATH" }, "directory.ldap.bind_dn"},
		{func(c *Config) { c.UserAttribute = "bad attr" }, "directory.ldap.user_attribute"},
		{func(c *Config) { c.Device = DeviceRule{Match: "ext="} }, "directory.ldap.device: match \"ext=\" has no group"},
		{func(c *Config) { c.Device = DeviceRule{Match: "("} }, "directory.ldap.device: match"},
		{func(c *Config) { c.Device = DeviceRule{Replace: "$1"} }, "directory.ldap.device.match: missing"},
		{func(c *Config) { c.CAFile = "/nonexistent/ca.pem" }, "directory.ldap.ca_file"},
		{func(c *Config) { c.MaxEntries = -1 }, "directory.ldap.max_entries"},
		{func(c *Config) { c.Timeout = -1 }, "directory.ldap.timeout"},
	}
	for _, tt := range tests {
		c := ok
		tt.edit(&c)
		err := c.Validate("directory.ldap")
		if assert.Error(t, err, tt.want) {
			assert.Contains(t, err.Error(), tt.want)
		}
	}
}

func TestNormalizeUser(t *testing.T) {
	for in, want := range map[string]string{
		"sip:mila@corp.example.net":   "sip:mila@corp.example.net",
		"SIP:Mila@corp.example.net":   "sip:Mila@corp.example.net",
		"sips:mila@corp.example.net":  "sip:mila@corp.example.net",
		" mila@corp.example.net ":     "sip:mila@corp.example.net",
		"tel:+12065550125":            "",
		"mila":                        "",
		"sip:@corp.example.net":       "",
		"sip:a@b@c":                   "",
		"sip:mila@corp.example.net;x": "",
		"":                            "",
	} {
		assert.Equal(t, want, NormalizeUser(in), in)
	}
}

func TestDeviceRule(t *testing.T) {
	r, err := compileDevice(DeviceRule{Match: `ext=(\d+)`})
	assert.NoError(t, err)
	assert.Equal(t, "40125", r.device("tel:+12065550125;ext=40125"))
	assert.Equal(t, "", r.device("tel:+12065550125"))
	r, err = compileDevice(DeviceRule{Match: `^tel:\+1206555(?P<n>\d{4})$`, Replace: "4${n}"})
	assert.NoError(t, err)
	assert.Equal(t, "40125", r.device("tel:+12065550125"))
}
