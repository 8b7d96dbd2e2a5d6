// Package tabular reads and writes tables: rows of named, typed columns, in
// CSV, NDJSON and Parquet files or streams. `tally export` reads a spine and
// writes a training set with it, the HTTP export endpoint streams the same,
// and `tally import` reads historical events with it.
//
// # Model
//
// A table is a list of Columns (name and Type) and a stream of rows, each a
// []Value with one Value per column. A Value is either Null or holds the
// field of its column's Type: Str (String), Num (Float64), Int (Int64, and
// Timestamp as epoch milliseconds UTC), Bool (Bool), Nums (Float64List) or
// Strs (StringList). An empty list is not Null.
//
// Readers and Writers stream: memory is bounded by a row (CSV), the NDJSON
// type look-ahead (at most 8 MiB), or a Parquet row group (64k rows), never
// by the file, with one exception: NewReader on a plain io.Reader of Parquet
// reads the whole input into memory, because Parquet's footer is at its end.
// What the caller keeps of the rows is its own affair: for untrusted input,
// NewLimitedReader bounds the rows and their decoded size (a Parquet input
// is refused from its footer when it claims too many rows or cells).
// A Reader or Writer is for one goroutine. Errors name the 1-based data row (the header is not a
// row) and the column: `row 17, column "amt": ...`. Garbage input gives an
// error, never a panic.
//
// # CSV
//
// The first line is the header; an empty or duplicate name is an error. A
// leading UTF-8 byte order mark is skipped. CSV text must be UTF-8: a name
// or field that is not is an error naming its row, column and line and
// the offset of the first bad byte in the field (a utf8.ValidString per
// field, which runs 8 ASCII bytes at a time). Every column reads as String:
// the caller converts, numbers with ParseNumber, the one CSV number syntax
// of tally (decimal: sign, digits, fraction, exponent; NaN and ±Inf as the
// writer writes them; not Go's 1_000 or 0x1p3). An empty field reads as Null, so CSV cannot tell an
// empty string from a missing value (both are written as an empty field). A
// row with more or fewer fields than the header is an error.
//
// The writer writes the header, then per type: Float64 as
// strconv.FormatFloat(v, 'g', -1, 64) ("NaN", "+Inf", "-Inf"), Int64 in
// decimal, Bool as true/false, Timestamp as RFC 3339 UTC with milliseconds
// (2026-01-02T03:04:05.678Z), lists as a JSON array text (non-finite numbers
// as null), and Null as an empty field. Fields are quoted as encoding/csv
// quotes them, and a row whose only field is empty as "" (a blank line
// would be skipped); lines end in "\n". The reader is encoding/csv; the
// writer appends bytes itself so that a row costs no allocation.
//
// # NDJSON
//
// One JSON object per line; blank lines are skipped. The columns are the
// keys of the first object, in its order. A later object may omit keys (they
// read as Null) but may not add one: a key not in the first object is an
// error naming it. JSON null is Null.
//
// A column's type is inferred from its first non-null value and then fixed:
// a string is String; a number is Int64 if it is an integer literal (no '.',
// no exponent) that fits in 64 bits, otherwise Float64; true/false is Bool;
// an array of numbers is Float64List and one of strings StringList. A later
// value of another kind is an error naming the row, and so is a non-integer
// number in an Int64 column: a stream cannot go back and widen the rows it
// has returned, so write the first number of a float column with a decimal
// point (3.0). A Float64 column accepts integer literals. Objects, and arrays
// of anything but numbers and strings, are errors. In lists a null element
// reads as NaN (Float64List) or "" (StringList). Numbers are held to RFC
// 8259 (01, +1, .5 and inf are errors; see IsJSONNumber) and parsed with
// strconv, so floats round-trip exactly. A line that is not UTF-8, or that
// holds an escape RFC 8259 does not define, a \u escape of a UTF-16
// surrogate that is not half of a pair, or a raw control character in a
// string, is an error naming its row and the byte's offset (ParseJSON).
//
// Columns is final when NewReader returns. Where the first object leaves a
// type open (a null, or an empty list), NewReader looks ahead, up to 1000
// rows or 8 MiB, until every type is known; Next then returns those rows as
// usual. A column with only nulls in the look-ahead is String, and its later
// values read as their JSON text (a string as itself, 1.5 as "1.5"); one
// with only nulls and empty lists is Float64List.
//
// Table uploads (package node) read their CSV with this reader and their
// format with BodyFormat, but parse their NDJSON themselves: a table's
// NDJSON is typed by the table's schema, not inferred, and its rules are
// the ingest API's, not a file's: each object may hold any of the columns
// in any order, the join key is a string or an integer literal, an int
// column takes any integral number (1.0, 1e3), and a key given twice is
// refused with the ingest path's message. A typed mode here would carry
// those table rules into a package that knows no tables, for one caller;
// the number syntax is shared (IsJSONNumber, ParseNumber).
//
// The writer writes each row as an object with the keys in column order.
// Float64 values always carry a '.' or an exponent (1.0, not 1) so they read
// back as Float64; NaN and ±Inf, which JSON lacks, are written as null.
// Timestamp is written as an integer of epoch milliseconds, so it reads back
// as Int64 with the same Int.
//
// # Parquet
//
// Reading maps physical and logical types: BOOLEAN to Bool; INT32 and INT64
// without a logical type or with INT to Int64 (an unsigned 64-bit value above
// MaxInt64 is an error naming the row); FLOAT and DOUBLE to Float64;
// BYTE_ARRAY without a logical type or with STRING, ENUM or JSON to String;
// TIMESTAMP in MILLIS, MICROS or NANOS, UTC-adjusted or not, to Timestamp in
// milliseconds, rounded toward negative infinity; DATE to Timestamp at
// midnight UTC; legacy INT96 timestamps to Timestamp; a LIST of doubles,
// floats or integers to Float64List (a null element is NaN), and a LIST of
// strings to StringList (a null element is ""). A naive timestamp (not
// UTC-adjusted) is read as if it were UTC. Columns named __index_level_*
// (a pandas DataFrame index) are skipped. Any other type, a struct, a map or
// a list of lists is an error naming the column and its type. A string, a
// string list's element or a column name that is not UTF-8 is an error
// naming the row, the column (and element) and the bad byte's offset:
// tally writes strings out again, and Parquet, Delta and Spark readers
// refuse such bytes.
//
// Opening a Parquet input checks the footer and every page header against
// the input (pages inside their column chunk, at most 256 MiB and 64M
// values each) before parquet-go reads them, so a corrupt or hostile file
// cannot make it allocate gigabytes; a panic inside parquet-go on a
// malformed file is returned as an error.
//
// The writer makes every column OPTIONAL: String as BYTE_ARRAY STRING
// (dictionary-encoded until the dictionary passes 1 MiB), Float64 as DOUBLE,
// Int64 as INT64, Bool as BOOLEAN, Timestamp as INT64 TIMESTAMP(MILLIS,
// isAdjustedToUTC=true), and lists as the standard three-level LIST of
// OPTIONAL elements. Pages are zstd-compressed; row groups hold 65536 rows.
// Parquet keeps empty strings apart from nulls, NaN apart from null, and the
// schema of a file with no rows. pandas and pyarrow read what it writes.
package tabular
