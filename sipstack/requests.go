package sipstack

import (
	"bytes"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// respond builds and sends a response. Every response carries Allow on 2xx
// and 405, Accept on 415, Retry-After on 503 when given, and the CSTA
// content headers when there is a body.
func (s *Server) respond(tx sip.ServerTransaction, req *sip.Request, status int, reason string, body []byte, extra ...sip.Header) (*sip.Response, error) {
	res := s.response(req, status, reason, body, extra...)
	return res, tx.Respond(res)
}

// response builds an answer to req: Allow on 2xx and 405, Accept on 415 and
// on a 2xx to OPTIONS or INVITE, the extra headers, and the CSTA content
// headers when there is a body.
func (s *Server) response(req *sip.Request, status int, reason string, body []byte, extra ...sip.Header) *sip.Response {
	if reason == "" {
		reason = statusText(status)
	}
	res := sip.NewResponseFromRequest(req, status, reason, nil)
	if status/100 == 2 || status == 405 {
		res.AppendHeader(sip.NewHeader("Allow", Allowed))
	}
	if status == 415 || status/100 == 2 && (req.Method == sip.OPTIONS || req.Method == sip.INVITE) {
		res.AppendHeader(sip.NewHeader("Accept", ContentTypeCSTA))
	}
	for _, h := range extra {
		res.AppendHeader(h)
	}
	if len(body) > 0 {
		ct := sip.ContentTypeHeader(ContentTypeCSTA)
		res.AppendHeader(&ct)
		res.AppendHeader(sip.NewHeader("Content-Disposition", "signal;handling=required"))
	}
	res.SetBody(body)
	return res
}

func statusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 405:
		return "Method Not Allowed"
	case 413:
		return "Request Entity Too Large"
	case 415:
		return "Unsupported Media Type"
	case 420:
		return "Bad Extension"
	case 422:
		return "Session Interval Too Small"
	case 481:
		return "Call/Transaction Does Not Exist"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 491:
		return "Request Pending"
	case 500:
		return "Server Internal Error"
	case 503:
		return "Service Unavailable"
	}
	return "Unknown"
}

// reject answers a request with a bodiless status and logs it once.
func (s *Server) reject(tx sip.ServerTransaction, req *sip.Request, status int, why string, extra ...sip.Header) {
	s.rejectReason(tx, req, status, "", why, extra...)
}

// rejectReason is reject with a reason phrase of ours ("": the standard one).
func (s *Server) rejectReason(tx sip.ServerTransaction, req *sip.Request, status int, phrase, why string, extra ...sip.Header) {
	s.log.Info().Str("method", string(req.Method)).Str("call_id", callID(req)).Str("source", req.Source()).
		Int("status", status).Str("reason", why).Msg("SIP request refused")
	if _, err := s.respond(tx, req, status, phrase, nil, extra...); err != nil {
		s.log.Debug().Err(err).Msg("response not sent")
	}
}

// refuseAuth answers an INVITE whose digest check did not pass. Failures
// are counted, not logged one by one: a guessing run would write a line
// per guess. A lockout is audited once, when it starts.
func (s *Server) refuseAuth(tx sip.ServerTransaction, req *sip.Request, a *authenticator, r authResult) {
	now, src := time.Now(), hostOf(req.Source())
	switch r.verdict {
	case authLocked:
		s.respondQuiet(tx, req, 403, "Too many failed authentications",
			sip.NewHeader("Retry-After", strconv.Itoa(max(1, int((r.retry+time.Second-1)/time.Second)))))
		return
	case authFailed:
		s.stats.authFailures.Add(1)
		if r.locked > 0 {
			s.stats.authLockouts.Add(1)
			who := "user " + r.user + " from this source"
			if r.bySource {
				who = "every user from this source"
			}
			s.log.Warn().Bool("audit", true).Str("source", src).Str("user", r.user).Dur("locked_for", r.locked).
				Str("scope", who).Msg("digest authentication locked out after repeated failures")
		}
	}
	s.respondQuiet(tx, req, 401, "", a.challenge(now, src, r.verdict == authStale))
}

// respondQuiet is reject without the info line.
func (s *Server) respondQuiet(tx sip.ServerTransaction, req *sip.Request, status int, reason string, extra ...sip.Header) {
	s.log.Debug().Str("method", string(req.Method)).Str("call_id", callID(req)).Str("source", req.Source()).
		Int("status", status).Msg("SIP request refused")
	if _, err := s.respond(tx, req, status, reason, nil, extra...); err != nil {
		s.log.Debug().Err(err).Msg("response not sent")
	}
}

