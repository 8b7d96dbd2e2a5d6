package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/wal/walfs"
)

// A schema fingerprint is the canonical description of what a data
// directory's state was written for: sources and their typed columns,
// feature views (source, entity key, lateness, and each feature's column,
// function, window, tile interval), and table views and their typed
// columns. It is kept beside the log in <data-dir>/schema.json (written
// atomically with fsync on the first start and whenever a change is
// applied) and in every snapshot's header, so that a restart over a repo
// that changed says exactly what changed and never serves a silent wrong
// value:
//
//   - applied at once, and logged: a source, a table, a view, or a column
//     added (a new column starts empty; a new view is built from the log the
//     node still has, and the log says how far back that reaches);
//   - applied only with --accept-schema-change (Config.AcceptSchemaChange):
//     a source, table, view or column removed (its stored data is dropped;
//     log records of a removed source or table are skipped and counted), or
//     a view changed (window, function, interval, key, lateness: it is
//     rebuilt from the log);
//   - refused: a column's type changed, or a table's join key (stored values
//     would be read as another type or under another entity). Revert it,
//     rename the column or table (the old one is then a removal), or move
//     the data directory aside.
const (
	schemaVersion = 1
	SchemaFile    = "schema.json" // in the data dir
)

type schema struct {
	Version int            `json:"version"`
	Sources []schemaSource `json:"sources"`
	Views   []schemaView   `json:"views"`
	Tables  []schemaTable  `json:"tables"`
}

type schemaColumn struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

type schemaSource struct {
	Name      string         `json:"name"`
	Timestamp string         `json:"timestamp"`
	Columns   []schemaColumn `json:"columns"`
}

type schemaView struct {
	Name     string          `json:"name"`
	Source   string          `json:"source"`
	Key      string          `json:"key"`
	Lateness string          `json:"lateness"`
	Features []schemaFeature `json:"features"`
}

type schemaFeature struct {
	Name     string `json:"name"`
	Column   string `json:"column"`
	Function string `json:"function"`
	Window   string `json:"window"`
	Interval string `json:"interval"`
	N        int    `json:"n,omitempty"`
}

type schemaTable struct {
	Name    string         `json:"name"`
	Key     string         `json:"key"`
	Columns []schemaColumn `json:"columns"`
}

func schemaColumns(cols []features.Column) []schemaColumn {
	out := make([]schemaColumn, len(cols))
	for i, c := range cols {
		out[i] = schemaColumn{c.Name, c.Type.String()}
	}
	return out
}

// schemaOf describes repo.
func schemaOf(repo *features.Repo) schema {
	s := schema{Version: schemaVersion, Sources: []schemaSource{}, Views: []schemaView{}, Tables: []schemaTable{}}
	for _, src := range repo.Sources {
		s.Sources = append(s.Sources, schemaSource{src.Name, src.Timestamp, schemaColumns(src.Columns)})
	}
	for _, v := range repo.Views {
		sv := schemaView{Name: v.Name, Source: v.Source.Name, Key: v.Entity.JoinKey, Lateness: features.FormatWindow(v.Spec.Lateness)}
		for i, a := range v.Spec.Aggregations {
			sv.Features = append(sv.Features, schemaFeature{Name: v.Features[i].Name, Column: v.Spec.Columns[a.Column].Name,
				Function: a.Func.String(), Window: features.FormatWindow(a.Window), Interval: features.FormatWindow(a.Interval), N: a.N})
		}
		s.Views = append(s.Views, sv)
	}
	for _, t := range repo.Tables {
		s.Tables = append(s.Tables, schemaTable{t.Name, t.Entity.JoinKey, schemaColumns(t.Columns)})
	}
	return s
}

func (s schema) encode() []byte {
	b, _ := json.MarshalIndent(s, "", "  ")
	return append(b, '\n')
}

func decodeSchema(b []byte) (schema, error) {
	var s schema
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, err
	}
	if s.Version != schemaVersion {
		return s, fmt.Errorf("schema version %d: this build reads version %d", s.Version, schemaVersion)
	}
	return s, nil
}

func (s schema) view(name string) *schemaView {
	for i := range s.Views {
		if s.Views[i].Name == name {
			return &s.Views[i]
		}
	}
	return nil
}

// sameView reports whether views a and b hold the same state: a snapshot
// of a restores into b.
func sameView(a, b *schemaView) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// schemaChange is one difference between the stored schema and the repo.
type schemaChange struct {
	text string
	need changeNeed
	view string // a view added or changed: built from the log
}

type changeNeed uint8

const (
	changeApplied changeNeed = iota // safe: applied at once
	changeAccept                    // drops or rebuilds state: needs AcceptSchemaChange
	changeRefused                   // would misread stored values
)

