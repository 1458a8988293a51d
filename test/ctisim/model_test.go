package ctisim

import (
	"testing"
	"time"

	"github.com/cstagw/cstagw/csta"
	"github.com/stretchr/testify/require"
)

const (
	A     = "40001"
	B     = "40002"
	C     = "40003"
	D     = "40004"
	X     = "+12065550147" // an external caller id
	XDial = "912065550147" // the same party dialled with trunk prefix 9
	XNum  = "12065550147"  // ...as the switch names it once dialled
)

func req(k csta.Kind) *csta.Message { return &csta.Message{Kind: k} }

func makeCallReq(from, to string) *csta.Message {
	return &csta.Message{Kind: csta.KindMakeCall, CallingDevice: csta.Dev(from), Destination: csta.Dev(to)}
}

func connReq(k csta.Kind, call, dev string) *csta.Message {
	return &csta.Message{Kind: k, Connection: conn(call, dev)}
}

func pairReq(k csta.Kind, heldCall, heldDev, activeCall, activeDev string) *csta.Message {
	return &csta.Message{Kind: k, HeldCall: conn(heldCall, heldDev), ActiveCall: conn(activeCall, activeDev)}
}

func fwdReq(dev, typ string, on bool, dn string, rings int) *csta.Message {
	return &csta.Message{Kind: csta.KindSetForwarding, Device: csta.Dev(dev), ForwardingType: typ, ActivateForward: on, Destination: csta.Dev(dn), RingCount: rings}
}

type modelCase struct {
	name  string
	setup func(h *harness)
	// do returns the request to send, or nil after driving a control action
	// or a timer itself.
	do     func(h *harness) *csta.Message
	err    csta.ErrorCode
	calls  []string
	events map[string][]string
}

