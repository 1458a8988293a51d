package ctisim

import (
	"time"

	"github.com/cstagw/cstagw/csta"
)

// The ECMA-269 services. Every service validates everything before it
// changes anything, so a CSTA error never leaves a half-done operation or
// stray events behind.

var (
	codeNotSameDevice       = csta.ErrorCode{Category: csta.CatOperation, Value: "notSameDevice"}
	codeSecurityViolation   = csta.ErrorCode{Category: csta.CatOperation, Value: "securityViolation"}
	codeConferenceLimit     = csta.ErrorCode{Category: csta.CatSystemResourceAvailability, Value: "conferenceMemberLimitExceeded"}
	codeInvalidDeviceState  = csta.CodeInvalidDeviceState
	codeIncompatibleWithObj = csta.CodeRequestIncompatibleWithObject
)

func errf(code csta.ErrorCode, format string, args ...any) *csta.Error {
	return csta.NewError(code, format, args...)
}

// lookupConn resolves a ConnectionID: unknown call or device in it →
// invalidConnectionID (invalidCallID when no device was given).
func (o *op) lookupConn(id csta.ConnectionID) (*connection, *csta.Error) {
	c := o.sw.calls[id.CallID]
	if c == nil {
		if id.DeviceID == "" {
			return nil, errf(csta.CodeInvalidCallID, "no call %q", id.CallID)
		}
		return nil, errf(csta.CodeInvalidConnectionID, "no call %q", id.CallID)
	}
	cn := o.findConn(c, id.DeviceID)
	if cn == nil {
		return nil, errf(csta.CodeInvalidConnectionID, "device %q has no connection in call %s", id.DeviceID, c.id)
	}
	return cn, nil
}

func (o *op) findConn(c *call, dev string) *connection {
	s, err := cleanNumber(dev)
	if err != nil {
		return nil
	}
	for _, cn := range c.conns {
		if cn.dev.id == s {
			return cn
		}
	}
	if id, _, err := o.sw.cfg.num.dialled(s); err == nil {
		for _, cn := range c.conns {
			if cn.dev.id == id {
				return cn
			}
		}
	}
	return nil
}

// controllable refuses services on an external party's connection: the
// switch cannot press buttons on a phone it does not own.
// stationConn resolves a connection a client may act on: one of a station's,
// not an external party's.
func (o *op) stationConn(id csta.ConnectionID) (*connection, *csta.Error) {
	cn, err := o.lookupConn(id)
	if err != nil {
		return nil, err
	}
	if err := controllable(cn); err != nil {
		return nil, err
	}
	return cn, nil
}

func controllable(cn *connection) *csta.Error {
	if !cn.dev.station {
		return errf(codeIncompatibleWithObj, "%s is an external party", cn.dev.id)
	}
	return nil
}

// pair resolves the two connections of AlternateCall, ReconnectCall,
// TransferCall and ConferenceCall: same station, two different calls.
func (o *op) pair(heldID, activeID csta.ConnectionID) (held, active *connection, err *csta.Error) {
	if held, err = o.lookupConn(heldID); err != nil {
		return nil, nil, err
	}
	if active, err = o.lookupConn(activeID); err != nil {
		return nil, nil, err
	}
	if held.dev != active.dev {
		return nil, nil, errf(codeNotSameDevice, "%s and %s", held.dev.id, active.dev.id)
	}
	if held.call == active.call {
		return nil, nil, errf(csta.CodeInvalidConnectionID, "held and active are the same call %s", held.call.id)
	}
	if err = controllable(held); err != nil {
		return nil, nil, err
	}
	return held, active, nil
}

// ---- Call origination and delivery ----

