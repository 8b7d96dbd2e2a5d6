package history

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/tabular"
)

// Spine is a spine held in memory column by column, its rows' times parsed
// and its rows ordered by time.
type Spine struct {
	cols   []tabular.Column
	data   []column
	n      int
	ts     []int64
	order  []int32 // row numbers by (time, row)
	keyCol []int   // spine column of each join key
	ctxCol []int   // spine column of each request-context column
}

// Len is the number of rows.
func (s *Spine) Len() int { return s.n }

// Columns are the spine's columns, as its reader typed them.
func (s *Spine) Columns() []tabular.Column { return s.cols }

// column holds one spine column; only the slice of its type is used.
type column struct {
	null  []bool
	nums  []float64
	ints  []int64
	bools []bool
	strs  []string
	fl    [][]float64
	sl    [][]string
}

func (c *column) add(t tabular.Type, v *tabular.Value) {
	c.null = append(c.null, v.Null)
	switch t {
	case tabular.String:
		c.strs = append(c.strs, v.Str)
	case tabular.Float64:
		c.nums = append(c.nums, v.Num)
	case tabular.Int64, tabular.Timestamp:
		c.ints = append(c.ints, v.Int)
	case tabular.Bool:
		c.bools = append(c.bools, v.Bool)
	case tabular.Float64List:
		c.fl = append(c.fl, slices.Clone(v.Nums))
	case tabular.StringList:
		c.sl = append(c.sl, slices.Clone(v.Strs))
	}
}

func (c *column) get(t tabular.Type, i int, d *tabular.Value) {
	*d = tabular.Value{Null: c.null[i]}
	if d.Null {
		return
	}
	switch t {
	case tabular.String:
		d.Str = c.strs[i]
	case tabular.Float64:
		d.Num = c.nums[i]
	case tabular.Int64, tabular.Timestamp:
		d.Int = c.ints[i]
	case tabular.Bool:
		d.Bool = c.bools[i]
	case tabular.Float64List:
		d.Nums = c.fl[i]
	case tabular.StringList:
		d.Strs = c.sl[i]
	}
}

// SpineError is a spine the join refuses: a missing column, a bad value, or
// more rows than ReadSpine's maxRows (TooManyRows).
type SpineError struct {
	Msg         string
	TooManyRows bool
}

func (e *SpineError) Error() string { return e.Msg }

func spineErr(format string, args ...any) error {
	return &SpineError{Msg: fmt.Sprintf(format, args...)}
}