// TestCallModel is the call model table: from a starting state, one service
// (or control action, or timer); the resulting connection states, the exact
// ordered events each monitored station gets (kind, localConnectionInfo,
// cause), or the CSTA error, after which nothing may have changed.
func TestCallModel(t *testing.T) {
	talk := func(h *harness) { h.calls["c1"] = h.talk(A, B) }
	ringing := func(h *harness) { h.calls["c1"] = h.makeCall(A, B) }
	consultAnswered := func(h *harness) { h.calls["c1"], h.calls["c2"] = h.consult(A, B, C, true) }
	consultRinging := func(h *harness) { h.calls["c1"], h.calls["c2"] = h.consult(A, B, C, false) }
	c := func(h *harness, name string) string { return h.calls[name] }

	cases := []modelCase{
		// ---- MakeCall and delivery ----
		{
			name:  "MakeCall to an idle station",
			do:    func(h *harness) *csta.Message { return makeCallReq(A, B) },
			calls: []string{"40001:connected 40002:alerting"},
			events: map[string][]string{
				A: {"ServiceInitiated initiated makeCall", "Originated connected makeCall", "Delivered connected newCall"},
				B: {"Delivered alerting newCall"},
			},
		},
		{
			name:  "MakeCall to a busy station fails the caller",
			setup: func(h *harness) { h.talk(B, C) },
			do:    func(h *harness) *csta.Message { return makeCallReq(A, B) },
			calls: []string{"40001:fail", "40002:connected 40003:connected"},
			events: map[string][]string{
				A: {"ServiceInitiated initiated makeCall", "Originated connected makeCall", "Failed fail busy"},
			},
		},
		{
			name: "MakeCall to a station in do-not-disturb",
			setup: func(h *harness) {
				h.ok(&csta.Message{Kind: csta.KindSetDoNotDisturb, Device: csta.Dev(B), DoNotDisturbOn: true})
			},
			do:    func(h *harness) *csta.Message { return makeCallReq(A, B) },
			calls: []string{"40001:fail"},
			events: map[string][]string{
				A: {"ServiceInitiated initiated makeCall", "Originated connected makeCall", "Failed fail doNotDisturb"},
			},
		},
		{
			name:  "MakeCall to a station forwarded immediately",
			setup: func(h *harness) { h.ok(fwdReq(B, "forwardImmediate", true, C, 0)) },
			do:    func(h *harness) *csta.Message { return makeCallReq(A, B) },
			calls: []string{"40001:connected 40003:alerting"},
			events: map[string][]string{
				A: {"ServiceInitiated initiated makeCall", "Originated connected makeCall", "Diverted connected callForwardImmediate", "Delivered connected callForwardImmediate"},
				B: {"Diverted null callForwardImmediate"},
				C: {"Delivered alerting callForwardImmediate"},
			},
		},
		{
			// The stored forwarding number has had its trunk prefix taken
			// once: diverting must not take it again (40003 would ring).
			name:  "MakeCall to a station forwarded to an outside number",
			setup: func(h *harness) { h.ok(fwdReq(B, "forwardImmediate", true, "9940003", 0)) },
			do:    func(h *harness) *csta.Message { return makeCallReq(A, B) },
			calls: []string{"40001:connected 940003:alerting"},
			events: map[string][]string{
				A: {"ServiceInitiated initiated makeCall", "Originated connected makeCall", "Diverted connected callForwardImmediate", "Delivered connected callForwardImmediate"},
				B: {"Diverted null callForwardImmediate"},
			},
		},
		{
			name: "MakeCall to a busy station with forwardBusy",
			setup: func(h *harness) {
				h.ok(fwdReq(B, "forwardBusy", true, D, 0))
				h.talk(B, C)
			},
			do:    func(h *harness) *csta.Message { return makeCallReq(A, B) },
			calls: []string{"40001:connected 40004:alerting", "40002:connected 40003:connected"},
			events: map[string][]string{
				A: {"ServiceInitiated initiated makeCall", "Originated connected makeCall", "Diverted connected callForwardBusy", "Delivered connected callForwardBusy"},
				B: {"Diverted null callForwardBusy"},
				D: {"Delivered alerting callForwardBusy"},
			},
		},
		{
			name:  "MakeCall to an external number through the trunk prefix",
			do:    func(h *harness) *csta.Message { return makeCallReq(A, XDial) },
			calls: []string{"40001:connected 12065550147:alerting"},
			events: map[string][]string{
				A: {"ServiceInitiated initiated makeCall", "Originated connected makeCall", "Delivered connected newCall"},
			},
		},
		{
			name: "ring-no-answer timeout with forwardNoAns",
			setup: func(h *harness) {
				h.ok(fwdReq(B, "forwardNoAns", true, C, 2))
				h.calls["c1"] = h.makeCall(A, B)
			},
			do:    func(h *harness) *csta.Message { h.fire(); return nil },
			calls: []string{"40001:connected 40003:alerting"},
			events: map[string][]string{
				A: {"Diverted connected callForwardNoAnswer", "Delivered connected callForwardNoAnswer"},
				B: {"Diverted null callForwardNoAnswer"},
				C: {"Delivered alerting callForwardNoAnswer"},
			},
		},

		// ---- Answer, clear ----
		{
			name:  "AnswerCall on the alerting connection",
			setup: ringing,
			do:    func(h *harness) *csta.Message { return connReq(csta.KindAnswerCall, c(h, "c1"), B) },
			calls: []string{"40001:connected 40002:connected"},
			events: map[string][]string{
				A: {"Established connected normal"},
				B: {"Established connected normal"},
			},
		},
		{
			name:  "ClearConnection by one party ends a two-party call",
			setup: talk,
			do:    func(h *harness) *csta.Message { return connReq(csta.KindClearConnection, c(h, "c1"), A) },
			calls: []string{},
			events: map[string][]string{
				A: {"ConnectionCleared null normalClearing"},
				B: {"ConnectionCleared connected normalClearing", "ConnectionCleared null normalClearing"},
			},
		},
		{
			name:  "ClearConnection by the caller before answer cancels the call",
			setup: ringing,
			do:    func(h *harness) *csta.Message { return connReq(csta.KindClearConnection, c(h, "c1"), A) },
			calls: []string{},
			events: map[string][]string{
				A: {"ConnectionCleared null normalClearing"},
				B: {"ConnectionCleared alerting normalClearing", "ConnectionCleared null callCancelled"},
			},
		},
		{
			name:  "ClearConnection of the alerting party",
			setup: ringing,
			do:    func(h *harness) *csta.Message { return connReq(csta.KindClearConnection, c(h, "c1"), B) },
			calls: []string{},
			events: map[string][]string{
				A: {"ConnectionCleared connected normalClearing", "ConnectionCleared null normalClearing"},
				B: {"ConnectionCleared null normalClearing"},
			},
		},
		{
			name: "ClearConnection of a failed caller",
			setup: func(h *harness) {
				h.ok(&csta.Message{Kind: csta.KindSetDoNotDisturb, Device: csta.Dev(B), DoNotDisturbOn: true})
				h.calls["c1"] = h.makeCall(A, B)
			},
			do:     func(h *harness) *csta.Message { return connReq(csta.KindClearConnection, c(h, "c1"), A) },
			calls:  []string{},
			events: map[string][]string{A: {"ConnectionCleared null normalClearing"}},
		},
		{
			name:  "ClearCall clears every connection",
			setup: talk,
			do:    func(h *harness) *csta.Message { return connReq(csta.KindClearCall, c(h, "c1"), "") },
			calls: []string{},
			events: map[string][]string{
				A: {"ConnectionCleared null normalClearing"},
				B: {"ConnectionCleared connected normalClearing", "ConnectionCleared null normalClearing"},
			},
		},

		// ---- Hold, retrieve, alternate, reconnect ----
		{
			name:  "HoldCall",
			setup: talk,
			do:    func(h *harness) *csta.Message { return connReq(csta.KindHoldCall, c(h, "c1"), A) },
			calls: []string{"40001:hold 40002:connected"},
			events: map[string][]string{
				A: {"Held hold normal"},
				B: {"Held connected normal"},
			},
		},
		{
			name:  "RetrieveCall",
			setup: func(h *harness) { talk(h); h.hold(c(h, "c1"), A) },
			do:    func(h *harness) *csta.Message { return connReq(csta.KindRetrieveCall, c(h, "c1"), A) },
			calls: []string{"40001:connected 40002:connected"},
			events: map[string][]string{
				A: {"Retrieved connected normal"},
				B: {"Retrieved connected normal"},
			},
		},
		{
			name:  "AlternateCall",
			setup: consultAnswered,
			do: func(h *harness) *csta.Message {
				return pairReq(csta.KindAlternateCall, c(h, "c1"), A, c(h, "c2"), A)
			},
			calls: []string{"40001:connected 40002:connected", "40001:hold 40003:connected"},
			events: map[string][]string{
				A: {"Held hold alternate", "Retrieved connected alternate"},
				B: {"Retrieved connected alternate"},
				C: {"Held connected alternate"},
			},
		},
		{
			name:  "ReconnectCall",
			setup: consultAnswered,
			do: func(h *harness) *csta.Message {
				return pairReq(csta.KindReconnectCall, c(h, "c1"), A, c(h, "c2"), A)
			},
			calls: []string{"40001:connected 40002:connected"},
			events: map[string][]string{
				A: {"ConnectionCleared null normalClearing", "Retrieved connected normal"},
				B: {"Retrieved connected normal"},
				C: {"ConnectionCleared connected normalClearing", "ConnectionCleared null normalClearing"},
			},
		},

		// ---- Consultation, transfer, conference, deflect ----
		{
			name:  "ConsultationCall",
			setup: talk,
			do: func(h *harness) *csta.Message {
				return &csta.Message{Kind: csta.KindConsultationCall, Connection: conn(c(h, "c1"), A), Destination: csta.Dev(C)}
			},
			calls: []string{"40001:connected 40003:alerting", "40001:hold 40002:connected"},
			events: map[string][]string{
				A: {"Held hold consultation", "ServiceInitiated initiated consultation", "Originated connected consultation", "Delivered connected newCall"},
				B: {"Held connected consultation"},
				C: {"Delivered alerting newCall"},
			},
		},
		{
			name:  "TransferCall after the consulted party answered",
			setup: consultAnswered,
			do: func(h *harness) *csta.Message {
				return pairReq(csta.KindTransferCall, c(h, "c1"), A, c(h, "c2"), A)
			},
			calls: []string{"40002:connected 40003:connected"},
			events: map[string][]string{
				A: {"Transfered null transfer"},
				B: {"Transfered connected transfer"},
				C: {"Transfered connected transfer"},
			},
		},
		{
			name:  "TransferCall while the consulted party rings",
			setup: consultRinging,
			do: func(h *harness) *csta.Message {
				return pairReq(csta.KindTransferCall, c(h, "c1"), A, c(h, "c2"), A)
			},
			calls: []string{"40002:connected 40003:alerting"},
			events: map[string][]string{
				A: {"Transfered null transfer"},
				B: {"Transfered connected transfer"},
				C: {"Transfered alerting transfer"},
			},
		},
		{
			name:  "ConferenceCall",
			setup: consultAnswered,
			do: func(h *harness) *csta.Message {
				return pairReq(csta.KindConferenceCall, c(h, "c1"), A, c(h, "c2"), A)
			},
			calls: []string{"40001:connected 40002:connected 40003:connected"},
			events: map[string][]string{
				A: {"Conferenced connected conference"},
				B: {"Conferenced connected conference"},
				C: {"Conferenced connected conference"},
			},
		},
		{
			name:  "SingleStepTransferCall",
			setup: talk,
			do: func(h *harness) *csta.Message {
				return &csta.Message{Kind: csta.KindSingleStepTransferCall, ActiveCall: conn(c(h, "c1"), A), Destination: csta.Dev(C)}
			},
			calls: []string{"40002:connected 40003:alerting"},
			events: map[string][]string{
				A: {"Transfered null singleStepTransfer"},
				B: {"Transfered connected singleStepTransfer", "Delivered connected singleStepTransfer"},
				C: {"Delivered alerting singleStepTransfer"},
			},
		},
		{
			name:  "DeflectCall on the alerting connection",
			setup: ringing,
			do: func(h *harness) *csta.Message {
				return &csta.Message{Kind: csta.KindDeflectCall, Connection: conn(c(h, "c1"), B), Destination: csta.Dev(C)}
			},
			calls: []string{"40001:connected 40003:alerting"},
			events: map[string][]string{
				A: {"Diverted connected redirected", "Delivered connected redirected"},
				B: {"Diverted null redirected"},
				C: {"Delivered alerting redirected"},
			},
		},
		{
			name:  "GenerateDigits",
			setup: talk,
			do: func(h *harness) *csta.Message {
				return &csta.Message{Kind: csta.KindGenerateDigits, Connection: conn(c(h, "c1"), A), CharactersToSend: "123#"}
			},
			calls: []string{"40001:connected 40002:connected"},
		},

		// ---- Features ----
		{
			name:   "SetForwarding",
			do:     func(h *harness) *csta.Message { return fwdReq(B, "forwardImmediate", true, C, 0) },
			calls:  []string{},
			events: map[string][]string{B: {"Forwarding"}},
		},
		{
			name: "SetDoNotDisturb",
			do: func(h *harness) *csta.Message {
				return &csta.Message{Kind: csta.KindSetDoNotDisturb, Device: csta.Dev(B), DoNotDisturbOn: true}
			},
			calls:  []string{},
			events: map[string][]string{B: {"DoNotDisturb"}},
		},

		// ---- Control actions (the API's and a person's view) ----
		{
			name: "incoming trunk call",
			do: func(h *harness) *csta.Message {
				_, err := h.sw.placeCall(X, B)
				require.NoError(h.t, err)
				return nil
			},
			calls:  []string{"+12065550147:connected 40002:alerting"},
			events: map[string][]string{B: {"Delivered alerting newCall"}},
		},
		{
			name: "a station's user dials",
			do: func(h *harness) *csta.Message {
				_, err := h.sw.placeCall(A, B)
				require.NoError(h.t, err)
				return nil
			},
			calls: []string{"40001:connected 40002:alerting"},
			events: map[string][]string{
				A: {"ServiceInitiated initiated newCall", "Originated connected newCall", "Delivered connected newCall"},
				B: {"Delivered alerting newCall"},
			},
		},
		{
			name:  "the called station rejects as busy",
			setup: ringing,
			do: func(h *harness) *csta.Message {
				require.NoError(h.t, h.sw.rejectAction(c(h, "c1"), B))
				return nil
			},
			calls: []string{"40001:fail"},
			events: map[string][]string{
				A: {"ConnectionCleared connected busy", "Failed fail busy"},
				B: {"ConnectionCleared null busy"},
			},
		},
		{
			name:  "an external caller meets a busy station and hangs up",
			setup: func(h *harness) { h.talk(B, C) },
			do: func(h *harness) *csta.Message {
				_, err := h.sw.placeCall(X, B)
				require.NoError(h.t, err)
				return nil
			},
			calls: []string{"40002:connected 40003:connected"},
		},
		{
			name:  "the far end answers",
			setup: func(h *harness) { h.calls["c1"] = h.makeCall(A, XDial) },
			do: func(h *harness) *csta.Message {
				require.NoError(h.t, h.sw.answerAction(c(h, "c1"), ""))
				return nil
			},
			calls:  []string{"40001:connected 12065550147:connected"},
			events: map[string][]string{A: {"Established connected normal"}},
		},
		{
			name: "the far end hangs up",
			setup: func(h *harness) {
				h.calls["c1"] = h.makeCall(A, XDial)
				require.NoError(h.t, h.sw.answerAction(c(h, "c1"), XNum))
			},
			do: func(h *harness) *csta.Message {
				require.NoError(h.t, h.sw.hangupAction(c(h, "c1"), XNum))
				return nil
			},
			calls:  []string{},
			events: map[string][]string{A: {"ConnectionCleared connected normalClearing", "ConnectionCleared null normalClearing"}},
		},

		// ---- Errors: unknown ids ----
		{name: "AnswerCall unknown call", do: func(h *harness) *csta.Message { return connReq(csta.KindAnswerCall, "deadbeef", B) },
			err: csta.CodeInvalidConnectionID},
		{name: "AnswerCall device not in the call", setup: ringing,
			do:  func(h *harness) *csta.Message { return connReq(csta.KindAnswerCall, c(h, "c1"), C) },
			err: csta.CodeInvalidConnectionID},
		{name: "ClearConnection unknown call", do: func(h *harness) *csta.Message { return connReq(csta.KindClearConnection, "deadbeef", A) },
			err: csta.CodeInvalidConnectionID},
		{name: "ClearCall unknown call", do: func(h *harness) *csta.Message { return connReq(csta.KindClearCall, "deadbeef", "") },
			err: csta.CodeInvalidCallID},
		{name: "HoldCall unknown call", do: func(h *harness) *csta.Message { return connReq(csta.KindHoldCall, "deadbeef", A) },
			err: csta.CodeInvalidConnectionID},
		{name: "ConferenceCall unknown call", setup: talk,
			do:  func(h *harness) *csta.Message { return pairReq(csta.KindConferenceCall, "deadbeef", A, c(h, "c1"), A) },
			err: csta.CodeInvalidConnectionID},
		{name: "MonitorStop unknown monitor",
			do: func(h *harness) *csta.Message {
				return &csta.Message{Kind: csta.KindMonitorStop, MonitorCrossRefID: "00000000"}
			},
			err: csta.CodeInvalidMonitorCrossRefID},

		// ---- Errors: wrong state ----
		{name: "AnswerCall on a connected connection", setup: talk,
			do:  func(h *harness) *csta.Message { return connReq(csta.KindAnswerCall, c(h, "c1"), B) },
			err: csta.CodeInvalidConnectionState},
		{name: "AnswerCall on the far end's connection", setup: func(h *harness) { h.calls["c1"] = h.makeCall(A, XDial) },
			do:  func(h *harness) *csta.Message { return connReq(csta.KindAnswerCall, c(h, "c1"), XNum) },
			err: csta.CodeRequestIncompatibleWithObject},
		{name: "HoldCall on an alerting connection", setup: ringing,
			do:  func(h *harness) *csta.Message { return connReq(csta.KindHoldCall, c(h, "c1"), B) },
			err: csta.CodeInvalidConnectionState},
		{name: "HoldCall on a held connection", setup: func(h *harness) { talk(h); h.hold(c(h, "c1"), A) },
			do:  func(h *harness) *csta.Message { return connReq(csta.KindHoldCall, c(h, "c1"), A) },
			err: csta.CodeInvalidConnectionState},
		{name: "RetrieveCall with nothing held", setup: talk,
			do:  func(h *harness) *csta.Message { return connReq(csta.KindRetrieveCall, c(h, "c1"), A) },
			err: csta.CodeNoHeldCall},
		{name: "RetrieveCall while another call is active", setup: consultAnswered,
			do:  func(h *harness) *csta.Message { return connReq(csta.KindRetrieveCall, c(h, "c1"), A) },
			err: csta.CodeInvalidDeviceState},
		{name: "MakeCall from an unknown device", do: func(h *harness) *csta.Message { return makeCallReq("abc", B) },
			err: csta.CodeInvalidCallingDevice},
		{name: "MakeCall from an external number", do: func(h *harness) *csta.Message { return makeCallReq(X, B) },
			err: csta.CodeInvalidCallingDevice},
		{name: "MakeCall to an unparseable number", do: func(h *harness) *csta.Message { return makeCallReq(A, "12ab") },
			err: csta.CodeInvalidDestination},
		{name: "MakeCall from a busy station", setup: talk,
			do:  func(h *harness) *csta.Message { return makeCallReq(A, C) },
			err: csta.CodeInvalidDeviceState},
		{name: "ConsultationCall from a held connection", setup: func(h *harness) { talk(h); h.hold(c(h, "c1"), A) },
			do: func(h *harness) *csta.Message {
				return &csta.Message{Kind: csta.KindConsultationCall, Connection: conn(c(h, "c1"), A), Destination: csta.Dev(C)}
			},
			err: csta.CodeInvalidConnectionState},
		{name: "ConsultationCall to an unparseable number", setup: talk,
			do: func(h *harness) *csta.Message {
				return &csta.Message{Kind: csta.KindConsultationCall, Connection: conn(c(h, "c1"), A), Destination: csta.Dev("x")}
			},
			err: csta.CodeInvalidDestination},
		{name: "TransferCall whose held call is not held", setup: consultAnswered,
			do:  func(h *harness) *csta.Message { return pairReq(csta.KindTransferCall, c(h, "c2"), A, c(h, "c1"), A) },
			err: csta.CodeNoHeldCall},
		{name: "TransferCall with connections of two devices", setup: consultAnswered,
			do:  func(h *harness) *csta.Message { return pairReq(csta.KindTransferCall, c(h, "c1"), B, c(h, "c2"), A) },
			err: codeNotSameDevice},
		{name: "TransferCall of a call with itself", setup: talk,
			do:  func(h *harness) *csta.Message { return pairReq(csta.KindTransferCall, c(h, "c1"), A, c(h, "c1"), A) },
			err: csta.CodeInvalidConnectionID},
		{name: "AlternateCall with nothing held", setup: consultAnswered,
			do:  func(h *harness) *csta.Message { return pairReq(csta.KindAlternateCall, c(h, "c2"), A, c(h, "c1"), A) },
			err: csta.CodeNoHeldCall},
		{name: "ReconnectCall with nothing held", setup: consultAnswered,
			do:  func(h *harness) *csta.Message { return pairReq(csta.KindReconnectCall, c(h, "c2"), A, c(h, "c1"), A) },
			err: csta.CodeNoHeldCall},
		{name: "ConferenceCall beyond the member limit",
			setup: func(h *harness) {
				consultAnswered(h)
				h.ok(pairReq(csta.KindConferenceCall, c(h, "c1"), A, c(h, "c2"), A))
				r := h.ok(&csta.Message{Kind: csta.KindConsultationCall, Connection: conn(c(h, "c1"), A), Destination: csta.Dev(D)})
				h.answer(r.Connection.CallID, D)
				h.ok(pairReq(csta.KindConferenceCall, c(h, "c1"), A, r.Connection.CallID, A))
				r = h.ok(&csta.Message{Kind: csta.KindConsultationCall, Connection: conn(c(h, "c1"), A), Destination: csta.Dev(XDial)})
				require.NoError(h.t, h.sw.answerAction(r.Connection.CallID, XNum))
				h.calls["c3"] = r.Connection.CallID
			},
			do:  func(h *harness) *csta.Message { return pairReq(csta.KindConferenceCall, c(h, "c1"), A, c(h, "c3"), A) },
			err: codeConferenceLimit},
		{name: "DeflectCall on a connected connection", setup: talk,
			do: func(h *harness) *csta.Message {
				return &csta.Message{Kind: csta.KindDeflectCall, Connection: conn(c(h, "c1"), B), Destination: csta.Dev(C)}
			},
			err: csta.CodeInvalidConnectionState},
		{name: "SingleStepTransferCall on an alerting connection", setup: ringing,
			do: func(h *harness) *csta.Message {
				return &csta.Message{Kind: csta.KindSingleStepTransferCall, ActiveCall: conn(c(h, "c1"), B), Destination: csta.Dev(C)}
			},
			err: csta.CodeInvalidConnectionState},
		{name: "GenerateDigits on a held connection", setup: func(h *harness) { talk(h); h.hold(c(h, "c1"), A) },
			do: func(h *harness) *csta.Message {
				return &csta.Message{Kind: csta.KindGenerateDigits, Connection: conn(c(h, "c1"), A), CharactersToSend: "1"}
			},
			err: csta.CodeInvalidConnectionState},
		{name: "GenerateDigits with characters no keypad has", setup: talk,
			do: func(h *harness) *csta.Message {
				return &csta.Message{Kind: csta.KindGenerateDigits, Connection: conn(c(h, "c1"), A), CharactersToSend: "12x"}
			},
			err: csta.CodeInvalidParameterValue},

		// ---- Errors: devices and parameters ----
		{name: "SetForwarding to an unparseable number", do: func(h *harness) *csta.Message { return fwdReq(B, "forwardImmediate", true, "a-b", 0) },
			err: csta.CodeInvalidForwardingDestination},
		{name: "SetForwarding to itself", do: func(h *harness) *csta.Message { return fwdReq(B, "forwardImmediate", true, B, 0) },
			err: csta.CodeInvalidForwardingDestination},
		{name: "SetForwarding of an external number", do: func(h *harness) *csta.Message { return fwdReq(X, "forwardImmediate", true, B, 0) },
			err: csta.CodeInvalidDeviceID},
		{name: "SetForwarding of an unimplemented type", do: func(h *harness) *csta.Message { return fwdReq(B, "forwardBusyInt", true, C, 0) },
			err: csta.CodeParameterNotSupported},
		{name: "MonitorStart on an external number",
			do:  func(h *harness) *csta.Message { return &csta.Message{Kind: csta.KindMonitorStart, Device: csta.Dev(X)} },
			err: csta.CodeInvalidMonitorObject},
		{name: "MonitorStart on an unknown device",
			do: func(h *harness) *csta.Message {
				return &csta.Message{Kind: csta.KindMonitorStart, Device: csta.Dev("xyz")}
			},
			err: csta.CodeInvalidDeviceID},
		{name: "SnapshotDevice of an unknown device",
			do: func(h *harness) *csta.Message {
				return &csta.Message{Kind: csta.KindSnapshotDevice, Device: csta.Dev("xyz")}
			},
			err: csta.CodeInvalidDeviceID},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.monitor(A, B, C, D)
			if tc.setup != nil {
				tc.setup(h)
			}
			before := h.callStates()
			h.reset()
			r := tc.do(h)
			if r != nil {
				resp := h.do(r)
				if !tc.err.IsZero() {
					require.Equal(t, csta.KindCSTAErrorCode, resp.Kind, "want %v", tc.err)
					require.Equal(t, tc.err, resp.Error)
					require.Empty(t, h.events(), "an error must not emit events")
					require.Equal(t, before, h.callStates(), "an error must not change anything")
					return
				}
				require.Equal(t, r.Kind.Response(), resp.Kind, "error %v", resp.Error)
			}
			require.True(t, tc.err.IsZero(), "case wants an error but drives no request")
			want := tc.events
			if want == nil {
				want = map[string][]string{}
			}
			require.Equal(t, want, h.events())
			require.Equal(t, tc.calls, h.callStates())
		})
	}
}

