package node

import (
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// A client's Idempotency-Key names one request: a retry sends that request
// again under it (after a timeout, a reset, a 503) and is applied once. The
// same key sent with another request is no retry: a producer that numbers
// its requests from 1 again after a restart, or two producers whose key
// schemes meet. Were such a request skipped by its key alone, a different
// write would be answered 200 and never applied: acknowledged data lost to
// a client's mistake. So the HTTP API applies a write under an id that
// binds the key to what the request asks (BoundRequestID): a retry, the
// same bytes again, has the same id and counts once; the same key with
// another request is the new write it is, and is applied. (IETF's
// Idempotency-Key draft answers such a request 422 instead; telling it
// from a new write would need each key's request hash kept in the log and
// the snapshots, and applying it loses nothing.) The Go API's ...As
// methods take the id as given: an embedder names each request itself.

// BoundRequestID returns the id the HTTP API applies a write under when
// the client named it key: key, a NUL, and a 64-bit hash of route (the
// write's endpoint: "ingest", "ingest-bulk", "import" or "tables"),
// target (its source, or its table and the options that change what the
// upload does) and body. "" when key is "" (the write is then not
// deduplicated on a single node, and a cluster assigns an id).
func BoundRequestID(key, route, target string, body []byte) string {
	if key == "" {
		return ""
	}
	var d xxhash.Digest
	d.Reset()
	d.WriteString(route)
	d.WriteString("\x00")
	d.WriteString(target)
	d.WriteString("\x00")
	d.Write(body)
	return key + "\x00" + strconv.FormatUint(d.Sum64(), 16)
}

// clientKey returns the client's key of request id (BoundRequestID), the
// name messages give it: the id itself when it is not bound.
func clientKey(id string) string {
	key, _, _ := strings.Cut(id, "\x00")
	return key
}
