package csta

import (
	"errors"
	"fmt"
)

// Category is the child element of CSTAErrorCode.
type Category uint8

const (
	CatUnknown Category = iota
	CatOperation
	CatSecurity
	CatStateIncompatibility
	CatSystemResourceAvailability // written "systemResourceAvailibility", as the schema spells it
	CatSubscribedResourceAvailability
	CatPerformanceManagement
	CatPrivateData
	CatPrivateErrorCode
	CatUnspecified
)

// categoryElems are the schema's spellings, used on output.
var categoryElems = [...]string{
	CatUnknown:                        "unspecified",
	CatOperation:                      "operation",
	CatSecurity:                       "security",
	CatStateIncompatibility:           "stateIncompatibility",
	CatSystemResourceAvailability:     "systemResourceAvailibility",
	CatSubscribedResourceAvailability: "subscribedResourceAvailability",
	CatPerformanceManagement:          "performanceManagement",
	CatPrivateData:                    "privateData",
	CatPrivateErrorCode:               "privateErrorCode",
	CatUnspecified:                    "unspecified",
}

// categoryByElem also accepts the corrected and misspelt variants seen in the
// field.
var categoryByElem = map[string]Category{
	"operation":                      CatOperation,
	"security":                       CatSecurity,
	"stateIncompatibility":           CatStateIncompatibility,
	"systemResourceAvailibility":     CatSystemResourceAvailability,
	"systemResourceAvailability":     CatSystemResourceAvailability,
	"subscribedResourceAvailability": CatSubscribedResourceAvailability,
	"subscribedResourceAvailibility": CatSubscribedResourceAvailability,
	"performanceManagement":          CatPerformanceManagement,
	"privateData":                    CatPrivateData,
	"privateErrorCode":               CatPrivateErrorCode,
	"unspecified":                    CatUnspecified,
}

// Element is the category's element name as the schema spells it.
func (c Category) Element() string {
	if int(c) < len(categoryElems) {
		return categoryElems[c]
	}
	return "unspecified"
}

func (c Category) String() string { return c.Element() }

// ErrorCode is a CSTA error: a category and the value inside it.
type ErrorCode struct {
	Category Category
	Value    string
}

func (c ErrorCode) String() string {
	if c.Value == "" {
		return c.Category.Element()
	}
	return c.Category.Element() + "/" + c.Value
}

// IsZero reports whether no code is set.
func (c ErrorCode) IsZero() bool { return c.Category == CatUnknown && c.Value == "" }

