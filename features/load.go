package features

import (
	"bytes"
	"cmp"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tally-ml/tally/windows"
)

// Limits of a feature repo.
const (
	MaxFileSize = 8 << 20 // bytes per YAML file
	MaxLastN    = 1000    // n of last_n and last_distinct_n
	maxNameLen  = 128
	maxErrors   = 100 // reported; the rest are counted
)

// DefaultLateness is a source's lateness when it sets none: 5 minutes.
const DefaultLateness = 5 * 60 * 1000

const (
	day   = 86400000
	month = 30 * day
	hour  = 3600000
)

// DefaultInterval is the tile size of an aggregation that sets none, for a
// window of w ms: exact (0) up to 1d, 1h tiles up to 30d, 1d tiles beyond.
func DefaultInterval(w int64) int64 {
	switch {
	case w <= day:
		return 0
	case w <= month:
		return hour
	}
	return day
}

// Error is one problem in a feature repo: where it is and what to change.
// Load returns every problem it finds, joined with errors.Join, sorted by
// file and position.
type Error struct {
	File   string
	Line   int // 1-based
	Column int // 1-based
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg) }

//go:embed defaultrepo/*.yaml defaultrepo/*.onnx
var defaultFS embed.FS

// DefaultFS is the embedded default repo's directory: its YAML and the
// fraud model it names.
func DefaultFS() fs.FS {
	sub, err := fs.Sub(defaultFS, "defaultrepo")
	if err != nil {
		panic(err) // a constant path in an embedded tree
	}
	return sub
}

// Default loads the embedded default feature repo (the seed's fraud
// example). It returns a new Repo each call.
func Default() (*Repo, error) {
	return Load(DefaultFS())
}

// Load reads every *.yaml and *.yml file at the root of fsys, in name order,
// merges them into one repo (names are global, and a file may use what
// another defines), and validates it. It returns every problem found, each
// an *Error naming file, line and column, joined with errors.Join.
func Load(fsys fs.FS) (*Repo, error) {
	ents, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read feature repo: %w", err)
	}
	l := newLoader()
	n := 0
	for _, e := range ents { // ReadDir sorts by name
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		data, err := readFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read feature repo: %w", err)
		}
		l.parseFile(name, data)
		n++
	}
	if n == 0 {
		return nil, errors.New("feature repo has no *.yaml or *.yml files")
	}
	return l.build()
}

func readFile(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, MaxFileSize)
	}
	return data, nil
}

// item is one entry of a top-level section.
type item struct {
	file string
	n    *yaml.Node
}

// at is a position for error messages.
type at struct {
	file      string
	line, col int
}

func (l *loader) pos(file string, n *yaml.Node) at { return at{file, n.Line, n.Column} }

func (a at) String() string { return fmt.Sprintf("%s:%d:%d", a.file, a.line, a.col) }

type loader struct {
	errs  []*Error
	lines map[string][][]byte // file -> its lines, to place expression errors

	sections map[string][]item
	names    map[string]string // global namespace: name -> "source \"x\" (file:line:col)"
	repo     Repo
}

var sectionNames = []string{"sources", "entities", "feature_views", "table_views", "request_views", "feature_services"}

func newLoader() *loader {
	return &loader{
		lines:    map[string][][]byte{},
		sections: map[string][]item{},
		names:    map[string]string{},
	}
}

func (l *loader) errorf(a at, format string, args ...any) {
	l.errs = append(l.errs, &Error{File: a.file, Line: a.line, Column: a.col, Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) parseFile(file string, data []byte) {
	l.lines[file] = bytes.Split(data, []byte("\n"))
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := decode(dec, &doc)
		if err == io.EOF {
			return
		}
		if err != nil {
			line, msg := 1, strings.TrimPrefix(err.Error(), "yaml: ")
			if rest, ok := strings.CutPrefix(msg, "line "); ok {
				if i := strings.Index(rest, ": "); i > 0 {
					if n, err := strconv.Atoi(rest[:i]); err == nil {
						line, msg = n, rest[i+2:]
					}
				}
			}
			l.errorf(at{file, line, 1}, "invalid YAML: %s", msg)
			return
		}
		if len(doc.Content) == 0 {
			continue
		}
		top := doc.Content[0]
		if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
			continue
		}
		if top.Kind != yaml.MappingNode {
			l.errorf(l.pos(file, top), "expected a mapping with keys %s, found %s", strings.Join(sectionNames, ", "), describe(top))
			continue
		}
		o := l.object(file, top, "feature repo", sectionNames...)
		for _, key := range sectionNames {
			for _, n := range o.seq(key, false) {
				l.sections[key] = append(l.sections[key], item{file, n})
			}
		}
	}
}