func (o *op) makeCall(req *csta.Message) *csta.Error {
	num := o.sw.cfg.num
	aID, station, err := num.identify(req.CallingDevice.ID)
	if err != nil || !station {
		return errf(csta.CodeInvalidCallingDevice, "%q is not a station", req.CallingDevice.ID)
	}
	tID, tStation, err := num.dialled(req.Destination.ID)
	if err != nil {
		return errf(csta.CodeInvalidDestination, "%q", req.Destination.ID)
	}
	if d := o.sw.devices[aID]; d != nil && d.outOfService {
		return errf(csta.CodeDeviceOutOfService, "%s is out of service", aID)
	}
	a := o.sw.device(aID, true)
	if a.busy() {
		return errf(codeInvalidDeviceState, "%s is busy", aID)
	}
	o.originate(a, tID, tStation, causeMakeCall, func(c *call) *csta.Message {
		return &csta.Message{Kind: csta.KindMakeCallResponse, Connection: cid(c, a.id)}
	})
	return nil
}

// originate creates a call from station a: ServiceInitiated (initiated),
// Originated (connected), the response (where the ordering puts it), then
// delivery to the target.
func (o *op) originate(a *device, tID string, tStation bool, cause string, resp func(*call) *csta.Message) *call {
	c := o.sw.newCall(a.id, tID)
	r := resp(c)
	if !o.sw.cfg.eventsFirst {
		o.respond(r)
	}
	ca := o.sw.attach(c, a, stInitiated)
	c.origin = ca
	o.emit(c, evServiceInitiated(c, a, cause))
	ca.state = stConnected
	o.emit(c, evOriginated(c, a, cause))
	o.respond(r)
	deliveredCause := causeNewCall
	o.route(c, tID, tStation, deliveredCause)
	return c
}

// route offers call c to a target: diversion, refusal or alerting as the
// target's state and features dictate.
func (o *op) route(c *call, tID string, station bool, cause string) {
	sw := o.sw
	if !station {
		t := sw.device(tID, false)
		cn := sw.attach(c, t, stAlerting)
		o.emit(c, evDelivered(c, t, cause))
		if sw.cfg.autoAnswer > 0 {
			cn.timer = sw.schedule(sw.cfg.autoAnswer, func(o *op) {
				if cn.live && cn.state == stAlerting {
					cn.timer = nil
					o.answer(cn)
				}
			})
		}
		return
	}
	t := sw.device(tID, true)
	if t.outOfService {
		o.fail(c, t, causeDestOutOfOrder)
		return
	}
	if f := t.fwd[fwdImmediate]; f.active && o.canDivert(c, t, f.dn) {
		o.divert(c, t, nil, f.dn, causeCallForwardImmed)
		return
	}
	if t.dnd {
		if f := t.fwd[fwdDND]; f.active && o.canDivert(c, t, f.dn) {
			o.divert(c, t, nil, f.dn, causeCallForward)
			return
		}
		o.fail(c, t, causeDoNotDisturb)
		return
	}
	if t.busy() {
		if f := t.fwd[fwdBusy]; f.active && o.canDivert(c, t, f.dn) {
			o.divert(c, t, nil, f.dn, causeCallForwardBusy)
			return
		}
		o.fail(c, t, causeBusy)
		return
	}
	cn := sw.attach(c, t, stAlerting)
	o.emit(c, evDelivered(c, t, cause))
	if f := t.fwd[fwdNoAns]; f.active && o.canDivert(c, t, f.dn) {
		dn := f.dn
		wait := time.Duration(sw.ringCount(f)) * sw.cfg.ringTime
		cn.timer = sw.schedule(wait, func(o *op) {
			if cn.live && cn.state == stAlerting && o.canDivert(cn.call, cn.dev, dn) {
				cn.timer = nil
				o.divert(cn.call, cn.dev, cn, dn, causeCallForwardNoAnswer)
			}
		})
	}
}

// canDivert reports whether c may be diverted from t to dn.
func (o *op) canDivert(c *call, t *device, dn string) bool {
	if c.diversions >= o.sw.cfg.maxDiversions {
		return false
	}
	id, _, err := o.sw.cfg.num.identify(dn)
	if err != nil || id == t.id {
		return false
	}
	if c.origin != nil && c.origin.live && c.origin.dev.id == id {
		return false
	}
	return true
}

