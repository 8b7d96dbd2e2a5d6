package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/tabular"
)

// TableFormat is the encoding of a table upload: tabular's CSV or NDJSON.
type TableFormat = tabular.Format

// Table upload formats.
const (
	CSV    = tabular.CSV    // header row naming the join key and the columns
	NDJSON = tabular.NDJSON // one JSON object per line, typed by the table's schema
)

// UploadTable loads rows into table name: upserted by join key, or replacing
// the table when replace is set. All or nothing: a bad row, or a join key
// given in two rows, refuses the upload and the table is unchanged. Returns
// the number of rows stored.
func (n *Node) UploadTable(name string, format TableFormat, body []byte, replace bool) (int, *APIError) {
	return n.UploadTableAt(name, format, body, replace, n.now())
}

// UploadTableAt is UploadTable for rows valid from validFrom (not after the
// node's clock): lookups see them at once, historical features from
// validFrom on, so a table can be backfilled before the events that use it.
// A replace with no rows (an empty body) is refused: it would empty the
// table, which a truncated export should not do silently.
func (n *Node) UploadTableAt(name string, format TableFormat, body []byte, replace bool, validFrom int64) (int, *APIError) {
	return n.uploadTable("", name, format, body, replace, false, validFrom)
}

// uploadTable is UploadTableAt; allowEmpty lets a replace with no rows
// empty the table (?mode=replace&allow_empty=true).
func (n *Node) uploadTable(id, name string, format TableFormat, body []byte, replace, allowEmpty bool, validFrom int64) (int, *APIError) {
	if now := n.now(); validFrom > now {
		return 0, badRequest("INVALID_REQUEST", "as_of %s is after the node's clock %s: rows cannot be valid from the future", fmtMillis(validFrom), fmtMillis(now))
	}
	var t *store.Table
	var def *features.Table
	for i, d := range n.Repo().Tables {
		if d.Name == name {
			t, def = n.Table(i), d
		}
	}
	if t == nil {
		var names []string
		for _, d := range n.Repo().Tables {
			names = append(names, d.Name)
		}
		return 0, &APIError{Status: 404, Code: "UNKNOWN_TABLE", Message: fmt.Sprintf("unknown table view %q: this node has %s", name, strings.Join(names, ", "))}
	}
	var rows []store.TableRow
	var err error
	switch format {
	case CSV:
		rows, err = parseTableCSV(def, body, &n.cfg.Limits)
	case NDJSON:
		rows, err = parseTableNDJSON(def, body, &n.cfg.Limits)
	default:
		err = errors.New("unknown format: use text/csv or application/x-ndjson")
	}
	if err != nil {
		return 0, badRequest("INVALID_TABLE_ROWS", "table %s: %v; nothing was stored", name, err)
	}
	if replace && len(rows) == 0 && !allowEmpty {
		return 0, badRequest("EMPTY_REPLACE", "table %s: the body has no rows, and mode=replace would empty the table; nothing was changed (to empty it, add allow_empty=true)", name)
	}
	if n.cluster != nil {
		if err := n.cluster.WriteTable(id, t, rows, replace, validFrom); err != nil {
			if errors.Is(err, store.ErrTooLarge) {
				return 0, &APIError{Status: 413, Code: "TOO_LARGE", Message: fmt.Sprintf("table %s: %v; nothing was stored: upload the rows in smaller parts", name, err)}
			}
			return 0, &APIError{Status: 503, Code: "UNAVAILABLE", Message: err.Error()}
		}
		return len(rows), nil
	}
	if err := n.Store.CommitTable(id, t, rows, replace, validFrom); err != nil {
		if errors.Is(err, store.ErrTooLarge) {
			return 0, &APIError{Status: 413, Code: "TOO_LARGE", Message: fmt.Sprintf("table %s: %v; nothing was stored: upload the rows in smaller parts", name, err)}
		}
		return 0, &APIError{Status: 503, Code: "NOT_DURABLE", Message: err.Error()}
	}
	return len(rows), nil
}

// checkTableText holds a key or string value of a table row to the
// limits on their size.
func checkTableText(l *Limits, name string, s string, isKey bool) error {
	if isKey && len(s) > l.MaxKeyBytes {
		return fmt.Errorf("join key %q is %d bytes, more than limits.max_key_bytes (%d)", name, len(s), l.MaxKeyBytes)
	}
	if !isKey && len(s) > l.MaxValueBytes {
		return fmt.Errorf("%s: string is %d bytes, more than limits.max_value_bytes (%d)", name, len(s), l.MaxValueBytes)
	}
	return nil
}

