package node

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/tabular"
)

// RecordError says why one record was refused.
type RecordError struct {
	Source string `json:"source"`
	Index  int    `json:"index"`
	Reason string `json:"reason"`
}

// IngestError refuses a whole ingest request: nothing of it is applied
// now. Nothing of it was applied before either, but for the code
// PARTLY_APPLIED (HTTP 409): the retry of a request (same id) part of which
// was applied, whose other part is now refused; Groups (a cluster) or
// Sources (a single node) say which part.
type IngestError struct {
	Code    string
	Message string
	Records []RecordError // at most maxListedErrors, Refused counts all
	Refused int
	Total   int
	// Groups says, for PARTLY_APPLIED in a cluster, what each group owning
	// a key of the request holds of its share.
	Groups []GroupShare
	// Sources says, for PARTLY_APPLIED on a single node, which sources'
	// records were applied.
	Sources []SourceShare
}

// SourceShare is whether a single node applied the records of one source
// of a request (a request of several sources is a log record each, and a
// crash may keep only the first ones).
type SourceShare struct {
	Source  string     `json:"source"`
	Records int        `json:"records"`
	State   ShareState `json:"share"`
}

func (e *IngestError) Error() string { return e.Message }

const maxListedErrors = 100

// IngestResult is what an accepted ingest did.
type IngestResult struct {
	Accepted int  // records validated (and applied unless DryRun)
	DryRun   bool // validated only
	// TooLate counts (event, view) placements the windows refused because the
	// event is older than its entity's state (see windows.ErrTooLate). They
	// can never be counted in any answerable window.
	TooLate int
	// Deferred counts, for an import, the events that became visible to
	// historical features later than their own timestamp: the log already
	// held a newer change (live data, or a later part of an import), so
	// they count from then on, as they did online.
	Deferred int
	Backfill bool
}

// ingestWork is the pooled state of one ingest request.
// ingestMembers are the members of an ingest body (options.go: any other
// is refused).
var ingestMembers = []string{"records", "dry_run", "dryRun", "workspace_name", "workspaceName"}

type ingestWork struct {
	parser  fastjson.Parser
	batches []*store.Batch // one per source, by source index
	used    []bool
	items   []int // by source index: the records sent, refused or not
	errs    []RecordError
	refused int
	// late counts the refused records that are valid but too late, kept in
	// their batch (parseRecord: in a cluster, under a request id). When
	// every refused record is one, the batches hold the whole request.
	late  int
	total int
	parts int // sources with records: the log records of the request
	// maxKey and maxValue are limits.max_key_bytes and max_value_bytes.
	maxKey, maxValue int
	keyBuf           []byte
	numBuf           []byte
	commit           []*store.Batch // the used, non-empty batches
	// backfill: an import, whose events are checked against streamClock,
	// the newest timestamp of the body so far, instead of the node's clock.
	backfill    bool
	streamClock int64
	// id is the request id a cluster applies once ("" on a single node,
	// or when the client sent none: the cluster assigns one).
	id string
}

var ingestPool sync.Pool

func (n *Node) getIngestWork() *ingestWork {
	w, _ := ingestPool.Get().(*ingestWork)
	if w == nil {
		w = &ingestWork{}
	}
	sources := n.Repo().Sources
	for len(w.batches) < len(sources) {
		w.batches = append(w.batches, &store.Batch{})
		w.used = append(w.used, false)
		w.items = append(w.items, 0)
	}
	// The pool is shared by every node of the process (history joins, tests),
	// which may have more sources than this one: clear every flag.
	clear(w.used)
	clear(w.items)
	for i, s := range sources {
		w.batches[i].Reset(i, len(s.Columns))
	}
	w.errs, w.refused, w.late, w.total, w.parts = w.errs[:0], 0, 0, 0, 0
	w.backfill, w.streamClock = false, math.MinInt64
	w.maxKey, w.maxValue = n.cfg.Limits.MaxKeyBytes, n.cfg.Limits.MaxValueBytes
	return w
}

func (w *ingestWork) refuse(source string, index int, reason string) {
	w.refused++
	if len(w.errs) < maxListedErrors {
		w.errs = append(w.errs, RecordError{Source: source, Index: index, Reason: reason})
	}
}

