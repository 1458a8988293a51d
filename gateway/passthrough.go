package gateway

import (
	"strings"

	"github.com/cstagw/cstagw/csta"
)

// passThrough sends a client an event the codec does not model, as the
// switch wrote it but for what the client needs changed (csta.RewriteEvent):
// its own monitorCrossRefID, device identifiers rendered as in modelled
// events (showDevice; a device wrapper the client cannot be shown becomes
// <notKnown/>), and the ed3 namespace every other body it gets is in. It
// travels the session's inbox like any event, so it keeps its place among
// the monitor's other events.
func (s *Session) passThrough(m *monitorRef, ev *csta.Message) {
	body, err := csta.RewriteEvent(ev.Raw, csta.EventRewrite{
		CrossRefID: m.xref,
		Namespace:  csta.NSEd3,
		Device: func(pbx string, wrapped bool) string {
			r := s.showDevice(pbx, m)
			if wrapped && strings.ContainsAny(r, "<>") {
				return "" // <notKnown/>, as translateEvent does
			}
			return r
		},
		// The link already read the document under its own limits; only
		// its size bounds this second reading.
		Limits: csta.Limits{MaxBytes: len(ev.Raw), MaxElements: len(ev.Raw)},
	})
	if err != nil {
		s.log.Warn().Err(err).Str("event", ev.Name).Msg("unmodelled event could not be passed on: dropped")
		return
	}
	s.log.Debug().Str("event", ev.Name).Str("xref", m.xref).Int("bytes", len(body)).Msg("unmodelled event passed through")
	s.sendBody(body, ev.Name)
	s.g.metrics.passedThrough.With(ev.Name).Inc()
	s.g.metrics.eventsOut.Inc()
	since(s.g.metrics.eventLatency, ev.Received)
}