// divert moves the call away from t (whose alerting connection, if any, is
// cn): DivertedEvent, then delivery at the new destination.
func (o *op) divert(c *call, t *device, cn *connection, dn, cause string) {
	id, station, _ := o.sw.cfg.num.identify(dn)
	if cn != nil {
		o.sw.detach(cn)
	}
	o.emit(c, evDiverted(c, t, id, cause), t)
	c.lastRedirect = t.id
	c.diversions++
	o.route(c, id, station, cause)
}

// fail reports that c could not be delivered to target: the originating
// connection enters the fail state. An external caller hears the tone and
// hangs up.
func (o *op) fail(c *call, target *device, cause string) {
	orig := c.origin
	if orig != nil && orig.live {
		orig.state = stFail
	}
	o.emit(c, evFailed(c, target.id, cause))
	o.sw.tidy(target)
	if orig != nil && orig.live && !orig.dev.station {
		o.clear(orig, causeNormalClearing)
	} else if len(c.conns) == 0 {
		o.sw.endCall(c)
	}
}

func (o *op) answer(cn *connection) {
	o.sw.cancel(cn.timer)
	cn.timer = nil
	cn.state = stConnected
	o.emit(cn.call, evEstablished(cn.call, cn.dev, causeNormal))
}

// clear removes one connection; a call left with one party ends, its last
// connection cleared too.
func (o *op) clear(cn *connection, cause string) {
	c, d := cn.call, cn.dev
	o.sw.detach(cn)
	o.emit(c, evCleared(c, d, cause), d)
	if len(c.conns) > 1 {
		return
	}
	for _, r := range append([]*connection(nil), c.conns...) {
		rc := causeNormalClearing
		if r.state == stAlerting {
			rc = causeCallCancelled
		}
		o.sw.detach(r)
		o.emit(c, evCleared(c, r.dev, rc), r.dev)
	}
	o.sw.endCall(c)
}

// ---- Basic call control ----

func (o *op) answerCall(req *csta.Message) *csta.Error {
	cn, err := o.stationConnIn(req.Connection, stAlerting)
	if err != nil {
		return err
	}
	if other := cn.dev.talking(cn); other != nil {
		return errf(codeInvalidDeviceState, "%s already has call %s %s", cn.dev.id, other.call.id, other.state)
	}
	o.respond(&csta.Message{Kind: csta.KindAnswerCallResponse})
	o.answer(cn)
	return nil
}

func (o *op) clearConnection(req *csta.Message) *csta.Error {
	cn, err := o.lookupConn(req.Connection)
	if err != nil {
		return err
	}
	o.respond(&csta.Message{Kind: csta.KindClearConnectionResponse})
	o.clear(cn, causeNormalClearing)
	return nil
}

func (o *op) clearCall(req *csta.Message) *csta.Error {
	c := o.sw.calls[req.Connection.CallID]
	if c == nil {
		return errf(csta.CodeInvalidCallID, "no call %q", req.Connection.CallID)
	}
	o.respond(&csta.Message{Kind: csta.KindClearCallResponse})
	o.clearWholeCall(c)
	return nil
}

func (o *op) clearWholeCall(c *call) {
	for _, cn := range append([]*connection(nil), c.conns...) {
		o.sw.detach(cn)
		o.emit(c, evCleared(c, cn.dev, causeNormalClearing), cn.dev)
	}
	o.sw.endCall(c)
}

func (o *op) holdCall(req *csta.Message) *csta.Error {
	cn, err := o.stationConnIn(req.Connection, stConnected)
	if err != nil {
		return err
	}
	o.respond(&csta.Message{Kind: csta.KindHoldCallResponse})
	cn.state = stHold
	o.emit(cn.call, evHeld(cn.call, cn.dev, causeNormal))
	return nil
}