// TestEventOrderAroundResponse checks where the response falls among the
// events of MakeCall and ConsultationCall in both orderings.
func TestEventOrderAroundResponse(t *testing.T) {
	for _, first := range []bool{true, false} {
		h := newHarness(t, func(c *switchConfig) { c.eventsFirst = first })
		h.monitor(A, B, C)
		h.do(makeCallReq(A, B))
		want := []string{
			"40001 ServiceInitiated initiated makeCall",
			"40001 Originated connected makeCall",
			"RESP MakeCallResponse",
			"40001 Delivered connected newCall",
			"40002 Delivered alerting newCall",
		}
		if !first {
			want = append([]string{"RESP MakeCallResponse"}, append(want[:2:2], want[3:]...)...)
		}
		require.Equal(t, want, h.transcript(), "eventsFirst=%v", first)

		call := h.log[0].msg.Connection.CallID
		h.answer(call, B)
		h.reset()
		h.do(&csta.Message{Kind: csta.KindConsultationCall, Connection: conn(call, A), Destination: csta.Dev(C)})
		want = []string{
			"40001 Held hold consultation",
			"40002 Held connected consultation",
			"40001 ServiceInitiated initiated consultation",
			"40001 Originated connected consultation",
			"RESP ConsultationCallResponse",
			"40001 Delivered connected newCall",
			"40003 Delivered alerting newCall",
		}
		if !first {
			want = append([]string{"RESP ConsultationCallResponse"}, append(want[:4:4], want[5:]...)...)
		}
		require.Equal(t, want, h.transcript(), "eventsFirst=%v", first)
	}
}

