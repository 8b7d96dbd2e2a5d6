package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
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
columns are an error. Each chunk is all or nothing; a refused chunk stops the
import and says how many rows earlier chunks loaded.

Each chunk carries a request id (Idempotency-Key): by default one derived from the
source, --chunk, the chunk's number and its content (a hash of the events it
sends). A chunk whose answer was lost is sent again by the client, and the node
applies an id once: running the same import again after a failure, or after
fixing a row the import refused, loads only the chunks the node had not applied
(within its window of the last 262,144 named requests); a chunk whose rows
changed is new. --request-id ID numbers ID by chunk instead; --request-id none
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
			defer r.Close()
			enc, err := newEventEncoder(src, r.Columns())
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if apiKey == "" {
				apiKey = os.Getenv("TALLY_API_KEY")
			}
			var bar *progressbar.ProgressBar
			if !quiet {
				bar = newBar(cmd.ErrOrStderr(), -1, "import "+source, "events")
			}
			node, err := client.New(url, client.Options{APIKey: apiKey})
			if err != nil {
				return err
			}
			ids, err := importIDs(requestID, source, chunk)
			if err != nil {
				return err
			}
			chunks := 0
			row := make([]tabular.Value, len(r.Columns()))
			var body []byte
			loaded, tooLate, line := 0, 0, 0
			send := func(n int) error {
				if n == 0 {
					return nil
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				wo := client.WriteOptions{}
				switch {
				case requestID == "auto":
					sum := sha256.Sum256(body)
					wo.RequestID = fmt.Sprintf("%s/%d/%x", ids, chunks, sum[:12])
				case ids != "":
					wo.RequestID = ids + "/" + strconv.Itoa(chunks)
				}
				chunks++
				res, err := node.Import(ctx, source, body, wo)
				cancel()
				if err != nil {
					again := ""
					if ids != "" {
						again = "; run the same import again to load the rest (after fixing the rows, if the node refused some): the chunks the node applied are skipped by their request ids"
					}
					return fmt.Errorf("rows %d-%d: %w (%d rows before them were loaded%s)", line-n+1, line, err, loaded, again)
				}
				loaded += res.Accepted
				tooLate += res.TooLate
				body = body[:0]
				if bar != nil {
					bar.Set(loaded)
				}
				return nil
			}
			inChunk := 0
			for {
				err := r.Next(row)
				if err == io.EOF {
					break
				}
				if err != nil {
					return fmt.Errorf("%s: %w (%d rows were loaded)", args[0], err, loaded)
				}
				line++
				if body, err = enc.appendJSON(body, row); err != nil {
					return fmt.Errorf("%s row %d: %w (%d rows were loaded)", args[0], line, err, loaded)
				}
				if inChunk++; inChunk == chunk {
					if err := send(inChunk); err != nil {
						return err
					}
					inChunk = 0
				}
			}
			if err := send(inChunk); err != nil {
				return err
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
// chunk sends the same events: after fixing a row the node refused, the
// chunks already applied are skipped, and only changed ones are new.
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

// eventEncoder writes file rows as the source's JSON records.
type eventEncoder struct {
	names  []string
	fields []features.Type // the source field's type; 0 for the timestamp
	types  []tabular.Type  // the file column's type
}

func newEventEncoder(src *features.Source, cols []tabular.Column) (*eventEncoder, error) {
	e := &eventEncoder{}
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