// decode runs the YAML parser, turning a parser panic into an error: bad
// input must never take the process down.
func decode(dec *yaml.Decoder, doc *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return dec.Decode(doc)
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias (*" + n.Value + "; anchors and aliases are not supported: write the value out)"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "an empty document"
}

// obj is a YAML mapping being read as one declaration.
type obj struct {
	l    *loader
	file string
	n    *yaml.Node
	what string // context for errors: `feature view "x"`
	vals map[string]*yaml.Node
	keys map[string]*yaml.Node
}

// object reads n as a mapping with the given keys, reporting others.
func (l *loader) object(file string, n *yaml.Node, what string, known ...string) *obj {
	o := &obj{l: l, file: file, n: n, what: what, vals: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}}
	if n.Kind != yaml.MappingNode {
		l.errorf(l.pos(file, n), "%s: expected a mapping (key: value lines or {key: value, ...}), found %s", what, describe(n))
		return o
	}
	if v := mapValue(n, "name"); v != nil && v.Kind == yaml.ScalarNode && v.Value != "" {
		o.what = what + " " + strconv.Quote(v.Value)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			l.errorf(l.pos(file, k), "%s: expected a field name, found %s", o.what, describe(k))
			continue
		}
		if prev, dup := o.keys[k.Value]; dup {
			l.errorf(l.pos(file, k), "%s: field %q is set twice (also at line %d): keep one", o.what, k.Value, prev.Line)
			continue
		}
		if !slices.Contains(known, k.Value) {
			l.errorf(l.pos(file, k), "%s: unknown field %q%s; known fields: %s", o.what, k.Value, suggest(k.Value, known), strings.Join(known, ", "))
			continue
		}
		o.keys[k.Value] = k
		o.vals[k.Value] = v
	}
	return o
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Kind == yaml.ScalarNode && n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func (o *obj) errorf(n *yaml.Node, format string, args ...any) {
	o.l.errorf(o.l.pos(o.file, n), "%s: %s", o.what, fmt.Sprintf(format, args...))
}