// TestEventContents checks the fields of the main events against ECMA-269:
// the subject connection and device, calling/called/lastRedirection, and
// each monitor's own monitorCrossRefID.
func TestEventContents(t *testing.T) {
	h := newHarness(t)
	h.monitor(A, B)
	// A second monitor on B (as from another node) gets its own copies.
	second := &recSink{h: h, dev: "B2"}
	var r *csta.Message
	h.sw.handle(&csta.Message{Kind: csta.KindMonitorStart, Device: csta.Dev(B)}, second, func(m *csta.Message) { r = m })
	xrefB2 := r.MonitorCrossRefID
	require.NotEqual(t, h.xrefs[B], xrefB2)

	resp := h.ok(makeCallReq(A, B))
	call := resp.Connection.CallID
	require.Len(t, call, 8)
	require.Equal(t, conn(call, A), resp.Connection)

	ev := h.events()
	require.Equal(t, []string{"Delivered alerting newCall"}, ev[B])
	require.Equal(t, []string{"Delivered alerting newCall"}, ev["B2"])
	var delivered []*csta.Message
	for _, e := range h.log {
		if e.dev != "" && e.msg.Kind == csta.KindDeliveredEvent {
			delivered = append(delivered, e.msg)
		}
	}
	require.Len(t, delivered, 3)
	for _, d := range delivered {
		require.Equal(t, conn(call, B), d.Connection)
		require.Equal(t, csta.Dev(B), d.SubjectDevice)
		require.Equal(t, csta.Dev(A), d.CallingDevice)
		require.Equal(t, csta.Dev(B), d.CalledDevice)
		require.Equal(t, csta.DeviceNotRequired, d.LastRedirectionDevice.Status)
	}
	require.Equal(t, h.xrefs[A], delivered[0].MonitorCrossRefID)
	require.Equal(t, h.xrefs[B], delivered[1].MonitorCrossRefID)
	require.Equal(t, xrefB2, delivered[2].MonitorCrossRefID)
	si := h.log[0].msg
	require.Equal(t, csta.KindServiceInitiatedEvent, si.Kind)
	require.Equal(t, conn(call, A), si.Connection)
	require.Equal(t, csta.Dev(A), si.SubjectDevice)

	// Deflect to C: Diverted names the diverting device and the new
	// destination; the Delivered at C carries B as lastRedirectionDevice.
	h.reset()
	h.ok(&csta.Message{Kind: csta.KindDeflectCall, Connection: conn(call, B), Destination: csta.Dev(C)})
	div := h.log[1].msg
	require.Equal(t, csta.KindDivertedEvent, div.Kind)
	require.Equal(t, conn(call, B), div.Connection)
	require.Equal(t, csta.Dev(B), div.SubjectDevice)
	require.Equal(t, csta.Dev(C), div.Destination)
	del := h.log[len(h.log)-1].msg
	require.Equal(t, csta.KindDeliveredEvent, del.Kind)
	require.Equal(t, conn(call, C), del.Connection)
	require.Equal(t, csta.Dev(B), del.CalledDevice)
	require.Equal(t, csta.Dev(B), del.LastRedirectionDevice)
}

