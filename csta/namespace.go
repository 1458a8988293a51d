package csta

import "strings"

// Namespaces seen on the wire. Northbound the gateway always emits NSEd3;
// southbound it emits what the application session negotiated.
const (
	NSEd2 = "http://www.ecma.ch/standards/ecma-323/csta/ed2"
	NSEd3 = "http://www.ecma-international.org/standards/ecma-323/csta/ed3"
	NSEd4 = "http://www.ecma-international.org/standards/ecma-323/csta/ed4"
	NSEd5 = "http://www.ecma-international.org/standards/ecma-323/csta/ed5"
	NSEd6 = "http://www.ecma-international.org/standards/ecma-323/csta/ed6"

	// NSAppSession is the ECMA-354 application session namespace.
	NSAppSession = "http://www.ecma-international.org/standards/ecma-354/appl_session"
	// NSLcs is Microsoft's RCC private data namespace (lcs:line).
	NSLcs = "http://schemas.microsoft.com/Lcs/2005/04/RCCExtension"

	// Vendor login namespaces for applicationSpecificInfo.
	NSAvaya     = "http://www.avaya.com/csta"
	NSEltex     = "http://www.eltex.org/csta"
	NSOpenScape = "http://www.siemens.com/schema/csta"
)

// Edition returns the ECMA-323 edition a namespace names (2 to 6), or 0 when
// it is not a CSTA namespace we recognise. It accepts the ecma.ch and
// ecma-international.org hosts, the misspelt "ecmainternational", http or
// https, and vendor suffixes such as ".../ed3/priv7".
func Edition(ns string) int {
	s := strings.ToLower(strings.TrimSpace(ns))
	s = strings.TrimPrefix(s, "http://")
	s = strings.TrimPrefix(s, "https://")
	s = strings.TrimPrefix(s, "www.")
	switch {
	case strings.HasPrefix(s, "ecma-international.org/"):
		s = s[len("ecma-international.org/"):]
	case strings.HasPrefix(s, "ecmainternational.org/"):
		s = s[len("ecmainternational.org/"):]
	case strings.HasPrefix(s, "ecma.ch/"):
		s = s[len("ecma.ch/"):]
	default:
		return 0
	}
	if !strings.HasPrefix(s, "standards/ecma-323/csta/ed") {
		return 0
	}
	s = s[len("standards/ecma-323/csta/ed"):]
	if s == "" || s[0] < '2' || s[0] > '6' {
		return 0
	}
	if len(s) > 1 && s[1] != '/' {
		return 0
	}
	return int(s[0] - '0')
}

// IsCSTANamespace reports whether ns is an ECMA-323 namespace of any edition.
func IsCSTANamespace(ns string) bool { return Edition(ns) != 0 }

// EditionNamespace returns the canonical namespace of an edition (ed3 for
// anything unknown).
func EditionNamespace(ed int) string {
	switch ed {
	case 2:
		return NSEd2
	case 4:
		return NSEd4
	case 5:
		return NSEd5
	case 6:
		return NSEd6
	}
	return NSEd3
}
