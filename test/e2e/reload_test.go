package e2e

// The cstagw binary reloads its configuration on SIGHUP, as an operator's
// harness drives it: edit the file, send the signal, read /status.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/test/ctisim"
)

func TestBinaryReloadsOnSighup(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "cstagw")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/cstagw")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	scfg := ctisim.DefaultConfig()
	scfg.Listen = []string{"127.0.0.1:0"}
	scfg.Control = ""
	sim, err := ctisim.New(scfg)
	require.NoError(t, err)
	require.NoError(t, sim.Start())
	t.Cleanup(func() { _ = sim.Close() })

	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	sipPort := freePort(t)
	path := filepath.Join(dir, "gateway.yaml")
	write := func(users string) {
		cfg := fmt.Sprintf(`sip:
  listen: ["udp:127.0.0.1:%d", "tcp:127.0.0.1:%d"]
  trusted_hosts: ["127.0.0.0/8"]
cti:
  heartbeat_interval: 500ms
  links:
    - {name: cti-a, address: %q, app_session: true}
directory:
  users:
%s
admin:
  listen: %q
`, sipPort, sipPort, sim.Addrs()[0], users, admin)
		require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	}
	const alice = `    - uri: sip:alice@example.com
      lines: [{line: "tel:40001;phone-context=dialstring", device: "40001"}]`
	const bob = `    - uri: sip:bob@example.com
      lines: [{line: "tel:40002;phone-context=dialstring", device: "40002"}]`
	write(alice)

	logPath := filepath.Join(dir, "cstagw.log")
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	defer logf.Close()
	cmd := exec.Command(bin, "-config", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
	})

	type status struct {
		Config struct {
			Generation int    `json:"generation"`
			LastError  string `json:"last_error"`
		} `json:"config"`
	}
	read := func() (status, bool) {
		code, body, err := httpGet("http://" + admin + "/status")
		var st status
		if err != nil || code != 200 || json.Unmarshal([]byte(body), &st) != nil {
			return st, false
		}
		return st, true
	}
	require.Eventually(t, func() bool { code, _, err := httpGet("http://" + admin + "/readyz"); return err == nil && code == 200 },
		15*time.Second, 20*time.Millisecond, "the gateway never became ready: %s", tailFile(logPath, 20))
	st, ok := read()
	require.True(t, ok)
	assert.Equal(t, 1, st.Config.Generation)

	write(alice + "\n" + bob)
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { st, ok := read(); return ok && st.Config.Generation == 2 }, 10*time.Second, 20*time.Millisecond,
		"SIGHUP did not apply the edited file: %s", tailFile(logPath, 20))

	require.NoError(t, os.WriteFile(path, []byte("cti: [broken\n"), 0o600))
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { st, ok := read(); return ok && st.Config.LastError != "" }, 10*time.Second, 20*time.Millisecond)
	st, _ = read()
	assert.Equal(t, 2, st.Config.Generation, "a broken file changes nothing")
	code, _, err := httpGet("http://" + admin + "/readyz")
	require.NoError(t, err)
	assert.Equal(t, 200, code, "the old configuration keeps running")
}
