package csta

import "strings"

// Kind identifies a message by its root element.
type Kind uint16

// Every message the gateway and the simulator read or write. The order is
// free; names and schemas live in kindInfos below.
const (
	KindUnknown Kind = iota

	// System status services.
	KindRequestSystemStatus
	KindRequestSystemStatusResponse
	KindSystemStatus
	KindSystemStatusResponse
	KindSystemRegister
	KindSystemRegisterResponse

	// Capability exchange, monitoring, snapshot.
	KindGetCSTAFeatures
	KindGetCSTAFeaturesResponse
	KindMonitorStart
	KindMonitorStartResponse
	KindMonitorStop
	KindMonitorStopResponse
	KindSnapshotDevice
	KindSnapshotDeviceResponse

	// Call control.
	KindMakeCall
	KindMakeCallResponse
	KindClearConnection
	KindClearConnectionResponse
	KindClearCall
	KindClearCallResponse
	KindAnswerCall
	KindAnswerCallResponse
	KindHoldCall
	KindHoldCallResponse
	KindRetrieveCall
	KindRetrieveCallResponse
	KindAlternateCall
	KindAlternateCallResponse
	KindReconnectCall
	KindReconnectCallResponse
	KindConsultationCall
	KindConsultationCallResponse
	KindTransferCall
	KindTransferCallResponse
	KindSingleStepTransferCall
	KindSingleStepTransferCallResponse
	KindConferenceCall
	KindConferenceCallResponse
	KindDeflectCall
	KindDeflectCallResponse
	KindGenerateDigits
	KindGenerateDigitsResponse

	// Logical device features.
	KindSetForwarding
	KindSetForwardingResponse
	KindGetForwarding
	KindGetForwardingResponse
	KindSetDoNotDisturb
	KindSetDoNotDisturbResponse
	KindGetDoNotDisturb
	KindGetDoNotDisturbResponse

	KindCSTAErrorCode

	// Events.
	KindServiceInitiatedEvent
	KindOriginatedEvent
	KindDeliveredEvent
	KindEstablishedEvent
	KindConnectionClearedEvent
	KindHeldEvent
	KindRetrievedEvent
	KindTransferedEvent
	KindConferencedEvent
	KindDivertedEvent
	KindFailedEvent
	KindForwardingEvent
	KindDoNotDisturbEvent
	KindMonitorEndedEvent
	KindOutOfServiceEvent
	KindBackInServiceEvent

	// ECMA-354 application sessions.
	KindStartApplicationSession
	KindStartApplicationSessionPosResponse
	KindStartApplicationSessionNegResponse
	KindStopApplicationSession
	KindStopApplicationSessionPosResponse
	KindStopApplicationSessionNegResponse
	KindResetApplicationSessionTimer
	KindResetApplicationSessionTimerPosResponse
	KindResetApplicationSessionTimerNegResponse
	KindApplicationSessionTerminated

	kindCount
)

type ftype uint8

const (
	tText     ftype = iota // string
	tBool                  // "true"/"false"
	tInt                   // decimal
	tConn                  // ConnectionID
	tDev                   // plain device identifier text
	tDevW                  // device wrapper (deviceIdentifier | notKnown | ...)
	tConnList              // connectionListItem*
	tFwdList               // forwardListItem*
	tSnapshot              // snapshotDeviceResponseInfo*
	tStrList               // repeated text children (protocolVersion*)
	tFeatures              // capability lists
	tErrCode               // the single category child of CSTAErrorCode
	tExt                   // extensions carrying lcs:line
	tLogin                 // applicationSpecificInfo login
)

// fieldSpec maps one element path of a message's schema to a Message field.
// A kind's fields are listed in schema order; the encoder writes them in that
// order and the decoder accepts them in any order.
type fieldSpec struct {
	path   []string
	typ    ftype
	req    bool // written even when empty
	inOnly bool // accepted on input, never written
	item   string
	str    func(*Message) *string
	bol    func(*Message) *bool
	num    func(*Message) *int
	con    func(*Message) *ConnectionID
	dev    func(*Message) *Device
	strs   func(*Message) *[]string
	feats  func(*Message) *[]FeatureList
}