// TestTransferContents checks TransferedEvent and the response: the old
// calls, the transferring and transferred-to devices and the connection list
// mapping old connections to new ones; the consultation call id is gone.
func TestTransferContents(t *testing.T) {
	h := newHarness(t)
	h.monitor(A, B, C)
	c1, c2 := h.consult(A, B, C, true)
	h.reset()
	resp := h.ok(pairReq(csta.KindTransferCall, c1, A, c2, A))
	require.Equal(t, c1, resp.Connection.CallID)
	wantItems := []csta.ConnectionListItem{
		{NewConnection: conn(c1, B), OldConnection: conn(c1, B), Endpoint: B},
		{NewConnection: conn(c1, C), OldConnection: conn(c2, C), Endpoint: C},
	}
	require.Equal(t, wantItems, resp.Connections)
	for _, e := range h.log[1:] {
		m := e.msg
		require.Equal(t, csta.KindTransferedEvent, m.Kind)
		require.Equal(t, conn(c1, A), m.PrimaryOldCall)
		require.Equal(t, conn(c2, A), m.SecondaryOldCall)
		require.Equal(t, csta.Dev(A), m.SubjectDevice)
		require.Equal(t, csta.Dev(C), m.ThirdParty)
		require.Equal(t, wantItems, m.Connections)
	}
	// The merged call lives on under c1; the old consultation id is unknown.
	r := h.do(connReq(csta.KindClearConnection, c2, C))
	require.Equal(t, csta.CodeInvalidConnectionID, r.Error)
	h.reset()
	h.ok(connReq(csta.KindClearConnection, c1, C))
	require.Equal(t, map[string][]string{
		B: {"ConnectionCleared connected normalClearing", "ConnectionCleared null normalClearing"},
		C: {"ConnectionCleared null normalClearing"},
	}, h.events())
}

