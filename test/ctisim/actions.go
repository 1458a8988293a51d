package ctisim

import (
	"errors"
	"fmt"

	"github.com/cstagw/cstagw/csta"
)

// Control actions: what a person at a phone (or the network behind the
// trunk) does. They go through the same switching operations as CSTA
// requests, so monitors see exactly the events a request would produce.

// Errors of the control actions; the HTTP API maps them to 404, 400, 409
// and 503.
var (
	ErrNotFound = errors.New("ctisim: not found")
	ErrInvalid  = errors.New("ctisim: invalid request")
	ErrConflict = errors.New("ctisim: wrong state")
	ErrClosed   = errors.New("ctisim: closed")
)

// placeCall starts a call from a station (as if its user dialled) or from
// an external party through the trunk (an incoming call).
func (sw *Switch) placeCall(from, to string) (string, error) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.closed {
		return "", ErrClosed
	}
	num := sw.cfg.num
	fID, fStation, err := num.identify(from)
	if err != nil {
		return "", fmt.Errorf("%w: from %q is not a number", ErrInvalid, from)
	}
	tID, tStation, err := num.dialled(to)
	if err != nil {
		return "", fmt.Errorf("%w: to %q is not a number", ErrInvalid, to)
	}
	if !fStation && !tStation {
		return "", fmt.Errorf("%w: %s and %s are both external; one side must be a station", ErrInvalid, fID, tID)
	}
	if fID == tID {
		return "", fmt.Errorf("%w: %s calls itself", ErrInvalid, fID)
	}
	o := &op{sw: sw}
	if fStation {
		a := sw.device(fID, true)
		if a.outOfService {
			return "", fmt.Errorf("%w: %s is out of service", ErrConflict, fID)
		}
		if a.busy() {
			sw.tidy(a)
			return "", fmt.Errorf("%w: %s is busy", ErrConflict, fID)
		}
		c := o.originate(a, tID, tStation, causeNewCall, func(*call) *csta.Message { return nil })
		return c.id, nil
	}
	c := sw.newCall(fID, tID)
	ce := sw.attach(c, sw.device(fID, false), stConnected)
	c.origin = ce
	o.route(c, tID, tStation, causeNewCall)
	return c.id, nil
}

// actionConn finds the connection a control action names: the device's
// connection in the call, or with no device the one alerting connection.
func (sw *Switch) actionConn(callID, device string) (*connection, error) {
	c := sw.calls[callID]
	if c == nil {
		return nil, fmt.Errorf("%w: no call %q", ErrNotFound, callID)
	}
	o := &op{sw: sw}
	if device == "" {
		for _, cn := range c.conns {
			if cn.state == stAlerting {
				return cn, nil
			}
		}
		return nil, fmt.Errorf("%w: nothing is alerting in call %s", ErrConflict, callID)
	}
	cn := o.findConn(c, device)
	if cn == nil {
		return nil, fmt.Errorf("%w: %q has no connection in call %s", ErrNotFound, device, callID)
	}
	return cn, nil
}

// alertingConn is actionConn for actions that need a ringing party.
func (sw *Switch) alertingConn(callID, device string) (*connection, error) {
	cn, err := sw.actionConn(callID, device)
	if err != nil {
		return nil, err
	}
	if cn.state != stAlerting {
		return nil, fmt.Errorf("%w: %s is %s in call %s, not alerting", ErrConflict, cn.dev.id, cn.state, callID)
	}
	return cn, nil
}

// answer makes an alerting party (station or external) answer.
func (sw *Switch) answerAction(callID, device string) error {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.closed {
		return ErrClosed
	}
	cn, err := sw.alertingConn(callID, device)
	if err != nil {
		return err
	}
	if cn.dev.station {
		if other := cn.dev.talking(cn); other != nil {
			return fmt.Errorf("%w: %s is %s in call %s", ErrConflict, cn.dev.id, other.state, other.call.id)
		}
	}
	(&op{sw: sw}).answer(cn)
	return nil
}

// rejectAction makes an alerting party refuse the call as busy: its
// connection clears (cause busy) and the caller's connection fails.
func (sw *Switch) rejectAction(callID, device string) error {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.closed {
		return ErrClosed
	}
	cn, err := sw.alertingConn(callID, device)
	if err != nil {
		return err
	}
	o := &op{sw: sw}
	c, d := cn.call, cn.dev
	sw.detach(cn)
	o.emit(c, evCleared(c, d, causeBusy), d)
	o.fail(c, d, causeBusy)
	return nil
}

// hangupAction clears a party's connection, or with no device the whole
// call.
func (sw *Switch) hangupAction(callID, device string) error {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.closed {
		return ErrClosed
	}
	o := &op{sw: sw}
	if device == "" {
		c := sw.calls[callID]
		if c == nil {
			return fmt.Errorf("%w: no call %q", ErrNotFound, callID)
		}
		o.clearWholeCall(c)
		return nil
	}
	cn, err := sw.actionConn(callID, device)
	if err != nil {
		return err
	}
	o.clear(cn, causeNormalClearing)
	return nil
}

// setInService takes a station out of service or brings it back, telling
// its monitors (OutOfServiceEvent, BackInServiceEvent). Asking for the
// state it is already in changes nothing and sends nothing.
func (sw *Switch) setInService(id string, inService bool) error {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.closed {
		return ErrClosed
	}
	d, err := sw.station(id)
	if err != nil {
		return err
	}
	if d.outOfService != inService {
		sw.tidy(d)
		return nil
	}
	d.outOfService = !inService
	(&op{sw: sw}).emitDevice(d, evService(d))
	sw.tidy(d)
	return nil
}

// sendEvent sends an event document to every monitor of a station, each
// copy with that monitor's monitorCrossRefID and otherwise as given. It
// returns the number of monitors reached.
func (sw *Switch) sendEvent(id string, doc []byte) (int, error) {
	m, err := csta.Decode(doc)
	if err != nil {
		return 0, fmt.Errorf("%w: the document is not CSTA XML: %v", ErrInvalid, err)
	}
	if m.Class() != csta.ClassEvent {
		return 0, fmt.Errorf("%w: <%s> is not an event", ErrInvalid, m.Name)
	}
	// Checked once, before anything is sent: the document needs a
	// monitorCrossRefID for the copies to be routed.
	if _, err := csta.RewriteEvent(doc, csta.EventRewrite{CrossRefID: "x"}); err != nil {
		return 0, fmt.Errorf("%w: %v (write <monitorCrossRefID/> where it goes)", ErrInvalid, err)
	}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.closed {
		return 0, ErrClosed
	}
	d, err := sw.station(id)
	if err != nil {
		return 0, err
	}
	defer sw.tidy(d)
	for _, mon := range d.monitors {
		out, err := csta.RewriteEvent(doc, csta.EventRewrite{CrossRefID: mon.xref})
		if err != nil {
			return 0, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		mon.sink.DeliverRaw(m.Name, out)
	}
	return len(d.monitors), nil
}

// station returns a station of the switch by any spelling of its number,
// creating its device.
func (sw *Switch) station(id string) (*device, error) {
	sid, isStation, err := sw.cfg.num.identify(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %q is not a number", ErrInvalid, id)
	}
	if !isStation {
		return nil, fmt.Errorf("%w: %s is not a station of this switch", ErrNotFound, sid)
	}
	return sw.device(sid, true), nil
}