// ReadSpine reads every row of r for the join's service: r must have the
// timestamp column (a timestamp, epoch milliseconds, or RFC 3339 text, in
// years 1 to 9999; integers before 1973-03-03 are refused as epoch seconds
// read as milliseconds), the service's join keys (text or integers) and its
// request-context columns (numbers; null or NaN is a missing value); other
// columns pass through. It
// refuses more than maxRows rows (0: no limit). Errors name the row and
// column and are *SpineError, except for the reader's own I/O errors.
func (j *Join) ReadSpine(r tabular.Reader, timestampKey string, maxRows int) (*Spine, error) {
	s := &Spine{cols: slices.Clone(r.Columns())}
	s.data = make([]column, len(s.cols))
	find := func(name string) int {
		return slices.IndexFunc(s.cols, func(c tabular.Column) bool { return c.Name == name })
	}
	names := func() string {
		var out []string
		for _, c := range s.cols {
			out = append(out, c.Name)
		}
		return strings.Join(out, ", ")
	}
	tcol := find(timestampKey)
	if tcol < 0 {
		return nil, spineErr("the spine has no timestamp column %q (its columns: %s); name it with timestamp_key", timestampKey, names())
	}
	switch s.cols[tcol].Type {
	case tabular.Timestamp, tabular.Int64, tabular.String:
	default:
		return nil, spineErr("timestamp column %q is %s: want a timestamp, epoch milliseconds or RFC 3339 text", timestampKey, s.cols[tcol].Type)
	}
	for _, k := range j.pr.JoinKeys() {
		c := find(k)
		if c < 0 {
			return nil, spineErr("the spine lacks join key column %q, which service %s needs (its columns: %s)", k, j.service, names())
		}
		if t := s.cols[c].Type; t != tabular.String && t != tabular.Int64 {
			return nil, spineErr("join key column %q is %s: want text or integers", k, t)
		}
		s.keyCol = append(s.keyCol, c)
	}
	var text []bool // string request fields: fed to models only, never read here
	for _, rc := range j.pr.RequestContext() {
		text = append(text, rc.Type == features.String)
		c := find(rc.Name)
		if c < 0 {
			return nil, spineErr("the spine lacks request-context column %q, which service %s needs (its columns: %s)", rc.Name, j.service, names())
		}
		switch s.cols[c].Type {
		case tabular.String, tabular.Float64, tabular.Int64, tabular.Bool:
		default:
			return nil, spineErr("request-context column %q is %s: want numbers", rc.Name, s.cols[c].Type)
		}
		s.ctxCol = append(s.ctxCol, c)
	}
	for _, f := range j.pr.Features() {
		if find(f.Name) >= 0 {
			return nil, spineErr("the spine has a column %q, the name of one of service %s's features, which the output appends: rename or drop it", f.Name, j.service)
		}
	}
	row := make([]tabular.Value, len(s.cols))
	var ctx [1]float64
	var ok [1]bool
	for {
		err := r.Next(row)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if maxRows > 0 && s.n >= maxRows {
			return nil, &SpineError{Msg: fmt.Sprintf("the spine has more than %d rows; split it or use `tally export`", maxRows), TooManyRows: true}
		}
		line := s.n + 1
		t, err := rowTime(s.cols[tcol].Type, &row[tcol])
		if err != nil {
			return nil, spineErr("row %d, column %q: %v", line, timestampKey, err)
		}
		for _, c := range s.keyCol {
			if row[c].Null {
				return nil, spineErr("row %d: join key %q is missing", line, s.cols[c].Name)
			}
		}
		for i, c := range s.ctxCol {
			if text[i] {
				continue
			}
			if err := contextValue(s.cols[c].Type, &row[c], ctx[:], ok[:]); err != nil {
				return nil, spineErr("row %d, column %q: %v", line, s.cols[c].Name, err)
			}
		}
		for c := range s.cols {
			s.data[c].add(s.cols[c].Type, &row[c])
		}
		s.ts = append(s.ts, t)
		s.n++
	}
	s.order = make([]int32, s.n)
	for i := range s.order {
		s.order[i] = int32(i)
	}
	slices.SortStableFunc(s.order, func(a, b int32) int {
		return cmpInt(s.ts[a], s.ts[b])
	})
	return s, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Spine times lie in years 1 to 9999 (RFC 3339's): epoch milliseconds
// beyond are microseconds or nanoseconds read as milliseconds, rows tens of
// thousands of years ahead whose every window is empty.
var (
	minSpineTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	maxSpineTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli() - 1
)

// secondsCeiling bounds the integer times that are taken for epoch seconds:
// read as milliseconds, the seconds of any date from 1970 to the year 5138
// fall below it (before 1973-03-03T09:46:40Z), rows before every event whose
// features are all empty, and no error would say so. Ingest hints at
// seconds by the same bound. A time that early is given as RFC 3339 text or
// a timestamp, which say their unit.
const secondsCeiling = 1e11

func rowTime(t tabular.Type, v *tabular.Value) (int64, error) {
	var ms int64
	integer := t == tabular.Int64
	switch {
	case v.Null:
		return 0, fmt.Errorf("the timestamp is missing")
	case t == tabular.String:
		s := strings.TrimSpace(v.Str)
		var err error
		if ms, err = strconv.ParseInt(s, 10, 64); err == nil {
			integer = true
		} else if ms, err = node.ParseTime(s); err != nil {
			return 0, err
		}
	default:
		ms = v.Int
	}
	if ms < minSpineTime || ms > maxSpineTime {
		return 0, fmt.Errorf("%d is not epoch milliseconds of a year from 1 to 9999 (microseconds or nanoseconds?): give milliseconds, RFC 3339 text or a timestamp", ms)
	}
	if integer && ms > 0 && ms < secondsCeiling {
		return 0, fmt.Errorf("%d read as epoch milliseconds is %s: epoch seconds? multiply by 1000 (a time before 1973-03-03 is given as RFC 3339 text or a timestamp)",
			ms, time.UnixMilli(ms).UTC().Format(time.RFC3339Nano))
	}
	return ms, nil
}

// contextValue reads a request-context value as get-features does: a
// finite number, or null (NaN, the way pandas writes a missing float, is
// null too).
func contextValue(t tabular.Type, v *tabular.Value, dst []float64, ok []bool) error {
	dst[0], ok[0] = 0, false
	if v.Null {
		return nil
	}
	var f float64
	switch t {
	case tabular.Float64:
		f = v.Num
	case tabular.Int64:
		f = float64(v.Int)
	case tabular.Bool:
		if v.Bool {
			f = 1
		}
	case tabular.String:
		x, err := tabular.ParseNumber(strings.TrimSpace(v.Str))
		if err != nil {
			return fmt.Errorf("want a number: %v", err)
		}
		f = x
	}
	if math.IsNaN(f) {
		return nil
	}
	if math.IsInf(f, 0) {
		return fmt.Errorf("want a finite number, got %v", f)
	}
	dst[0], ok[0] = f, true
	return nil
}
