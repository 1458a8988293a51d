package sipstack

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// A dialog can move between gateway nodes: its owner writes a DialogState
// to a shared store, and another node rebuilds the same dialog from it
// (same Call-ID, tags, remote target and route set, a CSeq above every one
// the first node used) and carries on sending on it. The client sees
// requests from another Via host on the dialog it has, nothing else.

// DialogState is what another node needs to carry on a dialog.
type DialogState struct {
	CallID       string   `json:"call_id"`
	LocalTag     string   `json:"local_tag"`
	RemoteTag    string   `json:"remote_tag"`
	Transport    string   `json:"transport"`
	Source       string   `json:"source"`
	LocalURI     string   `json:"local_uri"`
	RemoteFrom   string   `json:"remote_from"` // the client's From, every parameter
	RemoteTarget string   `json:"remote_target"`
	RouteSet     []string `json:"route_set,omitempty"`
	// CSeq is the first CSeq a new owner may use: above every CSeq the
	// writer has used or will use before it writes its state again.
	CSeq         uint32 `json:"cseq"`
	Expires      int    `json:"expires_s"`
	UASRefresh   bool   `json:"uas_refresh,omitempty"`
	AuthIdentity string `json:"auth_identity,omitempty"`
}

// CSeqRoom is how many requests a node may send on a dialog past the CSeq
// it last stored before it must store a new one.
const CSeqRoom = 4096

// State snapshots the dialog for another node, reserving CSeqRoom
// sequence numbers: when this node has used them up, the hook set with
// OnCSeqMark runs so the caller can store a new state.
func (d *Dialog) State() DialogState {
	d.mu.Lock()
	target := d.remoteTarget.String()
	expires := d.expires
	uas := d.uasRefresh
	d.mu.Unlock()
	next := d.cseq.Load() + CSeqRoom
	d.cseqMark.Store(next - CSeqRoom/4) // write again with a quarter of the room left
	return DialogState{
		CallID:       d.callID,
		LocalTag:     d.localTag,
		RemoteTag:    d.remoteTag,
		Transport:    d.transport,
		Source:       d.source,
		LocalURI:     d.localURI.String(),
		RemoteFrom:   d.remoteFrom.Value(),
		RemoteTarget: target,
		RouteSet:     append([]string(nil), d.routeSet...),
		CSeq:         next,
		Expires:      int(expires / time.Second),
		UASRefresh:   uas,
		AuthIdentity: d.authIdentity,
	}
}

// OnCSeqMark sets what runs (on its own goroutine, at most once per
// State) when the dialog's CSeq passes the room State reserved.
func (d *Dialog) OnCSeqMark(fn func()) {
	d.mu.Lock()
	d.onMark = fn
	d.mu.Unlock()
}

// nextCSeq takes the next CSeq of a request of ours.
func (d *Dialog) nextCSeq() uint32 {
	n := d.cseq.Add(1)
	if mark := d.cseqMark.Load(); mark != 0 && n >= mark && d.cseqMark.CompareAndSwap(mark, 0) {
		d.mu.Lock()
		fn := d.onMark
		d.mu.Unlock()
		if fn != nil {
			go fn()
		}
	}
	return n
}

// ErrDialogKnown is returned by AdoptDialog for a dialog this node has.
var ErrDialogKnown = errors.New("sipstack: dialog already here")

// AdoptDialog rebuilds a dialog another node established. It is
// established and acknowledged at once, its session timer starts a new
// interval, and the handler is told its end like any other's.
func (s *Server) AdoptDialog(st DialogState) (*Dialog, error) {
	if st.CallID == "" || st.LocalTag == "" || st.RemoteTag == "" {
		return nil, errors.New("sipstack: dialog state without Call-ID or tags")
	}
	d := &Dialog{
		s:            s,
		callID:       st.CallID,
		localTag:     st.LocalTag,
		remoteTag:    st.RemoteTag,
		transport:    strings.ToLower(st.Transport),
		source:       st.Source,
		routeSet:     append([]string(nil), st.RouteSet...),
		authIdentity: st.AuthIdentity,
		expires:      time.Duration(st.Expires) * time.Second,
		uasRefresh:   st.UASRefresh,
		established:  true,
	}
	switch d.transport {
	case "udp", "tcp", "tls":
	default:
		return nil, fmt.Errorf("sipstack: dialog state: transport %q", st.Transport)
	}
	if d.expires <= 0 {
		d.expires = s.conf().SessionExpires
	}
	if err := sip.ParseUri(st.LocalURI, &d.localURI); err != nil {
		return nil, fmt.Errorf("sipstack: dialog state: local URI: %w", err)
	}
	if err := sip.ParseUri(st.RemoteTarget, &d.remoteTarget); err != nil {
		return nil, fmt.Errorf("sipstack: dialog state: remote target: %w", err)
	}
	params := sip.NewParams()
	name, err := sip.ParseAddressValue(st.RemoteFrom, &d.remoteFrom.Address, &params)
	if err != nil {
		return nil, fmt.Errorf("sipstack: dialog state: remote From: %w", err)
	}
	d.remoteFrom.DisplayName, d.remoteFrom.Params = name, params
	d.routeDest = routeDest(d.routeSet)
	s.mu.Lock()
	c, ok := s.contacts[d.transport]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("sipstack: no %s listener for an adopted dialog", d.transport)
	}
	d.contact = *c.Clone()
	d.cseq.Store(st.CSeq)
	// The first request of ours reserves new room (OnCSeqMark): a later
	// owner must start above what this one uses.
	d.cseqMark.Store(st.CSeq)
	d.key = dialogKey(d.callID, d.localTag, d.remoteTag)
	if _, loaded := s.dialogs.LoadOrStore(d.key, d); loaded {
		return nil, ErrDialogKnown
	}
	if d.transport != "udp" {
		s.conns.addDialog(d.source)
	}
	s.stats.dialogs.Add(1)
	d.armTimer()
	return d, nil
}

// Release forgets the dialog on this node without a BYE: another node
// serves it now. The handler is told with EndHandedOff.
func (d *Dialog) Release() { d.end(EndHandedOff) }

// Adopter is implemented by a handler that can take over dialogs other
// nodes established: an in-dialog request for a dialog this node does not
// have is offered to it before the 481. It returns the adopted dialog
// (now known to the server), or the answer to send instead (Status,
// Reason, RetryAfter; a zero Status: 481).
type Adopter interface {
	Adopt(callID, localTag, remoteTag string) (*Dialog, Reply)
}

// ReasonElsewhere is the reason phrase of the 503 a cluster node answers
// for a dialog another live node serves: a proxy asks for the owner again
// instead of taking this node out of rotation.
const ReasonElsewhere = "Dialog Elsewhere"

// Readiness is implemented by a handler that can be not ready (no CTI link
// yet, draining): OPTIONS is answered 503 then, so a dispatching proxy
// sends sign-ins elsewhere.
type Readiness interface {
	Ready() bool
}

// adopt offers a missing dialog to the handler; nil and the answer to
// send when it is not taken.
func (s *Server) adopt(req *sip.Request) (*Dialog, Reply) {
	a, ok := s.handler.(Adopter)
	if !ok {
		return nil, Reply{}
	}
	to, from := req.To(), req.From()
	if to == nil || from == nil {
		return nil, Reply{}
	}
	local, _ := to.Params.Get("tag")
	remote, _ := from.Params.Get("tag")
	if local == "" || remote == "" {
		return nil, Reply{}
	}
	return a.Adopt(callID(req), local, remote)
}
