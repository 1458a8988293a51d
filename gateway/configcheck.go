package gateway

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var durationType = reflect.TypeOf(time.Duration(0))

// checkYAML walks a parsed YAML document against the Config type and
// reports every unknown key and badly typed value with its key path, the
// value and what was expected, so `cstagw -check` says exactly what to fix.
func checkYAML(doc *yaml.Node) error {
	var errs []error
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		doc = doc.Content[0]
	}
	checkNode(doc, reflect.TypeOf(Config{}), "", &errs)
	return errors.Join(errs...)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func checkNode(n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	bad := func(format string, args ...any) {
		where := path
		if where == "" {
			where = "(top level)"
		}
		*errs = append(*errs, fmt.Errorf("%s (line %d): %s", where, n.Line, fmt.Sprintf(format, args...)))
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			bad("expected a duration such as 10s or 500ms")
			return
		}
		if _, err := time.ParseDuration(n.Value); err != nil {
			bad("%q is not a duration; expected a Go duration such as 10s, 500ms or 6m", n.Value)
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			bad("expected a mapping of keys (%s)", strings.Join(knownKeys(t), ", "))
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				*errs = append(*errs, fmt.Errorf("%s (line %d): unknown key; known keys here: %s",
					join(path, k.Value), k.Line, strings.Join(knownKeys(t), ", ")))
				continue
			}
			checkNode(v, f, join(path, k.Value), errs)
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			bad("expected a list")
			return
		}
		for i, c := range n.Content {
			checkNode(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case t.Kind() == reflect.Bool:
		if n.Kind != yaml.ScalarNode || (n.Value != "true" && n.Value != "false") {
			bad("%q: expected true or false", n.Value)
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		if n.Kind != yaml.ScalarNode {
			bad("expected a whole number")
		} else if _, err := strconv.ParseInt(n.Value, 0, 64); err != nil {
			bad("%q: expected a whole number", n.Value)
		}
	case t.Kind() == reflect.String:
		if n.Kind != yaml.ScalarNode {
			bad("expected a single value")
		}
	}
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func knownKeys(t reflect.Type) []string {
	var keys []string
	for k := range yamlFields(t) {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