func (o *op) retrieveCall(req *csta.Message) *csta.Error {
	cn, err := o.stationConn(req.Connection)
	if err != nil {
		return err
	}
	if cn.state != stHold {
		return errf(csta.CodeNoHeldCall, "%s is %s in call %s", cn.dev.id, cn.state, cn.call.id)
	}
	if other := cn.dev.talking(cn); other != nil {
		return errf(codeInvalidDeviceState, "%s is %s in call %s", cn.dev.id, other.state, other.call.id)
	}
	o.respond(&csta.Message{Kind: csta.KindRetrieveCallResponse})
	cn.state = stConnected
	o.emit(cn.call, evRetrieved(cn.call, cn.dev, causeNormal))
	return nil
}

func (o *op) alternateCall(req *csta.Message) *csta.Error {
	held, active, err := o.pair(req.HeldCall, req.ActiveCall)
	if err != nil {
		return err
	}
	if held.state != stHold {
		return errf(csta.CodeNoHeldCall, "%s is %s in call %s", held.dev.id, held.state, held.call.id)
	}
	if active.state != stConnected {
		return errf(csta.CodeNoActiveCall, "%s is %s in call %s", active.dev.id, active.state, active.call.id)
	}
	o.respond(&csta.Message{Kind: csta.KindAlternateCallResponse})
	active.state = stHold
	o.emit(active.call, evHeld(active.call, active.dev, causeAlternate))
	held.state = stConnected
	o.emit(held.call, evRetrieved(held.call, held.dev, causeAlternate))
	return nil
}

func (o *op) reconnectCall(req *csta.Message) *csta.Error {
	held, active, err := o.pair(req.HeldCall, req.ActiveCall)
	if err != nil {
		return err
	}
	if held.state != stHold {
		return errf(csta.CodeNoHeldCall, "%s is %s in call %s", held.dev.id, held.state, held.call.id)
	}
	if active.state == stHold {
		return errf(csta.CodeNoActiveCall, "%s is on hold in call %s", active.dev.id, active.call.id)
	}
	o.respond(&csta.Message{Kind: csta.KindReconnectCallResponse})
	o.clear(active, causeNormalClearing)
	held.state = stConnected
	o.emit(held.call, evRetrieved(held.call, held.dev, causeNormal))
	return nil
}

// ---- Consultation, transfer, conference, deflection ----

func (o *op) consultationCall(req *csta.Message) *csta.Error {
	cn, err := o.stationConnIn(req.Connection, stConnected)
	if err != nil {
		return err
	}
	tID, tStation, perr := o.sw.cfg.num.dialled(req.Destination.ID)
	if perr != nil {
		return errf(csta.CodeInvalidDestination, "%q", req.Destination.ID)
	}
	a := cn.dev
	c2 := o.sw.newCall(a.id, tID)
	resp := &csta.Message{Kind: csta.KindConsultationCallResponse, Connection: cid(c2, a.id)}
	if !o.sw.cfg.eventsFirst {
		o.respond(resp)
	}
	cn.state = stHold
	o.emit(cn.call, evHeld(cn.call, a, causeConsultation))
	ca := o.sw.attach(c2, a, stInitiated)
	c2.origin = ca
	o.emit(c2, evServiceInitiated(c2, a, causeConsultation))
	ca.state = stConnected
	o.emit(c2, evOriginated(c2, a, causeConsultation))
	o.respond(resp)
	o.route(c2, tID, tStation, causeNewCall)
	return nil
}

// joinCheck validates the calls TransferCall and ConferenceCall merge.
func joinCheck(held, active *connection) *csta.Error {
	if held.state != stHold || len(held.call.conns) < 2 {
		return errf(csta.CodeNoHeldCall, "%s is %s in call %s", held.dev.id, held.state, held.call.id)
	}
	if active.state != stConnected || len(active.call.conns) < 2 {
		return errf(csta.CodeNoActiveCall, "%s is %s in call %s", active.dev.id, active.state, active.call.id)
	}
	for _, x := range active.call.conns {
		if x != active && held.call.conn(x.dev) != nil {
			return errf(codeIncompatibleWithObj, "%s is in both calls", x.dev.id)
		}
	}
	return nil
}

