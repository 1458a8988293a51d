package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cstagw/cstagw/csta"
	"github.com/cstagw/cstagw/ctipool"
	"github.com/cstagw/cstagw/sipstack"
)

// handle answers one in-dialog request (INFO, re-INVITE, UPDATE), holding
// the session's run token. Replays to send once the response is out go to
// replay.
func (s *Session) handle(hctx context.Context, req *sipstack.Request, replay *[]*replayed) sipstack.Reply {
	st := s.State()
	if st != StateStale && s.gen != 0 && s.link.Generation() != s.gen {
		// The link came back under a new generation before we were told.
		if s.g.conf().CTI.Resume() {
			st = s.fire(evResume)
			s.g.markResume(s.link)
		} else {
			st = s.fire(evNewGen)
		}
	}
	if st == StateStale {
		s.g.metrics.stale481.Inc()
		s.log.Info().Str("method", req.Method).Msg("stale session (link reconnected): 481, client must re-INVITE")
		return sipstack.Reply{Status: 481, End: true}
	}
	if len(req.Body) == 0 {
		// A bodiless UPDATE or re-INVITE: a plain refresh.
		return sipstack.Reply{Status: 200}
	}
	// The client's request lives only as long as this call: nothing below
	// keeps a pointer into it (fields are copied by value), so it is
	// recycled.
	m := msgPool.Get().(*csta.Message)
	defer releaseMsg(m)
	if err := csta.DecodeInto(m, req.Body, s.g.csLimits()); err != nil {
		return s.g.badBody(req, err)
	}
	if req.Method != "INFO" && m.Kind != csta.KindRequestSystemStatus {
		// A re-INVITE/UPDATE refresh carrying something else: answer the
		// refresh, ignore the body.
		return sipstack.Reply{Status: 200}
	}
	if m.IsReply() || m.Class() == csta.ClassEvent {
		// The client answering one of ours (a SystemStatusResponse...).
		return sipstack.Reply{Status: 200}
	}
	ctx, cancel := context.WithTimeout(hctx, s.g.conf().CTI.RequestTimeout+s.g.conf().CTI.RequestTimeout/2)
	defer cancel()
	resp, err := s.serve(ctx, m, replay)
	if err != nil && hctx.Err() != nil {
		// sip.handler_timeout passed while the PBX had not answered: the
		// client is told to retry, as when its request waited in line.
		return sipstack.Reply{Status: 503, RetryAfter: time.Second}
	}
	service := m.Name
	if m.Kind == csta.KindUnknown {
		service = "unknown"
	}
	result := "ok"
	var code csta.ErrorCode
	if err != nil {
		var ok bool
		code, ok = csta.CodeOf(err)
		if !ok {
			code = csta.CodeGeneric
		}
		result = code.String()
		s.g.metrics.requests.With(service, "csta_error").Inc()
		since(s.g.metrics.requestTime.With(service, "csta_error"), req.Received)
		resp = csta.ErrorMessage(code)
	} else {
		s.g.metrics.requests.With(service, "ok").Inc()
		since(s.g.metrics.requestTime.With(service, "ok"), req.Received)
	}
	// One audit line per control action: who, which line, what, result.
	// A query that succeeded changes nothing and goes at debug level: at
	// thousands a second, a log write each is a tenth of a request's cost.
	// So does a request refused because the CTI link is down (the link's
	// loss is logged once; with 10,000 sessions waiting, a line each made
	// the outage a log storm and slowed every refusal).
	ev := s.log.Info()
	if err == nil && isQuery(m) || code == csta.CodeResourceOutOfService {
		ev = s.log.Debug()
	}
	if ev.Enabled() {
		ev = ev.Bool("audit", true).Str("user", s.user).Str("line", s.line.URI).Str("link", s.link.Name()).Str("service", service).Str("result", result)
		if t := auditTarget(m); t != "" {
			ev = ev.Str("target", t)
		}
		if err != nil {
			ev = ev.AnErr("error", err)
		}
		ev.Msg("control action")
	}
	body, eerr := csta.Encode(resp, csta.NSEd3)
	if eerr != nil {
		s.log.Error().Err(eerr).Msg("cannot encode response")
		return sipstack.Reply{Status: 500}
	}
	return sipstack.Reply{Status: 200, Body: body}
}

