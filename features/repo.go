package features

import (
	"fmt"

	"github.com/tally-ml/tally/windows"
)

// Type is the type of a source field, table column, request field or feature.
// The zero Type is invalid.
type Type uint8

// The types a repo can declare.
const (
	String Type = iota + 1
	Float
	Int
	Bool
)

var typeNames = [...]string{String: "string", Float: "float", Int: "int", Bool: "bool"}
var dataTypeNames = [...]string{String: "string", Float: "float64", Int: "int64", Bool: "bool"}

// String returns the type's name as written in a feature repo ("float").
func (t Type) String() string {
	if t == 0 || int(t) >= len(typeNames) {
		return fmt.Sprintf("Type(%d)", uint8(t))
	}
	return typeNames[t]
}

// DataType returns the type's name in response metadata: "string",
// "float64", "int64" or "bool".
func (t Type) DataType() string {
	if t == 0 || int(t) >= len(dataTypeNames) {
		return t.String()
	}
	return dataTypeNames[t]
}

// Numeric reports whether values of t are carried as float64 (float, int and
// bool; bool is 0 or 1).
func (t Type) Numeric() bool { return t == Float || t == Int || t == Bool }

func parseType(s string) (Type, bool) {
	for t := String; int(t) < len(typeNames); t++ {
		if typeNames[t] == s {
			return t, true
		}
	}
	return 0, false
}

// Column is a named, typed field.
type Column struct {
	Name string
	Type Type
}

// Source is a stream of events. Timestamp names the event-time field, which
// every event carries and which is not one of Columns.
type Source struct {
	Name      string
	Timestamp string
	Columns   []Column
	Labels    []string // columns carried into training data, never aggregated
	Lateness  int64    // ms an event may trail its entity's newest event; default 5m
	Kafka     *Kafka   // where the events stream from, if a Kafka topic (kafka.go)
}

// Column returns the index of the column called name in s.Columns.
func (s *Source) Column(name string) (int, bool) { return columnIndex(s.Columns, name) }

// IsLabel reports whether the column called name is a label of s.
func (s *Source) IsLabel(name string) bool {
	for _, l := range s.Labels {
		if l == name {
			return true
		}
	}
	return false
}

func columnIndex(cols []Column, name string) (int, bool) {
	for i, c := range cols {
		if c.Name == name {
			return i, true
		}
	}
	return -1, false
}

// Entity is what features are about (a user, a merchant); JoinKey is the
// field that identifies one, in sources, tables and lookup requests.
type Entity struct {
	Name    string
	JoinKey string
}

// View is a feature view: sliding-window aggregations of one source per
// entity. Spec is ready for windows.New.
type View struct {
	Name      string
	Source    *Source
	Entity    *Entity
	KeyColumn int // index of Entity.JoinKey in Source.Columns
	// SourceColumns[i] is the index in Source.Columns of Spec.Columns[i].
	SourceColumns []int
	// Spec: Name is the view's name; Columns are the source columns the
	// aggregations read, in first-use order (Kind Float for float, int and
	// bool, String for string); Aggregations are in YAML order; Lateness is
	// Source.Lateness.
	Spec     windows.Spec
	Features []Feature // one per Spec.Aggregations, same order
}

// Feature is one named value a service can return.
type Feature struct {
	Name     string // within its view: "amt_count_1m"
	FullName string // "<view>.<name>": "user_transaction_counts.amt_count_1m"
	// Type is the value's type, or the element type when List is set:
	// count and distinct_count are Int; last, last_n and last_distinct_n of
	// a string column are String; every other aggregation is Float, and so
	// is every request-time feature.
	Type Type
	List bool // last_n and last_distinct_n: a list, newest first
}

// Table is a table view: the latest row per entity, bulk-loaded. The join key
// is the row key and is not one of Columns.
type Table struct {
	Name     string
	Entity   *Entity
	Columns  []Column
	Features []Feature // one per column: "<table>.<column>"
}

// Column returns the index of the column called name in t.Columns.
func (t *Table) Column(name string) (int, bool) { return columnIndex(t.Columns, name) }

// RequestView computes request-time features from the request context
// (RequestSchema) and from aggregate and table features.
type RequestView struct {
	Name          string
	RequestSchema []Column
	Features      []RequestFeature
}

// RequestFeature is one expression of a request view. Inputs[i] is what the
// expression's slot i reads; its result is a Float.
type RequestFeature struct {
	Feature
	Expr   *Expr
	Inputs []Ref
}

// RefKind says what a Ref points at.
type RefKind uint8

// The kinds of Ref.
const (
	RefAggregate   RefKind = iota + 1 // Repo.Views[View].Features[Feature]
	RefTable                          // Repo.Tables[View].Features[Feature] (= Columns[Feature])
	RefRequest                        // a request field: RequestSchema[View] of the request view at hand
	RefRequestView                    // Repo.Requests[View].Features[Feature]
)