func callID(req *sip.Request) string {
	if c := req.CallID(); c != nil {
		return string(*c)
	}
	return ""
}

// cstaBody returns the CSTA document of a request, or the status refusing
// it: 413 over the size cap, 488 for SDP (a media call), 415 for anything
// but application/csta+xml (or a multipart holding one).
func (s *Server) cstaBody(req *sip.Request) ([]byte, int, string) {
	body := req.Body()
	if len(body) > s.conf().MaxBodyBytes {
		return nil, 413, "body of " + strconv.Itoa(len(body)) + " bytes is over max_body_bytes"
	}
	if len(body) == 0 {
		return nil, 0, ""
	}
	ct := req.ContentType()
	if ct == nil {
		return nil, 415, "body without Content-Type"
	}
	media, params, err := mime.ParseMediaType(ct.Value())
	if err != nil {
		return nil, 415, "unparseable Content-Type"
	}
	switch {
	case media == ContentTypeCSTA:
		return body, 0, ""
	case media == "application/sdp":
		return nil, 488, "SDP offered: the gateway takes no media"
	case strings.HasPrefix(media, "multipart/"):
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		var found []byte
		for i := 0; i < 8; i++ {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			pm, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
			b, err := io.ReadAll(io.LimitReader(p, int64(s.conf().MaxBodyBytes)))
			if err != nil {
				break
			}
			switch pm {
			case "application/sdp":
				return nil, 488, "SDP offered: the gateway takes no media"
			case ContentTypeCSTA:
				if found == nil {
					found = b
				}
			}
		}
		if found == nil {
			return nil, 415, "multipart body without a CSTA part"
		}
		return found, 0, ""
	}
	return nil, 415, "Content-Type " + media + " is not " + ContentTypeCSTA
}

// sessionExpires reads Session-Expires (delta-seconds[;refresher=...]).
func sessionExpires(req *sip.Request) (time.Duration, bool) {
	h := req.GetHeader("Session-Expires")
	if h == nil {
		h = req.GetHeader("x")
	}
	if h == nil {
		return 0, false
	}
	v := strings.TrimSpace(h.Value())
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = strings.TrimSpace(v[:i])
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// unsupportedRequire returns the option tags of Require we do not support.
func unsupportedRequire(req *sip.Request) []string {
	var out []string
	for _, h := range req.GetHeaders("Require") {
		for _, t := range strings.Split(h.Value(), ",") {
			t = strings.TrimSpace(t)
			if t != "" && !strings.EqualFold(t, "timer") {
				out = append(out, t)
			}
		}
	}
	return out
}

// timerChecks applies the session-timer rules of an INVITE or UPDATE: only
// "timer" may be required (else 420), Session-Expires may not be below
// Min-SE (else 422). It answers a refusal itself and returns the interval
// to use otherwise.
func (s *Server) timerChecks(tx sip.ServerTransaction, req *sip.Request) (time.Duration, bool) {
	if u := unsupportedRequire(req); len(u) > 0 {
		s.reject(tx, req, 420, "unsupported Require", sip.NewHeader("Unsupported", strings.Join(u, ", ")))
		return 0, false
	}
	se := s.conf().SessionExpires
	if v, ok := sessionExpires(req); ok {
		if v < s.conf().MinSE {
			s.reject(tx, req, 422, "Session-Expires below Min-SE", sip.NewHeader("Min-SE", strconv.Itoa(int(s.conf().MinSE/time.Second))))
			return 0, false
		}
		se = min(se, v)
	}
	return se, true
}

// timerHeaders are the session-timer headers of our 2xx. A client that
// said Supported: timer refreshes (refresher=uac, Require: timer); one that
// did not cannot be required to (RFC 4028 §9): the gateway is the refresher
// then (refresher=uas) and refreshes with UPDATE itself.
func timerHeaders(se time.Duration, uas bool) []sip.Header {
	if uas {
		return []sip.Header{
			sip.NewHeader("Supported", "timer"),
			sip.NewHeader("Session-Expires", strconv.Itoa(int(se/time.Second))+";refresher=uas"),
		}
	}
	return []sip.Header{
		sip.NewHeader("Supported", "timer"),
		sip.NewHeader("Require", "timer"),
		sip.NewHeader("Session-Expires", strconv.Itoa(int(se/time.Second))+";refresher=uac"),
	}
}

// supportsTimer reports whether a request says Supported: timer.
func supportsTimer(req *sip.Request) bool {
	for _, h := range append(req.GetHeaders("Supported"), req.GetHeaders("k")...) {
		for _, t := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(t), "timer") {
				return true
			}
		}
	}
	return false
}