// badBody maps an undecodable CSTA body to 400 or 413, logged once.
func (g *Gateway) badBody(req *sipstack.Request, err error) sipstack.Reply {
	status := 400
	var xe *csta.XMLError
	if errors.As(err, &xe) && xe.TooLarge() {
		status = 413
	}
	g.metrics.badRequests.With(fmt.Sprint(status)).Inc()
	g.log.Info().Str("call_id", req.CallID).Str("method", req.Method).Int("status", status).Err(err).Msg("CSTA body refused")
	return sipstack.Reply{Status: status}
}

// errLinkDown answers a PBX-bound request while the link is down.
var errLinkDown = csta.NewError(csta.CodeResourceOutOfService, "CTI link down")

// serve runs one CSTA request and returns the response to send.
func (s *Session) serve(ctx context.Context, m *csta.Message, replay *[]*replayed) (*csta.Message, error) {
	switch m.Kind {
	case csta.KindRequestSystemStatus:
		status := "normal"
		if s.State() != StateActive || !s.link.Up() {
			status = "disabled"
		}
		return &csta.Message{Kind: csta.KindRequestSystemStatusResponse, SystemStatus: status}, nil
	case csta.KindGetCSTAFeatures:
		return featuresResponse, nil
	case csta.KindMonitorStop:
		return s.monitorStop(m)
	case csta.KindUnknown:
		return nil, csta.NewError(csta.CodeServiceNotSupported, "%s", m.Name)
	}
	if m.Kind.Class() != csta.ClassRequest || !supported[m.Kind] {
		return nil, csta.NewError(csta.CodeServiceNotSupported, "%s", m.Name)
	}
	// Everything below needs the PBX.
	if s.State() != StateActive || !s.link.Up() {
		return nil, errLinkDown
	}
	if m.Kind == csta.KindMonitorStart {
		return s.monitorStart(ctx, m, replay)
	}
	south, err := s.toSouth(m)
	if err != nil {
		return nil, err
	}
	sent := time.Now().UnixNano()
	resp, err := s.link.DoGen(ctx, s.gen, south)
	since(s.g.metrics.ctiTime.With(s.link.Name()), sent)
	releaseMsg(south)
	if err != nil {
		if errors.Is(err, ctipool.ErrStaleGeneration) {
			s.staleGeneration()
		}
		return nil, err
	}
	return s.toNorth(m, resp), nil
}

// supported lists the PBX-bound services the gateway translates.
var supported = map[csta.Kind]bool{
	csta.KindMonitorStart: true, csta.KindSnapshotDevice: true,
	csta.KindMakeCall: true, csta.KindClearConnection: true, csta.KindClearCall: true,
	csta.KindAnswerCall: true, csta.KindHoldCall: true, csta.KindRetrieveCall: true,
	csta.KindAlternateCall: true, csta.KindReconnectCall: true, csta.KindConsultationCall: true,
	csta.KindTransferCall: true, csta.KindSingleStepTransferCall: true, csta.KindConferenceCall: true,
	csta.KindDeflectCall: true, csta.KindGenerateDigits: true,
	csta.KindSetForwarding: true, csta.KindGetForwarding: true,
	csta.KindSetDoNotDisturb: true, csta.KindGetDoNotDisturb: true,
}

// lineFor authorises a device string of this session's user.
func (s *Session) lineFor(device string, code csta.ErrorCode) (*Line, error) {
	l, err := findLine(s.lines, device)
	if err != nil {
		s.g.metrics.refusals.With("line").Inc()
		s.log.Warn().Str("device", trunc(device)).Err(err).Msg("request for a line the user does not have")
		return nil, csta.NewError(code, "%v", err)
	}
	return l, nil
}