// parseTableCSV reads a CSV upload with tabular's CSV reader (header,
// quoting, byte order mark, ragged rows, the row limit) and converts each
// field by the table's schema.
func parseTableCSV(def *features.Table, body []byte, l *Limits) ([]store.TableRow, error) {
	maxRows := l.MaxTableRows
	rd, err := tabular.NewLimitedReader(tabular.CSV, bytes.NewReader(body), tabular.Limits{MaxRows: int64(maxRows)})
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	header := rd.Columns()
	keyCol := -1
	colOf := make([]int, len(header)) // header position -> table column, -1 = key
	seen := make(map[string]int, len(header))
	for i, h := range header {
		// Names are matched trimmed: tabular refuses a name given twice
		// verbatim, and one given twice up to spaces is refused here, or
		// the later column would silently win.
		name := strings.TrimSpace(h.Name)
		if j, dup := seen[name]; dup {
			return nil, fmt.Errorf("CSV header: column name %q appears twice (columns %d and %d)", name, j+1, i+1)
		}
		seen[name] = i
		if name == def.Entity.JoinKey {
			keyCol = i
			colOf[i] = -1
			continue
		}
		c, _ := def.Column(name)
		if c < 0 {
			return nil, fmt.Errorf("CSV header names unknown column %q: table %s has %s, %s", name, def.Name, def.Entity.JoinKey, tableColumnNames(def))
		}
		colOf[i] = c
	}
	if keyCol < 0 {
		return nil, fmt.Errorf("CSV header lacks the join key column %q", def.Entity.JoinKey)
	}
	var rows []store.TableRow
	rowOf := map[string]int{} // key -> its row, to refuse a key given twice
	rec := make([]tabular.Value, len(header))
	for row := 1; ; row++ {
		err := rd.Next(rec)
		if err == io.EOF {
			break
		}
		var le *tabular.LimitError
		if errors.As(err, &le) {
			return nil, fmt.Errorf("more than %d rows (limits.max_table_rows); split the upload", maxRows)
		}
		if err != nil {
			return nil, fmt.Errorf("CSV: %w", err)
		}
		r := store.NewRow(def)
		for i, field := range rec {
			if colOf[i] < 0 {
				if field.Null {
					return nil, fmt.Errorf("row %d: empty join key %q", row, def.Entity.JoinKey)
				}
				if err := checkTableText(l, def.Entity.JoinKey, field.Str, true); err != nil {
					return nil, fmt.Errorf("row %d: %w", row, err)
				}
				r.Key = field.Str
				continue
			}
			if field.Null {
				continue
			}
			c := colOf[i]
			if def.Columns[c].Type == features.String {
				if err := checkTableText(l, def.Columns[c].Name, field.Str, false); err != nil {
					return nil, fmt.Errorf("row %d: %w", row, err)
				}
			}
			if err := setTableText(&r, c, def.Columns[c], field.Str); err != nil {
				return nil, fmt.Errorf("row %d, column %q: %w", row, def.Columns[c].Name, err)
			}
		}
		if prev, dup := rowOf[r.Key]; dup {
			return nil, fmt.Errorf("join key %s %q is in rows %d and %d: give each key once", def.Entity.JoinKey, r.Key, prev, row)
		}
		rowOf[r.Key] = row
		rows = append(rows, r)
	}
	return rows, nil
}

func setTableText(r *store.TableRow, c int, col features.Column, s string) error {
	switch col.Type {
	case features.String:
		r.Strs[c] = s
	case features.Float, features.Int:
		f, err := tabular.ParseNumber(s)
		if err != nil {
			return fmt.Errorf("want a number: %w", err)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("want a finite number, got %q", s)
		}
		if col.Type == features.Int && f != math.Trunc(f) {
			return fmt.Errorf("want an integer, got %q", s)
		}
		// Held as a float64 and answered as an int64: a number at or
		// beyond 2^63 would be answered as another integer.
		if col.Type == features.Int && (f < math.MinInt64 || f >= -math.MinInt64) {
			return fmt.Errorf("want an integer within int64's range, got %q", s)
		}
		r.Nums[c] = f
	case features.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		r.Nums[c] = b2f(b)
	}
	r.Null[c] = false
	return nil
}

