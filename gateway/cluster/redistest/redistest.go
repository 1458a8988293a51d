// Package redistest runs a throwaway redis-server on loopback for tests:
// no persistence, a port chosen at run time, stopped when the test ends.
// Stop and Start keep its port (a store that goes away and comes back).
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Server is one redis-server.
type Server struct {
	Port int
	Addr string // 127.0.0.1:PORT
	t    testing.TB
	bin  string
	cmd  *exec.Cmd
	args []string // more arguments (a replica, a sentinel)
	// dir is its working directory: a replica writes the master's RDB
	// there, and a server started elsewhere must never load it.
	dir string
}

// Binary finds redis-server (test/all.sh installs it).
func Binary() (string, error) {
	for _, p := range []string{"redis-server", "/usr/bin/redis-server", "/usr/sbin/redis-server"} {
		if b, err := exec.LookPath(p); err == nil {
			return b, nil
		}
	}
	return "", fmt.Errorf("redistest: redis-server not found (apt-get install redis-server, or run test/all.sh)")
}

// Start runs a new server; the test fails when it cannot.
func Start(t testing.TB) *Server { t.Helper(); return StartWith(t) }

// StartReplica runs a server replicating master.
func StartReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	return StartWith(t, "--replicaof", "127.0.0.1", fmt.Sprint(master.Port))
}

// StartSentinel runs redis-server in sentinel mode watching master under
// the name name: it declares the master down after 500 ms of silence and
// promotes a replica.
func StartSentinel(t testing.TB, name string, master *Server) *Server {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	body := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 1\nsentinel down-after-milliseconds %[1]s 500\nsentinel failover-timeout %[1]s 2000\n", name, master.Port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return StartWith(t, conf, "--sentinel")
}

// StartWith runs a new server with more arguments (a config file first).
func StartWith(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	s := &Server{Port: port, Addr: fmt.Sprintf("127.0.0.1:%d", port), t: t, bin: bin, args: args, dir: t.TempDir()}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start (re)starts the server on its port.
func (s *Server) Start() {
	s.t.Helper()
	if s.cmd != nil {
		return
	}
	var args []string
	if len(s.args) > 0 && !strings.HasPrefix(s.args[0], "--") {
		args = append(args, s.args[0]) // a config file comes first
	}
	args = append(args, "--port", fmt.Sprint(s.Port), "--bind", "127.0.0.1", "--dir", s.dir, "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0",
		"--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning")
	for _, a := range s.args {
		if len(args) > 0 && a == args[0] {
			continue
		}
		args = append(args, a)
	}
	s.cmd = exec.Command(s.bin, args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s.ping() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("redistest: redis-server on %s did not answer PING", s.Addr)
}

// Stop kills the server (its data is gone: no persistence).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

func (s *Server) ping() bool {
	c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}