func (o *op) transferCall(req *csta.Message) *csta.Error {
	held, active, err := o.pair(req.HeldCall, req.ActiveCall)
	if err != nil {
		return err
	}
	if err := joinCheck(held, active); err != nil {
		return err
	}
	sw := o.sw
	a := held.dev
	c1, c2 := held.call, active.call
	primary, secondary := cid(c1, a.id), cid(c2, a.id)
	sw.detach(held)
	sw.detach(active)
	items, moved := sw.merge(c1, c2)
	to := moved[0].dev.id
	if c1.origin == nil || !c1.origin.live {
		c1.origin = c1.conns[0]
	}
	c1.calling, c1.called, c1.lastRedirect = c1.conns[0].dev.id, to, a.id
	o.respond(&csta.Message{Kind: csta.KindTransferCallResponse, Connection: cid(c1, to), Connections: items})
	o.emit(c1, evTransfered(primary, secondary, a.id, to, items, causeTransfer), a)
	return nil
}

func (o *op) singleStepTransfer(req *csta.Message) *csta.Error {
	cn, err := o.stationConn(req.ActiveCall)
	if err != nil {
		return err
	}
	if cn.state != stConnected || len(cn.call.conns) < 2 {
		return errf(csta.CodeInvalidConnectionState, "%s is %s in call %s", cn.dev.id, cn.state, cn.call.id)
	}
	tID, tStation, perr := o.sw.cfg.num.dialled(req.Destination.ID)
	if perr != nil {
		return errf(csta.CodeInvalidDestination, "%q", req.Destination.ID)
	}
	c, a := cn.call, cn.dev
	for _, x := range c.conns {
		if x.dev.id == tID {
			return errf(csta.CodeInvalidDestination, "%s is already in call %s", tID, c.id)
		}
	}
	o.respond(&csta.Message{Kind: csta.KindSingleStepTransferCallResponse, Connection: cid(c, tID)})
	o.sw.detach(cn)
	var items []csta.ConnectionListItem
	for _, x := range c.conns {
		items = append(items, csta.ConnectionListItem{NewConnection: cid(c, x.dev.id), OldConnection: cid(c, x.dev.id), Endpoint: x.dev.id})
	}
	o.emit(c, evTransfered(cid(c, a.id), csta.ConnectionID{}, a.id, tID, items, causeSingleStepTransfer), a)
	c.origin = c.conns[0]
	c.calling, c.called, c.lastRedirect = c.conns[0].dev.id, tID, a.id
	o.route(c, tID, tStation, causeSingleStepTransfer)
	return nil
}

func (o *op) conferenceCall(req *csta.Message) *csta.Error {
	held, active, err := o.pair(req.HeldCall, req.ActiveCall)
	if err != nil {
		return err
	}
	if err := joinCheck(held, active); err != nil {
		return err
	}
	c1, c2 := held.call, active.call
	if n := len(c1.conns) + len(c2.conns) - 1; n > o.sw.cfg.maxConference {
		return errf(codeConferenceLimit, "%d parties, limit %d", n, o.sw.cfg.maxConference)
	}
	sw := o.sw
	a := held.dev
	primary, secondary := cid(c1, a.id), cid(c2, a.id)
	sw.detach(active)
	held.state = stConnected
	items, moved := sw.merge(c1, c2)
	o.respond(&csta.Message{Kind: csta.KindConferenceCallResponse, Connection: cid(c1, a.id), Connections: items})
	o.emit(c1, evConferenced(primary, secondary, a.id, moved[0].dev.id, items))
	return nil
}

func (o *op) deflectCall(req *csta.Message) *csta.Error {
	cn, err := o.stationConnIn(req.Connection, stAlerting)
	if err != nil {
		return err
	}
	tID, _, perr := o.sw.cfg.num.dialled(req.Destination.ID)
	if perr != nil {
		return errf(csta.CodeInvalidDestination, "%q", req.Destination.ID)
	}
	if tID == cn.dev.id {
		return errf(csta.CodeInvalidDestination, "%s deflects to itself", tID)
	}
	o.respond(&csta.Message{Kind: csta.KindDeflectCallResponse})
	o.divert(cn.call, cn.dev, cn, tID, causeRedirected)
	return nil
}

