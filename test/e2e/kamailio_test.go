// Package e2e runs cstagw end to end: the simulated PBX (test/ctisim) and
// the gateway in-process, real sipp clients driving the scenario pack in
// test/sipp, and a real Kamailio (configs/kamailio) as the Record-Routing
// proxy in front of the gateway. See README.md beside this file.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/gateway"
	"github.com/cstagw/cstagw/test/ctisim"
)

// externalCaller is the trunk number that rings the user's line.
const externalCaller = "+12065550147"

// TestSippDirect runs the sipp scenario pack straight at the gateway, over
// UDP and over TCP: sign-in/sign-out, and an incoming call that is answered
// and hung up while its events flow to the client.
func TestSippDirect(t *testing.T) {
	sippBin := needSipp(t)
	lab := newE2ELab(t)
	for i, tr := range []string{"udp", "tcp"} {
		t.Run(tr+"/signin", func(t *testing.T) {
			res := lab.runSignin(t, sippBin, lab.gwAddr(tr), tr)
			requireSippOK(t, res)
		})
		t.Run(tr+"/incoming", func(t *testing.T) {
			user := 2 + i
			res := lab.runIncoming(t, sippBin, lab.gwAddr(tr), tr, user)
			requireSippOK(t, res)
			infos := res.receivedRequests("INFO")
			require.GreaterOrEqual(t, len(infos), 3, "Delivered, Established and ConnectionCleared event INFOs")
			for _, m := range infos {
				// No proxy: the gateway's own Via is the only one.
				vias := headerValues(m, "Via")
				require.Len(t, vias, 1, "INFO from the gateway:\n%s", m)
				assert.Contains(t, strings.ToLower(vias[0]), strings.ToLower(tr)+" "+lab.gwAddr(tr), "Via of the gateway's INFO")
			}
		})
	}
	lab.requireEventsSent(t, 6)
}

// TestSippThroughKamailio puts a real Kamailio (configs/kamailio/kamailio.cfg
// with a dispatcher list naming the gateway) between sipp and the gateway,
// and checks that the whole dialog, the gateway's event INFOs included,
// follows the proxy's route set.
func TestSippThroughKamailio(t *testing.T) {
	sippBin := needSipp(t)
	kamBin := findKamailio()
	if kamBin == "" {
		t.Skip("kamailio is not installed (test/all.sh installs it: apt-get install kamailio)")
	}
	lab := newE2ELab(t)
	kam := startKamailio(t, kamBin, lab.gwAddr("udp"))
	kam.waitDispatcherActive(t, 20*time.Second)

	t.Run("udp/signin", func(t *testing.T) {
		res := lab.runSignin(t, sippBin, kam.addr, "udp")
		requireSippOK(t, res)
		kam.requireRecordRouted(t, res)
	})
	for i, tr := range []string{"udp", "tcp"} {
		// The gateway side is UDP in both cases; a TCP client makes
		// Kamailio Record-Route twice (r2=on), one per transport.
		t.Run(tr+"/incoming", func(t *testing.T) {
			user := 4 + i
			res := lab.runIncoming(t, sippBin, kam.addr, tr, user)
			requireSippOK(t, res)
			kam.requireRecordRouted(t, res)

			infos := res.receivedRequests("INFO")
			require.GreaterOrEqual(t, len(infos), 3, "Delivered, Established and ConnectionCleared event INFOs")
			for _, m := range infos {
				vias := headerValues(m, "Via")
				require.Len(t, vias, 2, "INFO from the gateway via the proxy:\n%s", m)
				assert.Contains(t, strings.ToLower(vias[0]), strings.ToLower(tr)+" "+kam.addr, "top Via is the proxy's")
				assert.Contains(t, strings.ToLower(vias[1]), "udp "+lab.gwAddr("udp"), "second Via is the gateway's")
				assert.Empty(t, headerValues(m, "Route"), "the proxy consumed its own Route entry")
			}
			// Kamailio saw each INFO arrive from the gateway carrying the
			// recorded route (Route: <proxy;lr>), and relayed it with
			// loose_route: in-dialog requests without it are answered 404.
			pat := regexp.MustCompile(`request INFO sip:sipp@127\.0\.0\.1:` + strconv.Itoa(res.localPort) +
				`[^ ]* from udp:` + regexp.QuoteMeta(lab.gwAddr("udp")) + ` route=<sip:` + regexp.QuoteMeta(kam.addr) + `;[^>]*lr[^>]*>`)
			require.Eventually(t, func() bool {
				return len(pat.FindAllString(kam.logText(), -1)) >= len(infos)
			}, 5*time.Second, 50*time.Millisecond, "Kamailio's request log should show %d gateway INFOs with Route to the proxy (%s)", len(infos), pat)
		})
	}
	lab.requireEventsSent(t, 6)
}

