package ctisim

import "github.com/cstagw/cstagw/csta"

// Event builders. Each returns the event as the switch reports it; emit
// fills in monitorCrossRefID and localConnectionInfo per monitor. Device
// fields use the switch's native identifiers; a field with nothing to report
// is <notKnown/> (lastRedirectionDevice: <notRequired/>).

// Event causes (ECMA-269 EventCause).
const (
	causeNewCall             = "newCall"
	causeMakeCall            = "makeCall"
	causeNormal              = "normal"
	causeNormalClearing      = "normalClearing"
	causeCallCancelled       = "callCancelled"
	causeBusy                = "busy"
	causeDoNotDisturb        = "doNotDisturb"
	causeConsultation        = "consultation"
	causeAlternate           = "alternate"
	causeTransfer            = "transfer"
	causeSingleStepTransfer  = "singleStepTransfer"
	causeConference          = "conference"
	causeRedirected          = "redirected"
	causeCallForward         = "callForward"
	causeCallForwardImmed    = "callForwardImmediate"
	causeCallForwardBusy     = "callForwardBusy"
	causeCallForwardNoAnswer = "callForwardNoAnswer"
	causeDestOutOfOrder      = "destOutOfOrder"
)

func cid(c *call, dev string) csta.ConnectionID {
	return csta.ConnectionID{CallID: c.id, DeviceID: dev}
}

func wdev(id string) csta.Device {
	if id == "" {
		return csta.Device{Status: csta.DeviceNotKnown}
	}
	return csta.Dev(id)
}

func redirDev(id string) csta.Device {
	if id == "" {
		return csta.Device{Status: csta.DeviceNotRequired}
	}
	return csta.Dev(id)
}

func evServiceInitiated(c *call, d *device, cause string) *csta.Message {
	return &csta.Message{Kind: csta.KindServiceInitiatedEvent, Connection: cid(c, d.id), SubjectDevice: wdev(d.id), Cause: cause}
}

func evOriginated(c *call, d *device, cause string) *csta.Message {
	return &csta.Message{Kind: csta.KindOriginatedEvent, Connection: cid(c, d.id),
		CallingDevice: wdev(c.calling), CalledDevice: wdev(c.called), Cause: cause}
}

func evDelivered(c *call, alerting *device, cause string) *csta.Message {
	return &csta.Message{Kind: csta.KindDeliveredEvent, Connection: cid(c, alerting.id), SubjectDevice: wdev(alerting.id),
		CallingDevice: wdev(c.calling), CalledDevice: wdev(c.called), LastRedirectionDevice: redirDev(c.lastRedirect), Cause: cause}
}

func evEstablished(c *call, answering *device, cause string) *csta.Message {
	return &csta.Message{Kind: csta.KindEstablishedEvent, Connection: cid(c, answering.id), SubjectDevice: wdev(answering.id),
		CallingDevice: wdev(c.calling), CalledDevice: wdev(c.called), LastRedirectionDevice: redirDev(c.lastRedirect), Cause: cause}
}

func evCleared(c *call, d *device, cause string) *csta.Message {
	return &csta.Message{Kind: csta.KindConnectionClearedEvent, Connection: cid(c, d.id), SubjectDevice: wdev(d.id), Cause: cause}
}

func evHeld(c *call, d *device, cause string) *csta.Message {
	return &csta.Message{Kind: csta.KindHeldEvent, Connection: cid(c, d.id), SubjectDevice: wdev(d.id), Cause: cause}
}

func evRetrieved(c *call, d *device, cause string) *csta.Message {
	return &csta.Message{Kind: csta.KindRetrievedEvent, Connection: cid(c, d.id), SubjectDevice: wdev(d.id), Cause: cause}
}

func evDiverted(c *call, from *device, to, cause string) *csta.Message {
	return &csta.Message{Kind: csta.KindDivertedEvent, Connection: cid(c, from.id), SubjectDevice: wdev(from.id),
		Destination: wdev(to), CallingDevice: wdev(c.calling), CalledDevice: wdev(c.called),
		LastRedirectionDevice: redirDev(c.lastRedirect), Cause: cause}
}

func evFailed(c *call, failing, cause string) *csta.Message {
	return &csta.Message{Kind: csta.KindFailedEvent, Connection: cid(c, failing), SubjectDevice: wdev(failing),
		CallingDevice: wdev(c.calling), CalledDevice: wdev(c.called), LastRedirectionDevice: redirDev(c.lastRedirect), Cause: cause}
}

func evTransfered(primary, secondary csta.ConnectionID, transferring, to string, conns []csta.ConnectionListItem, cause string) *csta.Message {
	return &csta.Message{Kind: csta.KindTransferedEvent, PrimaryOldCall: primary, SecondaryOldCall: secondary,
		SubjectDevice: wdev(transferring), ThirdParty: wdev(to), Connections: conns, Cause: cause}
}

func evConferenced(primary, secondary csta.ConnectionID, conferencing, added string, conns []csta.ConnectionListItem) *csta.Message {
	return &csta.Message{Kind: csta.KindConferencedEvent, PrimaryOldCall: primary, SecondaryOldCall: secondary,
		SubjectDevice: wdev(conferencing), ThirdParty: wdev(added), Connections: conns, Cause: causeConference}
}

func evForwarding(d *device, typ int, f forwarding, ringCount int) *csta.Message {
	m := &csta.Message{Kind: csta.KindForwardingEvent, Device: wdev(d.id), ForwardingType: fwdTypeNames[typ], ForwardStatus: f.active}
	if f.dn != "" {
		m.Destination = csta.Dev(f.dn)
	}
	if typ == fwdNoAns && f.active {
		m.RingCount = ringCount
	}
	return m
}

func evDoNotDisturb(d *device) *csta.Message {
	return &csta.Message{Kind: csta.KindDoNotDisturbEvent, Device: wdev(d.id), DoNotDisturbOn: d.dnd}
}

// evService reports a station leaving or re-entering service.
func evService(d *device) *csta.Message {
	if d.outOfService {
		return &csta.Message{Kind: csta.KindOutOfServiceEvent, Device: wdev(d.id)}
	}
	return &csta.Message{Kind: csta.KindBackInServiceEvent, Device: wdev(d.id)}
}

// features is the GetCSTAFeaturesResponse content: exactly what the switch
// implements, lists and items in schema order.
func features() *csta.Message {
	return &csta.Message{Kind: csta.KindGetCSTAFeaturesResponse,
		SupportedServices: []csta.FeatureList{
			{List: "capExchangeServList", Items: []string{"getCSTAFeatures"}},
			{List: "systemStatServList", Items: []string{"requestSystemStatus", "sysStatRegister", "systemStatus"}},
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
}
