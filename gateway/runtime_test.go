package gateway

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemoryLimit(t *testing.T) {
	cases := []struct {
		conf, cgroup string
		want         int64
		bad          bool
	}{
		{"auto", "", DefaultMemoryLimit, false},
		{"", "max\n", DefaultMemoryLimit, false},
		{"auto", "4294967296\n", 4294967296 / 10 * 8, false},
		{"none", "4294967296", 0, false},
		{"1536MiB", "", 1536 << 20, false},
		{"1.5GiB", "", 1536 << 20, false},
		{"2GB", "", 2e9, false},
		{"65536", "", 65536, false},
		{"12 KiB", "", 12 << 10, false},
		{"lots", "", 0, true},
		{"-1GiB", "", 0, true},
		{"1e300GiB", "", 0, true},
	}
	for _, c := range cases {
		got, err := RuntimeConfig{MemoryLimit: c.conf}.memoryLimit(c.cgroup)
		if c.bad {
			assert.Error(t, err, c.conf)
			continue
		}
		require.NoError(t, err, c.conf)
		assert.Equal(t, c.want, got, "%q with cgroup %q", c.conf, c.cgroup)
	}
}

func TestRuntimeConfigKeys(t *testing.T) {
	const link = "cti:\n  links: [{address: 127.0.0.1:1}]\n"
	c, err := ParseConfig([]byte(link + "runtime:\n  gc_percent: 150\n  memory_limit: 3GiB\n"))
	require.NoError(t, err)
	assert.Equal(t, 150, c.Runtime.GCPercent)
	_, err = ParseConfig([]byte(link + "runtime:\n  memory_limit: plenty\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "runtime.memory_limit")
	c, err = ParseConfig([]byte(link))
	require.NoError(t, err)
	assert.Equal(t, DefaultGCPercent, c.Runtime.GCPercent)
	assert.Equal(t, "auto", c.Runtime.MemoryLimit)
}

func TestApplyRuntime(t *testing.T) {
	oldGC, oldLimit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(oldGC); debug.SetMemoryLimit(oldLimit) })

	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	gc, limit := ApplyRuntime(RuntimeConfig{GCPercent: 250, MemoryLimit: "3GiB"})
	assert.Equal(t, 250, gc)
	assert.EqualValues(t, 3<<30, limit)

	// The environment wins: the process keeps what it was started with.
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(1 << 30)
	t.Setenv("GOGC", "100")
	t.Setenv("GOMEMLIMIT", "1GiB")
	gc, limit = ApplyRuntime(RuntimeConfig{GCPercent: 250, MemoryLimit: "3GiB"})
	assert.Equal(t, 100, gc)
	assert.EqualValues(t, 1<<30, limit)
}
