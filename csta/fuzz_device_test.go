package csta

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// devSeedFile lists device identifiers, valid and invalid, one per line. A
// line starting with '"' is a Go string literal (for inputs with control
// characters); any other line is taken as it is, white space included.
const devSeedFile = "testdata/devices.txt"

// devReadSeeds returns the identifiers listed in devSeedFile.
func devReadSeeds(tb testing.TB) []string {
	tb.Helper()
	f, err := os.Open(devSeedFile)
	if err != nil {
		tb.Fatalf("open seeds: %v", err)
	}
	defer f.Close()
	var seeds []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, `"`) {
			u, err := strconv.Unquote(line)
			if err != nil {
				tb.Fatalf("%s:%d: %v", devSeedFile, n, err)
			}
			line = u
		}
		seeds = append(seeds, line)
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("read seeds: %v", err)
	}
	return seeds
}

// devCheckRoundTrip checks that d, a successfully parsed identifier, renders
// to a string that parses back to the same identifier and renders the same
// again. tel and sip identifiers keep every field but Raw; bare and native
// ones become tel (with phone-context=dialstring when local) and keep
// everything else.
func devCheckRoundTrip(d DeviceID) error {
	s := d.String()
	d2, err := ParseDeviceID(s)
	if err != nil {
		return fmt.Errorf("String() = %q does not parse: %v", s, err)
	}
	if s2 := d2.String(); s2 != s {
		return fmt.Errorf("String() not stable: %q then %q", s, s2)
	}
	want := d
	want.Raw = s
	if want.Scheme == devSchemeBare || want.Scheme == devSchemeNative {
		want.Scheme = devSchemeTel
		if want.PhoneContext == "" && !want.IsE164() {
			want.PhoneContext = devDialString
		}
	}
	if !reflect.DeepEqual(d2, want) {
		return fmt.Errorf("re-parsed %q as %+v, want %+v", s, d2, want)
	}
	if d2.Key() != d.Key() || d2.IsDialString() != d.IsDialString() || d2.IsE164() != d.IsE164() {
		return fmt.Errorf("key or kind changed: %+v vs %+v", d2, d)
	}
	return nil
}

func FuzzParseDeviceID(f *testing.F) {
	for _, s := range devReadSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDeviceID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidDeviceID) {
				t.Fatalf("error %v does not wrap ErrInvalidDeviceID", err)
			}
			if len(err.Error()) > 512 {
				t.Fatalf("error message of %d bytes", len(err.Error()))
			}
			return
		}
		if d.Number == "" {
			t.Fatalf("parsed %q with an empty number", s)
		}
		if err := devCheckRoundTrip(d); err != nil {
			t.Fatalf("input %q: %v", s, err)
		}
	})
}