func (o *op) generateDigits(req *csta.Message) *csta.Error {
	cn, err := o.stationConnIn(req.Connection, stConnected)
	if err != nil {
		return err
	}
	s := req.CharactersToSend
	if s == "" || len(s) > 64 {
		return errf(csta.CodeInvalidParameterValue, "charactersToSend %q", s)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9', c == '*', c == '#', c >= 'A' && c <= 'D', c >= 'a' && c <= 'd', c == ',':
		default:
			return errf(csta.CodeInvalidParameterValue, "charactersToSend %q", s)
		}
	}
	o.respond(&csta.Message{Kind: csta.KindGenerateDigitsResponse})
	cn.digits += s
	return nil
}

// ---- Logical device features, snapshot, monitoring ----

// station resolves a device parameter that must be one of the switch's
// stations.
func (o *op) station(d csta.Device) (string, *csta.Error) {
	id, station, err := o.sw.cfg.num.identify(d.ID)
	if err != nil || !station {
		return "", errf(csta.CodeInvalidDeviceID, "%q is not a station", d.ID)
	}
	return id, nil
}

func (o *op) setForwarding(req *csta.Message) *csta.Error {
	id, err := o.station(req.Device)
	if err != nil {
		return err
	}
	typ := -1
	for i, n := range fwdTypeNames {
		if n == req.ForwardingType {
			typ = i
		}
	}
	if typ < 0 {
		if otherFwdTypes[req.ForwardingType] {
			return errf(csta.CodeParameterNotSupported, "forwardingType %s", req.ForwardingType)
		}
		return errf(csta.CodeInvalidParameterValue, "forwardingType %q", req.ForwardingType)
	}
	var dn string
	if req.ActivateForward || req.Destination.ID != "" {
		t, _, perr := o.sw.cfg.num.dialled(req.Destination.ID)
		if perr != nil || t == id {
			return errf(csta.CodeInvalidForwardingDestination, "%q", req.Destination.ID)
		}
		dn = t
	}
	if req.RingCount < 0 || req.RingCount > 15 {
		return errf(csta.CodeValueOutOfRange, "ringCount %d", req.RingCount)
	}
	o.respond(&csta.Message{Kind: csta.KindSetForwardingResponse})
	d := o.sw.device(id, true)
	f := &d.fwd[typ]
	f.active = req.ActivateForward
	if dn != "" {
		f.dn = dn
	}
	if req.RingCount > 0 {
		f.ringCount = req.RingCount
	}
	o.emitDevice(d, evForwarding(d, typ, *f, o.sw.ringCount(*f)))
	o.sw.tidy(d)
	return nil
}

func (o *op) getForwarding(req *csta.Message) *csta.Error {
	id, err := o.station(req.Device)
	if err != nil {
		return err
	}
	d := o.sw.devices[id]
	resp := &csta.Message{Kind: csta.KindGetForwardingResponse}
	for i, n := range fwdTypeNames {
		var f forwarding
		if d != nil {
			f = d.fwd[i]
		}
		it := csta.ForwardListItem{ForwardingType: n, ForwardStatus: f.active, ForwardDN: f.dn}
		if i == fwdNoAns && f.active {
			it.RingCount = o.sw.ringCount(f)
		}
		resp.ForwardingList = append(resp.ForwardingList, it)
	}
	o.respond(resp)
	return nil
}

func (o *op) setDoNotDisturb(req *csta.Message) *csta.Error {
	id, err := o.station(req.Device)
	if err != nil {
		return err
	}
	o.respond(&csta.Message{Kind: csta.KindSetDoNotDisturbResponse})
	d := o.sw.device(id, true)
	d.dnd = req.DoNotDisturbOn
	o.emitDevice(d, evDoNotDisturb(d))
	o.sw.tidy(d)
	return nil
}

