package csta

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseDeviceID(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   DeviceID // Raw is filled in from in, trimmed
		e164   bool
		dial   bool
		key    LineKey
		render string
	}{
		{
			name:   "E.164 line with extension",
			in:     "tel:+14255550100;ext=100",
			want:   DeviceID{Scheme: "tel", Number: "+14255550100", Ext: "100"},
			e164:   true,
			key:    LineKey{Number: "100"},
			render: "tel:+14255550100;ext=100",
		},
		{
			name:   "dial string",
			in:     "tel:2101;phone-context=dialstring",
			want:   DeviceID{Scheme: "tel", Number: "2101", PhoneContext: "dialstring"},
			dial:   true,
			key:    LineKey{Number: "2101"},
			render: "tel:2101;phone-context=dialstring",
		},
		{
			name:   "dial string with partition",
			in:     "tel:2101;phone-context=dialstring;partition=Internal_PT",
			want:   DeviceID{Scheme: "tel", Number: "2101", PhoneContext: "dialstring", Partition: "Internal_PT"},
			dial:   true,
			key:    LineKey{Number: "2101", Partition: "Internal_PT"},
			render: "tel:2101;phone-context=dialstring;partition=Internal_PT",
		},
		{
			name:   "dial string with device and partition",
			in:     "tel:2101;phone-context=dialstring;device=SEP0002FD3BB5C5;partition=P",
			want:   DeviceID{Scheme: "tel", Number: "2101", PhoneContext: "dialstring", Partition: "P", Device: "SEP0002FD3BB5C5"},
			dial:   true,
			key:    LineKey{Number: "2101", Partition: "P"},
			render: "tel:2101;phone-context=dialstring;partition=P;device=SEP0002FD3BB5C5",
		},
		{
			name:   "E.164 party",
			in:     "tel:+14255550188",
			want:   DeviceID{Scheme: "tel", Number: "+14255550188"},
			e164:   true,
			key:    LineKey{Number: "14255550188"},
			render: "tel:+14255550188",
		},
		{
			name:   "old sipe v: suffix",
			in:     "tel:5555551234v:41234",
			want:   DeviceID{Scheme: "tel", Number: "5555551234"},
			key:    LineKey{Number: "5555551234"},
			render: "tel:5555551234",
		},
		{
			name:   "E.164 alias with ext",
			in:     "tel:+14255552101;ext=2101",
			want:   DeviceID{Scheme: "tel", Number: "+14255552101", Ext: "2101"},
			e164:   true,
			key:    LineKey{Number: "2101"},
			render: "tel:+14255552101;ext=2101",
		},
		{
			name:   "visual separators in tel",
			in:     "tel:+1-425-555-0100",
			want:   DeviceID{Scheme: "tel", Number: "+14255550100"},
			e164:   true,
			key:    LineKey{Number: "14255550100"},
			render: "tel:+14255550100",
		},
		{
			name:   "upper-case scheme and parameter names",
			in:     "TEL:2101;PHONE-CONTEXT=DialString;PARTITION=Internal_PT",
			want:   DeviceID{Scheme: "tel", Number: "2101", PhoneContext: "DialString", Partition: "Internal_PT"},
			dial:   true,
			key:    LineKey{Number: "2101", Partition: "Internal_PT"},
			render: "tel:2101;phone-context=DialString;partition=Internal_PT",
		},
		{
			name:   "percent-encoding",
			in:     "tel:%2B14255550100;partition=Sales%20East",
			want:   DeviceID{Scheme: "tel", Number: "+14255550100", Partition: "Sales East"},
			e164:   true,
			key:    LineKey{Number: "14255550100", Partition: "Sales East"},
			render: "tel:+14255550100;partition=Sales%20East",
		},
		{
			name: "other parameters kept in order",
			in:   "tel:2101;isub=12;phone-context=+1425555;X",
			want: DeviceID{Scheme: "tel", Number: "2101", PhoneContext: "+1425555",
				Params: []Param{{Name: "isub", Value: "12"}, {Name: "x"}}},
			key:    LineKey{Number: "2101"},
			render: "tel:2101;phone-context=+1425555;isub=12;x",
		},
		{
			name: "sip with user=phone after the host",
			in:   "sip:2101@pbx.example.com;user=phone",
			want: DeviceID{Scheme: "sip", Number: "2101", Host: "pbx.example.com",
				Params: []Param{{Name: "user", Value: "phone"}}},
			key:    LineKey{Number: "2101"},
			render: "sip:2101@pbx.example.com;user=phone",
		},
		{
			name: "sip with parameters in the user part",
			in:   "sip:2101;user=phone;partition=P@pbx.example.com;transport=tcp",
			want: DeviceID{Scheme: "sip", Number: "2101", Host: "pbx.example.com", Partition: "P",
				Params: []Param{{Name: "user", Value: "phone"}, {Name: "transport", Value: "tcp"}}},
			key:    LineKey{Number: "2101", Partition: "P"},
			render: "sip:2101@pbx.example.com;partition=P;user=phone;transport=tcp",
		},
		{
			name: "sips with IPv6 host, port and headers",
			in:   "SIPS:+14255550100@[2001:db8::1]:5061;transport=tls?subject=x",
			want: DeviceID{Scheme: "sips", Number: "+14255550100", Host: "[2001:db8::1]:5061",
				Params: []Param{{Name: "transport", Value: "tls"}}},
			e164:   true,
			key:    LineKey{Number: "14255550100"},
			render: "sips:+14255550100@[2001:db8::1]:5061;transport=tls",
		},
		{
			name:   "sip without host",
			in:     "sip:2101",
			want:   DeviceID{Scheme: "sip", Number: "2101"},
			key:    LineKey{Number: "2101"},
			render: "sip:2101",
		},
		{
			name:   "bare digits",
			in:     "2101",
			want:   DeviceID{Number: "2101"},
			dial:   true,
			key:    LineKey{Number: "2101"},
			render: "tel:2101;phone-context=dialstring",
		},
		{
			name:   "bare with parameters",
			in:     "2101;partition=X",
			want:   DeviceID{Number: "2101", Partition: "X"},
			dial:   true,
			key:    LineKey{Number: "2101", Partition: "X"},
			render: "tel:2101;phone-context=dialstring;partition=X",
		},
		{
			name:   "bare formatted E.164 with surrounding space",
			in:     "  +1 (425) 555-0100 ",
			want:   DeviceID{Number: "+14255550100"},
			e164:   true,
			key:    LineKey{Number: "14255550100"},
			render: "tel:+14255550100",
		},
		{
			name:   "bare feature code",
			in:     "*21#",
			want:   DeviceID{Number: "*21#"},
			dial:   true,
			key:    LineKey{Number: "*21#"},
			render: "tel:*21#;phone-context=dialstring",
		},
		{
			name:   "bare v: suffix",
			in:     "5555551234v:41234",
			want:   DeviceID{Number: "5555551234"},
			dial:   true,
			key:    LineKey{Number: "5555551234"},
			render: "tel:5555551234;phone-context=dialstring",
		},
		{
			name: "OpenScape native",
			in:   "N<+12065550147>;displayNumber=2065550147;noa=nk",
			want: DeviceID{Scheme: "N", Number: "+12065550147",
				Params: []Param{{Name: "displaynumber", Value: "2065550147"}, {Name: "noa", Value: "nk"}}},
			e164:   true,
			key:    LineKey{Number: "12065550147"},
			render: "tel:+12065550147;displaynumber=2065550147;noa=nk",
		},
		{
			name:   "OpenScape native, local",
			in:     "N<2101>",
			want:   DeviceID{Scheme: "N", Number: "2101"},
			dial:   true,
			key:    LineKey{Number: "2101"},
			render: "tel:2101;phone-context=dialstring",
		},
		{
			name:   "Avaya DMCC",
			in:     "2101:CM1:10.0.0.1:0",
			want:   DeviceID{Number: "2101"},
			dial:   true,
			key:    LineKey{Number: "2101"},
			render: "tel:2101;phone-context=dialstring",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDeviceID(tc.in)
			require.NoError(t, err)
			want := tc.want
			want.Raw = strings.TrimSpace(tc.in)
			assert.Equal(t, want, d)
			assert.Equal(t, tc.e164, d.IsE164(), "IsE164")
			assert.Equal(t, tc.dial, d.IsDialString(), "IsDialString")
			assert.Equal(t, tc.key, d.Key(), "Key")
			assert.Equal(t, tc.render, d.String(), "String")
			assert.NoError(t, devCheckRoundTrip(d), "round trip")
		})
	}
}

