package bench

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// noopRatios says, for each system beside the no-op server, its closed-loop
// maximum lookup throughput as a fraction of the no-op server's in the same
// run, and which lookup keys were drawn; and its open-loop p99 at half the
// no-op server's maximum as a multiple of the no-op server's there: the
// medians of the paired rounds for a system that ran them, else its suite
// against the no-op server's.
func (r *Report) noopRatios() []string {
	var noop, noopP99 float64
	for _, s := range r.Sweeps {
		if s.System == "noop" {
			noop, noopP99 = s.MaxClosed, s.HalfNoopP99
		}
	}
	if noop <= 0 {
		return nil
	}
	keys := "lookup keys drawn with the events' skew"
	if r.UniformLookups {
		keys = "lookup keys drawn uniformly"
	}
	var out []string
	paired := map[string]bool{}
	for _, pr := range r.Paired {
		if len(pr.Rounds) == 0 {
			continue
		}
		paired[pr.System] = true
		var maxes, p99s []string
		for _, rd := range pr.Rounds {
			maxes = append(maxes, fmt.Sprintf("%.0f/%.0f", rd.Max, rd.NoopMax))
			p99s = append(p99s, fmt.Sprintf("%s/%s", strings.TrimSpace(fmtUs(rd.P99)), strings.TrimSpace(fmtUs(rd.NoopP99))))
		}
		out = append(out,
			fmt.Sprintf("%-8s closed-loop max = %.2fx the no-op server's, median of %d rounds side by side (%s lookups/s; %s)", pr.System, pr.MaxRatio, len(pr.Rounds), strings.Join(maxes, ", "), keys),
			fmt.Sprintf("%-8s open-loop p99 at %.0f/s (half the no-op server's max) = %.2fx the no-op server's, median of %d rounds side by side (%s)", pr.System, pr.Rate, pr.P99Ratio, len(pr.Rounds), strings.Join(p99s, ", ")))
	}
	for _, s := range r.Sweeps {
		if paired[s.System] {
			continue // the rounds above are the comparison
		}
		if s.System != "noop" && s.MaxClosed > 0 {
			out = append(out, fmt.Sprintf("%-8s closed-loop max %.0f/s = %.2fx the no-op server's %.0f/s (%s)", s.System, s.MaxClosed, s.MaxClosed/noop, noop, keys))
		}
		if s.System != "noop" && s.HalfNoopOverloaded {
			out = append(out, fmt.Sprintf("%-8s open-loop at %.0f/s (half the no-op server's max): overloaded, no p99 to compare (its closed-loop max is %.0f/s)", s.System, s.HalfNoopRate, s.MaxClosed))
			continue
		}
		if s.System != "noop" && s.HalfNoopP99 > 0 && noopP99 > 0 {
			out = append(out, fmt.Sprintf("%-8s open-loop p99 at %.0f/s (half the no-op server's max) %s = %.2fx the no-op server's %s", s.System, s.HalfNoopRate,
				strings.TrimSpace(fmtUs(s.HalfNoopP99)), s.HalfNoopP99/noopP99, strings.TrimSpace(fmtUs(noopP99))))
		}
	}
	return out
}

