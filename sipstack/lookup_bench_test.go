package sipstack

import (
	"fmt"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// BenchmarkDialogLookup: finding the dialog of an in-dialog request among
// 80,000 (a full Lync pool), as every INFO, ACK, BYE and UPDATE does.
func BenchmarkDialogLookup(b *testing.B) {
	s := fuzzServer(b)
	b.Cleanup(s.dialogs.Clear) // bare dialogs: nothing for Close to end
	const n = 80000
	reqs := make([]*sip.Request, 0, 1024)
	for i := range n {
		cid, local, remote := fmt.Sprintf("%08x-bench", i), fmt.Sprintf("gw-%d", i), fmt.Sprintf("cl-%d", i)
		s.dialogs.Store(dialogKey(cid, local, remote), &Dialog{callID: cid})
		if i%(n/cap(reqs)) != 0 || len(reqs) == cap(reqs) {
			continue
		}
		raw := "INFO sip:gw@127.0.0.1:5060;transport=tcp SIP/2.0\r\n" +
			"Via: SIP/2.0/TCP 127.0.0.2:5060;branch=z9hG4bK" + cid + "\r\n" +
			"From: <sip:u" + fmt.Sprint(i) + "@bench>;tag=" + remote + "\r\n" +
			"To: <sip:gw@bench>;tag=" + local + "\r\n" +
			"Call-ID: " + cid + "\r\nCSeq: 2 INFO\r\nContent-Length: 0\r\n\r\n"
		m, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			b.Fatal(err)
		}
		reqs = append(reqs, m.(*sip.Request))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if s.lookup(reqs[i%len(reqs)]) == nil {
			b.Fatal("dialog not found")
		}
		i++
	}
}