type kindInfo struct {
	name   string
	class  Class
	reply  bool
	resp   Kind // the positive response of a request
	fields []fieldSpec
}

// Field accessors.
var (
	aXref       = func(m *Message) *string { return &m.MonitorCrossRefID }
	aConn       = func(m *Message) *ConnectionID { return &m.Connection }
	aHeld       = func(m *Message) *ConnectionID { return &m.HeldCall }
	aActive     = func(m *Message) *ConnectionID { return &m.ActiveCall }
	aPrimary    = func(m *Message) *ConnectionID { return &m.PrimaryOldCall }
	aSecondary  = func(m *Message) *ConnectionID { return &m.SecondaryOldCall }
	aDevice     = func(m *Message) *Device { return &m.Device }
	aCalling    = func(m *Message) *Device { return &m.CallingDevice }
	aCalled     = func(m *Message) *Device { return &m.CalledDevice }
	aDest       = func(m *Message) *Device { return &m.Destination }
	aSubject    = func(m *Message) *Device { return &m.SubjectDevice }
	aThird      = func(m *Message) *Device { return &m.ThirdParty }
	aLastRedir  = func(m *Message) *Device { return &m.LastRedirectionDevice }
	aLCI        = func(m *Message) *string { return &m.LocalConnectionInfo }
	aCause      = func(m *Message) *string { return &m.Cause }
	aStatus     = func(m *Message) *string { return &m.SystemStatus }
	aRegID      = func(m *Message) *string { return &m.SysStatRegisterID }
	aSessionID  = func(m *Message) *string { return &m.SessionID }
	aReason     = func(m *Message) *string { return &m.Reason }
	aDuration   = func(m *Message) *int { return &m.SessionDuration }
	aRingCount  = func(m *Message) *int { return &m.RingCount }
	aFwdType    = func(m *Message) *string { return &m.ForwardingType }
	aDND        = func(m *Message) *bool { return &m.DoNotDisturbOn }
	aServices   = func(m *Message) *[]FeatureList { return &m.SupportedServices }
	aEvents     = func(m *Message) *[]FeatureList { return &m.SupportedEvents }
	aVersions   = func(m *Message) *[]string { return &m.ProtocolVersions }
	aActivate   = func(m *Message) *bool { return &m.ActivateForward }
	aFwdStatus  = func(m *Message) *bool { return &m.ForwardStatus }
	aFwdDefault = func(m *Message) *string { return &m.ForwardDefault }
)

func sp(path string) []string { return strings.Split(path, "/") }

func txt(path string, a func(*Message) *string) fieldSpec {
	return fieldSpec{path: sp(path), typ: tText, str: a}
}
func txtR(path string, a func(*Message) *string) fieldSpec {
	f := txt(path, a)
	f.req = true
	return f
}
func boo(path string, a func(*Message) *bool) fieldSpec {
	return fieldSpec{path: sp(path), typ: tBool, bol: a}
}
func booR(path string, a func(*Message) *bool) fieldSpec {
	f := boo(path, a)
	f.req = true
	return f
}
func num(path string, a func(*Message) *int) fieldSpec {
	return fieldSpec{path: sp(path), typ: tInt, num: a}
}
func con(path string, a func(*Message) *ConnectionID) fieldSpec {
	return fieldSpec{path: sp(path), typ: tConn, con: a, req: true}
}
func conOpt(path string, a func(*Message) *ConnectionID) fieldSpec {
	return fieldSpec{path: sp(path), typ: tConn, con: a}
}
func dev(path string, a func(*Message) *Device) fieldSpec {
	return fieldSpec{path: sp(path), typ: tDev, dev: a, req: true}
}
func devOpt(path string, a func(*Message) *Device) fieldSpec {
	return fieldSpec{path: sp(path), typ: tDev, dev: a}
}
func devW(path string, a func(*Message) *Device) fieldSpec {
	return fieldSpec{path: sp(path), typ: tDevW, dev: a}
}
func devWR(path string, a func(*Message) *Device) fieldSpec {
	f := devW(path, a)
	f.req = true
	return f
}
func connList(path string) fieldSpec {
	return fieldSpec{path: sp(path), typ: tConnList, item: "connectionListItem"}
}
func ext() fieldSpec { return fieldSpec{path: sp("extensions"), typ: tExt} }

