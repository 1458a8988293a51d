package ctipool

import (
	"errors"

	"github.com/cstagw/cstagw/csta"
)

// Error is a ctipool failure that also says which CSTA error a client should
// get for it (csta.CodeOf finds it through any wrapping).
type Error struct {
	msg  string
	code csta.ErrorCode
}

func (e *Error) Error() string { return e.msg }

// CSTACode implements csta.CSTAError.
func (e *Error) CSTACode() csta.ErrorCode { return e.code }

// Sentinel errors, wrapped with the link name where it helps.
var (
	// ErrLinkDown: the link (or the generation a caller was pinned to) is
	// gone; requests fail at once rather than wait.
	ErrLinkDown = &Error{"ctipool: CTI link is down", csta.CodeResourceOutOfService}
	// ErrStaleGeneration: the link came back under a new generation; the
	// caller's session belongs to the old one.
	ErrStaleGeneration = &Error{"ctipool: CTI link has a new generation", csta.CodeResourceOutOfService}
	// ErrTimeout: the CTI server did not answer within request_timeout.
	ErrTimeout = &Error{"ctipool: CTI request timed out", csta.CodeResourceBusy}
	// ErrQueueFull: the link's send queue is full.
	ErrQueueFull = &Error{"ctipool: CTI send queue full", csta.CodeResourceBusy}
	// ErrNoLink: no link is up to place a session on.
	ErrNoLink = &Error{"ctipool: no CTI link is up", csta.CodeResourceOutOfService}
	// ErrClosed: the pool is shut down.
	ErrClosed = &Error{"ctipool: pool closed", csta.CodeResourceOutOfService}
	// ErrSessionRefused: the CTI server refused the application session
	// (wrong login, unsupported version, no capacity).
	ErrSessionRefused = errors.New("ctipool: application session refused")
	// ErrHeartbeat: nothing was received for two heartbeat intervals.
	ErrHeartbeat = errors.New("ctipool: no traffic for two heartbeat intervals")
	// ErrSystemDisabled: the switch reported systemStatus disabled.
	ErrSystemDisabled = errors.New("ctipool: switch reported system disabled")
	// ErrSessionTerminated: the switch ended the application session.
	ErrSessionTerminated = errors.New("ctipool: application session terminated by the switch")
	// ErrProtocol: a frame could not be read; the link is closed.
	ErrProtocol = errors.New("ctipool: CTI protocol error")
)
