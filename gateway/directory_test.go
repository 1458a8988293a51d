package gateway

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cstagw/cstagw/csta"
)

func testDirectory(t *testing.T) *Directory {
	t.Helper()
	d, err := NewDirectory(DirectoryConfig{Users: []UserConfig{
		{URI: "sip:mila.novak@corp.example.net", Lines: []LineConfig{
			{Line: "tel:40125;phone-context=dialstring;partition=PT_Internal", Device: "40125", Aliases: []string{"tel:+12065550125;ext=40125"}},
		}},
		{URI: "sip:ops@corp.example.net", Lines: []LineConfig{
			{Line: "tel:2101;phone-context=dialstring;device=SEP0001", Device: "SEP0001"},
			{Line: "tel:2101;phone-context=dialstring;device=SEP0002", Device: "SEP0002"},
		}},
		{URI: "sip:shared@corp.example.net", Lines: []LineConfig{
			{Line: "tel:40125;phone-context=dialstring;partition=PT_Internal", Device: "40125"},
		}},
	}})
	require.NoError(t, err)
	return d
}

func TestDirectoryAuthority(t *testing.T) {
	d := testDirectory(t)
	tests := []struct {
		user, device string
		want         string // PBX device, "" for refused
		err          error
	}{
		{"sip:mila.novak@corp.example.net", "tel:40125;phone-context=dialstring;partition=PT_Internal", "40125", nil},
		{"<sip:Mila.Novak@corp.example.net>;tag=1", "tel:40125;phone-context=dialstring", "40125", nil},
		{"sip:mila.novak@corp.example.net", "tel:+12065550125;ext=40125", "40125", nil},
		{"sip:mila.novak@corp.example.net", "40125", "40125", nil},
		{"sip:mila.novak@corp.example.net", "tel:40125;phone-context=dialstring;partition=PT_Other", "", ErrNotYourLine},
		{"sip:mila.novak@corp.example.net", "tel:40126;phone-context=dialstring", "", ErrNotYourLine},
		{"sip:mila.novak@corp.example.net", "not a number", "", ErrBadLine},
		{"sip:nobody@corp.example.net", "tel:40125;phone-context=dialstring", "", ErrUnknownUser},
		{"sip:ops@corp.example.net", "tel:2101;phone-context=dialstring;device=SEP0002", "SEP0002", nil},
		{"sip:ops@corp.example.net", "tel:2101;phone-context=dialstring;device=SEP0001", "SEP0001", nil},
		{"sip:ops@corp.example.net", "tel:2101;phone-context=dialstring;device=SEP0009", "", ErrNotYourLine},
		{"sip:shared@corp.example.net", "tel:40125;phone-context=dialstring;partition=PT_Internal", "40125", nil},
	}
	for _, tt := range tests {
		l, err := d.Authorize(tt.user, tt.device)
		if tt.err != nil {
			require.ErrorIs(t, err, tt.err, "%s %s", tt.user, tt.device)
			continue
		}
		require.NoError(t, err, "%s %s", tt.user, tt.device)
		assert.Equal(t, tt.want, l.Device, "%s %s", tt.user, tt.device)
	}
}

func TestDirectoryValidation(t *testing.T) {
	_, err := NewDirectory(DirectoryConfig{Users: []UserConfig{
		{URI: "nonsense"},
		{URI: "sip:a@b", Lines: []LineConfig{{Line: "tel:", Device: "1"}, {Line: "tel:1", Device: ""}}},
	}})
	require.Error(t, err)
	for _, want := range []string{"directory.users[0].uri", "directory.users[1].lines[0].line", "directory.users[1].lines[1].device"} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestNumbering(t *testing.T) {
	n, err := newNumbering(NumberingConfig{
		Dial: []csta.Rule{
			{Match: `^\+1206555(\d{4})$`, Replace: `$1`},
			{Match: `^\+1(\d{10})$`, Replace: `91$1`},
		},
		Display: []csta.Rule{{Match: `^(\d{4})$`, Replace: `+1206555$1`}},
	})
	require.NoError(t, err)
	dial := []struct{ in, want string }{
		{"tel:+12065550147", "0147"},
		{"tel:+14255550188", "914255550188"},
		{"tel:+442071234567", "+442071234567"},
		{"tel:2101;phone-context=dialstring", "2101"},
		{"2101", "2101"},
		{"tel:+14255550100;ext=100", "100"},
		{"tel:5555551234v:41234", "5555551234"},
	}
	for _, tt := range dial {
		got, err := n.dialString(tt.in)
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
	_, err = n.dialString("tel:abc")
	require.Error(t, err)

	show := []struct{ in, want string }{
		{"0147", "tel:+12065550147"},
		{"12065550147", "tel:12065550147;phone-context=dialstring"},
		{"+12065550147", "tel:+12065550147"},
		{"N<+12065550147>;displayNumber=2065550147;noa=nk", "tel:+12065550147"},
		{"", ""},
	}
	for _, tt := range show {
		assert.Equal(t, tt.want, n.show(tt.in), tt.in)
		assert.Equal(t, tt.want, n.show(tt.in), "%s, from the cache", tt.in)
	}
	// The cache is bounded: it is emptied rather than grown without limit.
	for i := 0; i < 2*maxShown; i++ {
		n.show(fmt.Sprint(100000 + i))
	}
	assert.LessOrEqual(t, int(n.shownCount.Load()), maxShown)
	assert.Equal(t, "tel:+12065550147", n.show("0147"))
}

// BenchmarkDirectoryAuthorize: the authority check every request makes (the
// user's line appearances, the named device among them) in a directory of
// 80,000 users.
func BenchmarkDirectoryAuthorize(b *testing.B) {
	const n = 80000
	cfg := DirectoryConfig{}
	for i := range n {
		cfg.Users = append(cfg.Users, UserConfig{URI: fmt.Sprintf("sip:u%d@bench.example.com", i),
			Lines: []LineConfig{{Line: fmt.Sprintf("tel:%d;phone-context=dialstring", 100000+i), Device: fmt.Sprint(100000 + i)}}})
	}
	d, err := NewDirectory(cfg)
	if err != nil {
		b.Fatal(err)
	}
	users, lines := make([]string, 1024), make([]string, 1024)
	for i := range users {
		k := i * (n / len(users))
		users[i], lines[i] = fmt.Sprintf("sip:u%d@bench.example.com", k), fmt.Sprintf("tel:%d;phone-context=dialstring", 100000+k)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := d.Authorize(users[i%len(users)], lines[i%len(lines)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
