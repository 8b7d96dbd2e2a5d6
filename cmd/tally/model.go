package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tally-ml/tally/score"
	"github.com/tally-ml/tally/score/onnx"
)

func modelCmd() *cobra.Command {
	cmd := group(&cobra.Command{Use: "model", Short: "Inspect and run ONNX models"})
	cmd.AddCommand(&cobra.Command{
		Use:   "inspect FILE",
		Short: "Print a model's inputs, outputs and operators",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := onnx.Load(args[0])
			if err != nil {
				// Still list what the model holds, unsupported operators
				// marked, then fail with Load's reason.
				if d, ierr := onnx.Inspect(args[0]); ierr == nil {
					printDescription(cmd, args[0], d)
				}
				return err
			}
			return printDescription(cmd, args[0], m.Describe())
		},
	})
	var input string
	predict := &cobra.Command{
		Use:   "predict FILE --input rows.(json|csv)",
		Short: "Score rows with a model and print the predictions as JSON",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := onnx.Load(args[0])
			if err != nil {
				return err
			}
			if names := m.StringInputs(); len(names) > 0 {
				return fmt.Errorf("%s takes string inputs %v, and predict reads numbers only: score it through a feature service (list a string feature or request.<field> for each in model.inputs)", args[0], names)
			}
			rows, n, err := readRows(input, m.NumInputs())
			if err != nil {
				return err
			}
			out := make([]score.Prediction, n)
			if err := m.Score(context.Background(), rows, n, out); err != nil {
				return err
			}
			type pred struct {
				Label         any       `json:"label,omitempty"`
				Probabilities []float32 `json:"probabilities,omitempty"`
				Value         *float64  `json:"value,omitempty"`
			}
			preds := make([]pred, n)
			for i, p := range out {
				switch {
				case p.HasLabel && p.LabelString != "":
					preds[i].Label = p.LabelString
				case p.HasLabel:
					preds[i].Label = p.Label
				}
				preds[i].Probabilities = p.Probabilities
				if !p.HasLabel && p.Probabilities == nil {
					v := p.Value
					preds[i].Value = &v
				}
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			return enc.Encode(map[string]any{"classes": m.Classes(), "predictions": preds})
		},
	}
	predict.Flags().StringVar(&input, "input", "", "rows: a CSV file (an optional header row, then width numbers per row; empty = missing) or a JSON array of arrays")
	requireFlags(predict, "input")
	cmd.AddCommand(predict)
	return cmd
}

// printDescription prints a model's inputs, outputs and operators, one per
// line.
func printDescription(cmd *cobra.Command, path string, d onnx.Description) error {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "model\t%s\n", path)
	fmt.Fprintf(tw, "producer\t%s (IR %d)\n", d.Producer, d.IRVersion)
	doms := make([]string, 0, len(d.Opsets))
	for dom := range d.Opsets {
		doms = append(doms, dom)
	}
	sort.Strings(doms)
	for _, dom := range doms {
		fmt.Fprintf(tw, "opset\t%s %d\n", dom, d.Opsets[dom])
	}
	for _, in := range d.Inputs {
		fmt.Fprintf(tw, "input\t%s\t%s\t%s\n", in.Name, in.Type, in.Shape)
	}
	for _, out := range d.Outputs {
		fmt.Fprintf(tw, "output\t%s\t%s\t%s\n", out.Name, out.Type, out.Shape)
	}
	for _, op := range d.Operators {
		note := ""
		if !op.Supported {
			note = "\tNOT SUPPORTED"
		}
		fmt.Fprintf(tw, "operator\t%s\tx%d%s\n", op.Op, op.Count, note)
	}
	if d.NumInputs > 0 {
		fmt.Fprintf(tw, "values per row\t%d\n", d.NumInputs)
	}
	if d.StringInputs != nil {
		fmt.Fprintf(tw, "string inputs\t%s\n", strings.Join(d.StringInputs, ", "))
	}
	if d.Classes != nil {
		fmt.Fprintf(tw, "classes\t%s\n", strings.Join(d.Classes, ", "))
	}
	return tw.Flush()
}

// readRows reads width-wide rows of float32 (NaN for missing) from a CSV or
// JSON file, row-major.
func readRows(path string, width int) ([]float32, int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	var rows []float32
	n := 0
	add := func(vals []float64, line int) error {
		if len(vals) != width {
			return fmt.Errorf("%s row %d: %d values, the model takes %d", path, line, len(vals), width)
		}
		for _, v := range vals {
			rows = append(rows, float32(v))
		}
		n++
		return nil
	}
	if strings.EqualFold(filepath.Ext(path), ".json") {
		var arr [][]*float64
		if err := json.Unmarshal(data, &arr); err != nil {
			return nil, 0, fmt.Errorf("%s: want a JSON array of arrays of numbers (null = missing): %w", path, err)
		}
		for i, r := range arr {
			vals := make([]float64, len(r))
			for j, v := range r {
				vals[j] = math.NaN()
				if v != nil {
					vals[j] = *v
				}
			}
			if err := add(vals, i+1); err != nil {
				return nil, 0, err
			}
		}
		return rows, n, nil
	}
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	for i, rec := range recs {
		vals := make([]float64, len(rec))
		header := false
		for j, f := range rec {
			f = strings.TrimSpace(f)
			if f == "" || strings.EqualFold(f, "nan") {
				vals[j] = math.NaN()
				continue
			}
			v, err := strconv.ParseFloat(f, 64)
			if err != nil {
				if i == 0 {
					header = true
					break
				}
				return nil, 0, fmt.Errorf("%s line %d: %q is not a number", path, i+1, f)
			}
			vals[j] = v
		}
		if header {
			continue
		}
		if err := add(vals, i+1); err != nil {
			return nil, 0, err
		}
	}
	return rows, n, nil
}
