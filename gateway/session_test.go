package gateway

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSessionTransitions(t *testing.T) {
	tests := []struct {
		from State
		ev   sessionEvent
		want State
	}{
		{StateActive, evLinkDown, StateLinkDown},
		{StateActive, evLinkUp, StateActive},
		{StateActive, evNewGen, StateStale},
		{StateActive, evClose, StateClosed},
		{StateLinkDown, evLinkDown, StateLinkDown},
		{StateLinkDown, evLinkUp, StateActive},
		{StateLinkDown, evNewGen, StateStale},
		{StateLinkDown, evClose, StateClosed},
		{StateStale, evLinkDown, StateStale},
		{StateStale, evLinkUp, StateStale},
		{StateStale, evNewGen, StateStale},
		{StateStale, evClose, StateClosed},
		{StateClosed, evLinkDown, StateClosed},
		{StateClosed, evLinkUp, StateClosed},
		{StateClosed, evNewGen, StateClosed},
		{StateClosed, evClose, StateClosed},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, transition(tt.from, tt.ev), "%s + %d", tt.from, tt.ev)
	}
	assert.Equal(t, "link_down", StateLinkDown.String())
}