func (s *Server) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		s.onInDialog(req, tx)
		return
	}
	acc := s.check(req, nil)
	if !acc.ok {
		if a := s.pol().auth; a != nil {
			s.refuseAuth(tx, req, a, acc.auth)
			return
		}
		s.reject(tx, req, 403, "source not trusted")
		return
	}
	if !s.pol().limiter.allow(hostOf(req.Source()), acc.trusted, time.Now()) {
		s.reject(tx, req, 503, "INVITE rate limit of the source", s.retryAfter(time.Second))
		return
	}
	if s.draining.Load() {
		s.reject(tx, req, 503, "draining", s.retryAfter(0))
		return
	}
	se, ok := s.timerChecks(tx, req)
	if !ok {
		return
	}
	body, st, why := s.cstaBody(req)
	if st != 0 {
		s.reject(tx, req, st, why)
		return
	}
	if len(body) == 0 {
		s.reject(tx, req, 488, "INVITE without a CSTA body")
		return
	}
	from, to := req.From(), req.To()
	if from == nil || to == nil || req.CallID() == nil || req.Contact() == nil || !from.Params.Has("tag") {
		s.reject(tx, req, 400, "INVITE without From tag, To, Call-ID or Contact")
		return
	}
	d := s.newDialog(req, se)
	if acc.digest {
		d.authIdentity = acc.identity
	}
	ctx, cancel := s.ctx()
	rep := s.handler.Invite(ctx, d, s.toRequest(req, body, acc))
	cancel()
	defer rep.sent()
	if rep.Status/100 != 2 {
		var extra []sip.Header
		if rep.Status == 503 {
			extra = append(extra, s.retryAfter(rep.RetryAfter))
		}
		if _, err := s.respond(tx, req, rep.Status, rep.Reason, rep.Body, extra...); err != nil {
			s.log.Debug().Err(err).Msg("INVITE rejection not sent")
		}
		return
	}
	s.establish(d, tx, req, rep)
}

func (s *Server) retryAfter(d time.Duration) sip.Header {
	if d <= 0 {
		d = s.conf().RetryAfter
	}
	return sip.NewHeader("Retry-After", strconv.Itoa(int(d/time.Second)))
}

func (s *Server) newDialog(req *sip.Request, se time.Duration) *Dialog {
	from := req.From()
	d := &Dialog{
		s:          s,
		callID:     callID(req),
		localTag:   newTag(),
		remoteTag:  from.Params.GetOr("tag", ""),
		transport:  strings.ToLower(req.Transport()),
		source:     req.Source(),
		localURI:   *req.To().Address.Clone(),
		remoteFrom: sip.FromHeader{DisplayName: from.DisplayName, Address: *from.Address.Clone(), Params: from.Params.Clone()},
		expires:    se,
		uasRefresh: !supportsTimer(req),
	}
	d.key = dialogKey(d.callID, d.localTag, d.remoteTag)
	d.remoteTarget = *req.Contact().Address.Clone()
	for _, h := range req.GetHeaders("Record-Route") {
		for _, v := range splitHeaderList(h.Value()) {
			d.routeSet = append(d.routeSet, v)
		}
	}
	d.routeDest = routeDest(d.routeSet)
	s.mu.Lock()
	c, ok := s.contacts[d.transport]
	s.mu.Unlock()
	if !ok {
		c = sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: "127.0.0.1"}}
	}
	d.contact = *c.Clone()
	d.cseq.Store(1 + rand.Uint32N(10000))
	return d
}

// routeDest is where requests along a route set go: the first route's
// host:port ("" without a route set).
func routeDest(routeSet []string) string {
	if len(routeSet) == 0 {
		return ""
	}
	var u sip.Uri
	if err := sip.ParseUri(strings.Trim(uriPart(routeSet[0]), "<>"), &u); err != nil {
		return ""
	}
	if u.Port == 0 {
		return u.Host + ":5060"
	}
	return u.HostPort()
}

func uriPart(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return v[i+1 : i+j]
		}
	}
	return v
}

// splitHeaderList splits a comma-separated header value, respecting <...>
// and quotes.
func splitHeaderList(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			quoted = !quoted
		case '<':
			if !quoted {
				depth++
			}
		case '>':
			if !quoted && depth > 0 {
				depth--
			}
		case ',':
			if !quoted && depth == 0 {
				if p := strings.TrimSpace(v[start:i]); p != "" {
					out = append(out, p)
				}
				start = i + 1
			}
		}
	}
	if p := strings.TrimSpace(v[start:]); p != "" {
		out = append(out, p)
	}
	return out
}

