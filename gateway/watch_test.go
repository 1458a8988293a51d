package gateway

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/cstagw/cstagw/csta"
)

func snap(id, state string) csta.SnapshotItem {
	return csta.SnapshotItem{Connection: csta.ConnectionID{CallID: id, DeviceID: "40001"}, LocalCallState: state}
}

func TestReconcile(t *testing.T) {
	w := &deviceWatch{key: watchKey{device: "40001"}, calls: map[string]*callEntry{}}
	// An event got there before the first snapshot: it knows better.
	w.apply(&csta.Message{Kind: csta.KindEstablishedEvent, Connection: csta.ConnectionID{CallID: "a", DeviceID: "40001"}, LocalConnectionInfo: "connected"})
	w.reconcile([]csta.SnapshotItem{snap("a", "alerting"), snap("b", "hold"), snap("c", "null"), snap("", "connected")}, false)
	assert.True(t, w.seeded)
	assert.Equal(t, "connected", w.calls["a"].state, "start keeps what events said")
	assert.Equal(t, "hold", w.calls["b"].state)
	assert.NotContains(t, w.calls, "c")
	assert.Len(t, w.calls, 2)

	// After messagesLost the snapshot is the truth.
	w.reconcile([]csta.SnapshotItem{snap("a", "hold"), snap("d", "alerting"), snap("b", "null")}, true)
	assert.Equal(t, "hold", w.calls["a"].state)
	assert.Equal(t, "alerting", w.calls["d"].state)
	assert.NotContains(t, w.calls, "b", "a call the snapshot no longer lists is gone")
	assert.Len(t, w.calls, 2)
}