func TestParseDeviceIDInvalid(t *testing.T) {
	tests := []struct {
		in   string
		want string // part of the error text
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"tel:", "empty number"},
		{"tel:abc", "invalid character 'a' in number"},
		{"tel:+", "empty number"},
		{"tel:+1+2", "'+' inside number"},
		{"tel:2101:5", "invalid character ':'"},
		{"tel:+1425\u00a05550100", "invalid character '\\u00a0'"},
		{"tel:%2", "bad percent-encoding"},
		{"tel:2101;ext=1;ext=2", "duplicate parameter ext"},
		{"tel:2101;=x", "has no name"},
		{"tel:2101;a b=x", "invalid character ' ' in parameter name"},
		{"tel:2101;partition=%zz", "bad percent-encoding in parameter partition"},
		{"tel:2101;partition=", "parameter partition needs a value"},
		{"tel:2101;partition=a%00b", "control character in parameter partition"},
		{"tel:2101;ext=abc", "parameter ext: invalid character"},
		{"sip:@host", "empty user part"},
		{"sip:2101@", "empty host"},
		{"sip:2101@host<x>", "invalid character '<' in host"},
		{"sip:alice@example.com", "invalid character 'a' in number"},
		{"N<2101", "missing '>'"},
		{"N<2101>x", "after N<number>"},
		{"N<>", "empty number"},
		{"v:123", "empty number"},
		{"tel:2101\x00", "control character"},
		{"tel:21\t01", "control character '\\t' at offset 6"},
		{"tel:" + strings.Repeat("1", 300), "longer than 256 bytes"},
		{"tel:1;x=" + strings.Repeat("a b ", 60) + "c", "canonical form of 489 bytes is longer than 256"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			d, err := ParseDeviceID(tc.in)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalidDeviceID)
			assert.Contains(t, err.Error(), tc.want)
			assert.Zero(t, d)
			// The input is quoted, truncated to keep messages short.
			assert.Less(t, len(err.Error()), 200)
			if len(tc.in) <= devQuoteMax {
				assert.Contains(t, err.Error(), strconv.Quote(tc.in))
			} else {
				assert.Contains(t, err.Error(), `..."`)
			}
		})
	}
}