// establish answers 200 to an initial INVITE and registers the dialog.
func (s *Server) establish(d *Dialog, tx sip.ServerTransaction, req *sip.Request, rep Reply) {
	d.mu.Lock()
	d.established = true
	// Every transport waits for the ACK (RFC 3261 §13.3.1.4): over UDP
	// the 2xx is retransmitted meanwhile; over TCP and TLS it is not, but
	// a dialog never acknowledged within 64·T1 ends all the same, or
	// never-ACKed INVITEs would hold a user's session slots for ever.
	ack := make(chan struct{})
	d.ackWait = ack
	d.mu.Unlock()
	s.dialogs.Store(d.key, d)
	if d.transport != "udp" {
		s.conns.addDialog(d.source)
	}
	s.stats.dialogs.Add(1)
	res := s.build2xx(d, req, rep.Body)
	if err := tx.Respond(res); err != nil {
		// CANCEL got there first (sipgo answered 487) or the transport
		// failed: the dialog never existed for the client.
		s.log.Info().Err(err).Str("call_id", d.callID).Msg("INVITE ended before our 200 OK")
		d.end(EndCancelled)
		return
	}
	d.armTimer()
	if d.transport == "udp" {
		go d.retransmit2xx(tx, res, ack)
	} else {
		go d.awaitAck(ack)
	}
}

func (s *Server) build2xx(d *Dialog, req *sip.Request, body []byte) *sip.Response {
	d.mu.Lock()
	uas := d.uasRefresh
	d.mu.Unlock()
	extra := append([]sip.Header{d.contact.Clone()}, timerHeaders(d.SessionExpires(), uas)...)
	res := s.response(req, 200, "", body, extra...)
	if to := res.To(); to != nil {
		to.Params.Add("tag", d.localTag)
	}
	return res
}

// lookup finds the dialog of an in-dialog request: Call-ID, our tag (To),
// theirs (From). CSeq plays no part (sipe resets it after every INVITE).
func (s *Server) lookup(req *sip.Request) *Dialog {
	to, from := req.To(), req.From()
	if to == nil || from == nil {
		return nil
	}
	local, _ := to.Params.Get("tag")
	remote, _ := from.Params.Get("tag")
	v, ok := s.dialogs.Load(dialogKey(callID(req), local, remote))
	if !ok {
		return nil
	}
	return v.(*Dialog)
}

func (s *Server) onAck(req *sip.Request, tx sip.ServerTransaction) {
	if d := s.lookup(req); d != nil {
		d.acked()
	}
}

// lookupOrAdopt is lookup and the access check of an in-dialog request;
// for a dialog this node does not have, a request from a trusted proxy is
// offered to the handler's Adopter (a dialog another node of a cluster
// established). The check runs once (with digest accounts it consumes a
// nonce count). ok is false when the request has been answered here.
func (s *Server) lookupOrAdopt(req *sip.Request, tx sip.ServerTransaction) (d *Dialog, acc access, ok bool) {
	if d = s.lookup(req); d != nil {
		return d, s.check(req, d), true
	}
	if acc = s.check(req, nil); !acc.trusted {
		return nil, acc, true
	}
	d, rep := s.adopt(req)
	if d == nil && rep.Status != 0 {
		var extra []sip.Header
		if rep.Status == 503 {
			extra = append(extra, s.retryAfter(rep.RetryAfter))
		}
		s.rejectReason(tx, req, rep.Status, rep.Reason, "dialog of another node not taken over", extra...)
		return nil, acc, false
	}
	if d == nil {
		// Adopted meanwhile by another path of the handler (a claim of
		// many at once) is known now, not unknown.
		d = s.lookup(req)
	}
	return d, acc, true
}

func (s *Server) onBye(req *sip.Request, tx sip.ServerTransaction) {
	d, acc, ok := s.lookupOrAdopt(req, tx)
	if !ok {
		return
	}
	if !acc.ok {
		s.reject(tx, req, 403, "source not trusted")
		return
	}
	if d == nil {
		s.reject(tx, req, 481, "BYE for an unknown dialog")
		return
	}
	if _, err := s.respond(tx, req, 200, "", nil); err != nil {
		s.log.Debug().Err(err).Msg("200 to BYE not sent")
	}
	d.end(EndClientBye)
}

