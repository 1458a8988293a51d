package sipstack

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Connection hygiene on TCP and TLS. sipgo reads each connection for as
// long as the peer keeps it open; left alone, 500 idle connections hold 500
// goroutines and descriptors for as long as their owner likes, and a
// request sent one byte a second is waited for for ever. The listener is
// wrapped so that:
//
//   - connections past sip.max_connections in all, or past
//     sip.max_connections_per_source from one untrusted address, are closed
//     at once;
//   - a connection that carries no dialog is closed after
//     sip.tcp_idle_timeout without a byte (a proxy's or client's connection
//     with a dialog on it stays, however quiet);
//   - once a message has started, the whole of it must arrive within
//     sip.read_timeout.
//
// Message boundaries are found with a small scan of the stream (headers up
// to the blank line, then Content-Length bytes of body); sipgo still does
// the parsing.

// Defaults of the connection limits.
const (
	DefaultTCPIdleTimeout        = 2 * time.Minute
	DefaultReadTimeout           = 10 * time.Second
	DefaultMaxConnections        = 20000
	DefaultMaxConnectionsPerPeer = 32
	maxHeaderScan                = 64 << 10
)

// connBook counts accepted connections and the dialogs each source holds.
type connBook struct {
	mu      sync.Mutex
	total   int
	perSrc  map[string]int // by host
	dialogs map[string]int // by host:port (a dialog's source)
	refused uint64
}

func newConnBook() *connBook {
	return &connBook{perSrc: map[string]int{}, dialogs: map[string]int{}}
}

func (b *connBook) addDialog(src string) {
	b.mu.Lock()
	b.dialogs[src]++
	b.mu.Unlock()
}

func (b *connBook) dropDialog(src string) {
	b.mu.Lock()
	if b.dialogs[src]--; b.dialogs[src] <= 0 {
		delete(b.dialogs, src)
	}
	b.mu.Unlock()
}

func (b *connBook) hasDialog(src string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dialogs[src] > 0
}

// guardListener applies the limits to a TCP or TLS listener.
type guardListener struct {
	net.Listener
	s *Server
}

func (l guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		remote := c.RemoteAddr().String()
		host := hostOf(remote)
		cfg := l.s.conf()
		trusted := l.s.hostTrusted(host)
		b := l.s.conns
		b.mu.Lock()
		over := b.total >= cfg.MaxConnections || (!trusted && b.perSrc[host] >= cfg.MaxConnectionsPerSource)
		if over {
			b.refused++
			n := b.refused
			b.mu.Unlock()
			_ = c.Close()
			if n == 1 || n%1000 == 0 {
				l.s.log.Warn().Str("source", host).Uint64("refused_so_far", n).Msg("SIP connection refused: connection limit")
			}
			continue
		}
		b.total++
		b.perSrc[host]++
		b.mu.Unlock()
		return &guardConn{Conn: c, s: l.s, host: host, remote: remote}, nil
	}
}

// guardConn is one accepted connection under the limits.
type guardConn struct {
	net.Conn
	s      *Server
	host   string
	remote string
	once   sync.Once
	scan   msgScan
}

func (c *guardConn) Close() error {
	c.once.Do(func() {
		b := c.s.conns
		b.mu.Lock()
		b.total--
		if b.perSrc[c.host]--; b.perSrc[c.host] <= 0 {
			delete(b.perSrc, c.host)
		}
		b.mu.Unlock()
	})
	return c.Conn.Close()
}

func (c *guardConn) Read(p []byte) (int, error) {
	for {
		// Whether a dialog lives on the connection is asked only when the
		// idle deadline passes, not on every read: the dialog book is
		// shared by every connection.
		cfg := c.s.conf()
		deadline := time.Now().Add(cfg.TCPIdleTimeout)
		if c.scan.inMsg {
			deadline = c.scan.start.Add(cfg.ReadTimeout)
		}
		_ = c.Conn.SetReadDeadline(deadline)
		n, err := c.Conn.Read(p)
		if n > 0 {
			c.scan.feed(p[:n], time.Now())
			return n, err
		}
		var ne net.Error
		if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
			return n, err
		}
		switch {
		case c.scan.inMsg:
			c.s.log.Info().Str("source", c.remote).Dur("read_timeout", cfg.ReadTimeout).
				Msg("SIP message not complete within sip.read_timeout: connection closed")
		case c.s.conns.hasDialog(c.remote):
			continue // a dialog lives on this connection: it stays
		default:
			c.s.log.Debug().Str("source", c.remote).Dur("idle", cfg.TCPIdleTimeout).Msg("idle SIP connection without a dialog closed")
		}
		_ = c.Conn.Close()
		return 0, io.EOF
	}
}

// msgScan follows SIP message boundaries on a stream.
type msgScan struct {
	inMsg bool
	start time.Time
	hdr   []byte
	body  int // body bytes still to come
	lost  bool
}

func (m *msgScan) feed(p []byte, now time.Time) {
	for len(p) > 0 {
		if m.body > 0 {
			k := min(m.body, len(p))
			m.body -= k
			p = p[k:]
			if m.body == 0 {
				m.inMsg = false
			}
			continue
		}
		if !m.inMsg {
			for len(p) > 0 && (p[0] == '\r' || p[0] == '\n') {
				p = p[1:] // keep-alive CRLFs between messages
			}
			if len(p) == 0 {
				return
			}
			m.inMsg, m.start, m.hdr, m.lost = true, now, m.hdr[:0], false
		}
		if m.lost {
			return // a header block too long to follow: read_timeout decides
		}
		from := max(0, len(m.hdr)-3)
		m.hdr = append(m.hdr, p...)
		p = nil
		i := bytes.Index(m.hdr[from:], []byte("\r\n\r\n"))
		if i < 0 {
			if len(m.hdr) > maxHeaderScan {
				m.lost, m.hdr = true, nil
			}
			return
		}
		end := from + i + 4
		cl := contentLength(m.hdr[:end])
		// What follows the headers is processed in place: the next
		// append to hdr copies it to the front of the same array
		// (memmove), so nothing is allocated per message.
		p = m.hdr[end:]
		m.hdr = m.hdr[:0]
		m.body = cl
		if cl == 0 {
			m.inMsg = false
		}
	}
}

// contentLength reads Content-Length (or its compact form l) from a
// header block; 0 when absent or unreadable.
func contentLength(h []byte) int {
	for len(h) > 0 {
		line := h
		if i := bytes.Index(h, []byte("\r\n")); i >= 0 {
			line, h = h[:i], h[i+2:]
		} else {
			h = nil
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			continue
		}
		name := bytes.TrimSpace(line[:i])
		if bytes.EqualFold(name, []byte("Content-Length")) || bytes.EqualFold(name, []byte("l")) {
			n := 0
			for _, c := range bytes.TrimSpace(line[i+1:]) {
				if c < '0' || c > '9' || n > 1<<30 {
					return 0
				}
				n = n*10 + int(c-'0')
			}
			return n
		}
	}
	return 0
}
