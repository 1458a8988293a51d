package sipstack

import (
	"bytes"
	"net"
	"strings"
)

// A UDP datagram holds one whole message (RFC 3261 §18.3): a request whose
// Content-Length promises more body than the datagram carries is
// malformed and gets 400. sipgo would only log it and drop it, so the
// client would retransmit it in vain; the UDP socket is wrapped to answer
// such requests itself and keep them from sipgo.

type udpGuard struct {
	net.PacketConn
	s *Server
}

func (u udpGuard) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := u.PacketConn.ReadFrom(p)
		if err != nil || n == 0 {
			return n, addr, err
		}
		if resp := truncatedRequest(p[:n]); resp != nil {
			countParseError("udp")
			_, _ = u.PacketConn.WriteTo(resp, addr)
			continue
		}
		return n, addr, err
	}
}

// truncatedRequest returns the 400 answer to a request datagram whose body
// is shorter than its Content-Length, or nil.
func truncatedRequest(d []byte) []byte {
	if bytes.HasPrefix(d, []byte("SIP/")) {
		return nil // a response
	}
	end := bytes.Index(d, []byte("\r\n\r\n"))
	if end < 0 {
		return nil // not a whole header block
	}
	head := d[:end]
	body := len(d) - end - 4
	cl := contentLength(head) // reads the last line too: no copy per datagram
	if cl <= body {
		return nil
	}
	lines := strings.Split(string(head), "\r\n")
	if len(lines) == 0 || strings.HasPrefix(lines[0], "ACK ") {
		return nil // an ACK is never answered
	}
	var b strings.Builder
	b.WriteString("SIP/2.0 400 Content-Length larger than the datagram\r\n")
	keep := 0
	for _, l := range lines[1:] {
		i := strings.IndexByte(l, ':')
		if i <= 0 {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(l[:i])) {
		case "via", "v", "from", "f", "to", "t", "call-id", "i", "cseq":
			b.WriteString(l)
			b.WriteString("\r\n")
			keep++
		}
	}
	if keep < 4 {
		return nil // not enough of a request to answer
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String())
}
