package gateway

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/gateway/ldapdir"
)

// The file wins for the same user; an LDAP user whose line does not parse
// is left out and counted, and does not cost the others their entry.
func TestMergeDirectory(t *testing.T) {
	file := DirectoryConfig{Users: []UserConfig{{URI: "sip:alice@example.com",
		Lines: []LineConfig{{Line: "tel:40001;phone-context=dialstring", Device: "40001"}}}}}
	users := []ldapdir.User{
		{URI: "sip:alice@example.com", Lines: []ldapdir.Line{{Line: "tel:49999;phone-context=dialstring", Device: "49999"}}},
		{URI: "sip:bob@example.com", Lines: []ldapdir.Line{{Line: "tel:40002;phone-context=dialstring", Device: "40002"}}},
		{URI: "sip:broken@example.com", Lines: []ldapdir.Line{{Line: "not a line", Device: "1"}}},
	}
	dir, skipped := mergeDirectory(file, users)
	assert.Equal(t, 1, skipped)
	require.Len(t, dir.Lines("sip:alice@example.com"), 1)
	assert.Equal(t, "40001", dir.Lines("sip:alice@example.com")[0].Device, "the file wins")
	require.Len(t, dir.Lines("sip:bob@example.com"), 1)
	assert.Nil(t, dir.Lines("sip:broken@example.com"))

	dir, skipped = mergeDirectory(file, users[:2])
	assert.Zero(t, skipped)
	assert.NotNil(t, dir.Lines("sip:bob@example.com"))
}