var xrefR = txtR("monitorCrossRefID", aXref)

// event returns an event schema: monitorCrossRefID, the given fields, then
// localConnectionInfo and cause.
func event(fields ...fieldSpec) []fieldSpec {
	out := []fieldSpec{xrefR}
	out = append(out, fields...)
	return append(out, txt("localConnectionInfo", aLCI), txt("cause", aCause))
}

// maintenance returns the schema of the device maintenance events.
func maintenance() []fieldSpec {
	return []fieldSpec{xrefR, devWR("device", aDevice), txt("cause", aCause)}
}

func errNeg() []fieldSpec {
	return []fieldSpec{
		txtR("errorCode/definedError", aReason),
		{path: sp("errorCode/applError"), typ: tText, str: aReason, inOnly: true},
	}
}

var kindInfos = [kindCount]kindInfo{
	KindUnknown: {name: "", class: ClassUnknown},

	KindRequestSystemStatus:         {name: "RequestSystemStatus", class: ClassSystem, resp: KindRequestSystemStatusResponse, fields: []fieldSpec{ext()}},
	KindRequestSystemStatusResponse: {name: "RequestSystemStatusResponse", class: ClassSystem, reply: true, fields: []fieldSpec{txtR("systemStatus", aStatus), ext()}},
	KindSystemStatus:                {name: "SystemStatus", class: ClassSystem, resp: KindSystemStatusResponse, fields: []fieldSpec{txt("sysStatRegisterID", aRegID), txtR("systemStatus", aStatus)}},
	KindSystemStatusResponse:        {name: "SystemStatusResponse", class: ClassSystem, reply: true},
	KindSystemRegister: {name: "SystemRegister", class: ClassSystem, resp: KindSystemRegisterResponse, fields: []fieldSpec{
		booR("requestTypes/systemStatus", func(m *Message) *bool { return &m.RegisterSystemStatus }),
		booR("requestTypes/requestSystemStatus", func(m *Message) *bool { return &m.RegisterRequestSystemStatus }),
	}},
	KindSystemRegisterResponse: {name: "SystemRegisterResponse", class: ClassSystem, reply: true, fields: []fieldSpec{txtR("sysStatRegisterID", aRegID)}},

	KindGetCSTAFeatures: {name: "GetCSTAFeatures", class: ClassRequest, resp: KindGetCSTAFeaturesResponse, fields: []fieldSpec{ext()}},
	KindGetCSTAFeaturesResponse: {name: "GetCSTAFeaturesResponse", class: ClassResponse, reply: true, fields: []fieldSpec{
		{path: sp("supportedServices"), typ: tFeatures, feats: aServices, req: true},
		{path: sp("supportedEvents"), typ: tFeatures, feats: aEvents},
	}},
	KindMonitorStart: {name: "MonitorStart", class: ClassRequest, resp: KindMonitorStartResponse, fields: []fieldSpec{
		dev("monitorObject/deviceObject", aDevice),
		txt("monitorType", func(m *Message) *string { return &m.MonitorType }),
		ext(),
	}},
	KindMonitorStartResponse: {name: "MonitorStartResponse", class: ClassResponse, reply: true, fields: []fieldSpec{
		xrefR, boo("monitorExistingCalls", func(m *Message) *bool { return &m.MonitorExistingCalls }),
	}},
	KindMonitorStop:         {name: "MonitorStop", class: ClassRequest, resp: KindMonitorStopResponse, fields: []fieldSpec{xrefR}},
	KindMonitorStopResponse: {name: "MonitorStopResponse", class: ClassResponse, reply: true},
	KindSnapshotDevice:      {name: "SnapshotDevice", class: ClassRequest, resp: KindSnapshotDeviceResponse, fields: []fieldSpec{dev("snapshotObject", aDevice)}},
	KindSnapshotDeviceResponse: {name: "SnapshotDeviceResponse", class: ClassResponse, reply: true, fields: []fieldSpec{
		{path: sp("crossRefIDorSnapshotData/snapshotData"), typ: tSnapshot, item: "snapshotDeviceResponseInfo", req: true},
	}},

	KindMakeCall: {name: "MakeCall", class: ClassRequest, resp: KindMakeCallResponse, fields: []fieldSpec{
		dev("callingDevice", aCalling),
		dev("calledDirectoryNumber", aDest),
		txt("accountCode", func(m *Message) *string { return &m.AccountCode }),
		txt("autoOriginate", func(m *Message) *string { return &m.AutoOriginate }),
	}},
	KindMakeCallResponse:               {name: "MakeCallResponse", class: ClassResponse, reply: true, fields: []fieldSpec{con("callingDevice", aConn)}},
	KindClearConnection:                {name: "ClearConnection", class: ClassRequest, resp: KindClearConnectionResponse, fields: []fieldSpec{con("connectionToBeCleared", aConn)}},
	KindClearConnectionResponse:        {name: "ClearConnectionResponse", class: ClassResponse, reply: true},
	KindClearCall:                      {name: "ClearCall", class: ClassRequest, resp: KindClearCallResponse, fields: []fieldSpec{con("callToBeCleared", aConn)}},
	KindClearCallResponse:              {name: "ClearCallResponse", class: ClassResponse, reply: true},
	KindAnswerCall:                     {name: "AnswerCall", class: ClassRequest, resp: KindAnswerCallResponse, fields: []fieldSpec{con("callToBeAnswered", aConn)}},
	KindAnswerCallResponse:             {name: "AnswerCallResponse", class: ClassResponse, reply: true},
	KindHoldCall:                       {name: "HoldCall", class: ClassRequest, resp: KindHoldCallResponse, fields: []fieldSpec{con("callToBeHeld", aConn)}},
	KindHoldCallResponse:               {name: "HoldCallResponse", class: ClassResponse, reply: true},
	KindRetrieveCall:                   {name: "RetrieveCall", class: ClassRequest, resp: KindRetrieveCallResponse, fields: []fieldSpec{con("callToBeRetrieved", aConn)}},
	KindRetrieveCallResponse:           {name: "RetrieveCallResponse", class: ClassResponse, reply: true},
	KindAlternateCall:                  {name: "AlternateCall", class: ClassRequest, resp: KindAlternateCallResponse, fields: []fieldSpec{con("heldCall", aHeld), con("activeCall", aActive)}},
	KindAlternateCallResponse:          {name: "AlternateCallResponse", class: ClassResponse, reply: true},
	KindReconnectCall:                  {name: "ReconnectCall", class: ClassRequest, resp: KindReconnectCallResponse, fields: []fieldSpec{con("activeCall", aActive), con("heldCall", aHeld)}},
	KindReconnectCallResponse:          {name: "ReconnectCallResponse", class: ClassResponse, reply: true},
	KindConsultationCall:               {name: "ConsultationCall", class: ClassRequest, resp: KindConsultationCallResponse, fields: []fieldSpec{con("existingCall", aConn), dev("consultedDevice", aDest)}},
	KindConsultationCallResponse:       {name: "ConsultationCallResponse", class: ClassResponse, reply: true, fields: []fieldSpec{con("initiatedCall", aConn)}},
	KindTransferCall:                   {name: "TransferCall", class: ClassRequest, resp: KindTransferCallResponse, fields: []fieldSpec{con("heldCall", aHeld), con("activeCall", aActive)}},
	KindTransferCallResponse:           {name: "TransferCallResponse", class: ClassResponse, reply: true, fields: []fieldSpec{con("transferredCall", aConn), connList("connections")}},
	KindSingleStepTransferCall:         {name: "SingleStepTransferCall", class: ClassRequest, resp: KindSingleStepTransferCallResponse, fields: []fieldSpec{con("activeCall", aActive), dev("transferredTo", aDest)}},
	KindSingleStepTransferCallResponse: {name: "SingleStepTransferCallResponse", class: ClassResponse, reply: true, fields: []fieldSpec{con("transferredCall", aConn)}},
	KindConferenceCall:                 {name: "ConferenceCall", class: ClassRequest, resp: KindConferenceCallResponse, fields: []fieldSpec{con("heldCall", aHeld), con("activeCall", aActive)}},
	KindConferenceCallResponse:         {name: "ConferenceCallResponse", class: ClassResponse, reply: true, fields: []fieldSpec{con("conferenceCall", aConn), connList("connections")}},
	KindDeflectCall:                    {name: "DeflectCall", class: ClassRequest, resp: KindDeflectCallResponse, fields: []fieldSpec{con("callToBeDiverted", aConn), dev("newDestination", aDest)}},
	KindDeflectCallResponse:            {name: "DeflectCallResponse", class: ClassResponse, reply: true},
	KindGenerateDigits: {name: "GenerateDigits", class: ClassRequest, resp: KindGenerateDigitsResponse, fields: []fieldSpec{
		con("connectionToSendDigits", aConn),
		txt("digitMode", func(m *Message) *string { return &m.DigitMode }),
		txtR("charactersToSend", func(m *Message) *string { return &m.CharactersToSend }),
	}},
	KindGenerateDigitsResponse: {name: "GenerateDigitsResponse", class: ClassResponse, reply: true},

	KindSetForwarding: {name: "SetForwarding", class: ClassRequest, resp: KindSetForwardingResponse, fields: []fieldSpec{
		dev("device", aDevice), txtR("forwardingType", aFwdType), booR("activateForward", aActivate),
		devOpt("forwardDN", aDest), num("ringCount", aRingCount),
	}},
	KindSetForwardingResponse: {name: "SetForwardingResponse", class: ClassResponse, reply: true},
	KindGetForwarding:         {name: "GetForwarding", class: ClassRequest, resp: KindGetForwardingResponse, fields: []fieldSpec{dev("device", aDevice)}},
	KindGetForwardingResponse: {name: "GetForwardingResponse", class: ClassResponse, reply: true, fields: []fieldSpec{
		{path: sp("forwardingList"), typ: tFwdList, item: "forwardListItem", req: true},
	}},
	KindSetDoNotDisturb:         {name: "SetDoNotDisturb", class: ClassRequest, resp: KindSetDoNotDisturbResponse, fields: []fieldSpec{dev("device", aDevice), booR("doNotDisturbOn", aDND)}},
	KindSetDoNotDisturbResponse: {name: "SetDoNotDisturbResponse", class: ClassResponse, reply: true},
	KindGetDoNotDisturb:         {name: "GetDoNotDisturb", class: ClassRequest, resp: KindGetDoNotDisturbResponse, fields: []fieldSpec{dev("device", aDevice)}},
	KindGetDoNotDisturbResponse: {name: "GetDoNotDisturbResponse", class: ClassResponse, reply: true, fields: []fieldSpec{booR("doNotDisturbOn", aDND)}},

	KindCSTAErrorCode: {name: "CSTAErrorCode", class: ClassError, reply: true, fields: []fieldSpec{{typ: tErrCode}}},

	KindServiceInitiatedEvent: {name: "ServiceInitiatedEvent", class: ClassEvent, fields: event(
		con("initiatedConnection", aConn), devW("initiatingDevice", aSubject))},
	KindOriginatedEvent: {name: "OriginatedEvent", class: ClassEvent, fields: event(
		con("originatedConnection", aConn), devWR("callingDevice", aCalling), devWR("calledDevice", aCalled))},
	KindDeliveredEvent: {name: "DeliveredEvent", class: ClassEvent, fields: event(
		con("connection", aConn), devWR("alertingDevice", aSubject), devWR("callingDevice", aCalling),
		devWR("calledDevice", aCalled), devWR("lastRedirectionDevice", aLastRedir))},
	KindEstablishedEvent: {name: "EstablishedEvent", class: ClassEvent, fields: event(
		con("establishedConnection", aConn), devWR("answeringDevice", aSubject), devWR("callingDevice", aCalling),
		devWR("calledDevice", aCalled), devWR("lastRedirectionDevice", aLastRedir))},
	KindConnectionClearedEvent: {name: "ConnectionClearedEvent", class: ClassEvent, fields: event(
		con("droppedConnection", aConn), devWR("releasingDevice", aSubject))},
	KindHeldEvent: {name: "HeldEvent", class: ClassEvent, fields: event(
		con("heldConnection", aConn), devWR("holdingDevice", aSubject))},
	KindRetrievedEvent: {name: "RetrievedEvent", class: ClassEvent, fields: event(
		con("retrievedConnection", aConn), devWR("retrievingDevice", aSubject))},
	KindTransferedEvent: {name: "TransferedEvent", class: ClassEvent, fields: event(
		con("primaryOldCall", aPrimary), conOpt("secondaryOldCall", aSecondary),
		devWR("transferringDevice", aSubject), devWR("transferredToDevice", aThird), connList("transferredConnections"))},
	KindConferencedEvent: {name: "ConferencedEvent", class: ClassEvent, fields: event(
		con("primaryOldCall", aPrimary), conOpt("secondaryOldCall", aSecondary),
		devWR("conferencingDevice", aSubject), devWR("addedParty", aThird), connList("conferenceConnections"))},
	KindDivertedEvent: {name: "DivertedEvent", class: ClassEvent, fields: event(
		con("connection", aConn), devWR("divertingDevice", aSubject), devWR("newDestination", aDest),
		devW("callingDevice", aCalling), devW("calledDevice", aCalled), devW("lastRedirectionDevice", aLastRedir))},
	KindFailedEvent: {name: "FailedEvent", class: ClassEvent, fields: event(
		con("failedConnection", aConn), devWR("failingDevice", aSubject), devWR("callingDevice", aCalling),
		devWR("calledDevice", aCalled), devW("lastRedirectionDevice", aLastRedir))},
	KindForwardingEvent: {name: "ForwardingEvent", class: ClassEvent, fields: []fieldSpec{
		xrefR, devWR("device", aDevice), txtR("forwardingType", aFwdType), booR("forwardStatus", aFwdStatus),
		devOpt("forwardTo", aDest), txt("forwardDefault", aFwdDefault), num("ringCount", aRingCount),
	}},
	KindDoNotDisturbEvent: {name: "DoNotDisturbEvent", class: ClassEvent, fields: []fieldSpec{
		xrefR, devWR("device", aDevice), booR("doNotDisturbOn", aDND),
	}},
	KindMonitorEndedEvent: {name: "MonitorEndedEvent", class: ClassEvent, fields: []fieldSpec{xrefR, txt("cause", aCause)}},
	// Device maintenance events (ECMA-269 §22): monitorCrossRefID, device,
	// cause, then extensions, which are accepted and not kept.
	KindOutOfServiceEvent:  {name: "OutOfServiceEvent", class: ClassEvent, fields: maintenance()},
	KindBackInServiceEvent: {name: "BackInServiceEvent", class: ClassEvent, fields: maintenance()},

	KindStartApplicationSession: {name: "StartApplicationSession", class: ClassSession, resp: KindStartApplicationSessionPosResponse, fields: []fieldSpec{
		txtR("applicationInfo/applicationID", func(m *Message) *string { return &m.ApplicationID }),
		{path: sp("applicationInfo/applicationSpecificInfo"), typ: tLogin},
		{path: sp("requestedProtocolVersions"), typ: tStrList, item: "protocolVersion", strs: aVersions, req: true},
		num("requestedSessionDuration", aDuration),
	}},
	KindStartApplicationSessionPosResponse: {name: "StartApplicationSessionPosResponse", class: ClassSession, reply: true, fields: []fieldSpec{
		txtR("sessionID", aSessionID),
		txtR("actualProtocolVersion", func(m *Message) *string { return &m.ProtocolVersion }),
		num("actualSessionDuration", aDuration),
	}},
	KindStartApplicationSessionNegResponse: {name: "StartApplicationSessionNegResponse", class: ClassSession, reply: true, fields: errNeg()},
	KindStopApplicationSession: {name: "StopApplicationSession", class: ClassSession, resp: KindStopApplicationSessionPosResponse, fields: []fieldSpec{
		txtR("sessionID", aSessionID), txt("sessionEndReason/definedEndReason", aReason),
	}},
	KindStopApplicationSessionPosResponse: {name: "StopApplicationSessionPosResponse", class: ClassSession, reply: true},
	KindStopApplicationSessionNegResponse: {name: "StopApplicationSessionNegResponse", class: ClassSession, reply: true, fields: errNeg()},
	KindResetApplicationSessionTimer: {name: "ResetApplicationSessionTimer", class: ClassSession, resp: KindResetApplicationSessionTimerPosResponse, fields: []fieldSpec{
		txtR("sessionID", aSessionID), num("requestedSessionDuration", aDuration),
	}},
	KindResetApplicationSessionTimerPosResponse: {name: "ResetApplicationSessionTimerPosResponse", class: ClassSession, reply: true, fields: []fieldSpec{num("actualSessionDuration", aDuration)}},
	KindResetApplicationSessionTimerNegResponse: {name: "ResetApplicationSessionTimerNegResponse", class: ClassSession, reply: true, fields: errNeg()},
	KindApplicationSessionTerminated: {name: "ApplicationSessionTerminated", class: ClassSession, fields: []fieldSpec{
		txtR("sessionID", aSessionID), txt("sessionTermReason/definedTermReason", aReason),
	}},
}