func parseTableNDJSON(def *features.Table, body []byte, lim *Limits) ([]store.TableRow, error) {
	maxRows := lim.MaxTableRows
	var p fastjson.Parser
	var numBuf []byte
	set := make([]bool, len(def.Columns)+1) // columns set in this row, then the key
	var rows []store.TableRow
	lineOf := map[string]int{} // key -> its line, to refuse a key given twice
	for line := 1; len(body) > 0; line++ {
		var l []byte
		l, body, _ = bytes.Cut(body, []byte{'\n'})
		l = bytes.Trim(l, tabular.JSONSpace)
		if len(l) == 0 {
			continue
		}
		if len(rows) >= maxRows {
			return nil, fmt.Errorf("more than %d rows (limits.max_table_rows); split the upload", maxRows)
		}
		v, err := tabular.ParseJSON(&p, l)
		if err != nil {
			return nil, fmt.Errorf("line %d: not valid JSON: %w", line, err)
		}
		obj, err := v.Object()
		if err != nil {
			return nil, fmt.Errorf("line %d: want a JSON object", line)
		}
		r := store.NewRow(def)
		clear(set)
		var rowErr error
		obj.Visit(func(k []byte, v *fastjson.Value) {
			if rowErr != nil {
				return
			}
			name := string(k)
			if name == def.Entity.JoinKey {
				if set[len(def.Columns)] {
					rowErr = fmt.Errorf("field %q appears twice", name)
					return
				}
				set[len(def.Columns)] = true
				switch v.Type() {
				case fastjson.TypeString:
					s, _ := v.StringBytes()
					if rowErr = checkTableText(lim, name, string(s), true); rowErr != nil {
						return
					}
					r.Key = string(s)
				case fastjson.TypeNumber:
					x, err := jsonInt(v, &numBuf)
					if err != nil {
						rowErr = fmt.Errorf("join key %q must be a string or an integer", name)
						return
					}
					r.Key = strconv.FormatInt(x, 10)
					rowErr = checkTableText(lim, name, r.Key, true)
				default:
					rowErr = fmt.Errorf("join key %q must be a string or an integer", name)
				}
				return
			}
			c, _ := def.Column(name)
			if c < 0 {
				rowErr = fmt.Errorf("unknown column %q: table %s has %s, %s", name, def.Name, def.Entity.JoinKey, tableColumnNames(def))
				return
			}
			if set[c] {
				rowErr = fmt.Errorf("field %q appears twice", name)
				return
			}
			set[c] = true
			col := def.Columns[c]
			switch {
			case v.Type() == fastjson.TypeNull:
			case col.Type == features.String && v.Type() == fastjson.TypeString:
				s, _ := v.StringBytes()
				if rowErr = checkTableText(lim, name, string(s), false); rowErr != nil {
					return
				}
				r.Strs[c], r.Null[c] = string(s), false
			case (col.Type == features.Float || col.Type == features.Int) && v.Type() == fastjson.TypeNumber:
				text, ok := jsonNumber(v, &numBuf)
				if !ok {
					rowErr = fmt.Errorf("%s: %s is not a JSON number (RFC 8259)", name, text)
					return
				}
				rowErr = setTableText(&r, c, col, string(text))
			case col.Type == features.Bool && (v.Type() == fastjson.TypeTrue || v.Type() == fastjson.TypeFalse):
				r.Nums[c], r.Null[c] = b2f(v.Type() == fastjson.TypeTrue), false
			default:
				rowErr = fmt.Errorf("%s: want %s, got %s", name, col.Type, v.Type())
			}
		})
		if rowErr != nil {
			return nil, fmt.Errorf("line %d: %w", line, rowErr)
		}
		if r.Key == "" {
			return nil, fmt.Errorf("line %d: missing join key %q", line, def.Entity.JoinKey)
		}
		if prev, dup := lineOf[r.Key]; dup {
			return nil, fmt.Errorf("join key %s %q is on lines %d and %d: give each key once", def.Entity.JoinKey, r.Key, prev, line)
		}
		lineOf[r.Key] = line
		rows = append(rows, r)
	}
	return rows, nil
}

func tableColumnNames(def *features.Table) string { return ctxNames(def.Columns) }
