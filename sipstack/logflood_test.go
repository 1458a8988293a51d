package sipstack

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
)

// A flood of junk is counted in full but logged as a short burst with
// short excerpts.
func TestParseErrorFloodIsBounded(t *testing.T) {
	var out bytes.Buffer
	zl := zerolog.New(&out)
	log := slog.New(newFloodHandler(zerolog.NewSlogHandler(zl))).With("caller", "Transport<UDP>")
	before := ParseErrors()["udp"]
	junk := strings.Repeat("\x01junk", 6000) // 30 KB
	for i := 0; i < 1000; i++ {
		log.Error("failed to parse", "data", junk, "error", "bad start line")
	}
	assert.Equal(t, uint64(1000), ParseErrors()["udp"]-before, "every one counted")
	lines := strings.Count(out.String(), "\n")
	assert.Equal(t, parseLogBurst, lines, "a burst, then nothing until the summary")
	assert.Less(t, out.Len(), parseLogBurst*(parseExcerpt*6+400), "excerpts, not whole messages: %d bytes", out.Len())
	assert.NotContains(t, out.String(), `"level":"error"`)
	// Other sipgo lines pass untouched.
	log.Warn("something else")
	assert.Contains(t, out.String(), "something else")
}
