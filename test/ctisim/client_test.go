package ctisim

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cstagw/cstagw/csta"
	"github.com/stretchr/testify/require"
)

// A minimal CSTA client over real TCP for the wire tests: it frames,
// encodes and decodes with package csta, echoes nothing on its own, and
// keeps events that arrive while it waits for a response.

const wait = 3 * time.Second // upper bound for anything that should happen

type wireFrame struct {
	id  int
	msg *csta.Message
	raw string
}

type tclient struct {
	t      *testing.T
	nc     net.Conn
	fr     *csta.FrameReader
	opt    csta.FrameOptions
	ns     string
	nextID int
	events []wireFrame
}

func startSim(t *testing.T, mod func(*Config)) *Sim {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0", "127.0.0.1:0"}
	cfg.Control = "127.0.0.1:0"
	cfg.TrunkPrefix = "9"
	if os.Getenv("CTISIM_LOG") != "" {
		cfg.Logger = testLogger(t)
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func dialNode(t *testing.T, s *Sim, node int) *tclient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", s.Addrs()[node], wait)
	require.NoError(t, err)
	return newTClient(t, nc, s.fopt)
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config, opt csta.FrameOptions) *tclient {
	t.Helper()
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: wait}, "tcp", addr, cfg)
	require.NoError(t, err)
	return newTClient(t, nc, opt)
}

func newTClient(t *testing.T, nc net.Conn, opt csta.FrameOptions) *tclient {
	c := &tclient{t: t, nc: nc, fr: csta.NewFrameReader(nc, opt), opt: opt, ns: csta.NSEd4, nextID: 1}
	t.Cleanup(func() { _ = nc.Close() })
	return c
}

func (c *tclient) writeRaw(b []byte) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(wait))
	_, err := c.nc.Write(b)
	require.NoError(c.t, err)
}

func (c *tclient) writeDoc(id int, doc []byte) {
	c.t.Helper()
	fr, err := csta.AppendFrame(nil, id, doc, c.opt)
	require.NoError(c.t, err)
	c.writeRaw(fr)
}

func (c *tclient) write(id int, m *csta.Message) {
	c.t.Helper()
	doc, err := csta.Encode(m, c.ns)
	require.NoError(c.t, err)
	c.writeDoc(id, doc)
}

// send writes a request with the next invoke id and returns the id.
func (c *tclient) send(m *csta.Message) int {
	id := c.nextID
	c.nextID++
	c.write(id, m)
	return id
}

// read returns the next frame, or the read error (a timeout included).
func (c *tclient) read(timeout time.Duration) (wireFrame, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	f, err := c.fr.ReadFrame()
	if err != nil {
		return wireFrame{}, err
	}
	m, err := csta.Decode(f.Payload)
	require.NoError(c.t, err, "the switch sent undecodable XML: %s", f.Payload)
	return wireFrame{id: f.InvokeID, msg: m, raw: string(f.Payload)}, nil
}

func (c *tclient) mustRead() wireFrame {
	c.t.Helper()
	f, err := c.read(wait)
	require.NoError(c.t, err)
	return f
}

// reply waits for the frame answering invoke id, keeping the events that
// come first.
func (c *tclient) reply(id int) wireFrame {
	c.t.Helper()
	for {
		f := c.mustRead()
		if f.msg.Kind.Class() == csta.ClassEvent && (f.id == csta.EventInvokeID || c.opt.Profile == csta.ProfileB) {
			c.events = append(c.events, f)
			continue
		}
		if c.opt.Profile == csta.ProfileA {
			require.Equal(c.t, id, f.id, "reply to a different invoke id: %s", f.raw)
		}
		return f
	}
}

// call sends a request and returns its answer.
func (c *tclient) call(m *csta.Message) *csta.Message {
	c.t.Helper()
	return c.reply(c.send(m)).msg
}

// ok sends a request and requires its positive response.
func (c *tclient) ok(m *csta.Message) *csta.Message {
	c.t.Helper()
	r := c.call(m)
	require.Equal(c.t, m.Kind.Response(), r.Kind, "%s answered %s %v", m.Kind, r.Kind, r.Error)
	return r
}

// event returns the next event, which must be of this kind.
func (c *tclient) event(kind csta.Kind) *csta.Message {
	c.t.Helper()
	var f wireFrame
	if len(c.events) > 0 {
		f, c.events = c.events[0], c.events[1:]
	} else {
		f = c.mustRead()
	}
	if c.opt.Profile == csta.ProfileA {
		require.Equal(c.t, csta.EventInvokeID, f.id, "events travel with invoke id 9999: %s", f.raw)
	}
	require.Equal(c.t, kind, f.msg.Kind, "got %s", f.raw)
	return f.msg
}

// monitor starts a monitor and returns its monitorCrossRefID.
func (c *tclient) monitor(dev string) string {
	c.t.Helper()
	r := c.ok(&csta.Message{Kind: csta.KindMonitorStart, Device: csta.Dev(dev)})
	return r.MonitorCrossRefID
}

// closed requires the switch to close the connection (EOF or reset).
func (c *tclient) closed() {
	c.t.Helper()
	for {
		f, err := c.read(wait)
		if err == nil {
			c.t.Logf("frame before close: %s", f.raw)
			continue
		}
		var ne net.Error
		require.False(c.t, errors.As(err, &ne) && ne.Timeout(), "connection still open")
		require.True(c.t, errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isReset(err), "unexpected error %v", err)
		return
	}
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

// silentFor requires that nothing arrives for d while the connection stays
// open.
func (c *tclient) silentFor(d time.Duration) {
	c.t.Helper()
	f, err := c.read(d)
	require.Error(c.t, err, "unexpected frame %s", f.raw)
	var ne net.Error
	require.True(c.t, errors.As(err, &ne) && ne.Timeout(), "want a read timeout, got %v", err)
}

func startSession(c *tclient, versions ...string) *csta.Message {
	c.t.Helper()
	return c.call(&csta.Message{Kind: csta.KindStartApplicationSession, ApplicationID: "test",
		ProtocolVersions: versions, SessionDuration: 600})
}
