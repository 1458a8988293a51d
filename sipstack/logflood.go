package sipstack

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Junk on the wire must not become junk in the log: sipgo logs every
// message it cannot parse, at error level, with the whole message (up to
// 32 KB a datagram), so 15 MB of garbage from anyone made 15 MB of log.
// floodHandler sits between sipgo and our logger: such lines are counted
// per transport (cstagw_sip_parse_errors_total), a burst of them is logged
// at warn with a short excerpt, and past the burst one summary line per
// interval says how many were left out.

const (
	parseLogBurst    = 10
	parseLogInterval = 10 * time.Second
	parseExcerpt     = 200 // bytes of the message shown
)

// parseErrors counts unparseable messages per transport, process-wide
// (sipgo's logger is process-wide too).
var parseErrors struct {
	udp, tcp, tls, other atomic.Uint64
}

// ParseErrors returns the unparseable SIP messages seen, by transport.
func ParseErrors() map[string]uint64 {
	return map[string]uint64{
		"udp": parseErrors.udp.Load(), "tcp": parseErrors.tcp.Load(),
		"tls": parseErrors.tls.Load(), "other": parseErrors.other.Load(),
	}
}

func countParseError(transport string) {
	switch transport {
	case "udp":
		parseErrors.udp.Add(1)
	case "tcp":
		parseErrors.tcp.Add(1)
	case "tls":
		parseErrors.tls.Add(1)
	default:
		parseErrors.other.Add(1)
	}
}

// floodGate is the shared budget of parse-error lines.
type floodGate struct {
	mu         sync.Mutex
	windowEnd  time.Time
	logged     int
	suppressed uint64
	summary    *time.Timer
	emit       func(n uint64) // writes the summary line
}

// allow reports whether this line may be logged; the others are counted
// for the summary at the end of the interval.
func (g *floodGate) allow(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.After(g.windowEnd) {
		g.windowEnd = now.Add(parseLogInterval)
		g.logged = 0
	}
	if g.logged < parseLogBurst {
		g.logged++
		return true
	}
	g.suppressed++
	if g.summary == nil {
		g.summary = time.AfterFunc(time.Until(g.windowEnd), g.flush)
	}
	return false
}

func (g *floodGate) flush() {
	g.mu.Lock()
	n := g.suppressed
	g.suppressed = 0
	g.summary = nil
	g.mu.Unlock()
	if n > 0 && g.emit != nil {
		g.emit(n)
	}
}

type floodHandler struct {
	inner     slog.Handler
	transport string
	gate      *floodGate
}

func newFloodHandler(inner slog.Handler) slog.Handler {
	h := floodHandler{inner: inner, gate: &floodGate{}}
	h.gate.emit = func(n uint64) {
		r := slog.NewRecord(time.Now(), slog.LevelWarn, "unparseable SIP messages not logged one by one", 0)
		r.AddAttrs(slog.Uint64("count", n), slog.Duration("interval", parseLogInterval))
		_ = inner.Handle(context.Background(), r)
	}
	return h
}

func (h floodHandler) Enabled(ctx context.Context, l slog.Level) bool {
	// Parse errors are counted whatever the level.
	return l >= slog.LevelError || h.inner.Enabled(ctx, l)
}

func (h floodHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != "failed to parse" {
		if !h.inner.Enabled(ctx, r.Level) {
			return nil
		}
		return h.inner.Handle(ctx, r)
	}
	countParseError(h.transport)
	if !h.gate.allow(time.Now()) {
		return nil
	}
	out := slog.NewRecord(r.Time, slog.LevelWarn, "unparseable SIP message", r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "data" {
			a = slog.String("data", excerpt(a.Value.String()))
		}
		out.AddAttrs(a)
		return true
	})
	if !h.inner.Enabled(ctx, slog.LevelWarn) {
		return nil
	}
	return h.inner.Handle(ctx, out)
}

func (h floodHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := h
	for _, a := range attrs {
		if a.Key == "caller" {
			if t := transportOf(a.Value.String()); t != "" {
				n.transport = t
			}
		}
	}
	n.inner = h.inner.WithAttrs(attrs)
	return n
}

func (h floodHandler) WithGroup(name string) slog.Handler {
	n := h
	n.inner = h.inner.WithGroup(name)
	return n
}

// transportOf reads sipgo's "Transport<UDP>" caller names.
func transportOf(caller string) string {
	if !strings.HasPrefix(caller, "Transport<") {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(caller, "Transport<"), ">"))
}

// excerpt cuts a message to its first bytes, on a rune boundary.
func excerpt(s string) string {
	if len(s) <= parseExcerpt {
		return s
	}
	cut := parseExcerpt
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
