package main

// The reference point of phase 2: the same INFO load (a GetDoNotDisturb body,
// answered 200 with a GetDoNotDisturbResponse body) sent by sipp through
// Kamailio, stateful (tm, t_relay) with the TLSF allocator, to a sipp UAS.
// Kamailio's CPU is the sum of utime+stime of its main process and every
// worker it forked.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// KamResult is one Kamailio comparison run.
type KamResult struct {
	Transport    string  `json:"transport"`
	Rate         float64 `json:"rate_per_s"`
	Transactions int     `json:"transactions"`
	Failed       int     `json:"failed"`
	CPUus        float64 `json:"kamailio_cpu_us_per_transaction"`
	IdleCPUPct   float64 `json:"kamailio_idle_cpu_pct"`
	CPUPct       float64 `json:"kamailio_cpu_pct_of_one_core"`
	Procs        int     `json:"kamailio_processes"`
	Seconds      float64 `json:"seconds"`
	Err          string  `json:"error,omitempty"`
	Dir          string  `json:"dir"`
}

const kamailioCfg = `#!KAMAILIO
# Minimal stateful relay written by test/bench: every initial request is
# t_relay()ed to the sipp UAS; in-dialog requests follow loose_route().
debug=1
log_stderror=yes
children=4
tcp_children=4
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=off
listen=udp:127.0.0.1:%[1]d
listen=tcp:127.0.0.1:%[1]d

loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "pv.so"
loadmodule "siputils.so"
loadmodule "textops.so"

request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (has_totag()) {
		if (loose_route()) {
			t_relay();
			exit;
		}
		if (is_method("ACK") && t_check_trans()) {
			t_relay();
		}
		exit;
	}
	if (is_method("INVITE")) {
		record_route();
	}
	if ($pr == "tcp") {
		$du = "sip:127.0.0.1:%[2]d;transport=tcp";
	} else {
		$du = "sip:127.0.0.1:%[2]d";
	}
	if (!t_relay()) {
		sl_reply_error();
	}
	exit;
}
`