// resolveConn maps a client ConnectionID to the PBX's: callID first, the
// device is the line's own connection in that call (docs/wire.md §1.5.1).
//
// A call table that knows the call decides. Failing that, the line the
// client named (one of the user's) is trusted unless its table was seeded
// by a snapshot and so knows the call is not there; then a monitored line
// whose table cannot be sure; with no monitor at all, the sign-in line.
// Anything else is refused: the call is not the user's.
func (s *Session) resolveConn(c csta.ConnectionID) (csta.ConnectionID, error) {
	if c.CallID == "" {
		return c, csta.NewError(csta.CodeInvalidCallID, "connection without callID")
	}
	mons := s.liveMonitors()
	on := func(l *Line) (csta.ConnectionID, error) {
		return csta.ConnectionID{CallID: c.CallID, DeviceID: l.Device}, nil
	}
	sure := map[*Line]bool{} // lines whose table rules the call out
	var unsure *Line         // first monitored line whose table cannot tell
	for _, m := range mons {
		known, authoritative := m.w.hasCall(c.CallID)
		if known {
			return on(m.line)
		}
		if authoritative {
			sure[m.line] = true
		} else if unsure == nil {
			unsure = m.line
		}
	}
	if c.DeviceID != "" {
		if l, err := findLine(s.lines, c.DeviceID); err == nil && !sure[l] {
			return on(l)
		}
	}
	if unsure != nil {
		return on(unsure)
	}
	if len(mons) == 0 {
		return on(s.line)
	}
	s.g.metrics.refusals.With("call").Inc()
	return c, csta.NewError(csta.CodeInvalidConnectionID, "call %s is not a call of the user's lines", trunc(c.CallID))
}

// liveMonitors returns the session's monitors that have a device watch
// and still get events.
func (s *Session) liveMonitors() []*monitorRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	mons := make([]*monitorRef, 0, len(s.monitors))
	for _, m := range s.monitors {
		if m.w != nil && !m.dead {
			mons = append(mons, m)
		}
	}
	return mons
}

// dial translates a destination, with the error the service calls for.
func (s *Session) dial(d csta.Device, code csta.ErrorCode) (csta.Device, error) {
	digits, err := s.g.numbers().dialString(d.ID)
	if err != nil {
		return d, csta.NewError(code, "%v", err)
	}
	return csta.Dev(digits), nil
}

// msgPool recycles the 900-byte messages a request needs for its own
// lifetime (each was a sixteenth of the gateway's allocation): the
// client's decoded request (handle) and the PBX request toSouth builds
// (ctipool encodes it onto the wire before DoGen returns and keeps nothing
// of it).
var msgPool = sync.Pool{New: func() any { return new(csta.Message) }}

func releaseMsg(m *csta.Message) {
	*m = csta.Message{}
	msgPool.Put(m)
}