// onInDialog handles INFO, UPDATE and re-INVITE.
func (s *Server) onInDialog(req *sip.Request, tx sip.ServerTransaction) {
	d, acc, ok := s.lookupOrAdopt(req, tx)
	if !ok {
		return
	}
	if !acc.ok {
		s.reject(tx, req, 403, "source not trusted")
		return
	}
	if d == nil {
		s.reject(tx, req, 481, "no such dialog")
		return
	}
	body, st, why := s.cstaBody(req)
	if st != 0 {
		s.reject(tx, req, st, why)
		return
	}
	refresh := req.Method == sip.INVITE || req.Method == sip.UPDATE
	var se time.Duration
	if refresh {
		var ok bool
		if se, ok = s.timerChecks(tx, req); !ok {
			return
		}
	}
	holdsInvite := false
	release := func() {
		if holdsInvite {
			holdsInvite = false
			d.mu.Lock()
			d.inviteBusy = false
			d.mu.Unlock()
		}
	}
	defer release()
	if req.Method == sip.INVITE {
		d.mu.Lock()
		busy := d.inviteBusy
		d.inviteBusy = true
		d.mu.Unlock()
		if busy {
			s.reject(tx, req, 491, "re-INVITE while another INVITE is in progress")
			return
		}
		holdsInvite = true
	}
	if req.Method == sip.INFO && len(body) == 0 {
		// An empty INFO (keep-alive, or a Cisco CUP quirk): nothing to do.
		if _, err := s.respond(tx, req, 200, "", nil); err != nil {
			s.log.Debug().Err(err).Msg("200 to empty INFO not sent")
		}
		return
	}
	ctx, cancel := s.ctx()
	rep := s.handler.InDialog(ctx, d, s.toRequest(req, body, acc))
	cancel()
	// Sent may run the session's queued work: let the next re-INVITE in
	// first.
	defer func() { release(); rep.sent() }()
	if rep.Status == 0 {
		rep.Status = 200
	}
	if rep.Status/100 != 2 || !refresh {
		var extra []sip.Header
		if rep.Status == 503 {
			extra = append(extra, s.retryAfter(rep.RetryAfter))
		}
		if _, err := s.respond(tx, req, rep.Status, rep.Reason, rep.Body, extra...); err != nil {
			s.log.Debug().Err(err).Str("call_id", d.callID).Msg("response not sent")
		}
		if rep.End {
			d.end(EndStale)
		}
		return
	}
	// A successful refresh: new interval, new remote target.
	d.mu.Lock()
	d.expires = se
	d.uasRefresh = !supportsTimer(req)
	if c := req.Contact(); c != nil {
		d.remoteTarget = *c.Address.Clone()
	}
	var ack chan struct{}
	if req.Method == sip.INVITE && d.transport == "udp" {
		if d.ackWait != nil {
			close(d.ackWait)
		}
		ack = make(chan struct{})
		d.ackWait = ack
	}
	d.mu.Unlock()
	d.armTimer()
	res := s.build2xx(d, req, rep.Body)
	if err := tx.Respond(res); err != nil {
		s.log.Debug().Err(err).Str("call_id", d.callID).Msg("refresh answer not sent")
		return
	}
	if ack != nil {
		go d.retransmit2xx(tx, res, ack)
	}
}

func (s *Server) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	if req.CallID() == nil || req.From() == nil || req.To() == nil {
		s.reject(tx, req, 400, "OPTIONS without Call-ID, From or To")
		return
	}
	if s.pol().auth == nil && !s.check(req, nil).ok {
		s.reject(tx, req, 403, "source not in trusted_hosts")
		return
	}
	if r, ok := s.handler.(Readiness); s.draining.Load() || ok && !r.Ready() {
		// A dispatching proxy's probe: send sign-ins elsewhere.
		s.reject(tx, req, 503, "not ready or draining", s.retryAfter(0))
		return
	}
	if _, err := s.respond(tx, req, 200, "", nil, sip.NewHeader("Supported", "timer")); err != nil {
		s.log.Debug().Err(err).Msg("200 to OPTIONS not sent")
	}
}

// onCancel sees only CANCELs that matched no INVITE transaction (sipgo
// answers the others itself, with 487 to the INVITE).
func (s *Server) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	s.reject(tx, req, 481, "CANCEL for no pending INVITE")
}

func (s *Server) onNoRoute(req *sip.Request, tx sip.ServerTransaction) {
	if req.IsAck() {
		return
	}
	s.reject(tx, req, 405, "method not supported")
}
