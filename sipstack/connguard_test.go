package sipstack

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestMsgScanFollowsMessages(t *testing.T) {
	var m msgScan
	now := time.Now()
	msg := "INFO sip:a SIP/2.0\r\nContent-Length: 5\r\n\r\nhello"
	m.feed([]byte("\r\n\r\n"), now) // keep-alives
	assert.False(t, m.inMsg)
	m.feed([]byte(msg[:10]), now)
	assert.True(t, m.inMsg, "a message has started")
	m.feed([]byte(msg[10:len(msg)-2]), now)
	assert.True(t, m.inMsg, "the body is not complete")
	m.feed([]byte(msg[len(msg)-2:]+"OPTIONS sip:a SIP/2.0\r\nl: 0\r\n\r\n"), now)
	assert.False(t, m.inMsg, "two messages complete")
	m.feed([]byte("BYE sip:a SIP/2.0\r\n"), now.Add(time.Second))
	assert.True(t, m.inMsg)
	assert.Equal(t, now.Add(time.Second), m.start, "the clock starts with the message")
}
