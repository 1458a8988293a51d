package ctisim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cstagw/cstagw/csta"
)

// Sim is one simulated PBX cluster: CTI server nodes over one switch, and
// the HTTP control API.
type Sim struct {
	cfg  Config
	sw   *Switch
	ns   string
	fopt csta.FrameOptions

	loginSet             bool
	loginUser, loginPass string

	nodes  []*node
	ctlLn  net.Listener
	ctlSrv *http.Server

	wg       sync.WaitGroup
	mu       sync.Mutex
	started  bool
	closed   bool
	closedCh chan struct{}

	clientSeq atomic.Uint64
	sessSeq   atomic.Uint32
	regSeq    atomic.Uint32
}

// New checks the configuration, fills in defaults and builds the simulator.
// Nothing is bound until Start.
func New(cfg Config) (*Sim, error) {
	return newSim(cfg, nil)
}

func newSim(cfg Config, after afterFunc) (*Sim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.withDefaults()
	stations, _ := parseStations(cfg.Stations)
	ns, _ := resolveNamespace(cfg.Namespace)
	s := &Sim{
		cfg:      cfg,
		ns:       ns,
		fopt:     csta.FrameOptions{Profile: cfg.Profile, MaxFrame: cfg.MaxFrame, Allow32BitLength: true},
		closedCh: make(chan struct{}),
	}
	if cfg.Login != "" {
		s.loginSet = true
		s.loginUser, s.loginPass, _ = strings.Cut(cfg.Login, ":")
	}
	s.sw = newSwitch(switchConfig{
		num:           numbering{stations: stations, trunkPrefix: cfg.TrunkPrefix},
		autoAnswer:    cfg.AutoAnswer,
		ringTime:      cfg.RingTime,
		ringCount:     cfg.DefaultRingCount,
		eventsFirst:   cfg.EventsFirst,
		maxConference: cfg.MaxConference,
		maxDiversions: cfg.MaxDiversions,
		after:         after,
	})
	for i := range cfg.Listen {
		s.nodes = append(s.nodes, newNode(s, i))
	}
	return s, nil
}

func (s *Sim) logf(format string, args ...any) {
	if s.cfg.Logger != nil {
		s.cfg.Logger.Printf(format, args...)
	}
}

func (s *Sim) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Start binds every node listener and the control API, then serves them in
// the background. On error nothing stays bound.
func (s *Sim) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.started {
		return errors.New("ctisim: already started")
	}
	var lns []net.Listener
	fail := func(err error) error {
		for _, ln := range lns {
			_ = ln.Close()
		}
		return err
	}
	for i, addr := range s.cfg.Listen {
		ln, err := net.Listen("tcp", strings.TrimSpace(addr))
		if err != nil {
			return fail(fmt.Errorf("ctisim: node %d: %w", i, err))
		}
		lns = append(lns, ln)
	}
	var ctl net.Listener
	if s.cfg.Control != "" {
		var err error
		if ctl, err = net.Listen("tcp", s.cfg.Control); err != nil {
			return fail(fmt.Errorf("ctisim: control: %w", err))
		}
	}
	s.started = true
	for i, ln := range lns {
		n := s.nodes[i]
		n.addr = ln.Addr().String()
		if s.cfg.TLS != nil {
			ln = tls.NewListener(ln, s.cfg.TLS)
		}
		n.ln = ln
		s.wg.Add(1)
		go n.serve()
	}
	if ctl != nil {
		s.ctlLn = ctl
		s.ctlSrv = &http.Server{Handler: s.controlHandler(), ReadHeaderTimeout: 5 * time.Second}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = s.ctlSrv.Serve(ctl)
		}()
	}
	return nil
}

// Addrs returns the bound address of every node, in node order.
func (s *Sim) Addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.nodes))
	for i, n := range s.nodes {
		out[i] = n.addr
	}
	return out
}

// ControlAddr returns the control API's bound address ("" without one).
func (s *Sim) ControlAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctlLn == nil {
		return ""
	}
	return s.ctlLn.Addr().String()
}

// Close stops everything: listeners, connections, timers and goroutines. It
// returns when all of them are gone. It may be called more than once.
func (s *Sim) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closedCh)
	s.mu.Unlock()
	for _, n := range s.nodes {
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		if n.ln != nil {
			_ = n.ln.Close()
		}
		n.dropAll("simulator closed")
	}
	if s.ctlSrv != nil {
		// Let handlers in progress finish (they are short), then cut.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.ctlSrv.Shutdown(ctx)
		cancel()
		_ = s.ctlSrv.Close()
	}
	s.sw.close()
	s.wg.Wait()
	return nil
}

func (s *Sim) node(i int) (*node, error) {
	if i < 0 || i >= len(s.nodes) {
		return nil, fmt.Errorf("%w: no node %d (nodes are 0..%d)", ErrNotFound, i, len(s.nodes)-1)
	}
	return s.nodes[i], nil
}

// PlaceCall starts a call from a station (its user dials) or from an
// external number (an incoming trunk call) to `to`, and returns its call id.
// Monitors see the same events a MakeCall would produce (cause newCall).
func (s *Sim) PlaceCall(from, to string) (string, error) { return s.sw.placeCall(from, to) }

// Answer makes an alerting party of the call answer (device "" = the one
// alerting party).
func (s *Sim) Answer(callID, device string) error { return s.sw.answerAction(callID, device) }

// Reject makes an alerting party refuse the call as busy: its connection
// clears with cause busy and the caller's connection fails (FailedEvent).
func (s *Sim) Reject(callID, device string) error { return s.sw.rejectAction(callID, device) }

// Hangup clears the device's connection (device "" clears the whole call).
func (s *Sim) Hangup(callID, device string) error { return s.sw.hangupAction(callID, device) }

// SetInService takes a station out of service (inService false) or brings
// it back (true). Its monitors get an OutOfServiceEvent or a
// BackInServiceEvent; while it is out of service, MakeCall from it fails
// with systemResourceAvailibility/deviceOutOfService, PlaceCall from it
// with ErrConflict, and calls to it fail (FailedEvent, cause
// destOutOfOrder). Its calls in progress are left alone. Asking for the
// state it is in already sends nothing.
func (s *Sim) SetInService(device string, inService bool) error {
	return s.sw.setInService(device, inService)
}

// SendEvent sends an event document to every monitor of a station and
// returns how many there are. Each copy carries that monitor's
// monitorCrossRefID (the document must have a monitorCrossRefID element,
// empty or not) and is otherwise sent as given: namespace, device ids and
// all. It is for events the simulator does not produce itself (QueuedEvent,
// vendor events...).
func (s *Sim) SendEvent(device string, doc []byte) (int, error) { return s.sw.sendEvent(device, doc) }

// SetFault injects a fault into node i (0-based, the order of Addrs).
func (s *Sim) SetFault(i int, f Fault) error {
	n, err := s.node(i)
	if err != nil {
		return err
	}
	return n.setFault(f)
}

// ClearFaults ends every fault of node i.
func (s *Sim) ClearFaults(i int) {
	if n, err := s.node(i); err == nil {
		n.clearFaults()
	}
}

// State returns a snapshot of the switch and of every node.
func (s *Sim) State() State {
	sw := s.sw.state()
	st := State{Stations: s.sw.cfg.num.stations.String(), Calls: sw.calls, Devices: sw.devices, Nodes: []NodeState{}}
	for _, n := range s.nodes {
		st.Nodes = append(st.Nodes, n.state(sw.monitors))
	}
	return st
}
