package csta

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The numbering rules of the example configuration (configs/gateway.yaml).
var (
	numDialRules = []Rule{
		{Match: `^\+1206555(\d{4})$`, Replace: `$1`},
		{Match: `^\+1(\d{10})$`, Replace: `91$1`},
	}
	numDisplayRules = []Rule{
		{Match: `^(\d{4})$`, Replace: `+1206555$1`},
	}
)

func TestRuleSetApply(t *testing.T) {
	dial, err := CompileRules(numDialRules)
	require.NoError(t, err)
	require.Equal(t, 2, dial.Len())
	display, err := CompileRules(numDisplayRules)
	require.NoError(t, err)

	tests := []struct {
		name  string
		rules *RuleSet
		in    string
		want  string
		ok    bool
	}{
		// Both dial rules match an own-range number: the first one wins.
		{"own range to extension", dial, "+12065550147", "0147", true},
		{"NANP to 9+1", dial, "+14255550188", "914255550188", true},
		{"no rule matches", dial, "+442071234567", "+442071234567", false},
		{"anchored pattern does not match inside", dial, "x+12065550147", "x+12065550147", false},
		{"display extension as E.164", display, "0147", "+12065550147", true},
		{"display leaves long numbers alone", display, "914255550188", "914255550188", false},
		{"empty input", dial, "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.rules.Apply(tc.in)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.ok, ok)
		})
	}
}

func TestRuleSetApplyTemplates(t *testing.T) {
	tests := []struct {
		name string
		rule Rule
		in   string
		want string
	}{
		{"text around the match is kept", Rule{`555`, `XYZ`}, "15550100", "1XYZ0100"},
		{"only the leftmost match is replaced", Rule{`0`, `_`}, "1020", "1_20"},
		{"named group", Rule{`^\+1206555(?P<ext>\d{4})$`, `${ext}`}, "+12065550147", "0147"},
		{"braced number before a digit", Rule{`^(\d{4})$`, `${1}0`}, "2101", "21010"},
		{"literal dollar", Rule{`^(\d+)$`, `$$1`}, "42", "$1"},
		{"empty replacement strips", Rule{`^\+`, ``}, "+4420", "4420"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := CompileRules([]Rule{tc.rule})
			require.NoError(t, err)
			got, ok := rs.Apply(tc.in)
			assert.True(t, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestRuleSetNil(t *testing.T) {
	var rs *RuleSet
	got, ok := rs.Apply("+12065550147")
	assert.Equal(t, "+12065550147", got)
	assert.False(t, ok)
	assert.Zero(t, rs.Len())

	rs, err := CompileRules(nil)
	require.NoError(t, err)
	assert.Zero(t, rs.Len())
	_, ok = rs.Apply("2101")
	assert.False(t, ok)
}

func TestCompileRulesErrors(t *testing.T) {
	t.Run("bad pattern names the rule and the pattern", func(t *testing.T) {
		rs, err := CompileRules([]Rule{
			{Match: `^\+1(\d{10})$`, Replace: `91$1`},
			{Match: `^\+1(\d{10}$`, Replace: `$1`},
		})
		require.Error(t, err)
		assert.Nil(t, rs)
		msg := err.Error()
		assert.Contains(t, msg, "rule[1]")
		assert.Contains(t, msg, `^\+1(\d{10}$`)
		assert.Contains(t, msg, "missing closing )")
		assert.NotContains(t, msg, "rule[0]")
	})

	t.Run("every problem is reported", func(t *testing.T) {
		_, err := CompileRules([]Rule{
			{Match: `[`, Replace: ``},
			{Match: `^(\d{4})$`, Replace: `$1`},
			{Match: `(?P<x`, Replace: ``},
			{Match: ``, Replace: `x`},
			{Match: `^(\d{4})$`, Replace: `$1x`},
			{Match: `^(\d{4})$`, Replace: `$2`},
			{Match: `^(\d{4})$`, Replace: `${name}`},
		})
		require.Error(t, err)
		msg := err.Error()
		for _, want := range []string{
			"rule[0]: bad match pattern `[`",
			"rule[2]: bad match pattern `(?P<x`",
			"rule[3]: empty match pattern",
			`rule[4]: replace ` + "`$1x`" + ` for match`,
			`group "1x"`,
			"rule[5]:", "group $2, but the pattern has 1",
			"rule[6]:", `group "name"`,
		} {
			assert.Contains(t, msg, want)
		}
		assert.NotContains(t, msg, "rule[1]")
		assert.Len(t, strings.Split(msg, "\n"), 6, "one line per bad rule")
	})

	t.Run("templates Expand would copy literally are fine", func(t *testing.T) {
		for _, tmpl := range []string{`$`, `${`, `${1`, `$-`, `${}`, `a$$b`, `$0`, `${0}`} {
			_, err := CompileRules([]Rule{{Match: `^(\d)$`, Replace: tmpl}})
			assert.NoError(t, err, "template %q", tmpl)
		}
	})
}
