package windows

import (
	"errors"
	"fmt"
)

// Func is an aggregation function.
type Func uint8

// The aggregation functions. The zero Func is invalid.
const (
	Count Func = iota + 1
	Sum
	Mean
	Min
	Max
	Last
	LastN
	LastDistinctN
	DistinctCount
	Stddev
	Variance
)

var funcNames = [...]string{
	Count: "count", Sum: "sum", Mean: "mean", Min: "min", Max: "max", Last: "last",
	LastN: "last_n", LastDistinctN: "last_distinct_n", DistinctCount: "distinct_count",
	Stddev: "stddev", Variance: "variance",
}

// String returns the function's name as written in a feature repo.
func (f Func) String() string {
	if f == 0 || int(f) >= len(funcNames) {
		return fmt.Sprintf("Func(%d)", uint8(f))
	}
	return funcNames[f]
}

// ParseFunc returns the function named s ("count", "last_n", ...).
func ParseFunc(s string) (Func, error) {
	for f := Count; int(f) < len(funcNames); f++ {
		if funcNames[f] == s {
			return f, nil
		}
	}
	return 0, fmt.Errorf("unknown aggregation function %q: use one of count, sum, mean, min, max, last, last_n, last_distinct_n, distinct_count, stddev, variance", s)
}

// Kind is the type of an event column.
type Kind uint8

// Column kinds.
const (
	Float  Kind = iota + 1 // float64 (ints are carried as floats)
	String                 // bytes, dictionary-encoded per view column
)

// Column is one value column of a view's events.
type Column struct {
	Name string
	Kind Kind
}

// Aggregation is one feature of a view: Func over Column within Window.
type Aggregation struct {
	Column   int   // index into Spec.Columns
	Func     Func  //
	Window   int64 // milliseconds, > 0
	Interval int64 // tile size in milliseconds; 0 means exact. Window must be a multiple.
	N        int   // for LastN and LastDistinctN: how many values, >= 1
}

// Spec describes a view: the columns of its events and its aggregations.
type Spec struct {
	Name         string
	Columns      []Column
	Aggregations []Aggregation
	// Lateness is how far, in milliseconds, an event may be older than the
	// newest event of its entity and still be placed; older events are
	// refused with ErrTooLate (beyond the longest window, see package doc).
	Lateness int64
}

// Field is one column value of an event. Str is only read during Add and may
// be reused by the caller afterwards.
type Field struct {
	Null bool
	Num  float64
	Str  []byte
}

// Value is one aggregation's result. Present is false when the function has
// no value for the window (see package doc: mean/min/max/last/stddev/variance
// of an empty window); count, sum and distinct_count are always Present.
type Value struct {
	Present bool
	Num     float64   // every scalar function over a Float column, counts, last of a Float column
	Str     string    // last of a String column
	Nums    []float64 // last_n of a Float column, newest first
	Strs    []string  // last_n / last_distinct_n of a String column, newest first
}

// Errors returned by Add. They describe the event, never the store: a refused
// event changes nothing.
var (
	// ErrTooLate: the event is older than its entity's newest event minus
	// (longest window + Lateness); no read it could affect is answerable.
	ErrTooLate = errors.New("event too late")
	// ErrBadEvent: the fields do not match the Spec (count or kind).
	ErrBadEvent = errors.New("event does not match view columns")
)
