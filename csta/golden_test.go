package csta

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/beevik/etree"
)

// Golden CSTA documents live in testdata/golden, one per file, named
// <Kind>[.<variant>].xml. Every file has an entry in goldenCases giving the
// message it must decode to; TestGolden decodes each one, compares it field by
// field, re-encodes it (ed3 and the file's own namespace), checks the output's
// shape and decodes it again.

const goldenDir = "testdata/golden"

// Namespaces used by the golden files that the package has no constant for.
const (
	nsMisspelt = "http://www.ecmainternational.org/standards/ecma-323/csta/ed3"
	nsAvayaP7  = "http://www.ecma-international.org/standards/ecma-323/csta/ed3/priv7"
)

// Device strings used across the table.
const (
	gLine     = "tel:+14255550100;ext=100"
	gOS2101   = "N<+12065552101>;displayNumber=2101;noa=nk"
	gOSRemote = "N<+12065550147>;displayNumber=2065550147;noa=nk"
)

type goldenCase struct {
	class Class
	ns    string  // root namespace as received
	want  Message // Kind and fields; Name and Namespace are filled in by the test
}

func cid(call, device string) ConnectionID { return ConnectionID{CallID: call, DeviceID: device} }

var goldenCases = map[string]goldenCase{
	// System status services.
	"RequestSystemStatus.xml": {ClassSystem, NSEd3, Message{Kind: KindRequestSystemStatus,
		Line: "tel:2101;phone-context=dialstring;partition=Internal_PT"}},
	"RequestSystemStatus.pretty.xml": {ClassSystem, NSEd3, Message{Kind: KindRequestSystemStatus,
		Line: "tel:2101;phone-context=dialstring;partition=Internal_PT"}},
	"RequestSystemStatus.ed4-probe.xml":            {ClassSystem, NSEd4, Message{Kind: KindRequestSystemStatus}},
	"RequestSystemStatusResponse.xml":              {ClassSystem, NSEd3, Message{Kind: KindRequestSystemStatusResponse, SystemStatus: "normal"}},
	"RequestSystemStatusResponse.ed6-lcs-echo.xml": {ClassSystem, NSEd6, Message{Kind: KindRequestSystemStatusResponse, SystemStatus: "disabled", Line: gLine}},
	"SystemStatus.xml":                             {ClassSystem, NSEd3, Message{Kind: KindSystemStatus, SystemStatus: "disabled"}},
	"SystemStatus.openscape-ed4.xml":               {ClassSystem, NSEd4, Message{Kind: KindSystemStatus, SysStatRegisterID: "17", SystemStatus: "messagesLost"}},
	"SystemStatusResponse.xml":                     {ClassSystem, NSEd4, Message{Kind: KindSystemStatusResponse}},
	"SystemRegister.ed2.xml":                       {ClassSystem, NSEd2, Message{Kind: KindSystemRegister, RegisterSystemStatus: true}},
	"SystemRegisterResponse.ed2.xml":               {ClassSystem, NSEd2, Message{Kind: KindSystemRegisterResponse, SysStatRegisterID: "0001a7"}},

	// Capability exchange, monitoring, snapshot.
	"GetCSTAFeatures.xml": {ClassRequest, NSEd3, Message{Kind: KindGetCSTAFeatures, Line: gLine}},
	"GetCSTAFeaturesResponse.xml": {ClassResponse, NSEd3, Message{Kind: KindGetCSTAFeaturesResponse,
		SupportedServices: []FeatureList{
			{List: "capExchangeServList", Items: []string{"getCSTAFeatures"}},
			{List: "systemStatServList", Items: []string{"requestSystemStatus", "systemStatus"}},
			{List: "monitoringServList", Items: []string{"monitorStart", "monitorStop"}},
			{List: "callControlServList", Items: []string{"answerCall", "clearConnection", "holdCall", "makeCall", "retrieveCall"}},
		},
		SupportedEvents: []FeatureList{
			{List: "callControlEvtsList", Items: []string{"connectionCleared", "delivered", "established", "held", "originated", "retrieved"}},
		}}},
	"MonitorStart.xml":                 {ClassRequest, NSEd3, Message{Kind: KindMonitorStart, Device: Dev(gLine)}},
	"MonitorStart.ed4-southbound.xml":  {ClassRequest, NSEd4, Message{Kind: KindMonitorStart, Device: Dev("2101"), MonitorType: "device"}},
	"MonitorStart.prefixed.xml":        {ClassRequest, NSEd3, Message{Kind: KindMonitorStart, Device: Dev("tel:2101;phone-context=dialstring;partition=Internal_PT"), MonitorType: "device"}},
	"MonitorStartResponse.xml":         {ClassResponse, NSEd3, Message{Kind: KindMonitorStartResponse, MonitorCrossRefID: "a1c07e3b", MonitorExistingCalls: true}},
	"MonitorStop.xml":                  {ClassRequest, NSEd3, Message{Kind: KindMonitorStop, MonitorCrossRefID: "a1c07e3b"}},
	"MonitorStopResponse.xml":          {ClassResponse, NSEd3, Message{Kind: KindMonitorStopResponse}},
	"SnapshotDevice.xml":               {ClassRequest, NSEd4, Message{Kind: KindSnapshotDevice, Device: Dev("2101")}},
	"SnapshotDeviceResponse.empty.xml": {ClassResponse, NSEd4, Message{Kind: KindSnapshotDeviceResponse, Snapshot: []SnapshotItem{}}},
	"SnapshotDeviceResponse.two-calls.xml": {ClassResponse, NSEd4, Message{Kind: KindSnapshotDeviceResponse, Snapshot: []SnapshotItem{
		{Connection: cid("5A1F0000C3B2", "2101"), Endpoint: "12065550147", LocalCallState: "connected"},
		{Connection: cid("5A1F0000C3B3", "2101"), LocalCallState: "hold"},
	}}},
	"SnapshotDeviceResponse.simple-call-state.xml": {ClassResponse, NSEd5, Message{Kind: KindSnapshotDeviceResponse, Snapshot: []SnapshotItem{
		{Connection: cid("77", "2101"), Endpoint: "2102", LocalCallState: "alerting"},
	}}},

	// Call control.
	"MakeCall.xml": {ClassRequest, NSEd3, Message{Kind: KindMakeCall,
		CallingDevice: Dev(gLine), Destination: Dev("tel:+14255550188"), AutoOriginate: "doNotPrompt"}},
	"MakeCall.unqualified.xml": {ClassRequest, "", Message{Kind: KindMakeCall,
		CallingDevice: Dev("tel:2101;phone-context=dialstring"), Destination: Dev("tel:2102;phone-context=dialstring"), AutoOriginate: "prompt"}},
	"MakeCall.prefixed.xml": {ClassRequest, NSEd3, Message{Kind: KindMakeCall,
		CallingDevice: Dev(gLine), Destination: Dev("tel:+14255550188"), AutoOriginate: "doNotPrompt"}},
	"MakeCall.openscape-ed4.xml": {ClassRequest, NSEd4, Message{Kind: KindMakeCall,
		CallingDevice: Dev("2101"), Destination: Dev("912065550147"), AccountCode: "4711", AutoOriginate: "doNotPrompt"}},
	"MakeCallResponse.xml":          {ClassResponse, NSEd3, Message{Kind: KindMakeCallResponse, Connection: cid("0_a1c2ff10", gLine)}},
	"MakeCallResponse.staticID.xml": {ClassResponse, NSEd4, Message{Kind: KindMakeCallResponse, Connection: cid("0x1F00A3", "2101")}},
	"ClearConnection.xml":           {ClassRequest, NSEd3, Message{Kind: KindClearConnection, Connection: cid("0_a1c2ff10", "tel:2101;phone-context=dialstring")}},
	"ClearConnectionResponse.xml":   {ClassResponse, NSEd3, Message{Kind: KindClearConnectionResponse}},
	"ClearCall.xml":                 {ClassRequest, NSEd4, Message{Kind: KindClearCall, Connection: cid("5A1F0000C3B2", "2101")}},
	"ClearCallResponse.xml":         {ClassResponse, NSEd4, Message{Kind: KindClearCallResponse}},
	"AnswerCall.xml":                {ClassRequest, NSEd3, Message{Kind: KindAnswerCall, Connection: cid("0_a1c30a44", gLine)}},
	"AnswerCallResponse.xml":        {ClassResponse, NSEd3, Message{Kind: KindAnswerCallResponse}},
	"HoldCall.xml":                  {ClassRequest, NSEd3, Message{Kind: KindHoldCall, Connection: cid("0_a1c30a44", gLine)}},
	"HoldCallResponse.xml":          {ClassResponse, NSEd3, Message{Kind: KindHoldCallResponse}},
	"RetrieveCall.xml":              {ClassRequest, NSEd3, Message{Kind: KindRetrieveCall, Connection: cid("0_a1c30a44", gLine)}},
	"RetrieveCallResponse.xml":      {ClassResponse, NSEd3, Message{Kind: KindRetrieveCallResponse}},
	"AlternateCall.xml": {ClassRequest, NSEd3, Message{Kind: KindAlternateCall,
		HeldCall: cid("0_a1c30a44", gLine), ActiveCall: cid("0_a1c30b01", gLine)}},
	"AlternateCallResponse.xml": {ClassResponse, NSEd3, Message{Kind: KindAlternateCallResponse}},
	"ReconnectCall.xml": {ClassRequest, NSEd3, Message{Kind: KindReconnectCall,
		HeldCall: cid("0_a1c30a44", gLine), ActiveCall: cid("0_a1c30b01", gLine)}},
	"ReconnectCallResponse.xml": {ClassResponse, NSEd3, Message{Kind: KindReconnectCallResponse}},
	"ConsultationCall.xml": {ClassRequest, NSEd3, Message{Kind: KindConsultationCall,
		Connection: cid("0_a1c30a44", gLine), Destination: Dev("tel:+14255550177")}},
	"ConsultationCallResponse.xml": {ClassResponse, NSEd3, Message{Kind: KindConsultationCallResponse, Connection: cid("0_a1c30b01", gLine)}},
	"TransferCall.xml": {ClassRequest, NSEd3, Message{Kind: KindTransferCall,
		HeldCall: cid("0_a1c30a44", gLine), ActiveCall: cid("0_a1c30b01", gLine)}},
	"TransferCallResponse.xml": {ClassResponse, NSEd4, Message{Kind: KindTransferCallResponse,
		Connection: cid("9001", "2102"),
		Connections: []ConnectionListItem{
			{NewConnection: cid("9001", "2102"), OldConnection: cid("9000", "2102"), Endpoint: "2102"},
			{NewConnection: cid("9001", "12065550147"), OldConnection: cid("8999", "12065550147"), Endpoint: "12065550147"},
		}}},
	"SingleStepTransferCall.xml": {ClassRequest, NSEd3, Message{Kind: KindSingleStepTransferCall,
		ActiveCall: cid("0_a1c30a44", gLine), Destination: Dev("tel:+14255550177")}},
	"SingleStepTransferCallResponse.xml": {ClassResponse, NSEd3, Message{Kind: KindSingleStepTransferCallResponse,
		Connection: cid("0_a1c30c99", "tel:+14255550177")}},
	"ConferenceCall.xml": {ClassRequest, NSEd3, Message{Kind: KindConferenceCall,
		HeldCall: cid("0_a1c30a44", gLine), ActiveCall: cid("0_a1c30b01", gLine)}},
	"ConferenceCallResponse.xml": {ClassResponse, NSEd3, Message{Kind: KindConferenceCallResponse,
		Connection: cid("0_a1c30a44", gLine),
		Connections: []ConnectionListItem{
			{NewConnection: cid("0_a1c30a44", "tel:+14255550177"), OldConnection: cid("0_a1c30b01", "tel:+14255550177")},
		}}},
	"DeflectCall.xml": {ClassRequest, NSEd3, Message{Kind: KindDeflectCall,
		Connection: cid("0_a1c30a44", gLine), Destination: Dev("tel:+14255550199")}},
	"DeflectCallResponse.xml": {ClassResponse, NSEd3, Message{Kind: KindDeflectCallResponse}},
	"GenerateDigits.xml": {ClassRequest, NSEd3, Message{Kind: KindGenerateDigits,
		Connection: cid("0_a1c30a44", gLine), DigitMode: "rfc2833", CharactersToSend: "1234#*"}},
	"GenerateDigitsResponse.xml": {ClassResponse, NSEd3, Message{Kind: KindGenerateDigitsResponse}},

	// Logical device features.
	"SetForwarding.xml": {ClassRequest, NSEd3, Message{Kind: KindSetForwarding,
		Device: Dev(gLine), ForwardingType: "forwardImmediate", ActivateForward: true, Destination: Dev("tel:+14255550177")}},
	"SetForwarding.noanswer-off.xml": {ClassRequest, NSEd4, Message{Kind: KindSetForwarding,
		Device: Dev("2101"), ForwardingType: "forwardNoAns", RingCount: 4}},
	"SetForwardingResponse.xml": {ClassResponse, NSEd3, Message{Kind: KindSetForwardingResponse}},
	"GetForwarding.xml":         {ClassRequest, NSEd3, Message{Kind: KindGetForwarding, Device: Dev(gLine)}},
	"GetForwardingResponse.xml": {ClassResponse, NSEd3, Message{Kind: KindGetForwardingResponse, ForwardingList: []ForwardListItem{
		{ForwardingType: "forwardImmediate", ForwardStatus: true, ForwardDN: "tel:+14255550177"},
		{ForwardingType: "forwardNoAns", ForwardDN: "tel:+14255550188", ForwardDefault: "forwardVoiceMail", RingCount: 5},
	}}},
	"SetDoNotDisturb.xml":         {ClassRequest, NSEd3, Message{Kind: KindSetDoNotDisturb, Device: Dev(gLine), DoNotDisturbOn: true}},
	"SetDoNotDisturbResponse.xml": {ClassResponse, NSEd3, Message{Kind: KindSetDoNotDisturbResponse}},
	"GetDoNotDisturb.xml":         {ClassRequest, NSEd3, Message{Kind: KindGetDoNotDisturb, Device: Dev(gLine)}},
	"GetDoNotDisturbResponse.xml": {ClassResponse, NSEd3, Message{Kind: KindGetDoNotDisturbResponse}},

	// Errors.
	"CSTAErrorCode.xml":                         {ClassError, NSEd3, Message{Kind: KindCSTAErrorCode, Error: CodeInvalidConnectionID}},
	"CSTAErrorCode.resource-out-of-service.xml": {ClassError, NSEd3, Message{Kind: KindCSTAErrorCode, Error: CodeResourceOutOfService}},
	"CSTAErrorCode.corrected-spelling-ed4.xml":  {ClassError, NSEd4, Message{Kind: KindCSTAErrorCode, Error: CodeResourceBusy}},
	"CSTAErrorCode.state-ed5.xml":               {ClassError, NSEd5, Message{Kind: KindCSTAErrorCode, Error: CodeNoCallToAnswer}},
	"CSTAErrorCode.unspecified.xml":             {ClassError, NSEd3, Message{Kind: KindCSTAErrorCode, Error: CodeUnspecified}},
	"CSTAErrorCode.iso-8859-1.xml":              {ClassError, NSEd3, Message{Kind: KindCSTAErrorCode, Error: ErrorCode{CatPrivateErrorCode, "Überlast München § 3"}}},

	// Events.
	"ServiceInitiatedEvent.xml": {ClassEvent, NSEd3, Message{Kind: KindServiceInitiatedEvent, MonitorCrossRefID: "a1c07e3b",
		Connection: cid("0_a1c2ff10", gLine), SubjectDevice: Dev(gLine), LocalConnectionInfo: "initiated", Cause: "makeCall"}},
	"OriginatedEvent.xml": {ClassEvent, NSEd3, Message{Kind: KindOriginatedEvent, MonitorCrossRefID: "a1c07e3b",
		Connection: cid("0_a1c2ff10", gLine), CallingDevice: Dev(gLine), CalledDevice: Dev("tel:+14255550188"),
		LocalConnectionInfo: "connected", Cause: "makeCall"}},
	"OriginatedEvent.plain-device-ed4.xml": {ClassEvent, NSEd4, Message{Kind: KindOriginatedEvent, MonitorCrossRefID: "1",
		Connection: cid("5A1F0000C3B2", "2101"), CallingDevice: Dev("2101"), CalledDevice: Dev("912065550147"),
		LocalConnectionInfo: "connected", Cause: "newCall"}},
	"DeliveredEvent.xml": {ClassEvent, NSEd3, Message{Kind: KindDeliveredEvent, MonitorCrossRefID: "a1c07e3b",
		Connection: cid("0_a1c30a44", gLine), SubjectDevice: Dev(gLine), CallingDevice: Dev("tel:+14255550188"),
		CalledDevice: Dev(gLine), LastRedirectionDevice: Device{Status: DeviceNotRequired},
		LocalConnectionInfo: "alerting", Cause: "newCall"}},
	"DeliveredEvent.openscape-ed4.xml": {ClassEvent, NSEd4, Message{Kind: KindDeliveredEvent, MonitorCrossRefID: "2",
		Connection: cid("FF000100000000005A1F0000C3B20000", gOS2101), SubjectDevice: Dev(gOS2101), CallingDevice: Dev(gOSRemote),
		CalledDevice: Dev(gOS2101), LastRedirectionDevice: Device{Status: DeviceNotKnown},
		LocalConnectionInfo: "alerting", Cause: "newCall"}},
	"DeliveredEvent.markup.xml": {ClassEvent, NSEd3, Message{Kind: KindDeliveredEvent, MonitorCrossRefID: "a1c07e3b",
		Connection: cid("0_a1c30a44", gLine), SubjectDevice: Dev(gLine), CallingDevice: Dev(`tel:+14255550188;x=<&>'"`),
		CalledDevice: Dev("tel:<+14255550100>&amp;"), LastRedirectionDevice: Device{ID: "4245550199", Status: DeviceNumberDialed},
		LocalConnectionInfo: "alerting", Cause: "newCall"}},
	"EstablishedEvent.xml": {ClassEvent, NSEd3, Message{Kind: KindEstablishedEvent, MonitorCrossRefID: "a1c07e3b",
		Connection: cid("0_a1c30a44", gLine), SubjectDevice: Dev(gLine), CallingDevice: Dev("tel:+14255550188"),
		CalledDevice: Dev(gLine), LastRedirectionDevice: Device{Status: DeviceNotRequired},
		LocalConnectionInfo: "connected", Cause: "normal"}},
	"EstablishedEvent.misspelt-ns.xml": {ClassEvent, nsMisspelt, Message{Kind: KindEstablishedEvent, MonitorCrossRefID: "99fda87c",
		Connection:    cid("0_99f261b4", "tel:73124;phone-context=dialstring"),
		SubjectDevice: Dev("tel:73124;phone-context=dialstring"), CallingDevice: Device{Status: DeviceRestricted},
		CalledDevice: Dev("tel:73124;phone-context=dialstring"), LastRedirectionDevice: Device{ID: "73199", Status: DeviceNumberDialed},
		LocalConnectionInfo: "connected", Cause: "redirected"}},
	"ConnectionClearedEvent.ed6.xml": {ClassEvent, NSEd6, Message{Kind: KindConnectionClearedEvent, MonitorCrossRefID: "a1c07e3b",
		Connection: cid("0_a1c30a44", gLine), SubjectDevice: Dev(gLine), LocalConnectionInfo: "null", Cause: "normalClearing"}},
	"HeldEvent.ed5.xml": {ClassEvent, NSEd5, Message{Kind: KindHeldEvent, MonitorCrossRefID: "3",
		Connection: cid("5A1F0000C3B2", "2101"), SubjectDevice: Dev("2101"), LocalConnectionInfo: "hold", Cause: "consultation"}},
	"RetrievedEvent.xml": {ClassEvent, NSEd3, Message{Kind: KindRetrievedEvent, MonitorCrossRefID: "a1c07e3b",
		Connection: cid("0_a1c30a44", gLine), SubjectDevice: Dev(gLine), LocalConnectionInfo: "connected", Cause: "normal"}},
	"TransferedEvent.xml": {ClassEvent, NSEd3, Message{Kind: KindTransferedEvent, MonitorCrossRefID: "a1c07e3b",
		PrimaryOldCall: cid("0_a1c30a44", gLine), SecondaryOldCall: cid("0_a1c30b01", gLine),
		SubjectDevice: Dev(gLine), ThirdParty: Dev("tel:+14255550177"),
		Connections: []ConnectionListItem{{NewConnection: cid("0_a1c30b01", "tel:+14255550188"),
			OldConnection: cid("0_a1c30a44", "tel:+14255550188"), Endpoint: "tel:+14255550188"}},
		LocalConnectionInfo: "null", Cause: "transfer"}},
	"TransferedEvent.transferred-spelling-ed4.xml": {ClassEvent, NSEd4, Message{Kind: KindTransferedEvent, MonitorCrossRefID: "4",
		PrimaryOldCall: cid("9000", "2101"), SecondaryOldCall: cid("9001", "2101"),
		SubjectDevice: Dev("2101"), ThirdParty: Dev("2102"),
		Connections:         []ConnectionListItem{{NewConnection: cid("9001", "12065550147"), OldConnection: cid("9000", "12065550147")}},
		LocalConnectionInfo: "null", Cause: "singleStepTransfer"}},
	"ConferencedEvent.xml": {ClassEvent, NSEd3, Message{Kind: KindConferencedEvent, MonitorCrossRefID: "a1c07e3b",
		PrimaryOldCall: cid("0_a1c30a44", gLine), SecondaryOldCall: cid("0_a1c30b01", gLine),
		SubjectDevice: Dev(gLine), ThirdParty: Dev("tel:+14255550177"),
		Connections: []ConnectionListItem{
			{NewConnection: cid("0_a1c30a44", gLine), OldConnection: cid("0_a1c30a44", gLine)},
			{NewConnection: cid("0_a1c30a44", "tel:+14255550177"), OldConnection: cid("0_a1c30b01", "tel:+14255550177")},
		},
		LocalConnectionInfo: "connected", Cause: "conference"}},
	"DivertedEvent.xml": {ClassEvent, NSEd3, Message{Kind: KindDivertedEvent, MonitorCrossRefID: "a1c07e3b",
		Connection: cid("0_a1c30a44", gLine), SubjectDevice: Dev(gLine), Destination: Dev("tel:+14255550199"),
		CallingDevice: Dev("tel:+14255550188"), LocalConnectionInfo: "null", Cause: "callForwardImmediate"}},
	"FailedEvent.xml": {ClassEvent, NSEd3, Message{Kind: KindFailedEvent, MonitorCrossRefID: "a1c07e3b",
		Connection: cid("0_a1c2ff10", "tel:+14255550188"), SubjectDevice: Dev("tel:+14255550188"),
		CallingDevice: Dev(gLine), CalledDevice: Dev("tel:+14255550188"), LocalConnectionInfo: "fail", Cause: "busy"}},
	"ForwardingEvent.xml": {ClassEvent, NSEd3, Message{Kind: KindForwardingEvent, MonitorCrossRefID: "a1c07e3b",
		Device: Dev(gLine), ForwardingType: "forwardNoAns", ForwardStatus: true, Destination: Dev("tel:+14255550177"), RingCount: 3}},
	"DoNotDisturbEvent.xml": {ClassEvent, NSEd3, Message{Kind: KindDoNotDisturbEvent, MonitorCrossRefID: "a1c07e3b",
		Device: Dev(gLine), DoNotDisturbOn: true}},
	"MonitorEndedEvent.xml": {ClassEvent, NSEd4, Message{Kind: KindMonitorEndedEvent, MonitorCrossRefID: "7", Cause: "resourcesNotAvailable"}},
	"OutOfServiceEvent.xml": {ClassEvent, NSEd3, Message{Kind: KindOutOfServiceEvent, MonitorCrossRefID: "a1c07e3b",
		Device: Dev(gLine), Cause: "maintenance"}},
	// Vendor private data in extensions is accepted and not kept.
	"OutOfServiceEvent.private-data-ed4.xml": {ClassEvent, NSEd4, Message{Kind: KindOutOfServiceEvent, MonitorCrossRefID: "5",
		Device: Dev("2101")}},
	"BackInServiceEvent.xml": {ClassEvent, NSEd3, Message{Kind: KindBackInServiceEvent, MonitorCrossRefID: "a1c07e3b",
		Device: Dev(gLine), Cause: "normal"}},
	// A switch that writes the device as plain text instead of the wrapper.
	"BackInServiceEvent.plain-device-ed6.xml": {ClassEvent, NSEd6, Message{Kind: KindBackInServiceEvent, MonitorCrossRefID: "9",
		Device: Dev("2101")}},

	// ECMA-354 application sessions.
	"StartApplicationSession.avaya.xml": {ClassSession, NSAppSession, Message{Kind: KindStartApplicationSession,
		ApplicationID: "cstagw", LoginUser: "cstagw", LoginPassword: "s3cr&t<1>", LoginNamespace: NSAvaya,
		ProtocolVersions: []string{nsAvayaP7, NSEd3}, SessionDuration: 180}},
	"StartApplicationSession.xml": {ClassSession, NSAppSession, Message{Kind: KindStartApplicationSession,
		ApplicationID: "cstagw", ProtocolVersions: []string{NSEd4}, SessionDuration: 180}},
	"StartApplicationSession.eltex.xml": {ClassSession, NSAppSession, Message{Kind: KindStartApplicationSession,
		ApplicationID: "cstagw", LoginUser: "cti", LoginPassword: "cti-pass", LoginNamespace: NSEltex,
		ProtocolVersions: []string{NSEd4}, SessionDuration: 300}},
	"StartApplicationSessionPosResponse.openscape.xml": {ClassSession, NSAppSession, Message{Kind: KindStartApplicationSessionPosResponse,
		SessionID: "8F3A2C11D0E24B6A", ProtocolVersion: NSEd4, SessionDuration: 180}},
	"StartApplicationSessionNegResponse.xml": {ClassSession, NSAppSession, Message{Kind: KindStartApplicationSessionNegResponse,
		Reason: "requestedProtocolVersionNotSupported"}},
	"StartApplicationSessionNegResponse.applError.xml": {ClassSession, NSAppSession, Message{Kind: KindStartApplicationSessionNegResponse,
		Reason: "licence exhausted"}},
	"StopApplicationSession.xml": {ClassSession, NSAppSession, Message{Kind: KindStopApplicationSession,
		SessionID: "8F3A2C11D0E24B6A", Reason: "normal"}},
	"StopApplicationSessionPosResponse.xml": {ClassSession, NSAppSession, Message{Kind: KindStopApplicationSessionPosResponse}},
	"StopApplicationSessionNegResponse.xml": {ClassSession, NSAppSession, Message{Kind: KindStopApplicationSessionNegResponse,
		Reason: "invalidSessionID"}},
	"ResetApplicationSessionTimer.xml": {ClassSession, NSAppSession, Message{Kind: KindResetApplicationSessionTimer,
		SessionID: "8F3A2C11D0E24B6A", SessionDuration: 180}},
	"ResetApplicationSessionTimerPosResponse.xml": {ClassSession, NSAppSession, Message{Kind: KindResetApplicationSessionTimerPosResponse,
		SessionDuration: 180}},
	"ResetApplicationSessionTimerNegResponse.xml": {ClassSession, NSAppSession, Message{Kind: KindResetApplicationSessionTimerNegResponse,
		Reason: "invalidSessionID"}},
	"ApplicationSessionTerminated.xml": {ClassSession, NSAppSession, Message{Kind: KindApplicationSessionTerminated,
		SessionID: "8F3A2C11D0E24B6A", Reason: "sessionTimerExpired"}},
}

