// Package ctisim simulates a PBX's CSTA switching function behind N CTI
// server nodes, for cstagw's tests, its demo mode and its benchmarks.
//
// One Sim is one PBX cluster: each node is a TCP (optionally TLS) listener
// speaking CSTA XML (ECMA-323) framed as Profile A (8-byte header with a
// 4-digit invoke id; Profile B, NUL-terminated, as an option), with or
// without ECMA-354 application sessions; all nodes share one switch, so a
// monitor on one node sees calls driven from another. The switch follows the
// ECMA-269 call model: stations from a number range, external numbers
// through a trunk, calls with 8-hex-digit ids that are never reused,
// connections in the states null, initiated, alerting, connected, hold and
// fail, and the events a PBX emits for each service, in PBX order, to every
// monitor of every device involved, each with that monitor's
// monitorCrossRefID and that device's own localConnectionInfo.
//
// Use in Go:
//
//	cfg := ctisim.DefaultConfig()
//	cfg.Listen = []string{"127.0.0.1:0", "127.0.0.1:0"}
//	cfg.Control = "127.0.0.1:0"
//	sim, err := ctisim.New(cfg)
//	...
//	err = sim.Start()
//	defer sim.Close()
//	addrs := sim.Addrs()                     // bound node addresses
//	id, err := sim.PlaceCall("+12065550147", "40001") // an incoming trunk call
//	err = sim.Answer(id, "40001")
//
// Note that Config's zero value means response-first ordering; DefaultConfig
// sets EventsFirst as the command does.
//
// # Wire behaviour
//
//   - Responses echo the request's invoke id; events carry 9999. A frame
//     with a bad header or a non-digit invoke id closes the connection; a
//     well-framed body that is not acceptable XML gets CSTAErrorCode
//     operation/generic with the same invoke id; a well-formed request the
//     switch does not implement gets operation/serviceNotSupported.
//     Responses and events a client sends are ignored.
//   - Any namespace is accepted on input. Output uses the namespace the
//     application session negotiated (the first of requestedProtocolVersions
//     the switch supports, ed3 to ed6), or Config.Namespace without a session.
//   - StartApplicationSession: PosResponse (sessionID, actualProtocolVersion,
//     actualSessionDuration = min(requested, MaxSessionDuration)), or
//     NegResponse requestedProtocolVersionNotSupported, or with Login set
//     and wrong credentials NegResponse invalidApplicationInfo and close.
//     ResetApplicationSessionTimer re-arms the timer (unknown sessionID:
//     NegResponse invalidSessionID); expiry sends ApplicationSessionTerminated
//     (sessionTimerExpired) and closes; StopApplicationSession answers
//     PosResponse and closes. RequireSession refuses other requests before a
//     session with operation/securityViolation.
//   - SpeakFirst sends SystemStatus(normal) on connect with a switch invoke
//     id; RequestSystemStatus, SystemStatus and SystemRegister are answered.
//   - Each connection has one reader, one processor and one writer goroutine
//     and a bounded output queue: a client that stops reading is
//     disconnected when its queue fills; the switch never blocks on it.
//
// # Services and events
//
// MakeCall, AnswerCall, ClearConnection, ClearCall, HoldCall, RetrieveCall,
// AlternateCall, ReconnectCall, ConsultationCall, TransferCall,
// SingleStepTransferCall, ConferenceCall, DeflectCall, GenerateDigits,
// SetForwarding/GetForwarding (forwardImmediate, forwardBusy, forwardNoAns
// with ring count, forwardDND), SetDoNotDisturb/GetDoNotDisturb,
// SnapshotDevice, MonitorStart/MonitorStop (device monitors), and
// GetCSTAFeatures; OutOfServiceEvent and BackInServiceEvent when the control
// API takes a station out of service and back; any other event document a
// test gives SendEvent. README.md lists the event sequence of each service
// and the CSTA error of each wrong state.
//
// # Control API
//
// HTTP with JSON bodies on Config.Control. Errors are {"error":"..."} with
// 400 (bad input), 404 (unknown call, device or node), 405 (wrong method) or
// 409 (wrong state). Control actions go through the same switching
// operations as CSTA requests, so monitors get the same events.
//
//	POST   /calls               {"from":"+12065550147","to":"40001"} → {"callID":"3f2a9c41"}
//	                            from an external number (incoming trunk call) or a
//	                            station (its user dials); to a station or, from a
//	                            station, an external number.
//	POST   /calls/{id}/answer   {"device":"40001"}  the alerting party (station or
//	                            external) answers; no device: the one alerting party.
//	POST   /calls/{id}/reject   {"device":"40001"}  the alerting party refuses as busy:
//	                            its connection clears (cause busy), the caller fails.
//	POST   /calls/{id}/hangup   {"device":"40001"}  that party hangs up; no device
//	                            clears the whole call.
//	POST   /devices/{id}/outofservice   the station goes out of service: its
//	                            monitors get OutOfServiceEvent; MakeCall from it
//	                            fails (deviceOutOfService), calls to it fail.
//	POST   /devices/{id}/backinservice  back in service: BackInServiceEvent.
//	POST   /devices/{id}/events the request body, an event document, goes to every
//	                            monitor of the station with that monitor's
//	                            monitorCrossRefID, otherwise as given →
//	                            {"device":"40001","monitors":2}
//	GET    /state               calls, devices (forwarding, DND, service), nodes (clients,
//	                            sessions, monitors, frames in/out by name, requests
//	                            in flight by name, MonitorStart+SnapshotDevice
//	                            in-flight high-water mark, faults).
//	POST   /nodes/{i}/fault     {"kind":"drop"}
//	                            {"kind":"silent","seconds":5}  open TCP, nothing
//	                                written or answered (0 or absent: until DELETE)
//	                            {"kind":"refuse","seconds":5}  new connections
//	                                accepted and closed at once
//	                            {"kind":"delay","delay":"250ms"}  every request
//	                                answered D late, counted as in flight
//	DELETE /nodes/{i}/fault     clears every fault of node i
//
// Nodes are numbered from 0 in the order of Config.Listen (and Addrs).
package ctisim