// TestGatewayByeThroughKamailio checks the other request the gateway sends
// on its own, BYE, along the proxy's route set: a client signs in through
// Kamailio and never refreshes its session, so the gateway's session timer
// ends the dialog. The client is a few lines of raw SIP over UDP, so that the
// test sees exactly what reaches it, and it pretends to sit behind a NAT: its
// Via and Contact name a port nothing listens on. Only the proxy's NAT
// handling (rport for answers, ;alias on the Contact for the gateway's
// requests) gets the 200 and the BYE to it.
func TestGatewayByeThroughKamailio(t *testing.T) {
	kamBin := findKamailio()
	if kamBin == "" {
		t.Skip("kamailio is not installed (test/all.sh installs it: apt-get install kamailio)")
	}
	const sessionExpires = 3 * time.Second // BYE after 2 s: SE - SE/3 (RFC 4028 §10)
	lab := newE2ELab(t, func(c *gateway.Config) {
		c.SIP.SessionExpires = sessionExpires
		c.SIP.MinSE = time.Second
	})
	kam := startKamailio(t, kamBin, lab.gwAddr("udp"))
	kam.waitDispatcherActive(t, 20*time.Second)

	ua := newRawUA(t)
	ua.advertised = "127.0.0.1:" + strconv.Itoa(freePort(t)) // the "public" address of a NATed client
	dlg := ua.invite(t, kam.addr, "sip:user6@demo.cstagw", "tel:+12065550006")
	require.Contains(t, strings.Join(dlg.routes, ","), "<sip:"+kam.addr+";", "Record-Route of the 200 to the INVITE")
	require.Eventually(t, func() bool { return lab.gw.Sessions() == 1 }, 5*time.Second, 20*time.Millisecond, "session placed")

	bye := ua.awaitRequest(t, "BYE", dlg, 4*sessionExpires)
	vias := headerValues(bye, "Via")
	require.Len(t, vias, 2, "BYE from the gateway via the proxy:\n%s", bye)
	assert.Contains(t, strings.ToLower(vias[0]), "udp "+kam.addr, "top Via is the proxy's")
	assert.Contains(t, strings.ToLower(vias[1]), "udp "+lab.gwAddr("udp"), "second Via is the gateway's")
	assert.Empty(t, headerValues(bye, "Route"), "the proxy consumed its own Route entry")
	assert.Equal(t, "BYE "+dlg.localContact+" SIP/2.0", firstLine(bye), "Request-URI is the client's Contact")
	assert.Contains(t, strings.Join(headerValues(bye, "To"), ""), "tag="+dlg.localTag, "To carries the client's tag")
	assert.Contains(t, strings.Join(headerValues(bye, "To"), ""), "epid=e2e", "To keeps every parameter of the client's From")

	// The gateway addressed the Contact as Kamailio aliased it; Kamailio
	// sent the BYE to the alias (the client's real port).
	_, realPort, _ := net.SplitHostPort(ua.addr)
	pat := regexp.MustCompile(`request BYE ` + regexp.QuoteMeta(dlg.localContact+";alias=127.0.0.1~"+realPort+"~1") +
		` from udp:` + regexp.QuoteMeta(lab.gwAddr("udp")) + ` route=<sip:` + regexp.QuoteMeta(kam.addr) + `;[^>]*lr[^>]*>`)
	require.Eventually(t, func() bool { return pat.MatchString(kam.logText()) }, 5*time.Second, 50*time.Millisecond,
		"Kamailio's request log should show the gateway's BYE with Route to the proxy (%s)", pat)
	require.Eventually(t, func() bool { return lab.gw.Sessions() == 0 }, 5*time.Second, 20*time.Millisecond, "session closed")
	st, body, err := httpGet("http://" + lab.gw.AdminAddr() + "/metrics")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, st)
	assert.Contains(t, body, `cstagw_sessions_closed_total{reason="expired"} 1`)
}

