package ctipool

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLooksLikeReply(t *testing.T) {
	for doc, want := range map[string]bool{
		`<?xml version="1.0"?><MakeCallResponse xmlns="x"><callingDevice>`: true,
		`<csta:GetDoNotDisturbResponse>`:                                   true,
		`<!-- c --><CSTAErrorCode><operation>`:                             true,
		`<?xml version="1.0"?><DeliveredEvent xmlns="x">`:                  false,
		`<SystemStatus><systemStatus>`:                                     false,
		`garbage`:                                                          false,
		`<`:                                                                false,
	} {
		assert.Equal(t, want, looksLikeReply([]byte(doc)), doc)
	}
}