// diffSchema lists what changed from old to cur, in a stable order.
func diffSchema(old, cur schema) []schemaChange {
	var out []schemaChange
	add := func(need changeNeed, format string, args ...any) {
		out = append(out, schemaChange{text: fmt.Sprintf(format, args...), need: need})
	}
	diffColumns := func(what string, oc, nc []schemaColumn) {
		for _, o := range oc {
			i := columnAt(nc, o.Name)
			switch {
			case i < 0:
				add(changeAccept, "%s column %s removed (its stored values are dropped)", what, o.Name)
			case nc[i].Type != o.Type:
				add(changeRefused, "%s column %s type %s -> %s (stored values are %ss)", what, o.Name, o.Type, nc[i].Type, o.Type)
			}
		}
		for _, c := range nc {
			if columnAt(oc, c.Name) < 0 {
				add(changeApplied, "%s column %s (%s) added: it starts empty", what, c.Name, c.Type)
			}
		}
	}
	for _, o := range old.Sources {
		n := findSchema(cur.Sources, o.Name, func(s schemaSource) string { return s.Name })
		if n == nil {
			add(changeAccept, "source %s removed (its log records are skipped)", o.Name)
			continue
		}
		diffColumns("source "+o.Name, o.Columns, n.Columns)
	}
	for _, c := range cur.Sources {
		if findSchema(old.Sources, c.Name, func(s schemaSource) string { return s.Name }) == nil {
			add(changeApplied, "source %s added", c.Name)
		}
	}
	for i := range old.Views {
		o := &old.Views[i]
		n := cur.view(o.Name)
		switch {
		case n == nil:
			add(changeAccept, "view %s removed (its state is dropped)", o.Name)
		case !sameView(o, n):
			add(changeAccept, "view %s changed: %s (it is rebuilt from the log)", o.Name, strings.Join(viewDiff(o, n), "; "))
			out[len(out)-1].view = o.Name
		}
	}
	for i := range cur.Views {
		if old.view(cur.Views[i].Name) == nil {
			add(changeApplied, "view %s added (it is built from the log)", cur.Views[i].Name)
			out[len(out)-1].view = cur.Views[i].Name
		}
	}
	for _, o := range old.Tables {
		n := findSchema(cur.Tables, o.Name, func(t schemaTable) string { return t.Name })
		switch {
		case n == nil:
			add(changeAccept, "table %s removed (its rows are dropped, its log records skipped)", o.Name)
		case n.Key != o.Key:
			add(changeRefused, "table %s join key %s -> %s (stored rows are keyed by %s)", o.Name, o.Key, n.Key, o.Key)
		default:
			diffColumns("table "+o.Name, o.Columns, n.Columns)
		}
	}
	for _, c := range cur.Tables {
		if findSchema(old.Tables, c.Name, func(t schemaTable) string { return t.Name }) == nil {
			add(changeApplied, "table %s added", c.Name)
		}
	}
	return out
}

// viewDiff says how view o became n.
func viewDiff(o, n *schemaView) []string {
	var d []string
	if o.Source != n.Source {
		d = append(d, fmt.Sprintf("source %s -> %s", o.Source, n.Source))
	}
	if o.Key != n.Key {
		d = append(d, fmt.Sprintf("key %s -> %s", o.Key, n.Key))
	}
	if o.Lateness != n.Lateness {
		d = append(d, fmt.Sprintf("lateness %s -> %s", o.Lateness, n.Lateness))
	}
	// Features are matched by name; a default name says its window, so an
	// unmatched pair at the same position is one feature that changed.
	matched := func(fs []schemaFeature, name string) bool {
		return findSchema(fs, name, func(f schemaFeature) string { return f.Name }) != nil
	}
	for i, of := range o.Features {
		nf := findSchema(n.Features, of.Name, func(f schemaFeature) string { return f.Name })
		if nf == nil && i < len(n.Features) && !matched(o.Features, n.Features[i].Name) {
			nf = &n.Features[i]
		}
		switch {
		case nf == nil:
			d = append(d, "feature "+of.Name+" removed")
		case *nf != of:
			var fd []string
			for _, p := range [][3]string{{"name", of.Name, nf.Name}, {"column", of.Column, nf.Column}, {"function", of.Function, nf.Function},
				{"window", of.Window, nf.Window}, {"interval", of.Interval, nf.Interval}, {"n", fmt.Sprint(of.N), fmt.Sprint(nf.N)}} {
				if p[1] != p[2] {
					fd = append(fd, fmt.Sprintf("%s %s -> %s", p[0], p[1], p[2]))
				}
			}
			d = append(d, "feature "+of.Name+" "+strings.Join(fd, ", "))
		}
	}
	for i, nf := range n.Features {
		if !matched(o.Features, nf.Name) && (i >= len(o.Features) || matched(n.Features, o.Features[i].Name)) {
			d = append(d, "feature "+nf.Name+" added")
		}
	}
	if len(d) == 0 {
		d = append(d, "features reordered")
	}
	return d
}