// IngestJSON ingests a Tecton-style body:
//
//	{"workspace_name": "...", "dry_run": false,
//	 "records": {"<source>": [{"record": {...}}, ...]}}
//
// Either every record is valid and all are applied (or only validated, on
// dry_run), or the request is refused with an *IngestError listing the bad
// records and nothing changes.
func (n *Node) IngestJSON(body []byte) (IngestResult, error) {
	return n.IngestJSONAs("", body)
}

// IngestJSONAs is IngestJSON for a request with id ("" for none; the HTTP
// API gives BoundRequestID of the client's Idempotency-Key): the events of
// one id are applied once, on a single node (store.CommitEvents) as in a
// cluster, so a retry after a timeout counts nothing twice.
func (n *Node) IngestJSONAs(id string, body []byte) (IngestResult, error) {
	w := n.getIngestWork()
	defer ingestPool.Put(w)
	w.id = id
	root, err := tabular.ParseJSON(&w.parser, body)
	if err != nil {
		return IngestResult{}, &IngestError{Code: "MALFORMED_JSON", Message: "request body is not valid JSON: " + err.Error()}
	}
	if root.Type() != fastjson.TypeObject {
		return IngestResult{}, &IngestError{Code: "INVALID_REQUEST", Message: "request body must be a JSON object with a \"records\" field"}
	}
	if msg := checkNoDuplicates(root, ""); msg != "" {
		return IngestResult{}, &IngestError{Code: "INVALID_REQUEST", Message: msg}
	}
	rootObj, _ := root.Object()
	if k, ok := unknownMember(rootObj, func(k []byte) bool { return slices.Contains(ingestMembers, string(k)) }); ok {
		return IngestResult{}, &IngestError{Code: "INVALID_REQUEST", Message: fmt.Sprintf("unknown member %q: an ingest body takes records, dry_run (dryRun) and workspace_name (workspaceName); nothing was ingested", k)}
	}
	if err := n.checkWorkspace(root); err != nil {
		return IngestResult{}, err
	}
	dry, msg := boolOption(root, "", "dry_run", "dryRun", false)
	if msg != "" {
		return IngestResult{}, &IngestError{Code: "INVALID_REQUEST", Message: msg}
	}
	recs := root.Get("records")
	if recs == nil || recs.Type() != fastjson.TypeObject {
		got := ""
		if recs != nil {
			got = ", got " + jsonTypeName(recs)
		}
		return IngestResult{}, &IngestError{Code: "INVALID_REQUEST", Message: "request needs \"records\": an object mapping source names to arrays of {\"record\": {...}}" + got}
	}
	if msg := checkNoDuplicates(recs, "records."); msg != "" {
		return IngestResult{}, &IngestError{Code: "INVALID_REQUEST", Message: msg}
	}
	obj, _ := recs.Object()
	var visitErr *IngestError
	now := n.now()
	obj.Visit(func(name []byte, arr *fastjson.Value) {
		if visitErr != nil {
			return
		}
		sp := n.SourceNamed(name)
		if sp == nil {
			visitErr = &IngestError{Code: "UNKNOWN_SOURCE", Message: fmt.Sprintf("unknown source %q: this node's sources are %s", name, n.sourceNames())}
			return
		}
		items, err := arr.Array()
		if err != nil {
			visitErr = &IngestError{Code: "INVALID_REQUEST", Message: fmt.Sprintf("records.%s must be an array of {\"record\": {...}}", name)}
			return
		}
		if w.total+len(items) > n.cfg.Limits.MaxRecords {
			visitErr = &IngestError{Code: "TOO_MANY_RECORDS", Message: fmt.Sprintf("request has more than %d records (limits.max_records); split it", n.cfg.Limits.MaxRecords)}
			return
		}
		b := w.batches[sp.Index]
		w.used[sp.Index] = true
		w.items[sp.Index] = len(items)
		if len(items) > 0 {
			w.parts++
		}
		for i, it := range items {
			w.total++
			rec := it.Get("record")
			if rec == nil {
				w.refuse(sp.Src.Name, i, "each item must be {\"record\": {...}}")
				continue
			}
			if o, err := it.Object(); err == nil && o.Len() > 1 { // {"record": ...} alone needs no check
				if msg := checkNoDuplicates(it, ""); msg != "" {
					w.refuse(sp.Src.Name, i, msg)
					continue
				}
			}
			if reason := n.parseRecord(sp, rec, b, now, w); reason != "" {
				w.refuse(sp.Src.Name, i, reason)
			}
		}
	})
	if visitErr != nil {
		return IngestResult{}, visitErr
	}
	return n.finishIngest(w, dry, now, false)
}