// printTable writes the results as an aligned table.
func (r *Report) printTable(w io.Writer) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tscenario\tmode\ttarget/s\tgot/s\tevents/s\tp50\tp90\tp99\tp99.9\tmax\terrors\t")
	for _, x := range r.Results {
		if x.NotRun == "" && strings.HasPrefix(x.Scenario, "score-") {
			continue // below, beside onnxruntime
		}
		if x.NotRun != "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\tnot run: %s\t\t\t\t\t\t\t\t\t\n", x.System, x.Scenario, x.Mode, truncate(x.NotRun, 70))
			continue
		}
		target, ev := "-", "-"
		if x.TargetRate > 0 {
			target = fmt.Sprintf("%.0f", x.TargetRate)
		}
		if x.EventsPerS > 0 {
			ev = fmt.Sprintf("%.0f", x.EventsPerS)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", x.System, x.Scenario, x.Mode, target, x.Throughput, ev,
			fmtUs(x.Latency.P50), fmtUs(x.Latency.P90), fmtUs(x.Latency.P99), fmtUs(x.Latency.P999), fmtUs(x.Latency.Max), x.Errors)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, s := range r.Sweeps {
		fmt.Fprintf(w, "%-8s %s\n", s.System, s.crossText())
	}
	for _, line := range r.noopRatios() {
		fmt.Fprintln(w, line)
	}
	if f := r.Freshness; f != nil {
		fmt.Fprintf(w, "freshness: ack to visible p50 %s p99 %s (%d probes, %d visible on the first lookup, %d never)\n",
			strings.TrimSpace(fmtUs(f.Latency.P50)), strings.TrimSpace(fmtUs(f.Latency.P99)), f.Probes, f.FirstLookup, f.NeverVisible)
	}
	for _, c := range r.Correctness {
		fmt.Fprintf(w, "correctness %s/%s: %d lookups, %d features checked, %d mismatches%s\n", c.System, c.Scenario, c.Lookups, c.Features, c.Mismatches,
			ifs(c.Inconclusive != "", " (inconclusive: "+c.Inconclusive+")"))
		for _, e := range c.Examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	for _, c := range r.Scoring {
		fmt.Fprintf(w, "score %-20s batch %3d: tally %s, onnxruntime %s (ratio %.2f)\n", c.Model, c.Batch, fmtNs(c.TallyNs), fmtNs(c.OnnxRuntimeNs), c.Ratio())
	}
	for _, p := range r.Peers {
		if !p.Ran {
			fmt.Fprintf(w, "peer %s: not run: %s\n", p.Name, p.Reason)
		}
	}
	if c := r.Cluster; c != nil {
		c.printText(w)
	}
	if k := r.Kafka; k != nil {
		k.printText(w)
	}
	if r.OutDir != "" {
		fmt.Fprintf(w, "report: %s\n", filepath.Join(r.OutDir, "report.md"))
	}
}

func (s Sweep) crossText() string {
	switch {
	case s.Crossed && s.CrossRate == 0:
		return "p99 above 1 ms at every swept rate"
	case s.Crossed:
		return fmt.Sprintf("p99 crosses 1 ms at about %.0f lookups/s (closed-loop max %.0f/s)", s.CrossRate, s.MaxClosed)
	}
	return fmt.Sprintf("p99 under 1 ms at every swept rate, up to %.0f/s (closed-loop max %.0f/s)", s.CrossRate, s.MaxClosed)
}

// write puts report.json, report.md and the plots in dir.
func (r *Report) write(dir string, plots bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results folder: %w", err)
	}
	r.OutDir = dir
	r.Files = []string{"report.json", "report.md"}
	if plots {
		files, err := r.plot(dir)
		if err != nil {
			r.Notes = append(r.Notes, "plots: "+err.Error())
		}
		r.Files = append(r.Files, files...)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.markdown()), 0o644)
}