// readGolden returns every golden file by name.
func readGolden(tb testing.TB) map[string][]byte {
	tb.Helper()
	ents, err := os.ReadDir(goldenDir)
	if err != nil {
		tb.Fatal(err)
	}
	out := make(map[string][]byte, len(ents))
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".xml") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(goldenDir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// diffMessages lists the fields in which a and b differ, Namespace excluded.
// nil and empty slices count as different: the decoder is deterministic about
// which one it produces.
func diffMessages(a, b *Message) []string {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var out []string
	for i := 0; i < va.NumField(); i++ {
		name := va.Type().Field(i).Name
		if name == "Namespace" {
			continue
		}
		x, y := va.Field(i).Interface(), vb.Field(i).Interface()
		if !reflect.DeepEqual(x, y) {
			out = append(out, fmt.Sprintf("%s: %#v != %#v", name, x, y))
		}
	}
	return out
}

func requireSameMessage(t *testing.T, what string, got, want *Message) {
	t.Helper()
	if d := diffMessages(got, want); len(d) > 0 {
		t.Errorf("%s: got != want:\n  %s", what, strings.Join(d, "\n  "))
	}
}

// goldenKind returns the kind a golden file's name announces.
func goldenKind(name string) Kind {
	base, _, _ := strings.Cut(name, ".")
	return KindByName(base)
}

func TestGoldenTableMatchesFiles(t *testing.T) {
	files := readGolden(t)
	for _, name := range sortedKeys(files) {
		if _, ok := goldenCases[name]; !ok {
			t.Errorf("golden file %s has no entry in goldenCases", name)
		}
	}
	for _, name := range sortedKeys(goldenCases) {
		if _, ok := files[name]; !ok {
			t.Errorf("goldenCases entry %s has no file in %s", name, goldenDir)
		}
		tc := goldenCases[name]
		if k := goldenKind(name); k != tc.want.Kind {
			t.Errorf("%s: file name says %v, table says %v", name, k, tc.want.Kind)
		}
		if b, _, _ := strings.Cut(name, "."); b != tc.want.Kind.String() {
			t.Errorf("%s: file name must start with the canonical element name %s", name, tc.want.Kind)
		}
	}
}

func TestGoldenCoversEveryKind(t *testing.T) {
	files := readGolden(t)
	have := map[Kind]int{}
	for name := range files {
		have[goldenKind(name)]++
	}
	for _, k := range Kinds() {
		if have[k] == 0 {
			t.Errorf("no golden file for %v (want %s.xml or %s.<variant>.xml)", k, k, k)
		}
	}
}

func TestGolden(t *testing.T) {
	files := readGolden(t)
	for _, name := range sortedKeys(files) {
		tc, ok := goldenCases[name]
		if !ok {
			continue // reported by TestGoldenTableMatchesFiles
		}
		t.Run(name, func(t *testing.T) {
			m, err := Decode(files[name])
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			want := tc.want
			want.Name = want.Kind.String()
			requireSameMessage(t, "decoded", m, &want)
			if m.Namespace != tc.ns {
				t.Errorf("Namespace = %q, want %q", m.Namespace, tc.ns)
			}
			if m.Class() != tc.class || m.Kind.Class() != tc.class {
				t.Errorf("Class = %v/%v, want %v", m.Class(), m.Kind.Class(), tc.class)
			}
			if got, want := m.IsReply(), m.Kind.IsReply(); got != want {
				t.Errorf("IsReply = %v, Kind.IsReply = %v", got, want)
			}

			for _, ns := range []string{NSEd3, m.Namespace} {
				out, err := Encode(m, ns)
				if err != nil {
					t.Fatalf("Encode(%q): %v", ns, err)
				}
				wantNS := ns
				switch {
				case m.Kind.Class() == ClassSession:
					wantNS = NSAppSession
				case ns == "":
					wantNS = NSEd3
				}
				checkEncoded(t, out, m.Kind, wantNS)
				m2, err := Decode(out)
				if err != nil {
					t.Fatalf("Decode(Encode(%q)): %v\n%s", ns, err, out)
				}
				if m2.Namespace != wantNS {
					t.Errorf("re-decoded Namespace = %q, want %q", m2.Namespace, wantNS)
				}
				requireSameMessage(t, "re-decoded ("+ns+")", m2, m)
				// encode∘decode is idempotent.
				out2, err := Encode(m2, ns)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out, out2) {
					t.Errorf("second encoding differs:\n%s\n%s", out, out2)
				}
			}
		})
	}
}