// IngestNDJSON ingests one record object per line for one source, the bulk
// path for high-rate producers. All or nothing, like IngestJSON.
func (n *Node) IngestNDJSON(source string, body []byte, dry bool) (IngestResult, error) {
	return n.ingestLines("", source, body, dry, false)
}

// IngestNDJSONAs is IngestNDJSON for a request with id (see IngestJSONAs).
func (n *Node) IngestNDJSONAs(id, source string, body []byte, dry bool) (IngestResult, error) {
	return n.ingestLines(id, source, body, dry, false)
}

// ImportNDJSON backfills historical events, one record object per line: the
// body of a bulk ingest, but each event becomes visible to historical
// features at its own timestamp rather than when the node received it, as if
// the events had streamed in at their own times in the order given. An event
// is refused when it is ahead of the node's clock by more than max_future, or
// older than the events before it in the body by more than the source's
// longest window plus its lateness (it could never have been counted). The
// online state takes the events as any ingest does: a view skips (and counts
// as too late) an event older than its watermark allows, so import history
// before streaming live events. All or nothing.
func (n *Node) ImportNDJSON(source string, body []byte, dry bool) (IngestResult, error) {
	return n.ingestLines("", source, body, dry, true)
}

// ImportNDJSONAs is ImportNDJSON for a request with id (see IngestJSONAs).
func (n *Node) ImportNDJSONAs(id, source string, body []byte, dry bool) (IngestResult, error) {
	return n.ingestLines(id, source, body, dry, true)
}

func (n *Node) ingestLines(id, source string, body []byte, dry, backfill bool) (IngestResult, error) {
	w := n.getIngestWork()
	defer ingestPool.Put(w)
	w.id = id
	sp := n.SourceNamed([]byte(source))
	if sp == nil {
		return IngestResult{}, &IngestError{Code: "UNKNOWN_SOURCE", Message: fmt.Sprintf("unknown source %q: this node's sources are %s", source, n.sourceNames())}
	}
	b := w.batches[sp.Index]
	w.used[sp.Index] = true
	w.backfill = backfill
	now := n.now()
	line := 0
	for len(body) > 0 {
		var l []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			l, body = body[:i], body[i+1:]
		} else {
			l, body = body, nil
		}
		l = bytes.Trim(l, tabular.JSONSpace) // JSON's whitespace only: not \f, \v or U+00A0
		if len(l) == 0 {
			line++
			continue
		}
		if w.total >= n.cfg.Limits.MaxRecords {
			return IngestResult{}, &IngestError{Code: "TOO_MANY_RECORDS", Message: fmt.Sprintf("request has more than %d records (limits.max_records); split it", n.cfg.Limits.MaxRecords)}
		}
		w.total++
		w.parts = 1
		w.items[sp.Index]++
		rec, err := tabular.ParseJSON(&w.parser, l)
		if err != nil {
			w.refuse(source, line, "not valid JSON: "+err.Error())
		} else if reason := n.parseRecord(sp, rec, b, now, w); reason != "" {
			w.refuse(source, line, reason)
		}
		line++
	}
	return n.finishIngest(w, dry, now, backfill)
}

// finishIngest logs and applies the parsed batches of w, acknowledged at
// clock (or, for a backfill, each event at its own timestamp).
func (n *Node) finishIngest(w *ingestWork, dry bool, clock int64, backfill bool) (IngestResult, error) {
	if w.refused > 0 && w.id != "" && !dry {
		applied, err := n.appliedBefore(w)
		if applied {
			// A retry of a request the state applied whole, which its
			// records no longer pass (the clock moved past their windows):
			// answered as a retry is, 200 with nothing placed now, not
			// "nothing ingested".
			return IngestResult{Accepted: w.total, Backfill: backfill}, nil
		}
		if err != nil {
			// Part of it was applied before, or it cannot be told whether
			// it was: anything but "nothing was ingested".
			n.metrics.refused(w.refused)
			return IngestResult{}, err
		}
	}
	if w.refused > 0 {
		msg := fmt.Sprintf("%d of %d records refused; nothing was ingested", w.refused, w.total) + w.reasons()
		n.metrics.refused(w.refused)
		return IngestResult{}, &IngestError{Code: "INVALID_RECORDS", Message: msg, Records: append([]RecordError(nil), w.errs...), Refused: w.refused, Total: w.total}
	}
	res := IngestResult{Accepted: w.total, DryRun: dry}
	if dry {
		return res, nil
	}
	w.collect()
	res.Backfill = backfill
	var err error
	if n.cluster != nil {
		res.Deferred, res.TooLate, err = n.cluster.WriteEvents(w.id, w.commit, clock, backfill)
	} else {
		res.Deferred, res.TooLate, err = n.Store.CommitEvents(w.id, w.commit, clock, backfill)
	}
	if err != nil {
		return IngestResult{}, err
	}
	return res, nil
}