func (r *Report) markdown() string {
	var b strings.Builder
	mode := "full"
	if r.Quick {
		mode = "quick"
	}
	fmt.Fprintf(&b, "# tally bench (%s), %s\n\n", mode, r.Started.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "%d CPUs, GOMAXPROCS %d, %s; %d users, %d transactions preloaded over the last day (seed %d); %d connections; %.1f s per step; %.0f s in all.\n\n",
		r.NumCPU, r.GOMAXPROCS, r.GoVersion, r.Users, r.Preload, r.Seed, r.Workers, r.StepS, r.ElapsedS)
	fmt.Fprintf(&b, "tally: %s. The client (fasthttp, open loop, latency from each request's due time) runs in the same process, so client and server share the cores; the `noop` rows are a no-op fasthttp server measured the same way, the floor of every figure.\n\n", r.TallySetup)
	b.WriteString("## Where p99 crosses 1 ms\n\n| system | rate at p99 = 1 ms | closed-loop max |\n|---|---:|---:|\n")
	for _, s := range r.Sweeps {
		v := fmt.Sprintf("%.0f/s", s.CrossRate)
		if !s.Crossed {
			v = fmt.Sprintf("> %.0f/s", s.CrossRate)
		} else if s.CrossRate == 0 {
			v = "below the lowest rate"
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f/s |\n", s.System, v, s.MaxClosed)
	}
	for _, line := range r.noopRatios() {
		fmt.Fprintf(&b, "\n%s\n", line)
	}
	b.WriteString("\n## Every step\n\n| system | scenario | mode | target/s | got/s | events/s | p50 | p90 | p99 | p99.9 | max | errors |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, x := range r.Results {
		if x.NotRun == "" && strings.HasPrefix(x.Scenario, "score-") {
			continue // in the scoring table
		}
		if x.NotRun != "" {
			fmt.Fprintf(&b, "| %s | %s | %s | not run: %s |||||||||\n", x.System, x.Scenario, x.Mode, x.NotRun)
			continue
		}
		ev := ""
		if x.EventsPerS > 0 {
			ev = fmt.Sprintf("%.0f", x.EventsPerS)
		}
		target := ""
		if x.TargetRate > 0 {
			target = fmt.Sprintf("%.0f", x.TargetRate)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %d |\n", x.System, x.Scenario, x.Mode, target, x.Throughput, ev,
			strings.TrimSpace(fmtUs(x.Latency.P50)), strings.TrimSpace(fmtUs(x.Latency.P90)), strings.TrimSpace(fmtUs(x.Latency.P99)),
			strings.TrimSpace(fmtUs(x.Latency.P999)), strings.TrimSpace(fmtUs(x.Latency.Max)), x.Errors)
	}
	b.WriteString("\nModes: `open` is a fixed rate with latency measured from each request's due time (no coordinated omission); `closed` is every connection back to back (maximum throughput; latencies are service times); `sweep` is the open loop at fractions of the closed-loop maximum.\n")
	if f := r.Freshness; f != nil {
		fmt.Fprintf(&b, "\n## Freshness (mixed load)\n\nFrom an ingest's acknowledgement to the first lookup response that shows it: p50 %s, p99 %s over %d probes; %d visible on the first lookup after the acknowledgement, %d never.\n",
			strings.TrimSpace(fmtUs(f.Latency.P50)), strings.TrimSpace(fmtUs(f.Latency.P99)), f.Probes, f.FirstLookup, f.NeverVisible)
	}
	b.WriteString("\n## Correctness\n\n")
	for _, c := range r.Correctness {
		fmt.Fprintf(&b, "- %s, %s: %d lookups (%d features) compared with windowstest.Reference: **%d mismatches**%s\n", c.System, c.Scenario, c.Lookups, c.Features, c.Mismatches,
			ifs(c.Inconclusive != "", " (inconclusive: "+c.Inconclusive+")"))
		for _, e := range c.Examples {
			fmt.Fprintf(&b, "  - `%s`\n", e)
		}
	}
	r.scoringTable(&b)
	b.WriteString("\n## Peers\n\n")
	for _, p := range r.Peers {
		if p.Ran {
			fmt.Fprintf(&b, "- **%s** (%s; set up by `%s`): %s\n", p.Name, p.Version, p.Setup, p.Differs)
		} else {
			fmt.Fprintf(&b, "- **%s**: not run: %s (set up by `%s`)\n", p.Name, p.Reason, p.Setup)
		}
	}
	if c := r.Cluster; c != nil {
		c.markdown(&b)
	}
	if k := r.Kafka; k != nil {
		k.markdown(&b)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\nNote: %s\n", n)
	}
	for _, f := range r.Files {
		if strings.HasSuffix(f, ".png") {
			fmt.Fprintf(&b, "\n![%s](%s)\n", f, f)
		}
	}
	return b.String()
}

// plot draws, per system, lookup latency percentiles by offered rate, and
// one chart of every system's p99.
func (r *Report) plot(dir string) ([]string, error) {
	bySystem := map[string][]Result{}
	var systems []string
	for _, x := range r.Results {
		if x.Scenario != "lookup" || x.NotRun != "" || x.TargetRate <= 0 {
			continue
		}
		if _, ok := bySystem[x.System]; !ok {
			systems = append(systems, x.System)
		}
		bySystem[x.System] = append(bySystem[x.System], x)
	}
	var files []string
	all := plot.New()
	all.Title.Text = "fraud_detection lookup p99 by offered rate"
	all.X.Label.Text = "offered rate (requests/s, log)"
	all.Y.Label.Text = "p99 latency (us, log)"
	all.Y.Scale = plot.LogScale{}
	all.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	all.X.Scale = plot.LogScale{}
	all.X.Tick.Marker = plot.LogTicks{Prec: -1}
	for si, sys := range systems {
		rows := bySystem[sys]
		sort.Slice(rows, func(i, j int) bool { return rows[i].TargetRate < rows[j].TargetRate })
		p := plot.New()
		p.Title.Text = sys + ": lookup latency by offered rate"
		p.X.Label.Text = "offered rate (requests/s, log)"
		p.Y.Label.Text = "latency (us, log)"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		for i, q := range []struct {
			name string
			get  func(Latency) float64
		}{{"p50", func(l Latency) float64 { return l.P50 }}, {"p90", func(l Latency) float64 { return l.P90 }},
			{"p99", func(l Latency) float64 { return l.P99 }}, {"p99.9", func(l Latency) float64 { return l.P999 }}} {
			pts := make(plotter.XYs, len(rows))
			for j, x := range rows {
				pts[j] = plotter.XY{X: x.TargetRate, Y: max(1, q.get(x.Latency))}
			}
			line, dots, err := plotter.NewLinePoints(pts)
			if err != nil {
				return files, err
			}
			line.Color, dots.Color = plotutil.Color(i), plotutil.Color(i)
			p.Add(line, dots)
			p.Legend.Add(q.name, line)
			if q.name == "p99" {
				l2, d2, _ := plotter.NewLinePoints(pts)
				l2.Color, d2.Color = plotutil.Color(si), plotutil.Color(si)
				all.Add(l2, d2)
				all.Legend.Add(sys, l2)
			}
		}
		p.Add(oneMs(rows))
		p.Legend.Top, p.Legend.Left = true, true
		name := "latency-" + sys + ".png"
		if err := p.Save(8*vg.Inch, 5*vg.Inch, filepath.Join(dir, name)); err != nil {
			return files, err
		}
		files = append(files, name)
	}
	if len(systems) > 0 {
		var rows []Result
		for _, s := range systems {
			rows = append(rows, bySystem[s]...)
		}
		all.Add(oneMs(rows))
		all.Legend.Top, all.Legend.Left = true, true
		if err := all.Save(8*vg.Inch, 5*vg.Inch, filepath.Join(dir, "p99-all.png")); err != nil {
			return files, err
		}
		files = append(files, "p99-all.png")
	}
	return files, nil
}

// oneMs is a dashed line at 1 ms across the rates of rows.
func oneMs(rows []Result) *plotter.Line {
	lo, hi := rows[0].TargetRate, rows[0].TargetRate
	for _, x := range rows {
		lo, hi = min(lo, x.TargetRate), max(hi, x.TargetRate)
	}
	l, _ := plotter.NewLine(plotter.XYs{{X: lo, Y: 1000}, {X: hi, Y: 1000}})
	l.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
	l.Color = color.Gray{Y: 100}
	return l
}
