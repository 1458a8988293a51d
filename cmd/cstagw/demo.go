package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cstagw/cstagw/gateway"
	"github.com/cstagw/cstagw/test/ctisim"
	"github.com/cstagw/cstagw/test/sipp"
)

// demoEnv is the demo's simulated PBX and the scenario files handed out.
type demoEnv struct {
	sim *ctisim.Sim
	cfg gateway.Config
	dir string
}

func startDemo() (*demoEnv, error) {
	scfg := ctisim.DefaultConfig()
	scfg.Listen = []string{"127.0.0.1:0", "127.0.0.1:0"}
	scfg.Control = "127.0.0.1:0"
	scfg.AutoAnswer = 3 * time.Second
	sim, err := ctisim.New(scfg)
	if err != nil {
		return nil, err
	}
	if err := sim.Start(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "cstagw-demo-")
	if err != nil {
		sim.Close()
		return nil, err
	}
	// Hand out the sipp scenario pack so the printed commands work from
	// any directory.
	err = fs.WalkDir(sipp.Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := sipp.Files.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), b, 0o644)
	})
	if err != nil {
		sim.Close()
		return nil, err
	}
	return &demoEnv{sim: sim, cfg: gateway.DemoConfig(sim.Addrs()), dir: dir}, nil
}

func (d *demoEnv) Close() {
	_ = d.sim.Close()
	_ = os.RemoveAll(d.dir)
}

func (d *demoEnv) printHelp(g *gateway.Gateway) {
	fmt.Printf(`
cstagw demo is running.

  SIP (UDP and TCP)   %s
  admin HTTP          http://%s  (/status, /metrics, /healthz, /readyz)
  simulated PBX       CTI nodes %v, control API http://%s
  directory           sip:user1@demo.cstagw .. sip:user%d@demo.cstagw,
                      line tel:+1206555000N (PBX station 4000N)
  logs                this terminal (stderr)

Try it with sipp (apt-get install sip-tester):

  sipp 127.0.0.1:5060 -sf %s -inf %s -m 1 -nostdin -timeout 20s

Ring user1's phone from outside, then look at the call on the switch:

  curl -s -XPOST http://%s/calls -d '{"from":"+12065550147","to":"40001"}'
  curl -s http://%s/state
  curl -s http://%s/status

Stop with Ctrl-C (SIGTERM also drains: 503 to new INVITEs, BYE to sessions).
`, g.SIPAddr("udp"), g.AdminAddr(), d.sim.Addrs(), d.sim.ControlAddr(), gateway.DemoUserCount,
		filepath.Join(d.dir, "signin.xml"), filepath.Join(d.dir, "users.csv"),
		d.sim.ControlAddr(), d.sim.ControlAddr(), g.AdminAddr())
}