// toSouth builds the PBX request for a client request, checking authority
// on every device-valued field. The caller gives it back with releaseMsg
// once sent.
func (s *Session) toSouth(m *csta.Message) (*csta.Message, error) {
	out := msgPool.Get().(*csta.Message)
	out.Kind = m.Kind
	var err error
	// Each step runs only while the previous ones succeeded.
	conn := func(c csta.ConnectionID) csta.ConnectionID {
		if err == nil {
			c, err = s.resolveConn(c)
		}
		return c
	}
	dial := func(d csta.Device, code csta.ErrorCode) csta.Device {
		if err == nil {
			d, err = s.dial(d, code)
		}
		return d
	}
	device := func(d csta.Device, code csta.ErrorCode) csta.Device {
		if err == nil {
			var l *Line
			if l, err = s.lineFor(d.ID, code); err == nil {
				return csta.Dev(l.Device)
			}
		}
		return d
	}
	switch m.Kind {
	case csta.KindMakeCall:
		out.CallingDevice = device(m.CallingDevice, csta.CodePrivilegeViolationCalling)
		out.Destination = dial(m.Destination, csta.CodeInvalidDestination)
		out.AutoOriginate = m.AutoOriginate
		out.AccountCode = m.AccountCode
	case csta.KindClearConnection, csta.KindClearCall, csta.KindAnswerCall, csta.KindHoldCall, csta.KindRetrieveCall:
		out.Connection = conn(m.Connection)
	case csta.KindGenerateDigits:
		out.Connection = conn(m.Connection)
		out.DigitMode, out.CharactersToSend = m.DigitMode, m.CharactersToSend
	case csta.KindDeflectCall, csta.KindConsultationCall:
		out.Connection = conn(m.Connection)
		out.Destination = dial(m.Destination, csta.CodeInvalidDestination)
	case csta.KindAlternateCall, csta.KindReconnectCall, csta.KindTransferCall, csta.KindConferenceCall:
		out.HeldCall = conn(m.HeldCall)
		out.ActiveCall = conn(m.ActiveCall)
	case csta.KindSingleStepTransferCall:
		out.ActiveCall = conn(m.ActiveCall)
		out.Destination = dial(m.Destination, csta.CodeInvalidDestination)
	case csta.KindSetForwarding:
		out.Device = device(m.Device, csta.CodePrivilegeViolationDevice)
		out.ForwardingType, out.ActivateForward, out.RingCount = m.ForwardingType, m.ActivateForward, m.RingCount
		if m.Destination.ID != "" {
			out.Destination = dial(m.Destination, csta.CodeInvalidForwardingDestination)
		}
	case csta.KindGetForwarding, csta.KindSetDoNotDisturb, csta.KindGetDoNotDisturb, csta.KindSnapshotDevice:
		out.Device = device(m.Device, csta.CodePrivilegeViolationDevice)
		out.DoNotDisturbOn = m.DoNotDisturbOn
	default:
		err = csta.NewError(csta.CodeServiceNotSupported, "%s", m.Name)
	}
	if err != nil {
		releaseMsg(out)
		return nil, err
	}
	return out, nil
}

// toNorth translates a PBX response for the client, in place: the response
// is this request's alone (a copy of the 900-byte message per request was
// a sixteenth of the gateway's allocation).
func (s *Session) toNorth(req, resp *csta.Message) *csta.Message {
	out := resp
	out.Namespace = ""
	if req.Kind == csta.KindMakeCall {
		// sipe keeps the callID only if deviceID is string-equal to the
		// line it sent: echo it byte for byte.
		out.Connection.DeviceID = req.CallingDevice.ID
		return out
	}
	show := func(pbx string) string { return s.showDevice(pbx, nil) }
	if out.Connection.DeviceID != "" {
		out.Connection.DeviceID = show(out.Connection.DeviceID)
	}
	if len(out.Connections) > 0 {
		out.Connections = translateList(out.Connections, show)
	}
	for i := range out.ForwardingList {
		if out.ForwardingList[i].ForwardDN != "" {
			out.ForwardingList[i].ForwardDN = show(out.ForwardingList[i].ForwardDN)
		}
	}
	for i := range out.Snapshot {
		sn := &out.Snapshot[i]
		sn.Connection.DeviceID = show(sn.Connection.DeviceID)
		if sn.Endpoint != "" {
			sn.Endpoint = show(sn.Endpoint)
		}
	}
	return out
}

func translateList(in []csta.ConnectionListItem, show func(string) string) []csta.ConnectionListItem {
	out := make([]csta.ConnectionListItem, len(in))
	for i, it := range in {
		if it.NewConnection.DeviceID != "" {
			it.NewConnection.DeviceID = show(it.NewConnection.DeviceID)
		}
		if it.OldConnection.DeviceID != "" {
			it.OldConnection.DeviceID = show(it.OldConnection.DeviceID)
		}
		if it.Endpoint != "" {
			it.Endpoint = show(it.Endpoint)
		}
		out[i] = it
	}
	return out
}

