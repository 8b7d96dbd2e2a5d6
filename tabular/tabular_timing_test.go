package tabular

import (
	"bytes"
	"io"
	"strconv"
	"testing"
)

// The benchmarks use an export-shaped table: three string columns (an
// entity key, a low-cardinality category, an event id) and sixteen float
// features, and report rows/s.

func benchCols() []Column {
	cols := []Column{{"user_id", String}, {"country", String}, {"event_id", String}}
	for i := range 16 {
		cols = append(cols, Column{"f" + strconv.Itoa(i), Float64})
	}
	return cols
}

var countries = []string{"US", "DE", "FR", "GB", "JP", "BR", "IN", "CA"}

func benchRows(n int) [][]Value {
	rows := make([][]Value, n)
	for i := range rows {
		r := make([]Value, 19)
		r[0] = Value{Str: "user_" + strconv.Itoa(i%50_000)}
		r[1] = Value{Str: countries[i%len(countries)]}
		r[2] = Value{Str: "evt-" + strconv.Itoa(1_000_000+i)}
		for j := range 16 {
			r[3+j] = Value{Num: float64(i%1000)*0.37 + float64(j)/7}
		}
		if i%10 == 0 {
			r[5] = Value{Null: true}
		}
		rows[i] = r
	}
	return rows
}

const benchTableRows = 20_000

func benchWrite(b *testing.B, f Format) {
	rows := benchRows(benchTableRows)
	cols := benchCols()
	b.ReportAllocs()
	b.ResetTimer()
	w, err := NewWriter(f, io.Discard, cols)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		if err := w.Write(rows[i%len(rows)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

func benchRead(b *testing.B, f Format) {
	var buf bytes.Buffer
	w, err := NewWriter(f, &buf, benchCols())
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range benchRows(4 * benchTableRows) {
		if err := w.Write(r); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)) / (4 * benchTableRows))
	b.ReportAllocs()
	b.ResetTimer()
	r, err := NewReader(f, bytes.NewReader(data))
	if err != nil {
		b.Fatal(err)
	}
	row := make([]Value, len(r.Columns()))
	for i := 0; i < b.N; i++ {
		err := r.Next(row)
		if err == io.EOF {
			r.Close()
			if r, err = NewReader(f, bytes.NewReader(data)); err == nil {
				err = r.Next(row)
			}
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	r.Close()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkWriteParquet(b *testing.B) { benchWrite(b, Parquet) }
func BenchmarkReadParquet(b *testing.B)  { benchRead(b, Parquet) }
func BenchmarkWriteCSV(b *testing.B)     { benchWrite(b, CSV) }
func BenchmarkReadCSV(b *testing.B)      { benchRead(b, CSV) }
func BenchmarkWriteNDJSON(b *testing.B)  { benchWrite(b, NDJSON) }
func BenchmarkReadNDJSON(b *testing.B)   { benchRead(b, NDJSON) }