// collect puts the used, non-empty batches of w into w.commit.
func (w *ingestWork) collect() {
	w.commit = w.commit[:0]
	for i, b := range w.batches {
		if w.used[i] && b.Len() > 0 {
			w.commit = append(w.commit, b)
		}
	}
}

// reasons lists the first three refused records of w and why, each
// after "; ".
func (w *ingestWork) reasons() string {
	var msg string
	for i, e := range w.errs {
		if i == 3 {
			msg += "; ..."
			break
		}
		msg += fmt.Sprintf("; %s[%d]: %s", e.Source, e.Index, e.Reason)
	}
	return msg
}

// appliedBefore reports whether w, a request with an id that validation
// refused, is the retry of a request the state applied whole: on a single
// node, every part of it is in the store's window of applied requests; in
// a cluster, every refused record is only too late (so the batches hold
// all its events) and every group owning a key of them applied its share.
// When not, err is a PARTLY_APPLIED *IngestError when part of it was
// applied before (a cluster write some groups applied and others failed;
// on a single node, a crash that kept only its first log records), or
// ErrUnavailable when a cluster cannot tell whether it was applied (a
// group that cannot be asked, and the others all applied their share or
// all did not); nil when none of it was.
func (n *Node) appliedBefore(w *ingestWork) (bool, error) {
	if n.cluster == nil {
		held := n.Store.RequestApplied(w.id, w.parts)
		switch c := count(held); c {
		case w.parts:
			return c > 0, nil
		case 0:
			return false, nil
		}
		// Part i is the i-th source, in index order, the request has
		// records of (CommitEvents: one record per non-empty batch).
		var srcs []SourceShare
		var done, not []string
		for i, cnt := range w.items {
			if cnt == 0 {
				continue
			}
			s := SourceShare{Source: n.Repo().Sources[i].Name, Records: cnt, State: ShareNotApplied}
			desc := fmt.Sprintf("source %s (%s)", s.Source, plural(cnt, "record"))
			if held[len(srcs)] {
				s.State = ShareApplied
				done = append(done, desc)
			} else {
				not = append(not, desc)
			}
			srcs = append(srcs, s)
		}
		msg := fmt.Sprintf("%d of %d records refused, and request %q was partly applied before (a crash kept only its first log records): the records of %s were applied, those of %s were not; the rest is refused now",
			w.refused, w.total, clientKey(w.id), strings.Join(done, ", "), strings.Join(not, ", "))
		return false, w.partlyApplied(msg, nil, srcs)
	}
	if w.late < w.refused {
		return false, nil
	}
	w.collect()
	shares, err := n.cluster.RequestApplied(w.id, w.commit)
	if err != nil {
		n.logger.Warn("could not ask the cluster whether a refused request is the retry of an applied one", "request", clientKey(w.id), "err", err)
		return false, fmt.Errorf("%w: %d of %d records refused as too late, and whether request %q was applied before (then it is answered as a retry) could not be told: %v",
			ErrUnavailable, w.refused, w.total, clientKey(w.id), err)
	}
	var applied, partly, not, unknown int
	for _, s := range shares {
		switch s.State {
		case ShareApplied:
			applied++
		case SharePartlyApplied:
			partly++
		case ShareNotApplied:
			not++
		default:
			unknown++
		}
	}
	switch {
	case len(shares) == 0 || not == len(shares):
		return false, nil
	case applied == len(shares):
		return true, nil
	case partly > 0 || applied > 0 && not > 0:
		msg := fmt.Sprintf("%d of %d records refused, and request %q was partly applied before: %s; the rest cannot be applied now, its records being too late",
			w.refused, w.total, clientKey(w.id), describeShares(shares))
		return false, w.partlyApplied(msg, shares, nil)
	}
	n.logger.Warn("could not ask every group whether a refused request is the retry of an applied one", "request", clientKey(w.id), "groups", describeShares(shares))
	return false, fmt.Errorf("%w: %d of %d records refused as too late, and whether request %q was applied before (then it is answered as a retry) could not be told: %s%s",
		ErrUnavailable, w.refused, w.total, clientKey(w.id), describeShares(shares), w.reasons())
}