func TestConferenceThenPartyLeaves(t *testing.T) {
	h := newHarness(t)
	h.monitor(A, B, C)
	c1, c2 := h.consult(A, B, C, true)
	resp := h.ok(pairReq(csta.KindConferenceCall, c1, A, c2, A))
	require.Equal(t, conn(c1, A), resp.Connection)
	require.Len(t, resp.Connections, 3)
	// One party leaving a three-party call leaves the other two talking.
	h.reset()
	h.ok(connReq(csta.KindClearConnection, c1, B))
	require.Equal(t, map[string][]string{
		A: {"ConnectionCleared connected normalClearing"},
		B: {"ConnectionCleared null normalClearing"},
		C: {"ConnectionCleared connected normalClearing"},
	}, h.events())
	require.Equal(t, []string{"40001:connected 40003:connected"}, h.callStates())
}

func TestForwardingQueriesAndTimers(t *testing.T) {
	h := newHarness(t)
	h.monitor(B)
	h.ok(fwdReq(B, "forwardNoAns", true, C, 2))
	fe := h.log[len(h.log)-1].msg
	require.Equal(t, csta.KindForwardingEvent, fe.Kind)
	require.Equal(t, h.xrefs[B], fe.MonitorCrossRefID)
	require.Equal(t, "forwardNoAns", fe.ForwardingType)
	require.True(t, fe.ForwardStatus)
	require.Equal(t, csta.Dev(C), fe.Destination)
	require.Equal(t, 2, fe.RingCount)

	r := h.ok(&csta.Message{Kind: csta.KindGetForwarding, Device: csta.Dev(B)})
	require.Equal(t, []csta.ForwardListItem{
		{ForwardingType: "forwardImmediate"},
		{ForwardingType: "forwardBusy"},
		{ForwardingType: "forwardNoAns", ForwardStatus: true, ForwardDN: C, RingCount: 2},
		{ForwardingType: "forwardDND"},
	}, r.ForwardingList)

	// The ring timer is ringCount × ring time; answering stops it.
	call := h.makeCall(A, B)
	require.Equal(t, []time.Duration{2 * time.Second}, h.pendingTimers())
	h.answer(call, B)
	require.Empty(t, h.pendingTimers())

	h.ok(&csta.Message{Kind: csta.KindSetDoNotDisturb, Device: csta.Dev(B), DoNotDisturbOn: true})
	r = h.ok(&csta.Message{Kind: csta.KindGetDoNotDisturb, Device: csta.Dev(B)})
	require.True(t, r.DoNotDisturbOn)
	r = h.ok(&csta.Message{Kind: csta.KindGetDoNotDisturb, Device: csta.Dev(C)})
	require.False(t, r.DoNotDisturbOn)
}

