package csta

// Class says what role a message plays in the protocol.
type Class uint8

const (
	ClassUnknown  Class = iota
	ClassRequest        // a CSTA service request (MakeCall, MonitorStart...)
	ClassResponse       // a positive CSTA response (MakeCallResponse...)
	ClassError          // CSTAErrorCode, the negative response
	ClassEvent          // an unsolicited event (DeliveredEvent...)
	ClassSession        // ECMA-354 application session messages
	ClassSystem         // system status services (RequestSystemStatus, SystemStatus, SystemRegister...)
)

var classNames = [...]string{"unknown", "request", "response", "error", "event", "session", "system"}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "unknown"
}

// ConnectionID names one device's leg in one call.
type ConnectionID struct {
	CallID   string
	DeviceID string
}

// IsZero reports whether neither part is set.
func (c ConnectionID) IsZero() bool { return c.CallID == "" && c.DeviceID == "" }

// DeviceStatus says what a device field holds when it holds no identifier.
type DeviceStatus uint8

const (
	DeviceIdentifier   DeviceStatus = iota // ID holds the device (deviceIdentifier)
	DeviceNumberDialed                     // ID holds the digits dialled (lastRedirectionDevice only)
	DeviceNotKnown
	DeviceRestricted
	DeviceNotRequired
	DeviceNotSpecified
)

var deviceStatusElems = [...]string{"deviceIdentifier", "numberDialed", "notKnown", "restricted", "notRequired", "notSpecified"}

// Device is a device-valued field. In requests it is a plain identifier; in
// events it is the schema's wrapper holding one of deviceIdentifier, notKnown,
// restricted (and for lastRedirectionDevice numberDialed, notRequired,
// notSpecified). The schema, not the value, decides which form is written.
type Device struct {
	ID     string
	Status DeviceStatus
}

// Dev returns a Device holding an identifier.
func Dev(id string) Device { return Device{ID: id} }

// IsZero reports whether the field is absent.
func (d Device) IsZero() bool { return d.ID == "" && d.Status == DeviceIdentifier }

// Known reports whether the field holds an identifier.
func (d Device) Known() bool {
	return d.ID != "" && (d.Status == DeviceIdentifier || d.Status == DeviceNumberDialed)
}

// ConnectionListItem is one entry of a transferredConnections,
// conferenceConnections or connections list.
type ConnectionListItem struct {
	NewConnection ConnectionID
	OldConnection ConnectionID
	Endpoint      string
}

// ForwardListItem is one entry of GetForwardingResponse/forwardingList.
type ForwardListItem struct {
	ForwardingType string
	ForwardStatus  bool
	ForwardDN      string
	ForwardDefault string
	RingCount      int
}

// SnapshotItem is one call of a SnapshotDeviceResponse.
type SnapshotItem struct {
	Connection ConnectionID
	Endpoint   string
	// LocalCallState is the device's connection state in that call
	// (null, initiated, alerting, connected, hold, queued, fail).
	LocalCallState string
}

// FeatureList is one capability list of GetCSTAFeaturesResponse, e.g.
// {List: "callControlServList", Items: ["answerCall", "holdCall"]}.
type FeatureList struct {
	List  string
	Items []string
}