// partlyApplied is the PARTLY_APPLIED refusal of w, msg saying what was
// applied before.
func (w *ingestWork) partlyApplied(msg string, groups []GroupShare, srcs []SourceShare) *IngestError {
	msg += w.reasons() + "; do not send these records again under a new Idempotency-Key: the part applied would be counted twice"
	return &IngestError{Code: "PARTLY_APPLIED", Message: msg, Records: append([]RecordError(nil), w.errs...), Refused: w.refused, Total: w.total, Groups: groups, Sources: srcs}
}

// maxListedGroups bounds the groups a message names (the error's groups
// list them all).
const maxListedGroups = 8

// describeShares says what each group holds of its share: "group 0
// applied its share (1 record), group 1 did not apply its share (2
// records), group 2: unknown whether it applied its share (1 record):
// why".
func describeShares(shares []GroupShare) string {
	var parts []string
	for i, s := range shares {
		if i == maxListedGroups {
			parts = append(parts, fmt.Sprintf("%d more groups (see groups)", len(shares)-i))
			break
		}
		recs := plural(s.Records, "record")
		switch s.State {
		case ShareApplied:
			parts = append(parts, fmt.Sprintf("group %d applied its share (%s)", s.Group, recs))
		case ShareNotApplied:
			parts = append(parts, fmt.Sprintf("group %d did not apply its share (%s)", s.Group, recs))
		case SharePartlyApplied:
			parts = append(parts, fmt.Sprintf("group %d applied its share of some sources, not of others (%s)", s.Group, recs))
		default:
			parts = append(parts, fmt.Sprintf("group %d: unknown whether it applied its share (%s): %v", s.Group, recs, s.Err))
		}
	}
	return strings.Join(parts, ", ")
}

