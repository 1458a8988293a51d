package sipstack

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// racingAdopter plays a node whose claim loop adopts the dialog while an
// in-dialog request for it asks the handler to adopt it: by the time
// Adopt looks, the dialog is known, and Adopt has nothing to return.
type racingAdopter struct {
	endRecorder
	s       *Server
	adopted int
}

func (h *racingAdopter) Adopt(callID, localTag, remoteTag string) (*Dialog, Reply) {
	h.adopted++
	_, err := h.s.AdoptDialog(DialogState{
		CallID: callID, LocalTag: localTag, RemoteTag: remoteTag, Transport: "udp", Source: "127.0.0.1:5061",
		LocalURI: "sip:gw@127.0.0.1", RemoteFrom: "<sip:a@b>;tag=" + remoteTag, RemoteTarget: "sip:a@127.0.0.1:5061",
		CSeq: 100,
	})
	if err != nil {
		panic(err)
	}
	return nil, Reply{} // what Adopt says when its own adoption found the dialog known
}

func (h *racingAdopter) InDialog(ctx context.Context, d *Dialog, req *Request) Reply {
	return h.endRecorder.InDialog(ctx, d, req)
}

// A request for a dialog adopted meanwhile by another path is served on
// that dialog, never answered 481 (which ends the client's dialog).
func TestAdoptedMeanwhileIsNot481(t *testing.T) {
	h := &racingAdopter{}
	cfg := Config{Listen: []string{"udp:127.0.0.1:0"}, TrustedHosts: []string{"127.0.0.0/8"}, MaxBodyBytes: 4096}
	s, err := New(cfg, h, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(s.Close)
	require.NoError(t, s.Start()) // a listener: adopted dialogs take its Contact
	h.s = s
	info := parseSeed(t, "INFO sip:gw@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-r1\r\n"+
		"From: <sip:a@b>;tag=client1\r\nTo: <sip:gw@c>;tag=gw1\r\nCall-ID: raced-1\r\nCSeq: 7 INFO\r\nContent-Length: 0\r\n\r\n", "UDP")
	tx := newFakeTx()
	s.dispatch(info, tx)
	require.Len(t, tx.finals(), 1)
	assert.Equal(t, 200, tx.finals()[0].StatusCode)
	assert.Equal(t, 1, h.adopted)
}
