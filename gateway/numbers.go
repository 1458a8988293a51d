package gateway

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cstagw/cstagw/csta"
)

// numbering turns client numbers into PBX dial strings and PBX numbers into
// what clients are shown (docs/wire.md §1.8).
type numbering struct {
	dial    *csta.RuleSet
	display *csta.RuleSet

	// shown memoises show: the same few thousand PBX numbers recur in every
	// event for every session, and rendering one costs a device-id parse
	// and the display rules. Bounded: cleared when it grows too large.
	shown      sync.Map // PBX id → rendering
	shownCount atomic.Int32
}

const maxShown = 8192

func newNumbering(cfg NumberingConfig) (*numbering, error) {
	dial, err := csta.CompileRules(cfg.Dial)
	if err != nil {
		return nil, prefixErr("numbering.dial", err)
	}
	display, err := csta.CompileRules(cfg.Display)
	if err != nil {
		return nil, prefixErr("numbering.display", err)
	}
	return &numbering{dial: dial, display: display}, nil
}

// dialString returns the digits the PBX dials for a destination a client
// gave: dial strings and bare digits unchanged, an extension as the
// extension, E.164 through the dial rules.
func (n *numbering) dialString(s string) (string, error) {
	d, err := csta.ParseDeviceID(s)
	if err != nil {
		return "", err
	}
	if d.Ext != "" {
		return d.Ext, nil
	}
	if d.IsE164() {
		if out, ok := n.dial.Apply(d.Number); ok {
			return out, nil
		}
		return d.Number, nil
	}
	if d.Number == "" {
		return "", fmt.Errorf("%w: no number", csta.ErrInvalidDeviceID)
	}
	return d.Number, nil
}

// show renders a PBX device id or number for a client: through the display
// rules to tel:+E.164 when they match, else a tel: URI of the digits.
// PBX-native forms (OpenScape N<+1...>;noa=nk) are reduced to the number
// first. It returns "" for something that is not a number at all.
func (n *numbering) show(pbx string) string {
	if pbx == "" {
		return ""
	}
	if v, ok := n.shown.Load(pbx); ok {
		return v.(string)
	}
	r := n.render(pbx)
	if n.shownCount.Add(1) > maxShown {
		n.shown.Clear()
		n.shownCount.Store(0)
	}
	n.shown.Store(strings.Clone(pbx), r)
	return r
}

func (n *numbering) render(pbx string) string {
	num := pbx
	if d, err := csta.ParseDeviceID(pbx); err == nil {
		num = d.Number
	}
	if out, ok := n.display.Apply(num); ok {
		if strings.Contains(out, ":") {
			return out
		}
		num = out
	}
	return csta.TelURI(num)
}