const sippUAC = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="cstagw bench INFO (UAC)">
  <send retrans="500">
    <![CDATA[
INFO sip:gw@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:u1@bench.cstagw>;tag=[pid]T[call_number];epid=bench
To: <sip:gw@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 2 INFO
Contact: <sip:u1@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Disposition: signal;handling=required
Content-Type: application/csta+xml
Content-Length: [len]

<?xml version="1.0"?><GetDoNotDisturb xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed3"><device>tel:100001;phone-context=dialstring</device></GetDoNotDisturb>
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
</scenario>
`

const sippUAS = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="cstagw bench INFO (UAS)">
  <recv request="INFO"/>
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]U[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:uas@[local_ip]:[local_port];transport=[transport]>
Content-Disposition: signal;handling=required
Content-Type: application/csta+xml
Content-Length: [len]

<?xml version="1.0" encoding="UTF-8"?><GetDoNotDisturbResponse xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed3"><doNotDisturbOn>false</doNotDisturbOn></GetDoNotDisturbResponse>
    ]]>
  </send>
</scenario>
`

var successRe = regexp.MustCompile(`Successful call\s*\|\s*\d+\s*\|\s*(\d+)`)
var failedRe = regexp.MustCompile(`Failed call\s*\|\s*\d+\s*\|\s*(\d+)`)

func (e *Env) kamailio(transport string, rate float64, dur, idleFor time.Duration) KamResult {
	res := KamResult{Transport: transport, Rate: rate}
	dir := filepath.Join(e.Out, "kamailio-"+transport)
	res.Dir = dir
	_ = os.MkdirAll(dir, 0o755)
	for _, bin := range []string{"kamailio", "sipp"} {
		if _, err := exec.LookPath(bin); err != nil {
			res.Err = bin + " not installed (apt-get install kamailio sip-tester)"
			return res
		}
	}
	kport, uasPort, uacPort := freePort(), freePort(), freePort()
	cfgPath := filepath.Join(dir, "kamailio.cfg")
	_ = os.WriteFile(cfgPath, []byte(fmt.Sprintf(kamailioCfg, kport, uasPort)), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "uac.xml"), []byte(sippUAC), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "uas.xml"), []byte(sippUAS), 0o644)
	t := "u1"
	if transport == "tcp" {
		t = "t1"
	}
	uas, err := startProc("sipp-uas", "sipp", []string{"-sf", filepath.Join(dir, "uas.xml"), "-i", "127.0.0.1", "-p", strconv.Itoa(uasPort),
		"-t", t, "-nostdin", "-trace_err", "-error_file", filepath.Join(dir, "uas-errors.log")}, nil, filepath.Join(dir, "uas.log"))
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer uas.Stop(3 * time.Second)
	kam, err := startProc("kamailio", "kamailio", []string{"-f", cfgPath, "-x", "tlsf", "-m", "1024", "-M", "16", "-DD", "-E"}, nil, filepath.Join(dir, "kamailio.log"))
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer kam.Stop(5 * time.Second)
	if err := waitFor(10*time.Second, "kamailio listening", func() bool {
		_, n := treeCPU(kam.PID)
		return n >= 4 && kam.Alive()
	}); err != nil || !kam.Alive() {
		b, _ := os.ReadFile(kam.Log)
		res.Err = fmt.Sprintf("kamailio did not start: %s", trunc(string(b), 300))
		return res
	}
	time.Sleep(500 * time.Millisecond)
	// Idle consumption, to subtract.
	c0, _ := treeCPU(kam.PID)
	t0 := time.Now()
	time.Sleep(idleFor)
	c1, _ := treeCPU(kam.PID)
	idle := float64(c1-c0) / float64(time.Since(t0))
	res.IdleCPUPct = idle * 100
	total := int(rate * dur.Seconds())
	ctx, cancel := context.WithTimeout(context.Background(), dur+60*time.Second)
	defer cancel()
	args := []string{fmt.Sprintf("127.0.0.1:%d", kport), "-sf", filepath.Join(dir, "uac.xml"), "-i", "127.0.0.1", "-p", strconv.Itoa(uacPort),
		"-t", t, "-r", strconv.Itoa(int(rate)), "-rp", "1000", "-m", strconv.Itoa(total), "-l", strconv.Itoa(int(rate) * 2),
		"-nostdin", "-timeout", fmt.Sprintf("%ds", int(dur.Seconds())+30), "-recv_timeout", "5s", "-trace_err", "-error_file", filepath.Join(dir, "uac-errors.log")}
	cmd := exec.CommandContext(ctx, "sipp", args...)
	outF, _ := os.Create(filepath.Join(dir, "uac.log"))
	cmd.Stdout, cmd.Stderr = outF, outF
	k0, procs := treeCPU(kam.PID)
	start := time.Now()
	runErr := cmd.Run()
	el := time.Since(start)
	k1, _ := treeCPU(kam.PID)
	outF.Close()
	res.Procs = procs
	res.Seconds = el.Seconds()
	b, _ := os.ReadFile(filepath.Join(dir, "uac.log"))
	if m := successRe.FindAllSubmatch(b, -1); len(m) > 0 {
		res.Transactions, _ = strconv.Atoi(string(m[len(m)-1][1]))
	}
	if m := failedRe.FindAllSubmatch(b, -1); len(m) > 0 {
		res.Failed, _ = strconv.Atoi(string(m[len(m)-1][1]))
	}
	if runErr != nil && res.Transactions == 0 {
		res.Err = fmt.Sprintf("sipp UAC: %v (%s)", runErr, trunc(strings.TrimSpace(string(b)), 300))
		return res
	}
	if runErr != nil {
		res.Err = fmt.Sprintf("sipp UAC exit: %v (%d failed)", runErr, res.Failed)
	}
	cpu := float64(k1-k0) - idle*float64(el)
	res.CPUPct = float64(k1-k0) / float64(el) * 100
	if res.Transactions > 0 {
		res.CPUus = us(time.Duration(cpu / float64(res.Transactions)))
	}
	return res
}
