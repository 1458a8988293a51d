// Command cstagw is the SIP/CSTA remote call control gateway.
//
//	cstagw -config FILE          run with a configuration
//	cstagw -config FILE -check   validate a configuration and exit
//	cstagw                       run the demo: an embedded simulated PBX
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cstagw/cstagw/gateway"
	"github.com/cstagw/cstagw/gateway/ldapdir"
)

func main() {
	configPath := flag.String("config", "", "configuration file (YAML); none runs the demo")
	check := flag.Bool("check", false, "validate the configuration and exit")
	flag.Parse()

	if *check {
		if *configPath == "" {
			fmt.Fprintln(os.Stderr, "cstagw: -check needs -config FILE")
			os.Exit(2)
		}
		cfg, err := gateway.LoadConfig(*configPath)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cstagw: %s is not valid:\n%v\n", *configPath, err)
			os.Exit(1)
		}
		if who, open := cfg.SIP.TrustSummary(); open {
			fmt.Fprintf(os.Stderr, "cstagw: warning: sip.trusted_hosts opens the gateway to everyone: anyone who reaches it can control any user's phone (%s)\n", who)
		} else {
			fmt.Printf("cstagw: SIP requests accepted from: %s\n", who)
		}
		if cfg.Directory.LDAP != nil && !checkLDAP(*cfg.Directory.LDAP) {
			os.Exit(1)
		}
		fmt.Printf("cstagw: %s is valid\n", *configPath)
		return
	}

	var (
		cfg  gateway.Config
		demo *demoEnv
		err  error
	)
	if *configPath == "" {
		demo, err = startDemo()
		if err != nil {
			fmt.Fprintf(os.Stderr, "cstagw: demo: %v\n", err)
			os.Exit(1)
		}
		defer demo.Close()
		cfg = demo.cfg
	} else if cfg, err = gateway.LoadConfig(*configPath); err != nil {
		fmt.Fprintf(os.Stderr, "cstagw: %s is not valid:\n%v\n", *configPath, err)
		os.Exit(1)
	}

	log := gateway.NewLogger(cfg.Log, os.Stderr)
	gcPercent, memLimit := gateway.ApplyRuntime(cfg.Runtime)
	log.Info().Int("gc_percent", gcPercent).Int64("memory_limit", memLimit).Msg("garbage collector")
	g, err := gateway.New(cfg, log)
	if err == nil {
		err = g.Start()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cstagw: %v\n", err)
		if demo != nil {
			demo.Close() // os.Exit skips the deferred one: no demo directory left behind
		}
		os.Exit(1)
	}
	if demo != nil {
		demo.printHelp(g)
	} else {
		g.SetConfigPath(*configPath)
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	why := ""
wait:
	for {
		select {
		case s := <-sig:
			if s != syscall.SIGHUP {
				why = s.String()
				break wait
			}
			// Errors are logged and kept for /status by Reload itself.
			_, _ = g.Reload()
		case <-g.DrainRequested():
			why = "POST /drain"
			break wait
		}
	}
	if cfg.Cluster != nil {
		log.Info().Str("cause", why).Msg("shutting down: 503 to new INVITEs and OPTIONS, sessions handed to the other nodes, StopApplicationSession")
	} else {
		log.Info().Str("cause", why).Msg("shutting down: 503 to new INVITEs, BYE to sessions, StopApplicationSession")
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Gateway.ShutdownGrace)
	defer cancel()
	g.Shutdown(ctx)
}

// checkLDAP binds and searches as the running gateway would, and says what
// it found, or what failed with its key.
func checkLDAP(c ldapdir.Config) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	r, err := c.Search(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cstagw: directory.ldap.%v\n", err)
		return false
	}
	fmt.Printf("cstagw: directory.ldap: %s: %d users, %d lines from %d entries in %s",
		c.URL, len(r.Users), r.Lines, r.Entries, time.Since(start).Round(time.Millisecond))
	if r.Skipped > 0 || r.SkippedLines > 0 {
		fmt.Printf("; skipped %d entries and %d lines, e.g.:", r.Skipped, r.SkippedLines)
		for _, e := range r.Examples {
			fmt.Printf("\n  %s", e)
		}
	}
	fmt.Println()
	return true
}