func isNull(n *yaml.Node) bool { return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// str returns key's scalar value; "" (reported if required) when unset.
func (o *obj) str(key string, required bool) string {
	v := o.vals[key]
	if isNull(v) {
		if required {
			o.errorf(o.n, "missing field %q", key)
		}
		return ""
	}
	if v.Kind != yaml.ScalarNode {
		o.errorf(v, "%s: expected a single value, found %s", key, describe(v))
		return ""
	}
	return v.Value
}

// ident returns key's value, which must be a name: a letter or _, then
// letters, digits and _.
func (o *obj) ident(key string, required bool) string {
	s := o.str(key, required)
	if s != "" && !validIdent(s) {
		o.errorf(o.vals[key], "%s %q is not a valid name: use letters, digits and _, starting with a letter or _ (at most %d)", key, s, maxNameLen)
		return ""
	}
	return s
}

func validIdent(s string) bool {
	if s == "" || len(s) > maxNameLen || !isIdentStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isIdentStart(s[i]) && !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// seq returns key's list items; nil (reported if required) when unset.
func (o *obj) seq(key string, required bool) []*yaml.Node {
	v := o.vals[key]
	if isNull(v) {
		if required {
			o.errorf(o.n, "missing field %q", key)
		}
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		o.errorf(v, "%s: expected a list, found %s", key, describe(v))
		return nil
	}
	if required && len(v.Content) == 0 {
		o.errorf(v, "%s: the list is empty", key)
	}
	return v.Content
}

// schema reads key as a mapping of field name to type, in order.
func (o *obj) schema(key string, required bool) ([]Column, []at) {
	v := o.vals[key]
	if isNull(v) {
		if required {
			o.errorf(o.n, "missing field %q (a mapping of field name to type: string, float, int or bool)", key)
		}
		return nil, nil
	}
	if v.Kind != yaml.MappingNode {
		o.errorf(v, "%s: expected a mapping of field name to type (string, float, int or bool), found %s", key, describe(v))
		return nil, nil
	}
	if required && len(v.Content) == 0 {
		o.errorf(v, "%s: no fields", key)
	}
	var cols []Column
	var pos []at
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, t := v.Content[i], v.Content[i+1]
		if k.Kind != yaml.ScalarNode || !validIdent(k.Value) {
			o.errorf(k, "%s: field name %s is not a valid name: use letters, digits and _, starting with a letter or _", key, describe(k))
			continue
		}
		if _, dup := columnIndex(cols, k.Value); dup {
			o.errorf(k, "%s: field %q is declared twice: keep one", key, k.Value)
			continue
		}
		typ, ok := parseType(t.Value)
		if t.Kind != yaml.ScalarNode || !ok {
			o.errorf(t, "%s: field %q: unknown type %s: use string, float, int or bool", key, k.Value, describe(t))
		}
		cols = append(cols, Column{Name: k.Value, Type: typ})
		pos = append(pos, o.l.pos(o.file, k))
	}
	return cols, pos
}

// duration reads key as a duration; zero lists the words that mean 0.
func (o *obj) duration(key string, zero ...string) (ms int64, set bool) {
	s := o.str(key, false)
	if s == "" {
		return 0, false
	}
	if slices.Contains(zero, s) {
		return 0, true
	}
	ms, err := ParseDuration(s)
	if err != nil {
		o.errorf(o.vals[key], "%s: %v", key, err)
		return 0, false
	}
	return ms, true
}

// declare enters name into the repo-wide namespace.
func (l *loader) declare(name, kind string, a at) bool {
	if name == "" {
		return false
	}
	if name == "request" {
		l.errorf(a, "%s: the name \"request\" is reserved (expressions read request fields as request.<field>): choose another", kind)
		return false
	}
	if prev, dup := l.names[name]; dup {
		l.errorf(a, "%s %q: the name is already used by %s: names are unique across the repo", kind, name, prev)
		return false
	}
	l.names[name] = fmt.Sprintf("%s %q (%s)", kind, name, a)
	return true
}

func (l *loader) build() (*Repo, error) {
	for _, it := range l.sections["sources"] {
		l.source(it)
	}
	for _, it := range l.sections["entities"] {
		l.entity(it)
	}
	for _, it := range l.sections["feature_views"] {
		l.view(it)
	}
	for _, it := range l.sections["table_views"] {
		l.table(it)
	}
	for _, it := range l.sections["request_views"] {
		l.requestView(it)
	}
	for _, it := range l.sections["feature_services"] {
		l.service(it)
	}
	if len(l.errs) == 0 {
		r := l.repo
		return &r, nil
	}
	slices.SortStableFunc(l.errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	errs := make([]error, 0, min(len(l.errs), maxErrors)+1)
	for i, e := range l.errs {
		if i == maxErrors {
			errs = append(errs, fmt.Errorf("... and %d more problems", len(l.errs)-maxErrors))
			break
		}
		errs = append(errs, e)
	}
	return nil, errors.Join(errs...)
}

func (l *loader) source(it item) {
	o := l.object(it.file, it.n, "source", "name", "timestamp", "schema", "labels", "lateness", "kafka")
	name := o.ident("name", true)
	s := &Source{Name: name, Timestamp: "timestamp", Lateness: DefaultLateness}
	if ts := o.ident("timestamp", false); ts != "" {
		s.Timestamp = ts
	}
	var pos []at
	s.Columns, pos = o.schema("schema", true)
	if i, ok := s.Column(s.Timestamp); ok {
		l.errorf(pos[i], "%s: schema: %q is the timestamp field, which every event carries: remove it from the schema", o.what, s.Timestamp)
	}
	for _, n := range o.seq("labels", false) {
		if n.Kind != yaml.ScalarNode {
			o.errorf(n, "labels: expected a field name, found %s", describe(n))
			continue
		}
		switch _, ok := s.Column(n.Value); {
		case !ok:
			o.errorf(n, "labels: %q is not a field of the schema%s: add it to the schema", n.Value, suggest(n.Value, colNames(s.Columns)))
		case s.IsLabel(n.Value):
			o.errorf(n, "labels: %q is listed twice", n.Value)
		default:
			s.Labels = append(s.Labels, n.Value)
		}
	}
	if ms, set := o.duration("lateness", "0", "0s"); set {
		s.Lateness = ms
	}
	s.Kafka = l.kafka(it.file, o.vals["kafka"], s)
	if s.Kafka != nil {
		l.kafkaShared(l.pos(it.file, o.vals["kafka"]), s)
	}
	if l.declare(name, "source", l.pos(it.file, it.n)) {
		l.repo.Sources = append(l.repo.Sources, s)
	}
}

func (l *loader) entity(it item) {
	o := l.object(it.file, it.n, "entity", "name", "join_key")
	e := &Entity{Name: o.ident("name", true), JoinKey: o.ident("join_key", true)}
	if l.declare(e.Name, "entity", l.pos(it.file, it.n)) {
		l.repo.Entities = append(l.repo.Entities, e)
	}
}

func colNames(cols []Column) []string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	return names
}

func names[T any](list []*T, nameOf func(*T) string) []string {
	out := make([]string, len(list))
	for i, x := range list {
		out[i] = nameOf(x)
	}
	return out
}

func (l *loader) lookupSource(o *obj) *Source {
	name := o.str("source", true)
	if name == "" {
		return nil
	}
	s, ok := l.repo.Source(name)
	if !ok {
		known := names(l.repo.Sources, func(s *Source) string { return s.Name })
		o.errorf(o.vals["source"], "unknown source %q%s: define it under sources (defined: %s)", name, suggest(name, known), list(known))
	}
	return s
}

func (l *loader) lookupEntity(o *obj) *Entity {
	name := o.str("entity", true)
	if name == "" {
		return nil
	}
	e, ok := l.repo.Entity(name)
	if !ok {
		known := names(l.repo.Entities, func(e *Entity) string { return e.Name })
		o.errorf(o.vals["entity"], "unknown entity %q%s: define it under entities (defined: %s)", name, suggest(name, known), list(known))
	}
	return e
}

func list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func (l *loader) view(it item) {
	o := l.object(it.file, it.n, "feature view", "name", "source", "entity", "aggregation_interval", "aggregations")
	v := &View{Name: o.ident("name", true), KeyColumn: -1}
	v.Source = l.lookupSource(o)
	v.Entity = l.lookupEntity(o)
	if v.Source != nil && v.Entity != nil {
		k, ok := v.Source.Column(v.Entity.JoinKey)
		switch {
		case !ok:
			o.errorf(o.vals["entity"], "entity %q has join key %q, which is not a field of source %q: add %s to the source's schema", v.Entity.Name, v.Entity.JoinKey, v.Source.Name, v.Entity.JoinKey)
		case v.Source.Columns[k].Type != String && v.Source.Columns[k].Type != Int:
			o.errorf(o.vals["entity"], "join key %q is a %s field of source %q: join keys are string or int fields", v.Entity.JoinKey, v.Source.Columns[k].Type, v.Source.Name)
		default:
			v.KeyColumn = k
		}
	}
	viewInterval, viewIntervalSet := o.duration("aggregation_interval", "0", "0s", "exact")
	v.Spec.Name = v.Name
	if v.Source != nil {
		v.Spec.Lateness = v.Source.Lateness
	}
	for _, n := range o.seq("aggregations", true) {
		l.aggregation(v, o, n, viewInterval, viewIntervalSet)
	}
	if l.declare(v.Name, "feature view", l.pos(it.file, it.n)) {
		l.repo.Views = append(l.repo.Views, v)
	}
}

func (l *loader) aggregation(v *View, vo *obj, n *yaml.Node, viewInterval int64, viewIntervalSet bool) {
	o := l.object(vo.file, n, vo.what+": aggregation", "column", "function", "window", "interval", "n", "name")
	col := o.str("column", true)
	fname := o.str("function", true)
	fn, err := windows.ParseFunc(fname)
	if fname != "" && err != nil {
		fnames := make([]string, 0, 11)
		for f := windows.Count; f <= windows.Variance; f++ {
			fnames = append(fnames, f.String())
		}
		o.errorf(o.vals["function"], "unknown function %q%s: use one of %s", fname, suggest(fname, fnames), strings.Join(fnames, ", "))
	}
	window, windowSet := o.duration("window")
	if !windowSet && o.str("window", false) == "" {
		o.errorf(o.n, "missing field \"window\" (a duration such as 5m, 1h, 1d)")
	}
	ok := fn != 0 && windowSet

	// The column.
	sc := -1
	var ctype Type
	if s := v.Source; s != nil && col != "" {
		i, found := s.Column(col)
		switch {
		case found && i == v.KeyColumn:
			o.errorf(o.vals["column"], "column %q is the join key of entity %q: aggregate another field (count any field to count events)", col, v.Entity.Name)
		case found && s.IsLabel(col):
			o.errorf(o.vals["column"], "%s is a label of source %s; labels are never features: aggregate another field", col, s.Name)
		case found:
			sc, ctype = i, s.Columns[i].Type
		case col == s.Timestamp:
			o.errorf(o.vals["column"], "%q is the event timestamp of source %q, not a field: aggregate a field (count any field to count events)", col, s.Name)
		default:
			o.errorf(o.vals["column"], "unknown column %q%s: source %q has %s", col, suggest(col, colNames(s.Columns)), s.Name, list(colNames(s.Columns)))
		}
	}
	ok = ok && sc >= 0 && ctype != 0

	// Function vs column type.
	switch fn {
	case windows.Sum, windows.Mean, windows.Min, windows.Max, windows.Stddev, windows.Variance:
		if ctype == String {
			o.errorf(o.vals["function"], "%s needs a float, int or bool column, and %q is a string: use count, distinct_count, last, last_n or last_distinct_n", fn, col)
			ok = false
		}
	}

	// n.
	count := 0
	isN := fn == windows.LastN || fn == windows.LastDistinctN
	if s := o.str("n", false); s != "" {
		x, err := strconv.Atoi(s)
		switch {
		case fn != 0 && !isN:
			o.errorf(o.vals["n"], "n is only for last_n and last_distinct_n: remove it")
			ok = false
		case err != nil || x < 1 || x > MaxLastN:
			o.errorf(o.vals["n"], "n must be a whole number from 1 to %d, got %q", MaxLastN, s)
			ok = false
		default:
			count = x
		}
	} else if isN {
		o.errorf(o.n, "%s needs n: how many values to keep (1 to %d)", fn, MaxLastN)
		ok = false
	}

	// Interval.
	interval, set := o.duration("interval", "0", "0s", "exact")
	src := "interval"
	switch {
	case set:
	case viewIntervalSet:
		interval, src = viewInterval, "the view's aggregation_interval"
	case isN:
		interval = 0
	default:
		interval, src = DefaultInterval(window), "the default aggregation interval for a "+FormatWindow(window)+" window"
	}
	switch {
	case !windowSet:
	case isN && interval != 0:
		if set {
			o.errorf(o.vals["interval"], "%s is exact-only: remove interval", fn)
		} else {
			o.errorf(o.n, "%s is exact-only, and %s is %s: set interval: 0 on this aggregation", fn, src, FormatWindow(interval))
		}
		ok = false
	case fn == windows.DistinctCount && ctype != String && ctype != 0 && interval != 0:
		// The windows engine keeps no distinct sets of numbers in tiles.
		if set {
			o.errorf(o.vals["interval"], "distinct_count of a %s column is exact-only: set interval: 0", ctype)
		} else {
			o.errorf(o.n, "distinct_count of a %s column is exact-only, and %s is %s: set interval: 0 on this aggregation", ctype, src, FormatWindow(interval))
		}
		ok = false
	case interval != 0 && window%interval != 0:
		g := gcd(window, interval)
		o.errorf(o.vals["window"], "window %s is not a multiple of %s (%s): set interval: %s, or make the window a multiple of %s",
			FormatWindow(window), src, FormatWindow(interval), FormatWindow(g), FormatWindow(interval))
		ok = false
	}

	// Name.
	name := o.ident("name", false)
	if name == "" && fn != 0 && windowSet {
		name = defaultFeatureName(col, fn, count, window)
	}
	if name != "" {
		for _, f := range v.Features {
			if f.Name == name {
				o.errorf(o.n, "feature %q is defined twice in this view: set name: on one of them", name)
				ok = false
			}
		}
	}
	if !ok || name == "" {
		return
	}

	// Spec column: first use.
	spec := -1
	for i, c := range v.SourceColumns {
		if c == sc {
			spec = i
		}
	}
	if spec < 0 {
		kind := windows.Float
		if ctype == String {
			kind = windows.String
		}
		v.Spec.Columns = append(v.Spec.Columns, windows.Column{Name: col, Kind: kind})
		v.SourceColumns = append(v.SourceColumns, sc)
		spec = len(v.SourceColumns) - 1
	}
	v.Spec.Aggregations = append(v.Spec.Aggregations, windows.Aggregation{Column: spec, Func: fn, Window: window, Interval: interval, N: count})
	f := Feature{Name: name, FullName: v.Name + "." + name, Type: Float}
	switch fn {
	case windows.Count, windows.DistinctCount:
		f.Type = Int
	case windows.Last, windows.LastN, windows.LastDistinctN:
		if ctype == String {
			f.Type = String
		}
		f.List = isN
	}
	v.Features = append(v.Features, f)
}

func defaultFeatureName(col string, fn windows.Func, n int, window int64) string {
	switch fn {
	case windows.LastN:
		return fmt.Sprintf("%s_last_%d_%s", col, n, FormatWindow(window))
	case windows.LastDistinctN:
		return fmt.Sprintf("%s_last_distinct_%d_%s", col, n, FormatWindow(window))
	}
	return col + "_" + fn.String() + "_" + FormatWindow(window)
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func (l *loader) table(it item) {
	o := l.object(it.file, it.n, "table view", "name", "entity", "schema")
	t := &Table{Name: o.ident("name", true), Entity: l.lookupEntity(o)}
	var pos []at
	t.Columns, pos = o.schema("schema", true)
	if t.Entity != nil {
		if i, ok := columnIndex(t.Columns, t.Entity.JoinKey); ok {
			l.errorf(pos[i], "%s: schema: %q is the join key of entity %q, which is the table's row key: remove it from the schema", o.what, t.Entity.JoinKey, t.Entity.Name)
		}
	}
	for _, c := range t.Columns {
		t.Features = append(t.Features, Feature{Name: c.Name, FullName: t.Name + "." + c.Name, Type: c.Type})
	}
	if l.declare(t.Name, "table view", l.pos(it.file, it.n)) {
		l.repo.Tables = append(l.repo.Tables, t)
	}
}

func (l *loader) requestView(it item) {
	o := l.object(it.file, it.n, "request view", "name", "request_schema", "features")
	rv := &RequestView{Name: o.ident("name", true)}
	rv.RequestSchema, _ = o.schema("request_schema", false)
	for _, n := range o.seq("features", true) {
		fo := l.object(it.file, n, o.what+": feature", "name", "expression")
		name := fo.ident("name", true)
		src := fo.str("expression", true)
		if name == "" || src == "" {
			continue
		}
		if slices.ContainsFunc(rv.Features, func(f RequestFeature) bool { return f.Name == name }) {
			fo.errorf(fo.vals["name"], "feature %q is defined twice in this view: rename one", name)
			continue
		}
		rf := RequestFeature{Feature: Feature{Name: name, FullName: rv.Name + "." + name, Type: Float}}
		expr, err := CompileExpr(src, func(ident string) (int, error) {
			ref, err := l.resolveInput(rv, ident)
			if err != nil {
				return 0, err
			}
			rf.Inputs = append(rf.Inputs, ref)
			return len(rf.Inputs) - 1, nil
		})
		if err != nil {
			l.exprError(fo, fo.vals["expression"], src, err)
			continue
		}
		rf.Expr = expr
		rv.Features = append(rv.Features, rf)
	}
	if l.declare(rv.Name, "request view", l.pos(it.file, it.n)) {
		l.repo.Requests = append(l.repo.Requests, rv)
	}
}

// exprError reports err at its column within the expression when the
// scalar's text can be found verbatim in the file, else at the scalar.
func (l *loader) exprError(o *obj, n *yaml.Node, src string, err error) {
	a := l.pos(o.file, n)
	var ee *ExprError
	if errors.As(err, &ee) {
		if lines := l.lines[o.file]; n.Line-1 < len(lines) && n.Column >= 1 {
			line := lines[n.Line-1]
			if c := n.Column - 1; c <= len(line) {
				rest := line[c:]
				switch {
				case n.Style == 0 && bytes.HasPrefix(rest, []byte(src)):
					a.col += ee.Col - 1
				case n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 && len(rest) > 0 && bytes.HasPrefix(rest[1:], []byte(src)):
					a.col += ee.Col
				default:
					o.l.errorf(a, "%s: expression: at column %d of the expression: %s", o.what, ee.Col, ee.Msg)
					return
				}
			}
		}
		o.l.errorf(a, "%s: expression: %s", o.what, ee.Msg)
		return
	}
	o.l.errorf(a, "%s: expression: %v", o.what, err)
}

// resolveInput maps an identifier of rv's expressions to what it reads.
func (l *loader) resolveInput(rv *RequestView, ident string) (Ref, error) {
	view, feat, ok := strings.Cut(ident, ".")
	if !ok || strings.Contains(feat, ".") {
		return Ref{}, fmt.Errorf("unknown identifier %s: write request.<field>, <feature_view>.<feature> or <table_view>.<column>", ident)
	}
	if view == "request" {
		i, ok := columnIndex(rv.RequestSchema, feat)
		if !ok {
			known := colNames(rv.RequestSchema)
			return Ref{}, fmt.Errorf("unknown request field %s%s: declare it in request_schema (declared: %s)", ident, suggest(feat, known), list(known))
		}
		if rv.RequestSchema[i].Type == String {
			return Ref{}, fmt.Errorf("%s is a string, and expressions compute with numbers (a string request field feeds a model's string input: list %s in model.inputs)", ident, ident)
		}
		return Ref{Kind: RefRequest, View: i}, nil
	}
	for i, v := range l.repo.Views {
		if v.Name != view {
			continue
		}
		for j, f := range v.Features {
			if f.Name != feat {
				continue
			}
			if f.List || f.Type == String {
				return Ref{}, fmt.Errorf("%s is a %s, and expressions compute with numbers: use a numeric feature", ident, describeType(f))
			}
			return Ref{Kind: RefAggregate, View: i, Feature: j}, nil
		}
		known := names(featurePtrs(v.Features), func(f *Feature) string { return f.Name })
		return Ref{}, fmt.Errorf("feature view %s has no feature %s%s (it has %s)", view, feat, suggest(feat, known), list(known))
	}
	for i, t := range l.repo.Tables {
		if t.Name != view {
			continue
		}
		j, ok := columnIndex(t.Columns, feat)
		if !ok {
			known := colNames(t.Columns)
			return Ref{}, fmt.Errorf("table view %s has no column %s%s (it has %s)", view, feat, suggest(feat, known), list(known))
		}
		if !t.Columns[j].Type.Numeric() {
			return Ref{}, fmt.Errorf("%s is a string, and expressions compute with numbers: use a numeric column", ident)
		}
		return Ref{Kind: RefTable, View: i, Feature: j}, nil
	}
	if view == rv.Name || slices.ContainsFunc(l.repo.Requests, func(r *RequestView) bool { return r.Name == view }) {
		return Ref{}, fmt.Errorf("%s is a request-time feature, and request features read only request fields, feature views and table views (one level): repeat its expression here", ident)
	}
	known := append(names(l.repo.Views, func(v *View) string { return v.Name }), names(l.repo.Tables, func(t *Table) string { return t.Name })...)
	return Ref{}, fmt.Errorf("unknown view %s in %s%s: use request.<field>, or a feature view or table view (defined: %s)", view, ident, suggest(view, append(known, "request")), list(known))
}

func featurePtrs(fs []Feature) []*Feature {
	out := make([]*Feature, len(fs))
	for i := range fs {
		out[i] = &fs[i]
	}
	return out
}

func describeType(f Feature) string {
	if f.List {
		return "list of " + f.Type.String()
	}
	return f.Type.String()
}

func (l *loader) service(it item) {
	o := l.object(it.file, it.n, "feature service", "name", "features", "model")
	s := &Service{Name: o.ident("name", true)}
	seen := map[Ref]int{} // -> line
	for _, n := range o.seq("features", true) {
		if n.Kind != yaml.ScalarNode || n.Value == "" {
			o.errorf(n, "features: expected a view name or view.feature, found %s", describe(n))
			continue
		}
		refs, err := l.serviceRefs(n.Value)
		if err != nil {
			o.errorf(n, "features: %v", err)
			continue
		}
		for _, ref := range refs {
			if line, dup := seen[ref]; dup {
				o.errorf(n, "features: %s is listed twice (also at line %d): list each feature once", l.repo.FeatureName(ref), line)
				continue
			}
			seen[ref] = n.Line
			s.Features = append(s.Features, ref)
		}
	}
	l.serviceInputs(o, s)
	if mn := o.vals["model"]; !isNull(mn) {
		s.Model = l.model(it.file, mn, s)
	}
	if l.declare(s.Name, "feature service", l.pos(it.file, it.n)) {
		l.repo.Services = append(l.repo.Services, s)
	}
}

// serviceRefs resolves one entry of a service's features list.
func (l *loader) serviceRefs(entry string) ([]Ref, error) {
	view, feat, single := strings.Cut(entry, ".")
	r := &l.repo
	var refs []Ref
	if v, ok := r.View(view); ok {
		for j := range v.Features {
			refs = append(refs, Ref{RefAggregate, slices.Index(r.Views, v), j})
		}
	} else if t, ok := r.Table(view); ok {
		for j := range t.Features {
			refs = append(refs, Ref{RefTable, slices.Index(r.Tables, t), j})
		}
	} else if q, ok := r.RequestView(view); ok {
		for j := range q.Features {
			refs = append(refs, Ref{RefRequestView, slices.Index(r.Requests, q), j})
		}
	} else {
		if prev, ok := l.names[view]; ok {
			return nil, fmt.Errorf("%s is %s, not a feature view, table view or request view", view, prev)
		}
		var known []string
		known = append(known, names(r.Views, func(v *View) string { return v.Name })...)
		known = append(known, names(r.Tables, func(t *Table) string { return t.Name })...)
		known = append(known, names(r.Requests, func(q *RequestView) string { return q.Name })...)
		return nil, fmt.Errorf("unknown view %q%s: list a feature view, table view or request view (defined: %s)", view, suggest(view, known), list(known))
	}
	if !single {
		return refs, nil
	}
	var known []string
	for _, ref := range refs {
		f := r.feature(ref)
		if f.Name == feat {
			return []Ref{ref}, nil
		}
		known = append(known, f.Name)
	}
	return nil, fmt.Errorf("%s has no feature %q%s (it has %s)", view, feat, suggest(feat, known), list(known))
}

// serviceInputs fills s.JoinKeys and s.RequestContext from s.Features.
func (l *loader) serviceInputs(o *obj, s *Service) {
	r := &l.repo
	addKey := func(e *Entity) {
		if e != nil && !slices.Contains(s.JoinKeys, e.JoinKey) {
			s.JoinKeys = append(s.JoinKeys, e.JoinKey)
		}
	}
	var ctxFrom []string
	usedReq := map[int]bool{}
	for _, ref := range s.Features {
		switch ref.Kind {
		case RefAggregate:
			addKey(r.Views[ref.View].Entity)
		case RefTable:
			addKey(r.Tables[ref.View].Entity)
		case RefRequestView:
			rv := r.Requests[ref.View]
			for _, in := range rv.Features[ref.Feature].Inputs {
				switch in.Kind {
				case RefAggregate:
					addKey(r.Views[in.View].Entity)
				case RefTable:
					addKey(r.Tables[in.View].Entity)
				}
			}
			if usedReq[ref.View] {
				continue
			}
			usedReq[ref.View] = true
			for _, c := range rv.RequestSchema {
				i, ok := columnIndex(s.RequestContext, c.Name)
				if !ok {
					s.RequestContext = append(s.RequestContext, c)
					ctxFrom = append(ctxFrom, rv.Name)
					continue
				}
				if s.RequestContext[i].Type != c.Type {
					o.errorf(o.vals["features"], "request field %q is a %s in request view %s and a %s in %s: give it one type",
						c.Name, s.RequestContext[i].Type, ctxFrom[i], c.Type, rv.Name)
				}
			}
		}
	}
}

// suggest returns ` (did you mean "x"?)` for the option closest to s, if
// close enough, else "".
func suggest(s string, options []string) string {
	best, bestD := "", -1
	for _, o := range options {
		d := editDistance(s, o)
		if bestD < 0 || d < bestD {
			best, bestD = o, d
		}
	}
	if bestD <= 0 || bestD > max(2, max(len(s), len(best))/2) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b, bytewise.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b))
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