// Message is one decoded CSTA or ECMA-354 document. It is a flat union: each
// kind uses the fields its schema (kinds.go) lists and leaves the rest zero.
// Field names follow the role they play; the element each one maps to in a
// given message is documented by its schema table.
type Message struct {
	Kind Kind
	// Received is when the frame carrying the message was read (unix ns),
	// set by the CTI reader for event latency; never encoded.
	Received int64
	// Name is the root's local name as received; for a known kind it is the
	// canonical spelling (TransferredEvent decodes as "TransferedEvent").
	Name string
	// Namespace is the root's namespace as received ("" on encode).
	Namespace string
	// Raw is the document as received, kept only for an event the codec
	// does not model (Kind KindUnknown, Class ClassEvent), so that it can
	// be passed on with RewriteEvent. Of such an event only Name,
	// Namespace, MonitorCrossRefID and Raw are filled in.
	Raw []byte

	MonitorCrossRefID string

	// Connection is the subject connection: callToBeAnswered, callToBeHeld,
	// callToBeRetrieved, connectionToBeCleared, callToBeCleared,
	// callToBeDiverted, connectionToSendDigits, existingCall; the event's own
	// connection (connection, establishedConnection, droppedConnection...);
	// and the connection a response reports (MakeCallResponse callingDevice,
	// ConsultationCallResponse initiatedCall, transferredCall, conferenceCall).
	Connection ConnectionID
	HeldCall   ConnectionID // heldCall
	ActiveCall ConnectionID // activeCall
	// PrimaryOldCall and SecondaryOldCall are the calls a transfer or
	// conference event merged.
	PrimaryOldCall   ConnectionID
	SecondaryOldCall ConnectionID

	// Device is the device a request is about: device (forwarding, DND),
	// snapshotObject, monitorObject/deviceObject; the device of
	// ForwardingEvent, DoNotDisturbEvent, OutOfServiceEvent and
	// BackInServiceEvent.
	Device Device
	// CallingDevice: MakeCall callingDevice (the line), events' callingDevice.
	CallingDevice Device
	// CalledDevice: events' calledDevice.
	CalledDevice Device
	// Destination is a dialled target: MakeCall calledDirectoryNumber,
	// consultedDevice, transferredTo, DeflectCall/DivertedEvent
	// newDestination, SetForwarding forwardDN, ForwardingEvent forwardTo.
	Destination Device
	// SubjectDevice is the device that acted in an event: alertingDevice,
	// answeringDevice, releasingDevice, holdingDevice, retrievingDevice,
	// transferringDevice, conferencingDevice, divertingDevice,
	// failingDevice, initiatingDevice.
	SubjectDevice Device
	// ThirdParty is transferredToDevice or addedParty.
	ThirdParty            Device
	LastRedirectionDevice Device

	LocalConnectionInfo string
	Cause               string
	Connections         []ConnectionListItem // transferredConnections, conferenceConnections, connections

	AutoOriginate    string
	AccountCode      string
	DigitMode        string
	CharactersToSend string
	MonitorType      string

	MonitorExistingCalls bool

	ForwardingType  string
	ActivateForward bool
	ForwardStatus   bool
	ForwardDefault  string
	RingCount       int
	ForwardingList  []ForwardListItem
	DoNotDisturbOn  bool
	Snapshot        []SnapshotItem

	SystemStatus      string
	SysStatRegisterID string
	// RegisterSystemStatus and RegisterRequestSystemStatus are
	// SystemRegister requestTypes/systemStatus and requestSystemStatus.
	RegisterSystemStatus        bool
	RegisterRequestSystemStatus bool

	SupportedServices []FeatureList
	SupportedEvents   []FeatureList

	// Error is the code of a CSTAErrorCode message.
	Error ErrorCode

	// Line is Microsoft's extensions/privateData/private/lcs:line.
	Line string

	// ECMA-354 application session fields.
	ApplicationID    string
	LoginUser        string // applicationSpecificInfo/*/userName
	LoginPassword    string // applicationSpecificInfo/*/password
	LoginNamespace   string // namespace of the login element (Avaya, Eltex...)
	ProtocolVersions []string
	ProtocolVersion  string // actualProtocolVersion
	SessionDuration  int    // requested or actual session duration, seconds
	SessionID        string
	// Reason is the definedError of a NegResponse, the definedTermReason of
	// ApplicationSessionTerminated or the definedEndReason of
	// StopApplicationSession.
	Reason string
}

// Class is shorthand for m.Kind.Class().
func (m *Message) Class() Class {
	if m.Kind == KindUnknown {
		return classFromName(m.Name)
	}
	return m.Kind.Class()
}

// IsReply reports whether the message answers a request (positive response,
// CSTAErrorCode, ECMA-354 Pos/Neg response, system status response).
func (m *Message) IsReply() bool {
	if m.Kind == KindUnknown {
		c := classFromName(m.Name)
		return c == ClassResponse || c == ClassError
	}
	return m.Kind.IsReply()
}

// Connection fields in a fixed order; handy for translating every device id a
// message carries.
func (m *Message) ConnectionFields() [5]*ConnectionID {
	return [5]*ConnectionID{&m.Connection, &m.HeldCall, &m.ActiveCall, &m.PrimaryOldCall, &m.SecondaryOldCall}
}

// DeviceFields returns the device-valued fields in a fixed order.
func (m *Message) DeviceFields() [7]*Device {
	return [7]*Device{&m.Device, &m.CallingDevice, &m.CalledDevice, &m.Destination, &m.SubjectDevice, &m.ThirdParty, &m.LastRedirectionDevice}
}

func classFromName(name string) Class {
	switch {
	case name == "CSTAErrorCode":
		return ClassError
	case hasSuffix(name, "Response"):
		return ClassResponse
	case hasSuffix(name, "Event"):
		return ClassEvent
	case name == "":
		return ClassUnknown
	}
	return ClassRequest
}

func hasSuffix(s, suf string) bool { return len(s) >= len(suf) && s[len(s)-len(suf):] == suf }