var (
	reSpaceBetweenTags = regexp.MustCompile(`>[ \t\r\n]+<`)
)

// checkEncoded asserts the shape of one encoder output: declaration,
// compactness, well-formedness (etree), root name and namespace, and schema
// order of the children.
func checkEncoded(t *testing.T, out []byte, k Kind, ns string) {
	t.Helper()
	const decl = `<?xml version="1.0" encoding="UTF-8"?>`
	if !bytes.HasPrefix(out, []byte(decl)) {
		t.Errorf("output does not start with %s:\n%s", decl, out)
	}
	if reSpaceBetweenTags.Match(out) || len(bytes.TrimSpace(out)) != len(out) {
		t.Errorf("output has white space between tags:\n%s", out)
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(out); err != nil {
		t.Fatalf("etree cannot parse the output: %v\n%s", err, out)
	}
	root := doc.Root()
	if root == nil {
		t.Fatalf("etree finds no root in\n%s", out)
	}
	if root.Tag != k.String() || root.Space != "" {
		t.Errorf("root = %s:%s, want unprefixed %s", root.Space, root.Tag, k)
	}
	if got := root.SelectAttrValue("xmlns", "\x00"); got != ns {
		t.Errorf("root xmlns = %q, want %q", got, ns)
	}
	if k == KindCSTAErrorCode {
		kids := root.ChildElements()
		if len(kids) != 1 {
			t.Fatalf("CSTAErrorCode has %d children, want exactly one:\n%s", len(kids), out)
		}
		if !slices.Contains(categoryElems[:], kids[0].Tag) {
			t.Errorf("CSTAErrorCode child %q is not a schema category", kids[0].Tag)
		}
		return
	}
	order := schemaOrder(k)
	var walk func(e *etree.Element, path string)
	walk = func(e *etree.Element, path string) {
		want, ok := order[path]
		if !ok {
			return // a leaf field: its content is checked by the round trip
		}
		last := -1
		for _, c := range e.ChildElements() {
			i := slices.Index(want, c.Tag)
			if i < 0 {
				t.Errorf("%s: unexpected child <%s> of /%s (schema: %v)", k, c.Tag, path, want)
				continue
			}
			if i <= last {
				t.Errorf("%s: child <%s> of /%s out of schema order %v:\n%s", k, c.Tag, path, want, out)
			}
			last = i
			walk(c, strings.TrimPrefix(path+"/"+c.Tag, "/"))
		}
	}
	walk(root, "")
}

// schemaOrder derives, from a kind's fieldSpec list, the order of the
// children of the root ("") and of every intermediate element of a field
// path ("requestTypes", "applicationInfo", ...).
func schemaOrder(k Kind) map[string][]string {
	order := map[string][]string{"": nil}
	for _, f := range kindInfos[k].fields {
		if f.inOnly || len(f.path) == 0 {
			continue
		}
		for i, seg := range f.path {
			parent := strings.Join(f.path[:i], "/")
			if !slices.Contains(order[parent], seg) {
				order[parent] = append(order[parent], seg)
			}
		}
	}
	return order
}

func TestSchemaOrderIsDerivedFromKinds(t *testing.T) {
	// A spot check that schemaOrder reads kinds.go the way the tests assume.
	got := schemaOrder(KindDeliveredEvent)[""]
	want := []string{"monitorCrossRefID", "connection", "alertingDevice", "callingDevice", "calledDevice",
		"lastRedirectionDevice", "localConnectionInfo", "cause"}
	if !slices.Equal(got, want) {
		t.Errorf("DeliveredEvent order = %v, want %v", got, want)
	}
	if got := schemaOrder(KindSystemRegister)["requestTypes"]; !slices.Equal(got, []string{"systemStatus", "requestSystemStatus"}) {
		t.Errorf("SystemRegister requestTypes order = %v", got)
	}
	if got := schemaOrder(KindMonitorStart)[""]; !slices.Equal(got, []string{"monitorObject", "monitorType", "extensions"}) {
		t.Errorf("MonitorStart order = %v (docs/wire.md §2.5)", got)
	}
}

// Byte-exact northbound outputs (docs/wire.md §1.3, §1.9.2, §1.11, §1.6).
func TestGoldenNorthboundBytes(t *testing.T) {
	const decl = `<?xml version="1.0" encoding="UTF-8"?>`
	const x = ` xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed3"`
	transfered, err := Decode(readGolden(t)["TransferedEvent.transferred-spelling-ed4.xml"])
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		m    *Message
		want string
	}{
		{"RequestSystemStatusResponse normal", &Message{Kind: KindRequestSystemStatusResponse, SystemStatus: "normal"},
			decl + `<RequestSystemStatusResponse` + x + `><systemStatus>normal</systemStatus></RequestSystemStatusResponse>`},
		{"CSTAErrorCode resourceOutOfService", ErrorMessage(CodeResourceOutOfService),
			decl + `<CSTAErrorCode` + x + `><systemResourceAvailibility>resourceOutOfService</systemResourceAvailibility></CSTAErrorCode>`},
		{"SystemStatus disabled", &Message{Kind: KindSystemStatus, SystemStatus: "disabled"},
			decl + `<SystemStatus` + x + `><systemStatus>disabled</systemStatus></SystemStatus>`},
		{"TransferedEvent from TransferredEvent", transfered,
			decl + `<TransferedEvent` + x + `><monitorCrossRefID>4</monitorCrossRefID>` +
				`<primaryOldCall><callID>9000</callID><deviceID>2101</deviceID></primaryOldCall>` +
				`<secondaryOldCall><callID>9001</callID><deviceID>2101</deviceID></secondaryOldCall>` +
				`<transferringDevice><deviceIdentifier>2101</deviceIdentifier></transferringDevice>` +
				`<transferredToDevice><deviceIdentifier>2102</deviceIdentifier></transferredToDevice>` +
				`<transferredConnections><connectionListItem>` +
				`<newConnection><callID>9001</callID><deviceID>12065550147</deviceID></newConnection>` +
				`<oldConnection><callID>9000</callID><deviceID>12065550147</deviceID></oldConnection>` +
				`</connectionListItem></transferredConnections>` +
				`<localConnectionInfo>null</localConnectionInfo><cause>singleStepTransfer</cause></TransferedEvent>`},
		{"TransferedEvent built", &Message{Kind: KindTransferedEvent, MonitorCrossRefID: "a1c07e3b",
			PrimaryOldCall: cid("0_1", gLine), SubjectDevice: Dev(gLine), LocalConnectionInfo: "null", Cause: "transfer"},
			decl + `<TransferedEvent` + x + `><monitorCrossRefID>a1c07e3b</monitorCrossRefID>` +
				`<primaryOldCall><callID>0_1</callID><deviceID>tel:+14255550100;ext=100</deviceID></primaryOldCall>` +
				`<transferringDevice><deviceIdentifier>tel:+14255550100;ext=100</deviceIdentifier></transferringDevice>` +
				`<transferredToDevice><notKnown/></transferredToDevice>` +
				`<localConnectionInfo>null</localConnectionInfo><cause>transfer</cause></TransferedEvent>`},
		{"OutOfServiceEvent built", &Message{Kind: KindOutOfServiceEvent, MonitorCrossRefID: "a1c07e3b", Device: Dev(gLine), Cause: "maintenance"},
			decl + `<OutOfServiceEvent` + x + `><monitorCrossRefID>a1c07e3b</monitorCrossRefID>` +
				`<device><deviceIdentifier>tel:+14255550100;ext=100</deviceIdentifier></device>` +
				`<cause>maintenance</cause></OutOfServiceEvent>`},
		{"BackInServiceEvent without device or cause", &Message{Kind: KindBackInServiceEvent, MonitorCrossRefID: "a1c07e3b"},
			decl + `<BackInServiceEvent` + x + `><monitorCrossRefID>a1c07e3b</monitorCrossRefID>` +
				`<device><notKnown/></device></BackInServiceEvent>`},
		{"MakeCallResponse §1.5.1", &Message{Kind: KindMakeCallResponse, Connection: cid("0_a1c2ff10", gLine)},
			decl + `<MakeCallResponse` + x + `><callingDevice><callID>0_a1c2ff10</callID><deviceID>tel:+14255550100;ext=100</deviceID></callingDevice></MakeCallResponse>`},
	}
	for _, c := range cases {
		got, err := Encode(c.m, NSEd3)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
		checkEncoded(t, got, c.m.Kind, NSEd3)
	}
}