func TestAutoAnswerExternal(t *testing.T) {
	h := newHarness(t, func(c *switchConfig) { c.autoAnswer = 3 * time.Second })
	h.monitor(A)
	h.makeCall(A, XDial)
	require.Equal(t, []time.Duration{3 * time.Second}, h.pendingTimers())
	h.reset()
	h.fire()
	require.Equal(t, map[string][]string{A: {"Established connected normal"}}, h.events())
	require.Equal(t, []string{"40001:connected 12065550147:connected"}, h.callStates())
}

func TestSnapshotAndMonitorStop(t *testing.T) {
	h := newHarness(t)
	h.monitor(A)
	c1, c2 := h.consult(A, B, C, false)
	r := h.ok(&csta.Message{Kind: csta.KindSnapshotDevice, Device: csta.Dev(A)})
	require.Equal(t, []csta.SnapshotItem{
		{Connection: conn(c1, A), LocalCallState: "hold"},
		{Connection: conn(c2, A), LocalCallState: "connected"},
	}, r.Snapshot)
	r = h.ok(&csta.Message{Kind: csta.KindSnapshotDevice, Device: csta.Dev(D)})
	require.Empty(t, r.Snapshot)

	// MonitorStop by someone else than the owner is refused; by the owner
	// it ends the events.
	r = h.do(&csta.Message{Kind: csta.KindMonitorStop, MonitorCrossRefID: h.xrefs[A]})
	require.Equal(t, csta.CodeInvalidMonitorCrossRefID, r.Error)
	var resp *csta.Message
	h.sw.handle(&csta.Message{Kind: csta.KindMonitorStop, MonitorCrossRefID: h.xrefs[A]}, h.sinks[A], func(m *csta.Message) { resp = m })
	require.Equal(t, csta.KindMonitorStopResponse, resp.Kind)
	h.reset()
	h.ok(connReq(csta.KindClearCall, c2, ""))
	require.Empty(t, h.events())
}

