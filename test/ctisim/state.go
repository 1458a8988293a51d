package ctisim

// State is what GET /state returns: the switch (calls, devices) and every
// CTI node (clients, sessions, monitors, traffic, faults).
type State struct {
	Stations string      `json:"stations"`
	Calls    []CallState `json:"calls"`
	// Devices lists the devices the switch currently knows something
	// about: a call, a monitor, forwarding or do-not-disturb.
	Devices []DeviceState `json:"devices"`
	Nodes   []NodeState   `json:"nodes"`
}

// CallState is one call and its connections in the order they joined.
type CallState struct {
	ID              string            `json:"id"`
	Calling         string            `json:"calling"`
	Called          string            `json:"called"`
	LastRedirection string            `json:"lastRedirection,omitempty"`
	Connections     []ConnectionState `json:"connections"`
}

// ConnectionState is one device's connection: state is one of null,
// initiated, alerting, connected, hold, fail.
type ConnectionState struct {
	Device   string `json:"device"`
	State    string `json:"state"`
	External bool   `json:"external,omitempty"`
	Digits   string `json:"digits,omitempty"`
}

// DeviceState is a station's features and what it is involved in.
type DeviceState struct {
	ID      string `json:"id"`
	Station bool   `json:"station"`
	DND     bool   `json:"dnd"`
	// OutOfService is set while the control API holds the station out
	// of service.
	OutOfService bool              `json:"outOfService,omitempty"`
	Forwarding   []ForwardingState `json:"forwarding"`
	Monitors     int               `json:"monitors"`
	Calls        []string          `json:"calls,omitempty"`
}

// ForwardingState is one forwarding type of a device.
type ForwardingState struct {
	Type      string `json:"type"`
	Active    bool   `json:"active"`
	DN        string `json:"dn,omitempty"`
	RingCount int    `json:"ringCount,omitempty"`
}

// NodeState is one CTI server node.
type NodeState struct {
	Index            int           `json:"index"`
	Address          string        `json:"address"`
	ConnectedClients int           `json:"connectedClients"`
	Sessions         int           `json:"sessions"`
	Monitors         int           `json:"monitors"`
	Clients          []ClientState `json:"clients"`
	// FramesIn and FramesOut count frames by message name ("(unparseable)"
	// for bodies that are not XML the codec accepts).
	FramesIn  map[string]uint64 `json:"framesIn"`
	FramesOut map[string]uint64 `json:"framesOut"`
	// InFlight counts requests received and not yet answered, by message
	// name; delayed requests count until their response is queued.
	InFlight map[string]int `json:"inFlight"`
	// InFlightMonitorSnapshot is the current number of outstanding
	// MonitorStart plus SnapshotDevice requests, and ...HighWater the
	// largest it has been since the node started.
	InFlightMonitorSnapshot          int `json:"inFlightMonitorSnapshot"`
	InFlightMonitorSnapshotHighWater int `json:"inFlightMonitorSnapshotHighWater"`
	InFlightHighWater                int `json:"inFlightHighWater"`
	// Accepted counts TCP connections accepted, Refused those closed at once
	// by a refuse fault, Dropped frames not written because of a silent
	// fault, Disconnected connections closed by the switch (drop fault,
	// slow consumer, protocol error, session end).
	Accepted     uint64      `json:"accepted"`
	Refused      uint64      `json:"refused"`
	Dropped      uint64      `json:"dropped"`
	Disconnected uint64      `json:"disconnected"`
	Faults       FaultsState `json:"faults"`
}

// FaultsState shows the faults in force on a node. Until is RFC 3339, empty
// when the fault lasts until cleared.
type FaultsState struct {
	Silent      bool   `json:"silent"`
	SilentUntil string `json:"silentUntil,omitempty"`
	Refuse      bool   `json:"refuse"`
	RefuseUntil string `json:"refuseUntil,omitempty"`
	Delay       string `json:"delay,omitempty"`
	DelayUntil  string `json:"delayUntil,omitempty"`
}

// ClientState is one TCP connection to a node.
type ClientState struct {
	ID         uint64         `json:"id"`
	Remote     string         `json:"remote"`
	Namespace  string         `json:"namespace"`
	Session    string         `json:"session,omitempty"`
	SessionEnd string         `json:"sessionExpires,omitempty"`
	Monitors   []MonitorState `json:"monitors"`
	Queued     int            `json:"queued"`
	// AwaitingSystemStatus is true while a SystemStatus the switch sent
	// (speak-first) has no SystemStatusResponse yet.
	AwaitingSystemStatus bool `json:"awaitingSystemStatusResponse"`
}

// MonitorState is one device monitor.
type MonitorState struct {
	CrossRefID string `json:"monitorCrossRefID"`
	Device     string `json:"device"`
}