// Error codes the gateway and the simulator use (docs/wire.md §1.9).
var (
	CodeGeneric                       = ErrorCode{CatOperation, "generic"}
	CodeInvalidParameterValue         = ErrorCode{CatOperation, "invalidParameterValue"}
	CodeInvalidCallID                 = ErrorCode{CatOperation, "invalidCallID"}
	CodeInvalidConnectionID           = ErrorCode{CatOperation, "invalidConnectionID"}
	CodeInvalidDeviceID               = ErrorCode{CatOperation, "invalidDeviceID"}
	CodeInvalidCallingDevice          = ErrorCode{CatOperation, "invalidCallingDeviceID"}
	CodeInvalidCalledDevice           = ErrorCode{CatOperation, "invalidCalledDeviceID"}
	CodeInvalidDestination            = ErrorCode{CatOperation, "invalidDestination"}
	CodeInvalidForwardingDestination  = ErrorCode{CatOperation, "invalidForwardingDestination"}
	CodeInvalidMonitorCrossRefID      = ErrorCode{CatOperation, "invalidMonitorCrossRefID"}
	CodeInvalidMonitorObject          = ErrorCode{CatOperation, "invalidMonitorObject"}
	CodeObjectNotKnown                = ErrorCode{CatOperation, "objectNotKnown"}
	CodePrivilegeViolationDevice      = ErrorCode{CatOperation, "privilegeViolationSpecifiedDevice"}
	CodePrivilegeViolationCalling     = ErrorCode{CatOperation, "privilegeViolationCallingDevice"}
	CodePrivilegeViolationCalled      = ErrorCode{CatOperation, "privilegeViolationCalledDevice"}
	CodeRequestIncompatibleWithObject = ErrorCode{CatOperation, "requestIncompatibleWithObject"}
	CodeServiceNotSupported           = ErrorCode{CatOperation, "serviceNotSupported"}
	CodeParameterNotSupported         = ErrorCode{CatOperation, "parameterNotSupported"}
	CodeValueOutOfRange               = ErrorCode{CatOperation, "valueOutOfRange"}
	CodeNotDifferentDevices           = ErrorCode{CatOperation, "notDifferentDevices"}

	CodeInvalidObjectState     = ErrorCode{CatStateIncompatibility, "invalidObjectState"}
	CodeInvalidDeviceState     = ErrorCode{CatStateIncompatibility, "invalidDeviceState"}
	CodeInvalidConnectionState = ErrorCode{CatStateIncompatibility, "invalidConnectionState"}
	CodeNoActiveCall           = ErrorCode{CatStateIncompatibility, "noActiveCall"}
	CodeNoHeldCall             = ErrorCode{CatStateIncompatibility, "noHeldCall"}
	CodeNoCallToAnswer         = ErrorCode{CatStateIncompatibility, "noCallToAnswer"}
	CodeNoCallToClear          = ErrorCode{CatStateIncompatibility, "noCallToClear"}
	CodeNoConnectionToClear    = ErrorCode{CatStateIncompatibility, "noConnectionToClear"}

	CodeResourceBusy                = ErrorCode{CatSystemResourceAvailability, "resourceBusy"}
	CodeResourceOutOfService        = ErrorCode{CatSystemResourceAvailability, "resourceOutOfService"}
	CodeDeviceOutOfService          = ErrorCode{CatSystemResourceAvailability, "deviceOutOfService"}
	CodeResourceLimitExceeded       = ErrorCode{CatSystemResourceAvailability, "resourceLimitExceeded"}
	CodeOverallMonitorLimitExceeded = ErrorCode{CatSystemResourceAvailability, "overallMonitorLimitExceeded"}

	CodeObjectMonitorLimitExceeded  = ErrorCode{CatSubscribedResourceAvailability, "objectMonitorLimitExceeded"}
	CodeOutstandingReqLimitExceeded = ErrorCode{CatSubscribedResourceAvailability, "outstandingReqLimitExceeded"}

	CodeUnspecified = ErrorCode{CatUnspecified, ""}
)

// Error is a failure that carries a CSTA error code, so any layer can turn it
// into the right CSTAErrorCode body.
type Error struct {
	Code   ErrorCode
	Detail string
}

// NewError returns an *Error with a formatted detail.
func NewError(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return "csta: " + e.Code.String()
	}
	return "csta: " + e.Code.String() + ": " + e.Detail
}

// Is matches another *Error with the same code, so errors.Is(err,
// &csta.Error{Code: csta.CodeResourceOutOfService}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// CSTAError lets other packages' errors carry a code (ctipool's ErrLinkDown,
// for instance) without importing this package's Error type.
type CSTAError interface {
	error
	CSTACode() ErrorCode
}

// CSTACode implements CSTAError.
func (e *Error) CSTACode() ErrorCode { return e.Code }

// CodeOf returns the CSTA error code carried by err or anything it wraps.
func CodeOf(err error) (ErrorCode, bool) {
	var ce CSTAError
	if errors.As(err, &ce) {
		return ce.CSTACode(), true
	}
	return ErrorCode{}, false
}

// ErrorMessage returns the CSTAErrorCode message for a code.
func ErrorMessage(code ErrorCode) *Message {
	return &Message{Kind: KindCSTAErrorCode, Error: code}
}