// showDevice renders a PBX device id for this client: one of its own lines
// as it spells it (the spelling of the monitor an event came through, else
// of the sign-in, else as provisioned), anything else through the display
// rules.
func (s *Session) showDevice(pbx string, mon *monitorRef) string {
	if mon != nil && pbx == mon.line.Device {
		return mon.lineText
	}
	for _, l := range s.lines {
		if pbx == l.Device {
			if l == s.line {
				return s.lineText
			}
			return l.URI
		}
	}
	if r := s.g.numbers().show(pbx); r != "" {
		return r
	}
	return pbx
}

// translateEvent turns a southbound event into the client's: its own
// monitorCrossRefID, its line as it spells it, other parties as tel: URIs.
func (s *Session) translateEvent(m *monitorRef, ev *csta.Message) *csta.Message {
	out := msgPool.Get().(*csta.Message) // the caller releases it once sent
	*out = *ev
	out.Namespace = ""
	out.MonitorCrossRefID = m.xref
	show := func(pbx string) string { return s.showDevice(pbx, m) }
	for _, c := range out.ConnectionFields() {
		if c.DeviceID != "" {
			c.DeviceID = show(c.DeviceID)
		}
	}
	for _, d := range out.DeviceFields() {
		if d.Known() {
			if r := show(d.ID); r != "" && !strings.ContainsAny(r, "<>") {
				d.ID = r
				if d.Status == csta.DeviceNumberDialed {
					continue
				}
				d.Status = csta.DeviceIdentifier
			} else {
				*d = csta.Device{Status: csta.DeviceNotKnown}
			}
		}
	}
	if len(out.Connections) > 0 {
		out.Connections = translateList(out.Connections, show)
	}
	return out
}

// monitorStart starts (or joins) the southbound monitor of one of the
// user's lines and mints the client's monitorCrossRefID.
func (s *Session) monitorStart(ctx context.Context, m *csta.Message, replay *[]*replayed) (*csta.Message, error) {
	line, err := s.lineFor(m.Device.ID, csta.CodePrivilegeViolationDevice)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	n := len(s.monitors)
	s.mu.Unlock()
	if n >= s.g.conf().Gateway.MaxMonitorsPerSession {
		return nil, csta.NewError(csta.CodeObjectMonitorLimitExceeded, "%d monitors on this session", n)
	}
	w, err := s.g.watch(ctx, s.link, s.gen, line.Device)
	if err != nil {
		if errors.Is(err, ctipool.ErrStaleGeneration) {
			s.staleGeneration()
		}
		return nil, err
	}
	// Clone: a substring would pin the whole request body for the life of
	// the monitor.
	ref := &monitorRef{s: s, xref: newXref(), line: line, lineText: strings.Clone(m.Device.ID), w: w}
	evs, ok := w.attach(ref)
	if !ok {
		return nil, errLinkDown
	}
	s.mu.Lock()
	s.monitors[ref.xref] = ref
	s.mu.Unlock()
	// Phantom calls: calls an earlier session of this user on this line
	// showed the client that are gone now get a ConnectionCleared.
	for _, id := range s.g.ghosts.take(s.user, line.Device) {
		if known, _ := w.hasCall(id); !known {
			evs = append(evs, &csta.Message{Kind: csta.KindConnectionClearedEvent,
				Connection:    csta.ConnectionID{CallID: id, DeviceID: line.Device},
				SubjectDevice: csta.Dev(line.Device), LocalConnectionInfo: "null", Cause: "normalClearing"})
		}
	}
	for _, ev := range evs {
		*replay = append(*replay, &replayed{mon: ref, ev: ev})
	}
	s.g.metrics.monitors.Inc()
	if c := s.g.cluster; c != nil {
		c.markDirty(s)
	}
	return &csta.Message{Kind: csta.KindMonitorStartResponse, MonitorCrossRefID: ref.xref, MonitorExistingCalls: true}, nil
}