func findSchema[T any](list []T, name string, nameOf func(T) string) *T {
	for i := range list {
		if nameOf(list[i]) == name {
			return &list[i]
		}
	}
	return nil
}

func columnAt(cols []schemaColumn, name string) int {
	for i, c := range cols {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// ErrSchemaChanged refuses a start over a data directory written for a repo
// that changed in a way the node does not apply on its own.
var ErrSchemaChanged = errors.New("the feature repo changed since this data directory was written")

// CheckSchema compares the repo the store holds with the schema fingerprint
// stored in dataDir and logs what changed. It refuses (ErrSchemaChanged,
// listing every change and what resolves it) a change that would misread
// stored values, and one that drops or rebuilds state unless accept is set
// (--accept-schema-change). Call it after New and before restoring a
// snapshot; call SaveSchema once recovery succeeded. A data directory
// without a fingerprint (new, or written before fingerprints) is checked
// against nothing: the snapshot's own fingerprint and the log's records
// still guard it, and a mismatch there needs accept. log may be nil.
func (n *Store) CheckSchema(fsys walfs.FS, dataDir string, accept bool, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n.schemaLog = log
	path := filepath.Join(dataDir, SchemaFile)
	raw, err := walfs.ReadFile(fsys, path)
	if errors.Is(err, os.ErrNotExist) {
		n.schemaAccepted = accept
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the schema fingerprint: %w", err)
	}
	stored, err := decodeSchema(raw)
	if err != nil {
		return fmt.Errorf("schema fingerprint %s: %w (restore it from a backup, or remove it to start without the check)", path, err)
	}
	changes := diffSchema(stored, schemaOf(n.repo))
	var refused, needAccept []string
	for _, c := range changes {
		switch c.need {
		case changeRefused:
			refused = append(refused, c.text)
		case changeAccept:
			needAccept = append(needAccept, c.text)
		}
	}
	if len(refused) > 0 || (len(needAccept) > 0 && !accept) {
		var b strings.Builder
		for _, c := range changes {
			fmt.Fprintf(&b, "\n  - %s", c.text)
		}
		if len(refused) > 0 {
			b.WriteString("\na type or table key change cannot be applied to stored data: revert it, or give the column or table a new name" +
				" (the old one then counts as removed), or move the data directory aside to start empty")
		} else {
			b.WriteString("\nto apply: restart with --accept-schema-change (removed data is dropped, changed views are rebuilt from the log the node still has)," +
				" or revert the repo")
		}
		return fmt.Errorf("%w (%s):%s", ErrSchemaChanged, path, b.String())
	}
	for _, c := range changes {
		log.Info("schema change applied", "change", c.text)
		if c.view != "" {
			n.built = append(n.built, c.view)
		}
	}
	n.schemaAccepted = true
	return nil
}

// SaveSchema writes the fingerprint of the repo the store holds into
// dataDir, atomically and durably, once the node has recovered with it.
func (n *Store) SaveSchema(fsys walfs.FS, dataDir string) error {
	path := filepath.Join(dataDir, SchemaFile)
	data := schemaOf(n.repo).encode()
	if old, err := walfs.ReadFile(fsys, path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := walfs.WriteFile(fsys, path, data); err != nil {
		return fmt.Errorf("write the schema fingerprint: %w", err)
	}
	return nil
}

// schemaState is what CheckSchema armed a store with for its recovery.
type schemaState struct {
	schemaLog *slog.Logger // nil: CheckSchema was not called
	// schemaAccepted: the repo was accepted over the data directory, so
	// recovery may drop what the repo no longer has (records of a removed
	// source or table, a removed view's snapshot state) and build what it
	// newly has (views missing from the snapshot).
	schemaAccepted bool
	skippedRecords int      // log and snapshot records of removed sources or tables
	built          []string // views added or changed since the stored schema
	keyless        []int    // per view: events skipped for lacking its key column
}

// errRemoved marks a record of a source or table the repo no longer has.
var errRemoved = errors.New("the feature repo no longer has it")

// skipRemoved reports whether a record that failed to decode with err is
// one of a removed source or table that recovery may skip, and counts it.
func (n *Store) skipRemoved(err error) bool {
	if errors.Is(err, errRemoved) && n.schemaAccepted {
		n.skippedRecords++
		return true
	}
	return false
}

// removedHint completes the error for a record of a removed source or table.
const removedHint = "; if it was removed on purpose, restart with --accept-schema-change to skip its records (they stay in the log)"

// errStopReplay ends a replay early.
var errStopReplay = errors.New("stop replay")

// buildFresh replays the log up to record upTo (what the restored snapshot
// covers) into the views the snapshot did not restore: new views, and views
// whose description changed. RecoverFrom then replays the rest into every
// view. A view can only be built from the records the log still has; the
// recovery log says how far back that reaches.
func (n *Store) buildFresh(l Replayer, upTo uint64) error {
	first, last := l.FirstIndex(), l.LastIndex()
	if n.filter == nil && n.schemaLog != nil && last >= first {
		// No snapshot: every view is built from the whole log.
		for _, v := range n.built {
			n.schemaLog.Info("feature view built from the log", "view", v, "records", fmt.Sprintf("%d..%d (the whole log)", first, last))
		}
	}
	if n.filter == nil || !slices.Contains(n.filter.fresh, true) {
		return nil
	}
	since := make([]int64, len(n.views))
	for i := range since {
		since[i] = math.MaxInt64
	}
	streams := map[streamKey]int64{}
	requests := NewRequestWindow(RequestWindowSize)
	n.seq.mu.Lock()
	defer n.seq.mu.Unlock()
	w := getApplyWork()
	defer applyPool.Put(w)
	b := &w.batch
	var err error
	if first <= upTo && last >= first {
		err = l.Replay(first, func(index uint64, data []byte) error {
			if index > upTo {
				return errStopReplay
			}
			inner, _, _, err := unwrapAt(data)
			if err != nil {
				return fmt.Errorf("log record %d: %w", index, err)
			}
			// A repeated request is skipped as Apply skipped it; keys are
			// followed from the first record replayed here, like offsets.
			inner, key, named, err := unwrapRequest(inner)
			if err != nil {
				return fmt.Errorf("log record %d: %w", index, err)
			}
			if named {
				if requests.Has(key) {
					return nil
				}
				requests.Add(key)
			}
			// A stream batch counted already is skipped as Apply skipped it;
			// offsets are followed from the first record replayed here.
			inner, pos, isStream, err := unwrapStream(inner)
			if err != nil {
				return fmt.Errorf("log record %d: %w", index, err)
			}
			if isStream {
				k := streamKey{pos.Source, pos.Topic, pos.Partition}
				if next, ok := streams[k]; ok && pos.First < next {
					return nil
				}
				streams[k] = pos.Next
			}
			if len(inner) == 0 || inner[0] != recordEvents {
				return nil
			}
			sp, err := n.decodeEventsRecord(inner, b)
			if n.skipRemoved(err) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("log record %d: %w", index, err)
			}
			for ti, t := range sp.targets {
				if !n.filter.fresh[t.group] {
					continue
				}
				n.applyTarget(sp, ti, b, &w.fields, 0, b.Len())
				for e := 0; e < b.Len(); e++ {
					if !b.null[e*b.ncols+t.keyCol] {
						since[t.group] = min(since[t.group], b.ts[e])
						break
					}
				}
			}
			return nil
		})
	}
	if err != nil && !errors.Is(err, errStopReplay) {
		return fmt.Errorf("build new feature views from the write-ahead log: %w", err)
	}
	for j, fresh := range n.filter.fresh {
		if !fresh || n.schemaLog == nil {
			continue
		}
		if since[j] == math.MaxInt64 {
			n.schemaLog.Warn("feature view built from the log", "view", n.views[j].Spec().Name, "records", fmt.Sprintf("%d..%d", upTo+1, last),
				"note", fmt.Sprintf("the log before the snapshot (records %d..%d) holds none of its events: it starts with what came after", first, upTo))
			continue
		}
		n.schemaLog.Info("feature view built from the log", "view", n.views[j].Spec().Name, "records", fmt.Sprintf("%d..%d", first, last),
			"events_since", time.UnixMilli(since[j]).UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// reportSkipped logs, at the end of a recovery, what it skipped for the
// repo's changes.
func (n *Store) reportSkipped() {
	if n.schemaLog == nil {
		return
	}
	if n.skippedRecords > 0 {
		n.schemaLog.Warn("skipped records of sources or tables the repo no longer has", "records", n.skippedRecords)
	}
	for j, k := range n.keyless {
		if k > 0 {
			n.schemaLog.Warn("events logged before the view's key column existed were skipped", "view", n.views[j].Spec().Name, "events", k)
		}
	}
}

// SchemaOf is repo's schema fingerprint (canonical JSON): a cluster keeps
// it in its map so that every node runs the same repo.
func SchemaOf(repo *features.Repo) []byte { return schemaOf(repo).encode() }

// SchemaChanges lists, in words, what differs from the fingerprint old to
// the fingerprint cur (nil when they describe the same repo).
func SchemaChanges(old, cur []byte) ([]string, error) {
	o, err := decodeSchema(old)
	if err != nil {
		return nil, err
	}
	c, err := decodeSchema(cur)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ch := range diffSchema(o, c) {
		out = append(out, ch.text)
	}
	return out, nil
}