// ---------------------------------------------------------------------------
// The lab: simulated PBX and gateway in-process.

type e2eLab struct {
	dir     string
	sim     *ctisim.Sim
	gw      *gateway.Gateway
	logPath string
}

func newE2ELab(t *testing.T, tweaks ...func(*gateway.Config)) *e2eLab {
	t.Helper()
	lab := &e2eLab{dir: t.TempDir()}

	scfg := ctisim.DefaultConfig()
	scfg.Listen = []string{"127.0.0.1:0", "127.0.0.1:0"}
	scfg.Control = ""
	sim, err := ctisim.New(scfg)
	require.NoError(t, err)
	require.NoError(t, sim.Start())
	lab.sim = sim
	t.Cleanup(func() { _ = sim.Close() })

	cfg := gateway.DemoConfig(sim.Addrs())
	cfg.SIP.Listen = []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}
	cfg.SIP.TrustedHosts = []string{"127.0.0.0/8"}
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Log = gateway.LogConfig{Level: "debug", Format: "json"}
	cfg.Gateway.ShutdownGrace = time.Second
	for _, tweak := range tweaks {
		tweak(&cfg)
	}

	lab.logPath = filepath.Join(lab.dir, "cstagw.log")
	lab.gw = startLoggedGateway(t, cfg, lab.logPath, 60)

	// Ready once a CTI link is up (/readyz), so INVITEs are placed.
	require.Eventually(t, func() bool {
		st, _, err := httpGet("http://" + lab.gw.AdminAddr() + "/readyz")
		return err == nil && st == http.StatusOK
	}, 15*time.Second, 25*time.Millisecond, "gateway /readyz never became ready")
	return lab
}

func (l *e2eLab) gwAddr(transport string) string { return l.gw.SIPAddr(transport) }

// runSignin runs test/sipp/signin.xml with test/sipp/users.csv.
func (l *e2eLab) runSignin(t *testing.T, sippBin, target, transport string) *sippRun {
	t.Helper()
	users, err := filepath.Abs("../sipp/users.csv")
	require.NoError(t, err)
	r := newSippRun(t, sippBin, target, transport, "signin.xml", users, 20*time.Second)
	require.NoError(t, r.start())
	r.wait(t)
	return r
}