func (s *Session) monitorStop(m *csta.Message) (*csta.Message, error) {
	s.mu.Lock()
	ref := s.monitors[m.MonitorCrossRefID]
	delete(s.monitors, m.MonitorCrossRefID)
	s.mu.Unlock()
	if ref == nil {
		s.g.metrics.refusals.With("monitor").Inc()
		return nil, csta.NewError(csta.CodeInvalidMonitorCrossRefID, "%s is not a monitor of this session", trunc(m.MonitorCrossRefID))
	}
	ref.dead = true
	if ref.w != nil {
		ref.w.detach(ref)
	}
	s.g.metrics.monitors.Dec()
	if c := s.g.cluster; c != nil {
		c.markDirty(s)
	}
	return &csta.Message{Kind: csta.KindMonitorStopResponse}, nil
}

// featuresResponse is the GetCSTAFeaturesResponse: exactly what is
// implemented, in schema order (docs/wire.md §1.5.2). Built once; never
// modified. The events listed are the ones the gateway itself sends (the
// device maintenance ones included: it replays OutOfServiceEvent on its
// own); events it passes through unmodelled depend on the switch and are
// not advertised.
var featuresResponse = &csta.Message{
	Kind: csta.KindGetCSTAFeaturesResponse,
	SupportedServices: []csta.FeatureList{
		{List: "capExchangeServList", Items: []string{"getCSTAFeatures"}},
		{List: "systemStatServList", Items: []string{"requestSystemStatus", "systemStatus"}},
		{List: "monitoringServList", Items: []string{"monitorStart", "monitorStop"}},
		{List: "snapshotServList", Items: []string{"snapshotDevice"}},
		{List: "callControlServList", Items: []string{"alternateCall", "answerCall", "clearCall", "clearConnection",
			"conferenceCall", "consultationCall", "deflectCall", "holdCall", "makeCall", "reconnectCall",
			"retrieveCall", "singleStepTransfer", "transferCall"}},
		{List: "callAssociatedServList", Items: []string{"generateDigits"}},
		{List: "logicalServList", Items: []string{"getDoNotDisturb", "getForwarding", "setDoNotDisturb", "setForwarding"}},
	},
	SupportedEvents: []csta.FeatureList{
		{List: "callControlEvtsList", Items: []string{"conferenced", "connectionCleared", "delivered", "diverted",
			"established", "failed", "held", "originated", "retrieved", "serviceInitiated", "transferred"}},
		{List: "logicalEvtsList", Items: []string{"doNotDisturb", "forwarding"}},
		{List: "deviceMaintEvtsList", Items: []string{"backInService", "outOfService"}},
	},
}

// isQuery reports whether a request only reads state (Get…, Snapshot…,
// RequestSystemStatus).
func isQuery(m *csta.Message) bool {
	return m.Kind == csta.KindRequestSystemStatus || strings.HasPrefix(m.Name, "Get") || strings.HasPrefix(m.Name, "Snapshot")
}

// auditTarget names what a request acts on, for the audit line.
func auditTarget(m *csta.Message) string {
	switch {
	case m.Connection.CallID != "":
		return "call " + m.Connection.CallID
	case m.ActiveCall.CallID != "" || m.HeldCall.CallID != "":
		return "calls " + m.HeldCall.CallID + "," + m.ActiveCall.CallID
	case m.CallingDevice.ID != "":
		return "from " + trunc(m.CallingDevice.ID) + " to " + trunc(m.Destination.ID)
	case m.Device.ID != "":
		return "device " + trunc(m.Device.ID)
	case m.MonitorCrossRefID != "":
		return "monitor " + m.MonitorCrossRefID
	}
	return ""
}
