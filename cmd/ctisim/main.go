// Command ctisim runs the CSTA switching-function simulator: one simulated
// PBX cluster with N CTI server nodes over one switch, and an HTTP control
// API. See test/ctisim/README.md.
//
//	ctisim -listen 127.0.0.1:4001,127.0.0.1:4002 -control 127.0.0.1:4100 -stations 40000-40999
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cstagw/cstagw/test/ctisim"
)

// seconds is a duration flag that also takes a bare number of seconds.
type seconds struct{ d *time.Duration }

func (s seconds) String() string {
	if s.d == nil {
		return ""
	}
	return s.d.String()
}

func (s seconds) Set(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		*s.d = time.Duration(f * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("want seconds or a duration such as 1500ms: %v", err)
	}
	*s.d = d
	return nil
}

func main() {
	cfg := ctisim.DefaultConfig()
	listen := flag.String("listen", "127.0.0.1:4001", "CTI node addresses, comma-separated (one node each)")
	flag.StringVar(&cfg.Control, "control", "127.0.0.1:4100", "HTTP control API address (empty: none)")
	flag.StringVar(&cfg.Stations, "stations", cfg.Stations, "station number ranges, e.g. 40000-40999[,2100-2199]")
	flag.StringVar(&cfg.TrunkPrefix, "trunk-prefix", "", "trunk access code stripped from dialled external numbers (e.g. 9)")
	flag.StringVar(&cfg.Namespace, "namespace", cfg.Namespace, "CSTA edition for clients without a session: ed3|ed4|ed5|ed6")
	flag.BoolVar(&cfg.SpeakFirst, "speak-first", false, "send SystemStatus(normal) to every new connection")
	flag.BoolVar(&cfg.RequireSession, "require-session", false, "refuse CSTA requests before StartApplicationSession")
	flag.StringVar(&cfg.Login, "login", "", "user:password StartApplicationSession must carry")
	cfg.MaxSessionDuration = 300 * time.Second
	flag.Var(seconds{&cfg.MaxSessionDuration}, "max-session-duration", "longest application session, seconds")
	flag.Var(seconds{&cfg.AutoAnswer}, "auto-answer", "external numbers answer after this long (0: never)")
	flag.Var(seconds{&cfg.RingTime}, "ring-time", "length of one ring (forwardNoAns waits ringCount rings)")
	flag.BoolVar(&cfg.EventsFirst, "events-first", true, "send ServiceInitiated/Originated before the MakeCall/ConsultationCall response")
	flag.IntVar(&cfg.MaxFrame, "max-frame", 0, "largest frame in bytes (0: 1 MiB)")
	profile := flag.String("profile", "a", "framing: a (8-byte header) or b (NUL-terminated)")
	certFile := flag.String("tls-cert", "", "TLS certificate (PEM); with -tls-key every node listens with TLS")
	keyFile := flag.String("tls-key", "", "TLS private key (PEM)")
	quiet := flag.Bool("quiet", false, "do not log connections and faults")
	flag.Parse()

	logger := log.New(os.Stderr, "ctisim: ", log.LstdFlags|log.Lmicroseconds)
	cfg.Listen = nil
	for _, a := range strings.Split(*listen, ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.Listen = append(cfg.Listen, a)
		}
	}
	var err error
	if cfg.Profile, err = ctisim.ParseProfile(*profile); err != nil {
		logger.Fatal(err)
	}
	if (*certFile == "") != (*keyFile == "") {
		logger.Fatal("-tls-cert and -tls-key go together")
	}
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			logger.Fatal(err)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if !*quiet {
		cfg.Logger = logger
	}

	sim, err := ctisim.New(cfg)
	if err != nil {
		logger.Fatal(err)
	}
	if err := sim.Start(); err != nil {
		logger.Fatal(err)
	}
	for i, a := range sim.Addrs() {
		logger.Printf("node %d: %s", i, a)
	}
	if a := sim.ControlAddr(); a != "" {
		logger.Printf("control: http://%s/state", a)
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	logger.Printf("%v: shutting down", s)
	if err := sim.Close(); err != nil {
		logger.Fatal(err)
	}
}