// runIncoming runs test/sipp/incoming.xml as demo user n: once the scenario
// logs that the monitor is up and the simulator shows it on station 4000n,
// an external caller rings that station; the scenario answers and hangs up.
func (l *e2eLab) runIncoming(t *testing.T, sippBin, target, transport string, n int) *sippRun {
	t.Helper()
	station := strconv.Itoa(40000 + n)
	users := filepath.Join(t.TempDir(), "users.csv")
	require.NoError(t, os.WriteFile(users,
		fmt.Appendf(nil, "SEQUENTIAL\nsip:user%d@demo.cstagw;tel:+1206555%04d;40002\n", n, n), 0o644))

	r := newSippRun(t, sippBin, target, transport, "incoming.xml", users, 45*time.Second)
	require.NoError(t, r.start())

	ready := func() bool {
		if !strings.Contains(readFile(r.logFile), "monitor-up") {
			return false
		}
		for _, d := range l.sim.State().Devices {
			if d.ID == station && d.Monitors > 0 {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(20 * time.Second)
	for !ready() {
		if r.exited() || time.Now().After(deadline) {
			r.wait(t)
			t.Fatalf("the monitor on %s never came up (sipp exit %d)%s", station, r.exitCode, r.diagnostics())
		}
		time.Sleep(20 * time.Millisecond)
	}
	callID, err := l.sim.PlaceCall(externalCaller, station)
	require.NoError(t, err)
	r.wait(t)
	requireSippOK(t, r)

	// The scenario answered the call we placed, with the monitorCrossRefID
	// its dialog was given.
	m := regexp.MustCompile(`delivered \S+ callID=(\S+) deviceID=(\S+) monitorCrossRefID=(\S+) ours=(\S+)`).FindStringSubmatch(readFile(r.logFile))
	require.NotNil(t, m, "scenario log lacks the delivered line:\n%s", readFile(r.logFile))
	assert.Equal(t, callID, m[1], "callID of the DeliveredEvent")
	assert.Equal(t, m[4], m[3], "the DeliveredEvent carries the dialog's monitorCrossRefID")

	// ClearConnection ended the two-party call on the switch.
	require.Eventually(t, func() bool {
		for _, c := range l.sim.State().Calls {
			if c.ID == callID {
				return false
			}
		}
		return true
	}, 5*time.Second, 20*time.Millisecond, "call %s still exists on the switch after ClearConnection", callID)
	return r
}

// requireEventsSent checks the gateway's own count of event INFOs sent.
func (l *e2eLab) requireEventsSent(t *testing.T, atLeast int) {
	t.Helper()
	st, body, err := httpGet("http://" + l.gw.AdminAddr() + "/metrics")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, st)
	assert.GreaterOrEqual(t, metricValue(body, "cstagw_events_sent_total"), float64(atLeast), "cstagw_events_sent_total")
	assert.Zero(t, metricValue(body, "cstagw_sip_info_failed_total"), "cstagw_sip_info_failed_total")
	assert.Zero(t, metricValue(body, "cstagw_event_send_failures_total"), "cstagw_event_send_failures_total")
}

// ---------------------------------------------------------------------------
// sipp runs.

type sippRun struct {
	cmd       *exec.Cmd
	cancel    context.CancelFunc
	done      chan struct{}
	out       bytes.Buffer
	exitCode  int
	localPort int
	msgFile   string
	logFile   string
	errFile   string
}

func needSipp(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("sipp")
	if err != nil {
		t.Skip("sipp is not installed (test/all.sh installs it: apt-get install sip-tester)")
	}
	return p
}

func newSippRun(t *testing.T, sippBin, target, transport, scenario, users string, limit time.Duration) *sippRun {
	t.Helper()
	sf, err := filepath.Abs(filepath.Join("../sipp", scenario))
	require.NoError(t, err)
	dir := t.TempDir()
	tr := map[string]string{"udp": "u1", "tcp": "t1"}[transport]
	require.NotEmpty(t, tr, "transport %q", transport)
	r := &sippRun{
		localPort: freePort(t),
		msgFile:   filepath.Join(dir, "messages.log"),
		logFile:   filepath.Join(dir, "scenario.log"),
		errFile:   filepath.Join(dir, "errors.log"),
		done:      make(chan struct{}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	r.cancel = cancel
	r.cmd = exec.CommandContext(ctx, sippBin, target,
		"-sf", sf, "-inf", users,
		"-i", "127.0.0.1", "-p", strconv.Itoa(r.localPort), "-t", tr,
		"-m", "1", "-l", "1", "-aa", "-nostdin",
		"-timeout", strconv.Itoa(int((limit-5*time.Second)/time.Second))+"s", "-timeout_error",
		"-recv_timeout", "10s",
		"-trace_msg", "-message_file", r.msgFile,
		"-trace_logs", "-log_file", r.logFile,
		"-trace_err", "-error_file", r.errFile,
	)
	r.cmd.Dir = dir
	r.cmd.Stdout = &r.out
	r.cmd.Stderr = &r.out
	r.cmd.WaitDelay = 2 * time.Second
	t.Cleanup(func() {
		cancel()
		if r.cmd.Process != nil {
			<-r.done
		}
	})
	return r
}

func (r *sippRun) start() error {
	if err := r.cmd.Start(); err != nil {
		r.cancel()
		return err
	}
	go func() {
		err := r.cmd.Wait()
		r.exitCode = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			r.exitCode = ee.ExitCode()
		} else if err != nil {
			r.exitCode = -1
		}
		close(r.done)
	}()
	return nil
}

func (r *sippRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *sippRun) wait(t *testing.T) {
	t.Helper()
	<-r.done
	r.cancel()
}

func (r *sippRun) diagnostics() string {
	return fmt.Sprintf("\n--- sipp output (tail):\n%s\n--- sipp errors:\n%s\n--- scenario log:\n%s\n--- messages (tail):\n%s",
		tailString(r.out.String(), 30), tailFile(r.errFile, 40), readFile(r.logFile), tailFile(r.msgFile, 150))
}

func requireSippOK(t *testing.T, r *sippRun) {
	t.Helper()
	if r.exitCode != 0 {
		t.Fatalf("sipp exited with %d, want 0 (every call successful)%s", r.exitCode, r.diagnostics())
	}
}

// traceMsg is one message of sipp's -trace_msg file.
type traceMsg struct {
	received bool
	text     string
}

func (r *sippRun) trace() []traceMsg {
	var out []traceMsg
	for _, block := range strings.Split(readFile(r.msgFile), "\n-----------------------------------------------") {
		_, body, ok := strings.Cut(block, "\n") // after the timestamp
		if !ok {
			continue
		}
		kind, msg, ok := strings.Cut(strings.TrimLeft(body, "\n"), "\n")
		if !ok {
			continue
		}
		if !strings.Contains(kind, "message received") && !strings.Contains(kind, "message sent") {
			continue
		}
		out = append(out, traceMsg{received: strings.Contains(kind, "received"), text: strings.TrimLeft(msg, "\n")})
	}
	return out
}

// receivedRequests returns the requests of a method sipp received.
func (r *sippRun) receivedRequests(method string) []string {
	var out []string
	for _, m := range r.trace() {
		if m.received && strings.HasPrefix(m.text, method+" ") {
			out = append(out, m.text)
		}
	}
	return out
}

// receivedResponses returns the responses to a method sipp received.
func (r *sippRun) receivedResponses(code int, method string) []string {
	var out []string
	for _, m := range r.trace() {
		if !m.received || !strings.HasPrefix(m.text, "SIP/2.0 "+strconv.Itoa(code)+" ") {
			continue
		}
		for _, cs := range headerValues(m.text, "CSeq") {
			if strings.HasSuffix(strings.TrimSpace(cs), " "+method) {
				out = append(out, m.text)
			}
		}
	}
	return out
}

// headerValues returns every value of a header (one per header line) of a
// SIP message, up to the blank line before the body.
func headerValues(msg, name string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(msg))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Kamailio.

type kamailio struct {
	addr    string // 127.0.0.1:port, UDP and TCP
	dir     string
	ctl     string
	logPath string
}

func findKamailio() string {
	if p, err := exec.LookPath("kamailio"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/kamailio", "/usr/local/sbin/kamailio"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

// startKamailio runs configs/kamailio/kamailio.cfg in the foreground on a
// free loopback port, with a dispatcher list holding the gateway. The
// gateway starts inactive (flags 9: inactive, probing): only an answered
// OPTIONS probe makes the dispatcher use it.
func startKamailio(t *testing.T, bin, gatewayUDP string) *kamailio {
	t.Helper()
	return startKamailioWith(t, bin, fmt.Sprintf("1 sip:%s 9 0 duid=cstagw-e2e\n", gatewayUDP))
}

// startKamailioWith runs it with the dispatcher list dsList and the extra
// defines (NAME or NAME=VALUE, each passed with -A).
func startKamailioWith(t *testing.T, bin, dsList string, defines ...string) *kamailio {
	t.Helper()
	k := &kamailio{dir: t.TempDir()}
	port := freePort(t)
	k.addr = "127.0.0.1:" + strconv.Itoa(port)
	k.ctl = "unix:" + filepath.Join(k.dir, "kamailio_ctl")
	k.logPath = filepath.Join(k.dir, "kamailio.log")

	src, err := os.ReadFile("../../configs/kamailio/kamailio.cfg")
	require.NoError(t, err)
	cfgPath := filepath.Join(k.dir, "kamailio.cfg")
	require.NoError(t, os.WriteFile(cfgPath, src, 0o644))
	listPath := filepath.Join(k.dir, "dispatcher.list")
	require.NoError(t, os.WriteFile(listPath,
		[]byte("# written by "+t.Name()+"\n"+dsList), 0o644))

	logFile, err := os.Create(k.logPath)
	require.NoError(t, err)
	args := []string{"-f", cfgPath, "-x", "tlsf", "-m", "64", "-M", "8", "-DD", "-E",
		"-A", "SIP_LISTEN_IP=127.0.0.1",
		"-A", "SIP_PORT=" + strconv.Itoa(port),
		"-A", `DISPATCHER_LIST="` + listPath + `"`,
		"-A", `CTL_SOCKET="` + k.ctl + `"`,
		"-A", "DS_PING_INTERVAL=1",
		"-A", "CHILDREN=2",
		"-A", "LOG_REQUESTS",
	}
	for _, d := range defines {
		args = append(args, "-A", d)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = k.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Its own process group, so that Cleanup ends the workers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
		}
		_ = logFile.Close()
		if t.Failed() {
			t.Logf("kamailio log (tail):\n%s", tailFile(k.logPath, 80))
		}
	})

	// Listening: the proxy answers OPTIONS to itself.
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, _, err := sipOptions(k.addr, "sip:"+k.addr)
		if err == nil && st == 200 {
			break
		}
		select {
		case <-exited:
			t.Fatalf("kamailio exited at start:\n%s", tailFile(k.logPath, 40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kamailio does not answer OPTIONS on %s (last: %d, %v):\n%s", k.addr, st, err, tailFile(k.logPath, 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return k
}

// waitDispatcherActive waits until an OPTIONS to a user at the proxy is
// relayed to the gateway and answered by it (the gateway's 200 carries
// Accept: application/csta+xml; the proxy answers 503 while no gateway is
// active), then checks the dispatcher's own view with kamcmd.
func (k *kamailio) waitDispatcherActive(t *testing.T, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		st, resp, err := sipOptions(k.addr, "sip:cstagw@"+k.addr)
		if err == nil && st == 200 && strings.Contains(resp, "application/csta+xml") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dispatcher never activated the gateway (last OPTIONS: %d %v):\n%s\n%s", st, err, resp, tailFile(k.logPath, 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if kamcmd, err := exec.LookPath("kamcmd"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, kamcmd, "-s", k.ctl, "dispatcher.list").CombinedOutput()
		require.NoError(t, err, "kamcmd dispatcher.list: %s", out)
		assert.Regexp(t, `FLAGS: AP`, string(out), "dispatcher.list: the gateway is active and probed")
	}
}

// waitDispatcherFlags waits until kamcmd dispatcher.list shows the
// destination uri with flags (AP: active, probing; IP: inactive, probing).
func (k *kamailio) waitDispatcherFlags(t *testing.T, uri, flags string, limit time.Duration) {
	t.Helper()
	kamcmd, err := exec.LookPath("kamcmd")
	require.NoError(t, err, "kamcmd (package kamailio)")
	re := regexp.MustCompile(`URI: ` + regexp.QuoteMeta(uri) + `\s+FLAGS: (\w+)`)
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		out, err := exec.CommandContext(ctx, kamcmd, "-s", k.ctl, "dispatcher.list").CombinedOutput()
		cancel()
		require.NoError(t, err, "kamcmd dispatcher.list: %s", out)
		if m := re.FindSubmatch(out); m != nil {
			last = string(m[1])
			if last == flags {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never got flags %s in the dispatcher (last: %q)", uri, flags, last)
}

// requireRecordRouted checks that the proxy Record-Routed the dialog and
// sipp sent its in-dialog requests with a Route to it.
func (k *kamailio) requireRecordRouted(t *testing.T, r *sippRun) {
	t.Helper()
	oks := r.receivedResponses(200, "INVITE")
	require.NotEmpty(t, oks, "no 200 to the INVITE in the trace")
	rr := strings.Join(headerValues(oks[0], "Record-Route"), ",")
	assert.Contains(t, rr, "<sip:"+k.addr+";", "Record-Route of the 200 to the INVITE")
	n := 0
	for _, m := range r.trace() {
		if !m.received && (strings.HasPrefix(m.text, "INFO ") || strings.HasPrefix(m.text, "BYE ")) {
			n++
			assert.Contains(t, strings.Join(headerValues(m.text, "Route"), ","), "<sip:"+k.addr+";", "Route of sipp's in-dialog request:\n%s", m.text)
		}
	}
	assert.NotZero(t, n, "sipp sent no in-dialog requests")
}

func (k *kamailio) logText() string { return readFile(k.logPath) }

// sipOptions sends one OPTIONS over UDP and returns the final status.
func sipOptions(addr, ruri string) (int, string, error) {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	msg := "OPTIONS " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-e2e-" + id + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:e2e@127.0.0.1>;tag=e2e" + id + "\r\n" +
		"To: <" + ruri + ">\r\n" +
		"Call-ID: e2e-" + id + "@127.0.0.1\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Contact: <sip:e2e@" + local + ">\r\n" +
		"Content-Length: 0\r\n\r\n"
	if _, err := conn.Write([]byte(msg)); err != nil {
		return 0, "", err
	}
	buf := make([]byte, 8192)
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return 0, "", err
		}
		resp := string(buf[:n])
		var code int
		if _, err := fmt.Sscanf(resp, "SIP/2.0 %d", &code); err != nil {
			return 0, resp, fmt.Errorf("not a SIP response: %q", firstLine(resp))
		}
		if code >= 200 {
			return code, resp, nil
		}
	}
}

// ---------------------------------------------------------------------------
// A raw SIP client over UDP, just enough to sign in and be signed out.

type rawUA struct {
	conn       *net.UDPConn
	addr       string // 127.0.0.1:port, where it really listens
	advertised string // the address it writes in Via and Contact (addr by default)
}

type rawDialog struct {
	callID       string
	localTag     string
	from         string // our From header value
	to           string // To with the gateway's tag
	localContact string // our Contact URI
	remoteTarget string // the gateway's Contact URI
	routes       []string
}

func newRawUA(t *testing.T) *rawUA {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &rawUA{conn: conn, addr: conn.LocalAddr().String(), advertised: conn.LocalAddr().String()}
}

func (u *rawUA) send(t *testing.T, to string, msg string) {
	t.Helper()
	dst, err := net.ResolveUDPAddr("udp", to)
	require.NoError(t, err)
	_, err = u.conn.WriteToUDP([]byte(msg), dst)
	require.NoError(t, err)
}

func (u *rawUA) read(deadline time.Time) (string, *net.UDPAddr, error) {
	buf := make([]byte, 65535)
	_ = u.conn.SetReadDeadline(deadline)
	n, from, err := u.conn.ReadFromUDP(buf)
	if err != nil {
		return "", nil, err
	}
	return string(buf[:n]), from, nil
}

// invite signs user in on line through the proxy at proxy and ACKs the 200.
func (u *rawUA) invite(t *testing.T, proxy, user, line string) *rawDialog {
	t.Helper()
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	d := &rawDialog{
		callID:       "e2e-" + id + "@127.0.0.1",
		localTag:     "e2e" + id,
		localContact: "sip:e2e@" + u.advertised,
	}
	d.from = "<" + user + ">;tag=" + d.localTag + ";epid=e2e"
	body := `<?xml version="1.0"?><RequestSystemStatus xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed3">` +
		`<extensions><privateData><private><lcs:line xmlns:lcs="http://schemas.microsoft.com/Lcs/2005/04/RCCExtension">` +
		line + `</lcs:line></private></privateData></extensions></RequestSystemStatus>`
	invite := "INVITE sip:gw@" + proxy + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + u.advertised + ";branch=z9hG4bK-e2e-inv-" + id + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: " + d.from + "\r\n" +
		"To: <sip:gw@" + proxy + ">\r\n" +
		"Call-ID: " + d.callID + "\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <" + d.localContact + ">\r\n" +
		"Supported: timer\r\n" +
		"Content-Disposition: signal;handling=required\r\n" +
		"Content-Type: application/csta+xml\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	deadline := time.Now().Add(10 * time.Second)
	next := time.Now()
	var ok string
	for ok == "" {
		if time.Now().After(next) { // Timer A, roughly
			u.send(t, proxy, invite)
			next = time.Now().Add(500 * time.Millisecond)
		}
		msg, _, err := u.read(time.Now().Add(100 * time.Millisecond))
		if err != nil {
			require.True(t, time.Now().Before(deadline), "no final answer to the INVITE: %v", err)
			continue
		}
		var code int
		if _, err := fmt.Sscanf(msg, "SIP/2.0 %d", &code); err != nil || code < 200 {
			continue
		}
		require.Equal(t, 200, code, "INVITE answer:\n%s", msg)
		ok = msg
	}
	d.to = headerValues(ok, "To")[0]
	for _, rr := range headerValues(ok, "Record-Route") {
		for _, r := range strings.Split(rr, ",") {
			d.routes = append(d.routes, strings.TrimSpace(r))
		}
	}
	contacts := headerValues(ok, "Contact")
	require.NotEmpty(t, contacts, "Contact in the 200:\n%s", ok)
	d.remoteTarget = strings.Trim(strings.SplitN(contacts[0], ">", 2)[0], "<")
	u.ack(t, proxy, d)
	return d
}

// ack sends the ACK along the route set (reversed Record-Route, RFC 3261
// §12.1.2) to the first hop, the proxy.
func (u *rawUA) ack(t *testing.T, proxy string, d *rawDialog) {
	t.Helper()
	var route []string
	for i := len(d.routes) - 1; i >= 0; i-- {
		route = append(route, d.routes[i])
	}
	msg := "ACK " + d.remoteTarget + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + u.advertised + ";branch=z9hG4bK-e2e-ack-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "\r\n"
	if len(route) > 0 {
		msg += "Route: " + strings.Join(route, ", ") + "\r\n"
	}
	msg += "Max-Forwards: 70\r\n" +
		"From: " + d.from + "\r\n" +
		"To: " + d.to + "\r\n" +
		"Call-ID: " + d.callID + "\r\n" +
		"CSeq: 1 ACK\r\n" +
		"Content-Length: 0\r\n\r\n"
	u.send(t, proxy, msg)
}

// awaitRequest waits for an in-dialog request of method, answers it 200
// (and any other request 200 too; a retransmitted 200 to the INVITE gets
// its ACK again) and returns it.
func (u *rawUA) awaitRequest(t *testing.T, method string, d *rawDialog, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		msg, from, err := u.read(deadline)
		require.NoError(t, err, "no %s within %v", method, limit)
		if strings.HasPrefix(msg, "SIP/2.0 ") {
			if strings.HasSuffix(strings.TrimSpace(strings.Join(headerValues(msg, "CSeq"), "")), "INVITE") {
				u.ack(t, from.String(), d)
			}
			continue
		}
		res := "SIP/2.0 200 OK\r\n"
		for _, v := range headerValues(msg, "Via") {
			res += "Via: " + v + "\r\n"
		}
		res += "From: " + strings.Join(headerValues(msg, "From"), "") + "\r\n" +
			"To: " + strings.Join(headerValues(msg, "To"), "") + "\r\n" +
			"Call-ID: " + strings.Join(headerValues(msg, "Call-ID"), "") + "\r\n" +
			"CSeq: " + strings.Join(headerValues(msg, "CSeq"), "") + "\r\n" +
			"Content-Length: 0\r\n\r\n"
		u.send(t, from.String(), res)
		if strings.HasPrefix(msg, method+" ") {
			return msg
		}
	}
}

// ---------------------------------------------------------------------------
// Small helpers.

// freePort returns a loopback port that is free for both UDP and TCP at the
// time of the call.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		require.NoError(t, err)
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		_ = u.Close()
		if err != nil {
			continue
		}
		_ = l.Close()
		return port
	}
	t.Fatal("no free UDP+TCP port on 127.0.0.1")
	return 0
}

// closableLog is the gateway's log file; lines logged after Close (by
// goroutines winding down after Shutdown) are dropped.
type closableLog struct {
	mu sync.Mutex
	f  *os.File
}

func (l *closableLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return len(p), nil
	}
	return l.f.Write(p)
}

func (l *closableLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

func httpGet(url string) (int, string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

// metricValue reads an unlabelled sample from Prometheus text (-1: absent).
func metricValue(text, name string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func tailFile(path string, lines int) string { return tailString(readFile(path), lines) }

func tailString(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(l)
}

// startLoggedGateway starts a gateway logging to logPath. Cleanup shuts it
// down, bounded so that a gateway stuck in Shutdown fails the test instead
// of hanging the package, and prints the log's tail when the test failed.
func startLoggedGateway(t *testing.T, cfg gateway.Config, logPath string, tailLines int) *gateway.Gateway {
	t.Helper()
	f, err := os.Create(logPath)
	require.NoError(t, err)
	logFile := &closableLog{f: f}
	gw, err := gateway.New(cfg, gateway.NewLogger(cfg.Log, logFile))
	require.NoError(t, err)
	require.NoError(t, gw.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		stopped := make(chan struct{})
		go func() {
			gw.Shutdown(ctx)
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Errorf("gateway Shutdown did not return within 10 s")
		}
		_ = logFile.Close()
		if t.Failed() {
			t.Logf("gateway log (tail):\n%s", tailFile(logPath, tailLines))
		}
	})
	return gw
}
