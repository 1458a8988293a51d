package gateway

import (
	"fmt"
	"time"

	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/sipstack"
)

// DemoUsers are the demo directory's users: sip:userN@demo.cstagw on line
// tel:4000N;phone-context=dialstring (PBX device 4000N), N = 1..DemoUserCount.
const DemoUserCount = 20

// DemoConfig is the configuration `cstagw` runs with when given none: SIP
// on 127.0.0.1:5060 (UDP and TCP), admin on 127.0.0.1:8080, the given
// simulated CTI nodes, and a small directory.
func DemoConfig(ctiAddrs []string) Config {
	cfg := Config{
		SIP: sipstack.Config{
			Listen:       []string{"udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"},
			TrustedHosts: []string{"127.0.0.0/8"},
		},
		CTI: ctipool.Config{
			HeartbeatInterval: 5 * time.Second,
			RequestTimeout:    5 * time.Second,
			Reconnect: ctipool.ReconnectConfig{
				InitialBackoff: 500 * time.Millisecond,
				MaxBackoff:     5 * time.Second,
				MaxRetries:     10,
				HoldOff:        time.Minute,
			},
		},
		Admin: AdminConfig{Listen: DefaultAdminListen},
		Log:   LogConfig{Level: "info", Format: "console"},
	}
	for i, a := range ctiAddrs {
		cfg.CTI.Links = append(cfg.CTI.Links, ctipool.LinkConfig{Name: fmt.Sprintf("cti-%c", 'a'+i), Address: a, AppSession: true})
	}
	for n := 1; n <= DemoUserCount; n++ {
		cfg.Directory.Users = append(cfg.Directory.Users, UserConfig{
			URI: fmt.Sprintf("sip:user%d@demo.cstagw", n),
			Lines: []LineConfig{{
				Line:    fmt.Sprintf("tel:%d;phone-context=dialstring", 40000+n),
				Device:  fmt.Sprintf("%d", 40000+n),
				Aliases: []string{fmt.Sprintf("tel:+1206555%04d", n)},
			}},
		})
	}
	return cfg
}