func (o *op) getDoNotDisturb(req *csta.Message) *csta.Error {
	id, err := o.station(req.Device)
	if err != nil {
		return err
	}
	d := o.sw.devices[id]
	o.respond(&csta.Message{Kind: csta.KindGetDoNotDisturbResponse, DoNotDisturbOn: d != nil && d.dnd})
	return nil
}

func (o *op) snapshotDevice(req *csta.Message) *csta.Error {
	id, err := o.station(req.Device)
	if err != nil {
		return err
	}
	resp := &csta.Message{Kind: csta.KindSnapshotDeviceResponse, Snapshot: []csta.SnapshotItem{}}
	if d := o.sw.devices[id]; d != nil {
		for _, cn := range d.conns {
			resp.Snapshot = append(resp.Snapshot, csta.SnapshotItem{Connection: cid(cn.call, d.id), LocalCallState: cn.state.String()})
		}
	}
	o.respond(resp)
	return nil
}

func (o *op) monitorStart(req *csta.Message, owner Sink) *csta.Error {
	if req.MonitorType != "" && req.MonitorType != "device" {
		return errf(csta.CodeParameterNotSupported, "monitorType %s: device monitors only", req.MonitorType)
	}
	id, station, err := o.sw.cfg.num.identify(req.Device.ID)
	if err != nil {
		return errf(csta.CodeInvalidDeviceID, "%q", req.Device.ID)
	}
	if !station {
		return errf(csta.CodeInvalidMonitorObject, "%s is not a station of this switch", id)
	}
	if owner == nil {
		return errf(csta.CodeGeneric, "no connection to deliver events to")
	}
	sw := o.sw
	d := sw.device(id, true)
	sw.monCtr++
	sw.seq++
	m := &monitor{xref: mint(sw.monCtr, 0x85EBCA77, ^sw.salt), dev: d, sink: owner, seq: sw.seq}
	sw.monitors[m.xref] = m
	d.monitors = append(d.monitors, m)
	o.respond(&csta.Message{Kind: csta.KindMonitorStartResponse, MonitorCrossRefID: m.xref})
	return nil
}

func (o *op) monitorStop(req *csta.Message, owner Sink) *csta.Error {
	m := o.sw.monitors[req.MonitorCrossRefID]
	if m == nil || m.sink != owner {
		return errf(csta.CodeInvalidMonitorCrossRefID, "%q", req.MonitorCrossRefID)
	}
	o.sw.dropMonitor(m.xref, m)
	o.respond(&csta.Message{Kind: csta.KindMonitorStopResponse})
	return nil
}

// stationConnIn is stationConn for a connection that must be in state want.
func (o *op) stationConnIn(id csta.ConnectionID, want connState) (*connection, *csta.Error) {
	cn, err := o.stationConn(id)
	if err != nil {
		return nil, err
	}
	if cn.state != want {
		return nil, errf(csta.CodeInvalidConnectionState, "%s is %s, not %s", cn.dev.id, cn.state, want)
	}
	return cn, nil
}

// merge moves c2's connections into c1 and ends c2. items lists c1's
// parties, then the moved ones with their old connection in c2.
func (sw *Switch) merge(c1, c2 *call) (items []csta.ConnectionListItem, moved []*connection) {
	for _, x := range c1.conns {
		items = append(items, csta.ConnectionListItem{NewConnection: cid(c1, x.dev.id), OldConnection: cid(c1, x.dev.id), Endpoint: x.dev.id})
	}
	moved = append([]*connection(nil), c2.conns...)
	for _, x := range moved {
		items = append(items, csta.ConnectionListItem{NewConnection: cid(c1, x.dev.id), OldConnection: cid(c2, x.dev.id), Endpoint: x.dev.id})
		sw.move(x, c1)
	}
	sw.endCall(c2)
	return items, moved
}
