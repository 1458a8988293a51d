package gateway_test

import (
	"fmt"
	"io"
	"testing"

	"github.com/rs/zerolog"

	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/gateway"
	"github.com/cstagw/cstagw/sipstack"
)

// A directory of 80,000 users reloaded with 100 of them changed: what one
// refresh (SIGHUP or an LDAP refresh) costs. Sessions whose lines did not
// change are not visited beyond a comparison (see TestReloadDirectory).
func BenchmarkReloadDirectory80k(b *testing.B) {
	users := func(shift int) []gateway.UserConfig {
		out := make([]gateway.UserConfig, 80000)
		for i := range out {
			dev := 100000 + i
			if i < 100 {
				dev += shift // the first 100 users get another line
			}
			out[i] = gateway.UserConfig{URI: fmt.Sprintf("sip:u%d@bench.example", i),
				Lines: []gateway.LineConfig{{Line: fmt.Sprintf("tel:%d;phone-context=dialstring", dev), Device: fmt.Sprint(dev)}}}
		}
		return out
	}
	cfg := gateway.Config{
		SIP:       sipstack.Config{Listen: []string{"tcp:127.0.0.1:0"}, TrustedHosts: []string{"127.0.0.0/8"}},
		CTI:       ctipool.Config{Links: []ctipool.LinkConfig{{Name: "cti-a", Address: "127.0.0.1:1"}}},
		Directory: gateway.DirectoryConfig{Users: users(0)},
		Admin:     gateway.AdminConfig{Listen: "off"},
	}
	gw, err := gateway.New(cfg, zerolog.New(io.Discard))
	if err != nil {
		b.Fatal(err)
	}
	alt := cfg
	alt.Directory.Users = users(500000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		next := cfg
		if i%2 == 0 {
			next = alt
		}
		if _, err := gw.Apply(next); err != nil {
			b.Fatal(err)
		}
	}
}