func TestDeviceIDString(t *testing.T) {
	assert.Equal(t, "", DeviceID{}.String())
	// Values needing escapes are percent-encoded; '#' is escaped in SIP.
	d := DeviceID{Scheme: "sip", Number: "*21#", Host: "h", Partition: "a;b=c",
		Params: []Param{{Name: "x", Value: "ü @"}}}
	s := d.String()
	assert.Equal(t, "sip:*21%23@h;partition=a%3Bb%3Dc;x=%C3%BC%20%40", s)
	d2, err := ParseDeviceID(s)
	require.NoError(t, err)
	assert.Equal(t, d.Number, d2.Number)
	assert.Equal(t, d.Partition, d2.Partition)
	assert.Equal(t, d.Params, d2.Params)
}

func TestLineKeyMatches(t *testing.T) {
	key := func(s string) LineKey {
		t.Helper()
		d, err := ParseDeviceID(s)
		require.NoError(t, err)
		return d.Key()
	}
	// docs/wire.md §1.8: these can all be the same line.
	same := []string{
		"tel:2101;phone-context=dialstring",
		"tel:2101;phone-context=dialstring;partition=Internal_PT",
		"tel:+14255552101;ext=2101",
		"tel:2101;phone-context=dialstring;device=SEP0002FD3BB5C5;partition=internal_pt",
		"2101",
		"sip:2101@pbx.example.com;user=phone",
		"2101:CM1:10.0.0.1:0",
	}
	for _, a := range same {
		for _, b := range same {
			assert.True(t, key(a).Matches(key(b)), "%s ~ %s", a, b)
		}
	}

	tests := []struct {
		a, b string
		want bool
	}{
		{"tel:2101;partition=A", "tel:2101;partition=B", false},
		{"tel:2101;partition=Internal_PT", "TEL:2101;PARTITION=INTERNAL_PT", true},
		{"tel:2101", "tel:2102", false},
		{"tel:+14255552101", "tel:2101;phone-context=dialstring", false},
		{"tel:+14255552101", "14255552101", true},
		{"tel:+14255552101;ext=2101;partition=A", "tel:2101;partition=B", false},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, key(tc.a).Matches(key(tc.b)), "%s ~ %s", tc.a, tc.b)
		assert.Equal(t, tc.want, key(tc.b).Matches(key(tc.a)), "%s ~ %s", tc.b, tc.a)
	}
	assert.False(t, LineKey{}.Matches(LineKey{}), "empty keys match nothing")
}

func TestLineKeyString(t *testing.T) {
	assert.Equal(t, "2101", LineKey{Number: "2101"}.String())
	assert.Equal(t, "2101;partition=Internal_PT", LineKey{Number: "2101", Partition: "Internal_PT"}.String())
}

func TestTelURI(t *testing.T) {
	tests := []struct{ in, want string }{
		{"+14255550188", "tel:+14255550188"},
		{"+1 (425) 555-0188", "tel:+14255550188"},
		{"2101", "tel:2101;phone-context=dialstring"},
		{"914255550188", "tel:914255550188;phone-context=dialstring"},
		{"5555551234v:41234", "tel:5555551234;phone-context=dialstring"},
		{"", ""},
		{"anonymous", ""},
		{"+", ""},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, TelURI(tc.in), "TelURI(%q)", tc.in)
		if tc.want != "" {
			d, err := ParseDeviceID(TelURI(tc.in))
			require.NoError(t, err)
			assert.Equal(t, tc.want, d.String())
		}
	}
}

// TestDeviceSeedsRoundTrip runs the round-trip property over the seed file,
// so that `go test` alone checks it for every listed form.
func TestDeviceSeedsRoundTrip(t *testing.T) {
	valid := 0
	for _, s := range devReadSeeds(t) {
		d, err := ParseDeviceID(s)
		if err != nil {
			assert.ErrorIs(t, err, ErrInvalidDeviceID)
			continue
		}
		valid++
		assert.NoError(t, devCheckRoundTrip(d), "%q", s)
	}
	assert.Greater(t, valid, 15)
}

func BenchmarkParseDeviceID(b *testing.B) {
	inputs := []string{
		"tel:+14255550100;ext=100",
		"tel:2101;phone-context=dialstring;partition=Internal_PT",
		"sip:2101@pbx.example.com;user=phone",
		"N<+12065550147>;displayNumber=2065550147;noa=nk",
		"+1 (425) 555-0100",
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := ParseDeviceID(inputs[i%len(inputs)]); err != nil {
			b.Fatal(err)
		}
	}
}