// The two client serialisations quoted in docs/wire.md must stay byte for
// byte what sipe sends.
func TestGoldenSipeBytes(t *testing.T) {
	files := readGolden(t)
	want := map[string]string{
		"RequestSystemStatus.xml": `<?xml version="1.0"?><RequestSystemStatus xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed3"><extensions><privateData><private><lcs:line xmlns:lcs="http://schemas.microsoft.com/Lcs/2005/04/RCCExtension">tel:2101;phone-context=dialstring;partition=Internal_PT</lcs:line></private></privateData></extensions></RequestSystemStatus>`,
		"MakeCall.xml":            `<?xml version="1.0"?><MakeCall xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed3"><callingDevice>tel:+14255550100;ext=100</callingDevice><calledDirectoryNumber>tel:+14255550188</calledDirectoryNumber><autoOriginate>doNotPrompt</autoOriginate></MakeCall>`,
	}
	for name, w := range want {
		if got := string(files[name]); got != w {
			t.Errorf("%s is not sipe's serialisation:\n got %q\nwant %q", name, got, w)
		}
	}
	if n := len(files["RequestSystemStatus.xml"]); n != 347 { // Content-Length in docs/wire.md §1.14
		t.Errorf("RequestSystemStatus.xml is %d bytes, §1.14 says 347", n)
	}
}
