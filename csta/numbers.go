package csta

// Number rewriting rules: the engine behind the numbering.dial (E.164 → what
// the PBX dials) and numbering.display (PBX number → what clients see)
// configuration lists (docs/wire.md §1.8).

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Rule rewrites a number: Match is a regular expression (RE2 syntax), Replace
// a template in regexp.Expand syntax ($1, ${1}, ${name}; $$ for a literal $).
type Rule struct {
	Match   string `yaml:"match" json:"match"`
	Replace string `yaml:"replace" json:"replace"`
}

// RuleSet is an ordered, compiled list of rules. It is immutable once built
// and safe for concurrent use. A nil *RuleSet has no rules.
type RuleSet struct {
	rules []numRule
}

// numRule is one compiled rule.
type numRule struct {
	re      *regexp.Regexp
	replace string
}

// CompileRules compiles rules in order. Every problem is reported, not just
// the first: an empty or invalid pattern, and a template that refers to a
// group the pattern does not define (such as "$1x", which Expand reads as a
// group named "1x"; write "${1}x"). Each message names the rule as "rule[i]"
// (0-based) and quotes the offending text (in backquotes, so that
// backslashes read as written); the messages are joined with errors.Join.
func CompileRules(rules []Rule) (*RuleSet, error) {
	rs := &RuleSet{rules: make([]numRule, 0, len(rules))}
	var errs []error
	for i, r := range rules {
		if r.Match == "" {
			errs = append(errs, fmt.Errorf("rule[%d]: empty match pattern", i))
			continue
		}
		re, err := regexp.Compile(r.Match)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule[%d]: bad match pattern %s: %w", i, numQuote(r.Match), err))
			continue
		}
		if err := numCheckTemplate(re, r.Replace); err != nil {
			errs = append(errs, fmt.Errorf("rule[%d]: replace %s for match %s: %w", i, numQuote(r.Replace), numQuote(r.Match), err))
			continue
		}
		rs.rules = append(rs.rules, numRule{re: re, replace: r.Replace})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rs, nil
}

// Apply rewrites s with the first rule whose pattern matches it: the leftmost
// match is replaced by the expanded template and the text around the match is
// kept. It reports whether a rule matched; when none does (or r is nil) it
// returns s unchanged and false.
func (r *RuleSet) Apply(s string) (string, bool) {
	if r == nil {
		return s, false
	}
	for _, rule := range r.rules {
		loc := rule.re.FindStringSubmatchIndex(s)
		if loc == nil {
			continue
		}
		out := make([]byte, 0, len(s)+len(rule.replace))
		out = append(out, s[:loc[0]]...)
		out = rule.re.ExpandString(out, rule.replace, s, loc)
		out = append(out, s[loc[1]:]...)
		return string(out), true
	}
	return s, false
}

// Len returns the number of rules.
func (r *RuleSet) Len() int {
	if r == nil {
		return 0
	}
	return len(r.rules)
}

// numQuote quotes a pattern or template for an error message, in backquotes
// when it can so that backslashes read as the operator wrote them.
func numQuote(s string) string {
	if strconv.CanBackquote(s) {
		return "`" + s + "`"
	}
	return strconv.Quote(s)
}

// numCheckTemplate reports a reference in tmpl to a group that re does not
// have. It follows the reference syntax regexp.Expand documents: "$$" is a
// literal '$'; "$name" takes the longest run of letters, digits and '_';
// "${name}" is braced; a name of ASCII digits without a leading zero is a
// group number, any other name a named group; a '$' not followed by a valid
// reference is copied literally and is not an error.
func numCheckTemplate(re *regexp.Regexp, tmpl string) error {
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] != '$' {
			continue
		}
		rest := tmpl[i+1:]
		if strings.HasPrefix(rest, "$") {
			i++ // "$$"
			continue
		}
		braced := strings.HasPrefix(rest, "{")
		if braced {
			rest = rest[1:]
		}
		n := numNameLen(rest)
		if n == 0 || braced && (n == len(rest) || rest[n] != '}') {
			continue // not a reference: Expand copies the '$' literally
		}
		name := rest[:n]
		if num, ok := numGroupNumber(name); ok {
			if num > re.NumSubexp() {
				return fmt.Errorf("template refers to group $%s, but the pattern has %d", name, re.NumSubexp())
			}
			continue
		}
		if re.SubexpIndex(name) < 0 {
			hint := ""
			if name[0] >= '0' && name[0] <= '9' {
				hint = " (to follow a group number with text, write ${1}x, not $1x)"
			}
			return fmt.Errorf("template refers to group %q, which the pattern does not define%s", name, hint)
		}
	}
	return nil
}

// numNameLen returns the length in bytes of the run of letters, digits and
// '_' at the start of s.
func numNameLen(s string) int {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r != '_' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			break
		}
		i += size
	}
	return i
}

// numGroupNumber reports whether name denotes a group by number (ASCII
// digits, no leading zero) and which one. Numbers too large to be a group
// report a value larger than any group count.
func numGroupNumber(name string) (int, bool) {
	if len(name) > 1 && name[0] == '0' {
		return 0, false
	}
	n := 0
	for i := 0; i < len(name); i++ {
		if name[i] < '0' || name[i] > '9' {
			return 0, false
		}
		if n < 1e8 {
			n = n*10 + int(name[i]-'0')
		}
	}
	return n, true
}