func TestCallIDsUnique(t *testing.T) {
	h := newHarness(t)
	seen := map[string]bool{}
	for i := 0; i < 2000; i++ {
		id := h.makeCall(A, B)
		require.False(t, seen[id], "call id %s reused", id)
		require.Len(t, id, 8)
		seen[id] = true
		h.ok(connReq(csta.KindClearCall, id, ""))
	}
}

func TestNumbering(t *testing.T) {
	set, err := parseStations("40000-40999,2100-2199")
	require.NoError(t, err)
	n := numbering{stations: set, trunkPrefix: "9"}
	for _, tc := range []struct {
		in      string
		id      string
		station bool
		bad     bool
	}{
		{in: "40001", id: "40001", station: true},
		{in: "2150", id: "2150", station: true},
		{in: "41000", id: "41000"},
		{in: "040001", id: "040001"},
		{in: "912065550147", id: "12065550147"},
		{in: "+12065550147", id: "+12065550147"},
		{in: "940001", id: "40001", station: true},
		{in: "tel:40001;phone-context=dialstring", id: "40001", station: true},
		{in: "12ab", bad: true},
		{in: "", bad: true},
		{in: "+", bad: true},
		{in: "1+2", bad: true},
	} {
		id, st, err := n.dialled(tc.in)
		if tc.bad {
			require.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.id, id, tc.in)
		require.Equal(t, tc.station, st, tc.in)
	}
	_, err = parseStations("5-1")
	require.Error(t, err)
	_, err = parseStations("")
	require.Error(t, err)
	require.Equal(t, "40000-40999,2100-2199", set.String())
}
