package ctisim

import (
	"testing"

	"github.com/cstagw/cstagw/csta"
	"github.com/stretchr/testify/require"
)

// TestEmittedMessagesRoundTrip: every response and event the switch builds
// survives csta.Encode and csta.Decode unchanged, in ed3 and ed6.
func TestEmittedMessagesRoundTrip(t *testing.T) {
	h := newHarness(t)
	h.monitor(A, B, C, D)
	c1, c2 := h.consult(A, B, C, true)
	h.ok(pairReq(csta.KindTransferCall, c1, A, c2, A))
	h.ok(fwdReq(B, "forwardNoAns", true, D, 2))
	h.ok(&csta.Message{Kind: csta.KindSetDoNotDisturb, Device: csta.Dev(C), DoNotDisturbOn: true})
	x := h.talk(A, D)
	h.ok(&csta.Message{Kind: csta.KindSingleStepTransferCall, ActiveCall: conn(x, A), Destination: csta.Dev(C)})
	h.ok(&csta.Message{Kind: csta.KindSnapshotDevice, Device: csta.Dev(D)})
	h.ok(&csta.Message{Kind: csta.KindGetForwarding, Device: csta.Dev(B)})
	h.log = append(h.log, entry{msg: features()})
	for _, e := range h.log {
		for _, ns := range []string{csta.NSEd3, csta.NSEd6} {
			b, err := csta.Encode(e.msg, ns)
			require.NoError(t, err)
			m, err := csta.Decode(b)
			require.NoError(t, err, string(b))
			m.Name, m.Namespace = "", ""
			want := *e.msg
			want.Name = ""
			require.Equal(t, &want, m, string(b))
		}
	}
}
