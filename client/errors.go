package client

import (
	"errors"
	"fmt"
)

// Error is the node's answer to a request it refused or failed: a status of
// 400 or more with tally's JSON error body. Status is the HTTP status, Code
// the node's error code (e.g. "UNKNOWN_FEATURE_SERVICE"), Message what the
// node said, which names the problem and what to change.
type Error struct {
	Status  int
	Code    string
	Message string
	// Endpoint is the path requested, e.g. "/api/v1/ingest".
	Endpoint string
	// Records lists, for a refused ingest, the first refused records (at
	// most 100); Refused counts them all, Total the records sent. Empty
	// for other errors.
	Records []RecordError
	Refused int
	Total   int
	// Groups says, for ErrPartlyApplied in a cluster, what each replica
	// group owning a key of the request holds of its share; Sources, on a
	// single node, which sources' records were applied.
	Groups  []GroupShare
	Sources []SourceShare
}

// GroupShare is what a replica group holds of its share of a request
// (ErrPartlyApplied): Share is "applied", "not applied", "partly applied"
// (its share of some sources of the request) or "unknown" (it could not be
// asked; Error says why). Records counts the request's records with a key
// the group owns.
type GroupShare struct {
	Group   int    `json:"group"`
	Records int    `json:"records"`
	Share   string `json:"share"`
	Error   string `json:"error,omitempty"`
}

// SourceShare is whether a single node applied the records of one source
// of a request (ErrPartlyApplied): Share is "applied" or "not applied".
type SourceShare struct {
	Source  string `json:"source"`
	Records int    `json:"records"`
	Share   string `json:"share"`
}

// RecordError is one refused record of an ingest: its source, its index in
// the request (for bulk and import, its line from 0) and why.
type RecordError struct {
	Source string `json:"source"`
	Index  int    `json:"index"`
	Reason string `json:"reason"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("tally %s: %d %s: %s", e.Endpoint, e.Status, e.Code, e.Message)
}

// Is reports whether target is an *Error with the same Code (a sentinel
// below matches every error of its code, whatever the status or message).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code != "" && t.Code == e.Code
}

// The error codes a client most often acts on, for errors.Is. Each matches
// every *Error with its Code.
var (
	// ErrUnauthenticated: no API key, or one the node does not know (401).
	ErrUnauthenticated = &Error{Code: "UNAUTHENTICATED"}
	// ErrPermissionDenied: the key lacks the endpoint's scope (403).
	ErrPermissionDenied = &Error{Code: "PERMISSION_DENIED"}
	// ErrUnknownService: no such feature service (404).
	ErrUnknownService = &Error{Code: "UNKNOWN_FEATURE_SERVICE"}
	// ErrUnknownSource: no such source (404).
	ErrUnknownSource = &Error{Code: "UNKNOWN_SOURCE"}
	// ErrUnknownTable: no such table view (404).
	ErrUnknownTable = &Error{Code: "UNKNOWN_TABLE"}
	// ErrInvalidRecords: an ingest was refused, nothing of it applied (400);
	// Error.Records says which records and why.
	ErrInvalidRecords = &Error{Code: "INVALID_RECORDS"}
	// ErrPartlyApplied: the retry (same RequestID) of an ingest part of
	// which was applied before (a cluster write some replica groups applied
	// and others failed, or a single node's crash that kept part of it)
	// was refused, its records now being too late for the rest (409).
	// Error.Groups (or Sources) says which part was applied, Error.Records
	// why the records are refused. Do not send them again under a new id:
	// the part applied would be counted twice.
	ErrPartlyApplied = &Error{Code: "PARTLY_APPLIED"}
	// ErrInvalidRequest: the request is malformed or names something wrong
	// (400); the message says what.
	ErrInvalidRequest = &Error{Code: "INVALID_REQUEST"}
	// ErrNotDurable: the node could not write its log; the change was not
	// acknowledged and the node acknowledges nothing until restarted (503).
	ErrNotDurable = &Error{Code: "NOT_DURABLE"}
	// ErrBodyTooLarge: the body exceeds the node's limits.max_body_bytes (413).
	ErrBodyTooLarge = &Error{Code: "BODY_TOO_LARGE"}
	// ErrTooLarge: the change, within max_body_bytes, would make a log
	// record over the log's record limit (413); nothing was stored. Send
	// it in smaller parts.
	ErrTooLarge = &Error{Code: "TOO_LARGE"}
	// ErrUnavailable: a cluster could not serve the request now, e.g. a
	// replica group it needs has no leader (503). Reads, and writes with a
	// RequestID, are retried on it; a write without one is not, since
	// groups that had a leader may have applied their share (the message
	// says what to do).
	ErrUnavailable = &Error{Code: "UNAVAILABLE"}
	// ErrUnsupportedMediaType: the body was sent with a Content-Encoding
	// other than identity, or a spine in a format the node does not read
	// (415); nothing was read.
	ErrUnsupportedMediaType = &Error{Code: "UNSUPPORTED_MEDIA_TYPE"}
	// ErrExportBusy: a historical-features join is already running (429).
	ErrExportBusy = &Error{Code: "EXPORT_BUSY"}
	// ErrTooManyConnections: this client address holds the node's
	// limits.max_conns_per_ip connections (429); the connection was closed
	// unread. Reuse connections, or raise the limit. (A node at
	// limits.max_conns answers 503 UNAVAILABLE.)
	ErrTooManyConnections = &Error{Code: "TOO_MANY_CONNECTIONS"}
	// ErrArchiveIncomplete: retention removed the archive's start; ask with
	// AllowPartial to accept that (409).
	ErrArchiveIncomplete = &Error{Code: "ARCHIVE_INCOMPLETE"}
	// ErrInvalidSpine: the historical-features spine is unusable (400).
	ErrInvalidSpine = &Error{Code: "INVALID_SPINE"}
)

// IsCode reports whether err is (or wraps) an *Error with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// StatusOf returns the HTTP status of the *Error in err, or 0 when the node
// did not answer with an error status.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}