// kindByName maps root local names, including accepted variant spellings, to
// kinds.
var kindByName = func() map[string]Kind {
	m := make(map[string]Kind, int(kindCount)+4)
	for k := Kind(1); k < kindCount; k++ {
		if kindInfos[k].name == "" {
			panic("csta: kind without a name")
		}
		m[kindInfos[k].name] = k
	}
	m["TransferredEvent"] = KindTransferedEvent
	m["CSTAErrorCodeResponse"] = KindCSTAErrorCode
	return m
}()

// KindByName returns the kind whose root element has this local name
// (variant spellings included), or KindUnknown.
func KindByName(local string) Kind { return kindByName[local] }

// String returns the element name the kind is written with.
func (k Kind) String() string {
	if k < kindCount && k != KindUnknown {
		return kindInfos[k].name
	}
	return "Unknown"
}

// Class returns the kind's class.
func (k Kind) Class() Class {
	if k < kindCount {
		return kindInfos[k].class
	}
	return ClassUnknown
}

// IsReply reports whether the kind answers a request.
func (k Kind) IsReply() bool { return k < kindCount && kindInfos[k].reply }

// Response returns the positive response kind of a request kind, or
// KindUnknown.
func (k Kind) Response() Kind {
	if k < kindCount {
		return kindInfos[k].resp
	}
	return KindUnknown
}

// Answers reports whether a reply of kind reply can answer a request of
// kind req: its positive response, the matching negative one of an
// application-session request, or a CSTAErrorCode.
func Answers(req, reply Kind) bool {
	resp := req.Response()
	switch {
	case resp == KindUnknown:
		return false
	case reply == resp, reply == KindCSTAErrorCode:
		return true
	}
	name := resp.String()
	return strings.HasSuffix(name, "PosResponse") && reply.String() == strings.TrimSuffix(name, "PosResponse")+"NegResponse"
}

// Kinds returns every known kind, for tests and tools.
func Kinds() []Kind {
	out := make([]Kind, 0, kindCount-1)
	for k := Kind(1); k < kindCount; k++ {
		out = append(out, k)
	}
	return out
}