var refKindNames = [...]string{RefAggregate: "aggregate", RefTable: "table", RefRequest: "request", RefRequestView: "request view"}

func (k RefKind) String() string {
	if k == 0 || int(k) >= len(refKindNames) {
		return fmt.Sprintf("RefKind(%d)", uint8(k))
	}
	return refKindNames[k]
}

// Ref names one feature (or, as a request feature's input, a request field).
type Ref struct {
	Kind    RefKind
	View    int // index into Repo.Views, Tables or Requests; RefRequest: into RequestSchema
	Feature int // index into that view's Features; 0 for RefRequest
}

// Service is a feature service: the features one lookup returns.
type Service struct {
	Name     string
	Features []Ref // output order; never RefRequest
	// JoinKeys are the entity join keys a lookup must give, in first-use
	// order, including those read only by request features' inputs.
	JoinKeys []string
	// RequestContext is the union of the request schemas of the request
	// views the service reads, in first-use order.
	RequestContext []Column
	// Model, if set, scores the service's vector; nil for none.
	Model *Model
}

// Repo is a loaded, validated feature repository. Every slice is in
// declaration order (files by name, then position in the file). A Repo is
// immutable once returned: share it, do not modify it.
type Repo struct {
	Sources  []*Source
	Entities []*Entity
	Views    []*View
	Tables   []*Table
	Requests []*RequestView
	Services []*Service
}

func find[T any](list []*T, name string, nameOf func(*T) string) (*T, bool) {
	for _, x := range list {
		if nameOf(x) == name {
			return x, true
		}
	}
	return nil, false
}

// Source returns the source called name.
func (r *Repo) Source(name string) (*Source, bool) {
	return find(r.Sources, name, func(s *Source) string { return s.Name })
}

// Entity returns the entity called name.
func (r *Repo) Entity(name string) (*Entity, bool) {
	return find(r.Entities, name, func(e *Entity) string { return e.Name })
}

// View returns the feature view called name.
func (r *Repo) View(name string) (*View, bool) {
	return find(r.Views, name, func(v *View) string { return v.Name })
}

// Table returns the table view called name.
func (r *Repo) Table(name string) (*Table, bool) {
	return find(r.Tables, name, func(t *Table) string { return t.Name })
}

// RequestView returns the request view called name.
func (r *Repo) RequestView(name string) (*RequestView, bool) {
	return find(r.Requests, name, func(v *RequestView) string { return v.Name })
}

// Service returns the feature service called name.
func (r *Repo) Service(name string) (*Service, bool) {
	return find(r.Services, name, func(s *Service) string { return s.Name })
}

// Feature returns the Ref of the feature called fullName ("view.feature").
func (r *Repo) Feature(fullName string) (Ref, bool) {
	for i, v := range r.Views {
		for j := range v.Features {
			if v.Features[j].FullName == fullName {
				return Ref{RefAggregate, i, j}, true
			}
		}
	}
	for i, t := range r.Tables {
		for j := range t.Features {
			if t.Features[j].FullName == fullName {
				return Ref{RefTable, i, j}, true
			}
		}
	}
	for i, q := range r.Requests {
		for j := range q.Features {
			if q.Features[j].FullName == fullName {
				return Ref{RefRequestView, i, j}, true
			}
		}
	}
	return Ref{}, false
}

// feature returns the Feature ref points at, or nil for RefRequest and
// out-of-range refs.
func (r *Repo) feature(ref Ref) *Feature {
	switch ref.Kind {
	case RefAggregate:
		if ref.View >= 0 && ref.View < len(r.Views) && ref.Feature >= 0 && ref.Feature < len(r.Views[ref.View].Features) {
			return &r.Views[ref.View].Features[ref.Feature]
		}
	case RefTable:
		if ref.View >= 0 && ref.View < len(r.Tables) && ref.Feature >= 0 && ref.Feature < len(r.Tables[ref.View].Features) {
			return &r.Tables[ref.View].Features[ref.Feature]
		}
	case RefRequestView:
		if ref.View >= 0 && ref.View < len(r.Requests) && ref.Feature >= 0 && ref.Feature < len(r.Requests[ref.View].Features) {
			return &r.Requests[ref.View].Features[ref.Feature].Feature
		}
	}
	return nil
}

// FeatureName returns the full name of the feature ref points at, or "" for
// a RefRequest (which names a field only relative to its request view) and
// for refs out of range.
func (r *Repo) FeatureName(ref Ref) string {
	if f := r.feature(ref); f != nil {
		return f.FullName
	}
	return ""
}

// FeatureType returns the type (the element type, for lists) of the feature
// ref points at, or 0 where FeatureName returns "".
func (r *Repo) FeatureType(ref Ref) Type {
	if f := r.feature(ref); f != nil {
		return f.Type
	}
	return 0
}

// FeatureList reports whether the feature ref points at is a list
// (last_n, last_distinct_n).
func (r *Repo) FeatureList(ref Ref) bool {
	if f := r.feature(ref); f != nil {
		return f.List
	}
	return false
}
