package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/valyala/fastjson"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/tabular"
)

func importCmd() *cobra.Command {
	var source, url, apiKey, repoDir, requestID string
	var chunk int
	var quiet bool
	cmd := &cobra.Command{
		Use:   "import EVENTS.(csv|parquet|ndjson) --source NAME",
		Short: "Backfill a historical event file into a running node: its log, its online state and its archive",
		Long: `import reads an event file (a data lake's export) and sends it to a running node's
import endpoint in chunks. Each event becomes visible to historical features at its
own timestamp, as if it had streamed in then, in the file's order: import history
before streaming live events. Columns are the source's fields by name; extra
columns are an error.

The file is read twice, a chunk in memory at a time: first every chunk is checked
(the node validates it as it would import it, and applies nothing: dry_run), then
the chunks are sent. A bad row anywhere refuses the whole import before any chunk
is sent, naming the row (from 1, after a CSV's header) and why: a refused import
changes nothing. The file must not change while it is imported (a chunk that
differs from the one checked stops the import).

Each chunk carries a request id (Idempotency-Key): by default one derived from the
source, --chunk, the chunk's number and its content (a hash of the events it
sends). A chunk whose answer was lost is sent again by the client, and the node
applies an id once: running the same import again after a failure while sending
(a node that went away) loads only the chunks the node had not applied (within
its window of the last 262,144 named requests); a chunk whose rows changed is new. --request-id ID numbers ID by chunk instead; --request-id none
sends none (importing the same file twice then counts it twice).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if chunk < 1 {
				return fmt.Errorf("--chunk %d: give the number of events per request, at least 1", chunk)
			}
			repo, _, err := loadRepo(repoDir)
			if err != nil {
				return err
			}
			var src *features.Source
			for _, s := range repo.Sources {
				if s.Name == source {
					src = s
				}
			}
			if src == nil {
				return fmt.Errorf("source %q is not in the repo", source)
			}
			r, err := tabular.Open(args[0])
			if err != nil {
				return err
			}
			enc, err := newEventEncoder(src, r.Columns())
			r.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if apiKey == "" {
				apiKey = os.Getenv("TALLY_API_KEY")
			}
			node, err := client.New(url, client.Options{APIKey: apiKey})
			if err != nil {
				return err
			}
			ids, err := importIDs(requestID, source, chunk)
			if err != nil {
				return err
			}
			// Two passes over the file, a chunk in memory at a time: the
			// node validates every chunk (dry_run) before any is sent for
			// real, so a bad row anywhere refuses the import whole.
			var sums [][sha256.Size]byte
			var bar *progressbar.ProgressBar
			if !quiet {
				bar = newBar(cmd.ErrOrStderr(), -1, "check "+source, "events")
			}
			checked := 0
			err = eachChunk(args[0], enc, chunk, func(body []byte, first, last int) error {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				_, err := node.Import(ctx, source, body, client.WriteOptions{DryRun: true})
				cancel()
				if err != nil {
					return fmt.Errorf("rows %d-%d: %w", first, last, refusedRows(err, first))
				}
				sums = append(sums, sha256.Sum256(body))
				checked = last
				if bar != nil {
					bar.Set(checked)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("%s: %w; nothing was imported", args[0], err)
			}
			if bar != nil {
				bar.Finish()
				bar = newBar(cmd.ErrOrStderr(), checked, "import "+source, "events")
			}
			chunks, sent, loaded, tooLate := 0, 0, 0, 0
			err = eachChunk(args[0], enc, chunk, func(body []byte, first, last int) error {
				sum := sha256.Sum256(body)
				if chunks >= len(sums) || sum != sums[chunks] {
					return fmt.Errorf("rows %d-%d changed since they were checked: the file must not change while it is imported", first, last)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				wo := client.WriteOptions{}
				switch {
				case requestID == "auto":
					wo.RequestID = fmt.Sprintf("%s/%d/%x", ids, chunks, sum[:12])
				case ids != "":
					wo.RequestID = ids + "/" + strconv.Itoa(chunks)
				}
				chunks++
				res, err := node.Import(ctx, source, body, wo)
				cancel()
				if err != nil {
					return fmt.Errorf("rows %d-%d: %w", first, last, err)
				}
				sent = last
				loaded += res.Accepted
				tooLate += res.TooLate
				if bar != nil {
					bar.Set(loaded)
				}
				return nil
			})
			if err == nil && chunks < len(sums) {
				err = fmt.Errorf("the file ends at row %d, and had %d rows when it was checked: the file must not change while it is imported", sent, checked)
			}
			if err != nil {
				again := ""
				if ids != "" {
					again = "; run the same import again to load the rest: the chunks the node applied are skipped by their request ids"
				}
				return fmt.Errorf("%s: %w (%d rows were loaded%s)", args[0], err, loaded, again)
			}
			if bar != nil {
				bar.Finish()
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d events into %s (%d placements too late for some view)\n", loaded, source, tooLate)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&source, "source", "", "the source the events belong to (required)")
	fl.StringVar(&url, "url", "http://127.0.0.1:8080", "the node")
	fl.StringVar(&apiKey, "api-key", "", "API key with the ingest scope (default: $TALLY_API_KEY)")
	fl.StringVar(&repoDir, "repo", "", "feature repo directory the node serves (default: the embedded fraud repo)")
	fl.IntVar(&chunk, "chunk", 50_000, "events per request")
	fl.BoolVar(&quiet, "quiet", false, "no progress bar")
	fl.StringVar(&requestID, "request-id", "auto", `the chunks' request ids: auto derives each from the source, --chunk, the chunk's number and its events; an ID is numbered "<id>/<chunk>"; none sends none`)
	requireFlags(cmd, "source")
	return cmd
}

// importIDs is the request id prefix of an import's chunks: flag as given
// (numbered by chunk), "" for none, or for auto one naming the source and
// the chunk size, to which each chunk adds its number and a hash of its
// body. So running the import again names each chunk as before, whatever
// became of the file's name, size or modification time, as long as the
// chunk sends the same events: after an import that stopped while sending,
// the chunks already applied are skipped, and only changed ones are new.
func importIDs(flag, source string, chunk int) (string, error) {
	switch flag {
	case "none":
		return "", nil
	case "auto":
		// The source hashed: a header value is ASCII, a source name need
		// not be.
		sum := sha256.Sum256([]byte(source))
		return fmt.Sprintf("import:%x:%d", sum[:8], chunk), nil
	case "":
		return "", errors.New(`--request-id is empty: give an id, auto or none`)
	}
	return flag, nil
}

// eachChunk reads the event file at path from its start and calls fn with
// each chunk of up to size rows as enc writes them (NDJSON), and the file's
// numbers (from 1) of the chunk's first and last rows. Only one chunk is in
// memory at a time; body is reused after fn returns. A row that cannot be
// read or written stops the reading, naming the row.
func eachChunk(path string, enc *eventEncoder, size int, fn func(body []byte, first, last int) error) error {
	r, err := tabular.Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	if !slices.Equal(r.Columns(), enc.cols) {
		return errors.New("its columns changed since it was first read: the file must not change while it is imported")
	}
	row := make([]tabular.Value, len(enc.cols))
	var body []byte
	line, inChunk := 0, 0
	for {
		err := r.Next(row)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		line++
		if body, err = enc.appendJSON(body, row); err != nil {
			return fmt.Errorf("row %d: %w", line, err)
		}
		if inChunk++; inChunk == size {
			if err := fn(body, line-inChunk+1, line); err != nil {
				return err
			}
			body, inChunk = body[:0], 0
		}
	}
	if inChunk == 0 {
		return nil
	}
	return fn(body, line-inChunk+1, line)
}

// refusedRows is the node's refusal of a chunk whose first row is the
// file's row first, naming the refused records by their rows in the file
// (the node names them by their line in the chunk, from 0); other errors
// as they are.
func refusedRows(err error, first int) error {
	var e *client.Error
	if !errors.As(err, &e) || !errors.Is(err, client.ErrInvalidRecords) || len(e.Records) == 0 {
		return err
	}
	msg := fmt.Sprintf("the node refused %d of its %d rows", e.Refused, e.Total)
	for i, r := range e.Records {
		if i == 3 {
			msg += "; ..."
			break
		}
		msg += fmt.Sprintf("; row %d: %s", first+r.Index, r.Reason)
	}
	return errors.New(msg)
}

// eventEncoder writes file rows as the source's JSON records.
type eventEncoder struct {
	cols   []tabular.Column // the file's
	names  []string
	fields []features.Type // the source field's type; 0 for the timestamp
	types  []tabular.Type  // the file column's type
}

func newEventEncoder(src *features.Source, cols []tabular.Column) (*eventEncoder, error) {
	e := &eventEncoder{cols: slices.Clone(cols)}
	seenTS := false
	for _, c := range cols {
		e.names = append(e.names, c.Name)
		e.types = append(e.types, c.Type)
		if c.Name == src.Timestamp {
			seenTS = true
			e.fields = append(e.fields, 0)
			continue
		}
		found := false
		for _, sc := range src.Columns {
			if sc.Name == c.Name {
				e.fields, found = append(e.fields, sc.Type), true
			}
		}
		if !found {
			return nil, fmt.Errorf("column %q is not a field of source %s", c.Name, src.Name)
		}
		if c.Type == tabular.Float64List || c.Type == tabular.StringList {
			return nil, fmt.Errorf("column %q is a list: source fields are scalars", c.Name)
		}
	}
	if !seenTS {
		return nil, fmt.Errorf("no timestamp column %q", src.Timestamp)
	}
	return e, nil
}

// appendJSON appends row as one NDJSON record. Values keep their meaning:
// text for text fields, numbers for numeric ones (a CSV's text is checked
// to be one), integer keys as their decimal text; the node validates the
// rest exactly as it validates any ingest.
func (e *eventEncoder) appendJSON(dst []byte, row []tabular.Value) ([]byte, error) {
	dst = append(dst, '{')
	n := 0
	for i := range row {
		v := &row[i]
		if v.Null {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = tabular.AppendJSONString(dst, e.names[i])
		dst = append(dst, ':')
		field := e.fields[i]
		switch e.types[i] {
		case tabular.String:
			text := strings.TrimSpace(v.Str)
			switch {
			case field == features.String:
				dst = tabular.AppendJSONString(dst, v.Str)
			case field == 0: // a timestamp: epoch milliseconds, or RFC 3339 text
				if _, err := strconv.ParseInt(text, 10, 64); err == nil {
					dst = append(dst, text...)
				} else {
					dst = tabular.AppendJSONString(dst, text)
				}
			case field == features.Bool && (text == "true" || text == "false"):
				dst = append(dst, text...)
			default:
				f, err := tabular.ParseNumber(text)
				if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
					return nil, fmt.Errorf("column %q: want a finite decimal number, got %q", e.names[i], v.Str)
				}
				if fastjson.Validate(text) == nil {
					dst = append(dst, text...) // as written: an integer keeps every digit
				} else {
					dst = strconv.AppendFloat(dst, f, 'g', -1, 64) // +1, 007: JSON has no such numbers
				}
			}
		case tabular.Int64, tabular.Timestamp:
			switch field {
			case features.String:
				dst = tabular.AppendJSONString(dst, strconv.FormatInt(v.Int, 10))
			case features.Bool:
				dst = strconv.AppendBool(dst, v.Int != 0)
			default:
				dst = strconv.AppendInt(dst, v.Int, 10)
			}
		case tabular.Float64:
			switch {
			case math.IsNaN(v.Num) || math.IsInf(v.Num, 0):
				dst = append(dst, "null"...)
			case (field == 0 || field == features.Int) && v.Num == math.Trunc(v.Num) && math.Abs(v.Num) < 1<<53:
				dst = strconv.AppendInt(dst, int64(v.Num), 10)
			case field == features.String && v.Num == math.Trunc(v.Num) && math.Abs(v.Num) < 1e21:
				// An integral number (a numeric id in a float column) as
				// its integer text, the key a live ingest of the number
				// and a lookup use: 'g' would write 1234567 as 1.234567e+06.
				dst = tabular.AppendJSONString(dst, strconv.FormatFloat(v.Num, 'f', -1, 64))
			case field == features.String:
				dst = tabular.AppendJSONString(dst, strconv.FormatFloat(v.Num, 'g', -1, 64))
			case field == features.Bool:
				dst = strconv.AppendBool(dst, v.Num != 0)
			default:
				dst = strconv.AppendFloat(dst, v.Num, 'g', -1, 64)
			}
		case tabular.Bool:
			if field == features.Bool {
				dst = strconv.AppendBool(dst, v.Bool)
			} else if v.Bool {
				dst = append(dst, '1')
			} else {
				dst = append(dst, '0')
			}
		}
	}
	return append(dst, '}', '\n'), nil
}