// count is how many of bs are true.
func count(bs []bool) int {
	c := 0
	for _, b := range bs {
		if b {
			c++
		}
	}
	return c
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func (n *Node) sourceNames() string {
	names := make([]string, len(n.Repo().Sources))
	for i, s := range n.Repo().Sources {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

func (n *Node) checkWorkspace(root *fastjson.Value) *IngestError {
	ws, name, msg := option(root, "", "workspace_name", "workspaceName")
	if msg != "" {
		return &IngestError{Code: "INVALID_REQUEST", Message: msg}
	}
	if ws == nil {
		return nil
	}
	s, err := ws.StringBytes()
	if err != nil {
		return &IngestError{Code: "INVALID_REQUEST", Message: wantType(name, "a string", ws)}
	}
	if string(s) != n.cfg.Workspace {
		return &IngestError{Code: "UNKNOWN_WORKSPACE", Message: fmt.Sprintf("workspace %s is not served here: this node serves workspace %q", ws, n.cfg.Workspace)}
	}
	return nil
}

// parseRecord validates rec against the source schema and appends it to b.
// It returns "" or why the record is refused (b is then unchanged, but for
// a record refused as too late in a cluster under a request id: see
// ingestWork.late).
func (n *Node) parseRecord(sp *store.Source, rec *fastjson.Value, b *store.Batch, now int64, w *ingestWork) string {
	obj, err := rec.Object()
	if err != nil {
		return "record must be a JSON object"
	}
	tsv := obj.Get(sp.TS)
	if tsv == nil || tsv.Type() == fastjson.TypeNull {
		return fmt.Sprintf("missing timestamp field %q", sp.TS)
	}
	ts, reason := parseTimestamp(tsv, &w.numBuf)
	if reason != "" {
		return sp.TS + ": " + reason
	}
	if reason := n.checkTime(sp, ts, now, w); reason != "" {
		if ts > now || w.id == "" || n.cluster == nil {
			return reason
		}
		// Too late, in a cluster, under an id: the request may be the
		// retry of one applied when the event was not too late, and the
		// event's keys name the groups to ask (finishIngest). It is
		// parsed on, kept in b (never committed: the request is refused)
		// and counted in w.late when it is otherwise valid.
		if parseFields(sp, obj, ts, b, w) == "" {
			w.late++
		}
		return reason
	}
	return parseFields(sp, obj, ts, b, w)
}

// parseFields appends the event at ts of record obj to b. It returns ""
// or why the record is refused (b is then unchanged).
func parseFields(sp *store.Source, obj *fastjson.Object, ts int64, b *store.Batch, w *ingestWork) string {
	e := b.Grow(ts)
	matched := 1
	for c, col := range sp.Src.Columns {
		v := obj.Get(col.Name)
		if v == nil || v.Type() == fastjson.TypeNull {
			if sp.IsKey[c] {
				b.Truncate(e)
				return fmt.Sprintf("missing join key %q", col.Name)
			}
			if v != nil {
				matched++
			}
			continue
		}
		matched++
		if reason := setField(b, e, c, col, v, sp.IsKey[c], w); reason != "" {
			b.Truncate(e)
			return col.Name + ": " + reason
		}
	}
	if obj.Len() > matched {
		unknown, found := unknownMember(obj, func(k []byte) bool {
			_, ok := sp.ColIndex[string(k)]
			return ok || string(k) == sp.TS
		})
		b.Truncate(e)
		if !found {
			return fmt.Sprintf("field %q appears twice", duplicateKey(obj))
		}
		return fmt.Sprintf("unknown field %q: source %s has fields %s", unknown, sp.Src.Name, columnNames(sp.Src))
	}
	return ""
}

func columnNames(s *features.Source) string {
	names := make([]string, 0, len(s.Columns)+1)
	names = append(names, s.Timestamp)
	for _, c := range s.Columns {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}

func setField(b *store.Batch, e, c int, col features.Column, v *fastjson.Value, isKey bool, w *ingestWork) string {
	switch col.Type {
	case features.String:
		if isKey && v.Type() == fastjson.TypeNumber {
			// An integer join key is its decimal text, as lookups read it.
			x, err := jsonInt(v, &w.numBuf)
			if err != nil {
				return "join key must be a string or an integer, got " + v.String()
			}
			w.keyBuf = strconv.AppendInt(w.keyBuf[:0], x, 10)
			if len(w.keyBuf) > w.maxKey {
				return keyTooLong(len(w.keyBuf), w.maxKey)
			}
			b.SetStr(e, c, w.keyBuf)
			return ""
		}
		s, err := v.StringBytes()
		if err != nil {
			return "want a string, got " + v.Type().String()
		}
		if isKey && len(s) == 0 {
			return "join key is empty"
		}
		if isKey && len(s) > w.maxKey {
			return keyTooLong(len(s), w.maxKey)
		}
		if !isKey && len(s) > w.maxValue {
			return fmt.Sprintf("string is %d bytes, more than limits.max_value_bytes (%d)", len(s), w.maxValue)
		}
		b.SetStr(e, c, s)
	case features.Int:
		var x int64
		switch v.Type() {
		case fastjson.TypeNumber:
			i, err := jsonInt(v, &w.numBuf)
			if err != nil {
				return "want an integer, got " + v.String()
			}
			x = i
		case fastjson.TypeString: // int64 values sent as strings, as Tecton clients do
			s, _ := v.StringBytes()
			i, err := strconv.ParseInt(string(s), 10, 64)
			if err != nil {
				return fmt.Sprintf("want an integer, got %q", s)
			}
			x = i
		default:
			return "want an integer, got " + v.Type().String()
		}
		if isKey {
			w.keyBuf = strconv.AppendInt(w.keyBuf[:0], x, 10)
			if len(w.keyBuf) > w.maxKey {
				return keyTooLong(len(w.keyBuf), w.maxKey)
			}
			b.SetStr(e, c, w.keyBuf)
		} else {
			b.SetNum(e, c, float64(x))
		}
	case features.Float:
		if v.Type() != fastjson.TypeNumber {
			return "want a number, got " + v.Type().String()
		}
		f, err := exactFloat(v, &w.numBuf)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return "want a finite number, got " + v.String()
		}
		b.SetNum(e, c, f)
	case features.Bool:
		switch v.Type() {
		case fastjson.TypeTrue:
			b.SetNum(e, c, 1)
		case fastjson.TypeFalse:
			b.SetNum(e, c, 0)
		default:
			return "want true or false, got " + v.Type().String()
		}
	}
	return ""
}

// keyTooLong is why a join key of n bytes (an integer key's decimal text)
// is refused under limits.max_key_bytes limit.
func keyTooLong(n, limit int) string {
	return fmt.Sprintf("join key is %d bytes, more than limits.max_key_bytes (%d)", n, limit)
}

// exactFloat reads a JSON number as the float64 nearest its decimal text,
// as strconv.ParseFloat rounds it. (fastjson's own Float64 is off by an ulp
// for some numbers written with an exponent, such as 4.77744228926317e+07:
// a stored amount must be exactly the one sent.) Text RFC 8259 does not
// allow (01, .5, inf) is an error. buf is scratch.
func exactFloat(v *fastjson.Value, buf *[]byte) (float64, error) {
	b, ok := jsonNumber(v, buf)
	if !ok || len(b) == 0 {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseFloat(unsafe.String(&b[0], len(b)), 64)
}

// ParseTime reads a timestamp written as RFC 3339 text or as integer epoch
// milliseconds, the two forms the API takes, into epoch milliseconds.
func ParseTime(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("want RFC 3339 (2026-11-25T10:00:00Z) or epoch milliseconds, got %q", s)
	}
	return t.UnixMilli(), nil
}

// parseTimestamp reads RFC 3339 text or epoch milliseconds; buf is scratch.
func parseTimestamp(v *fastjson.Value, buf *[]byte) (int64, string) {
	switch v.Type() {
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		t, err := time.Parse(time.RFC3339Nano, string(s))
		if err != nil {
			return 0, fmt.Sprintf("want RFC 3339 (2026-11-25T10:00:00Z) or epoch milliseconds, got %q", s)
		}
		return t.UnixMilli(), ""
	case fastjson.TypeNumber:
		ms, err := jsonInt(v, buf)
		if err != nil {
			return 0, "epoch milliseconds must be an integer, got " + v.String()
		}
		return ms, ""
	}
	return 0, "want RFC 3339 text or epoch milliseconds, got " + v.Type().String()
}

// checkTime is checkEventTime for a live ingest, and for a backfill the same
// rules against the clock of a stream replaying the body: the newest
// timestamp before this event (max_future still holds against the node's
// clock).
func (n *Node) checkTime(sp *store.Source, ts, now int64, w *ingestWork) string {
	if !w.backfill {
		return n.checkEventTime(sp, ts, now)
	}
	if ts > now+n.cfg.MaxFuture.Milliseconds() {
		return n.checkEventTime(sp, ts, now)
	}
	if ts > w.streamClock {
		w.streamClock = ts
	}
	return n.checkEventTime(sp, ts, w.streamClock)
}

// checkEventTime refuses timestamps the node can never serve: too far ahead
// of its clock, or older than every window of the source can reach.
func (n *Node) checkEventTime(sp *store.Source, ts, now int64) string {
	if ts > now+n.cfg.MaxFuture.Milliseconds() {
		return fmt.Sprintf("timestamp %s is %s ahead of the node's clock (max_future %s): check the producer's clock",
			fmtMillis(ts), fmtSpan(ts-now), n.cfg.MaxFuture)
	}
	if sp.MaxWindow > 0 && ts <= now-sp.MaxWindow-sp.Src.Lateness {
		hint := ""
		if ts > 0 && ts < 1e11 {
			hint = " (it looks like epoch seconds: send milliseconds)"
		}
		return fmt.Sprintf("timestamp %s is older than the longest window over source %s (%s) plus its lateness (%s), so it could never be counted%s",
			fmtMillis(ts), sp.Src.Name, features.FormatWindow(sp.MaxWindow), features.FormatWindow(max(sp.Src.Lateness, 1)), hint)
	}
	return ""
}

// fmtSpan formats a positive span of milliseconds (negative: an int64
// overflow, so longer than any). time.Duration holds only 292 years.
func fmtSpan(ms int64) string {
	if ms >= 0 && ms < math.MaxInt64/int64(time.Millisecond) {
		return (time.Duration(ms) * time.Millisecond).String()
	}
	if ms < 0 {
		ms = math.MaxInt64
	}
	return fmt.Sprintf("%d days", ms/(24*3600*1000))
}

func fmtMillis(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }
