package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/trace"
	"strings"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tally-ml/tally/bench/load"
	"github.com/tally-ml/tally/bench/workload"
)

const (
	pathGetFeatures = "/api/v1/feature-service/get-features"
	pathIngest      = "/api/v1/ingest"
	pathBulk        = "/api/v1/ingest/bulk?source=transactions"
)

func latencyOf(h *hdrhistogram.Histogram) Latency {
	us := func(v int64) float64 { return float64(v) / 1000 }
	return Latency{
		P50: us(h.ValueAtQuantile(50)), P90: us(h.ValueAtQuantile(90)), P99: us(h.ValueAtQuantile(99)),
		P999: us(h.ValueAtQuantile(99.9)), Max: us(h.Max()), Mean: h.Mean() / 1000,
	}
}

func resultOf(system, scenario, mode string, rate float64, workers int, r load.Result) Result {
	res := Result{System: system, Scenario: scenario, Mode: mode, TargetRate: rate, Throughput: r.Throughput(),
		Requests: r.Requests, Errors: r.Errors, Workers: workers, DurationS: r.Elapsed.Seconds(), Latency: latencyOf(r.Latency)}
	if r.SendLag != nil && r.SendLag.TotalCount() > 0 {
		res.SendLagP99 = float64(r.SendLag.ValueAtQuantile(99)) / 1000
	}
	if r.FirstErr != nil {
		res.FirstError = truncate(r.FirstErr.Error(), 300)
	}
	return res
}

// sweepFractions are the sweep's rates as fractions of the closed-loop max.
func (r *runner) sweepFractions() []float64 {
	if r.opts.Quick {
		return []float64{0.25, 0.5, 0.75, 1.0}
	}
	return []float64{0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 1.0, 1.15}
}

// lookupSuite measures one system's lookups: at the fixed rate, closed loop
// (maximum throughput) and the sweep. fixedRate 0 uses Options.Rate.
func (r *runner) lookupSuite(ctx context.Context, system string, fixedRate float64, fn load.Func) error {
	o := r.opts
	if fixedRate <= 0 {
		fixedRate = o.Rate
	}
	warm := o.Duration / 5
	fixed := load.RunOpen(ctx, load.Open{Rate: fixedRate, Duration: o.Duration, Workers: o.Workers, Warmup: warm}, fn)
	r.add(resultOf(system, "lookup", "open", fixedRate, o.Workers, fixed))
	if err := ctx.Err(); err != nil {
		return err
	}
	closed := load.RunClosed(ctx, load.Closed{Workers: o.Workers, Duration: o.Duration}, fn)
	r.add(resultOf(system, "lookup", "closed", 0, o.Workers, closed))
	maxRate := closed.Throughput()
	sw := Sweep{System: system, MaxClosed: maxRate}
	if system == "noop" {
		r.noopMax = maxRate
	}
	if r.noopMax > 0 {
		// Every system at one rate, half the no-op server's maximum: how
		// much tally's work adds to the tail where the server has room.
		rate := r.noopMax / 2
		stop, err := r.startTrace(system + "-half-noop")
		if err != nil {
			return err
		}
		res := load.RunOpen(ctx, load.Open{Rate: rate, Duration: o.Duration, Workers: o.Workers, Warmup: warm}, fn)
		if err := stop(); err != nil {
			return err
		}
		row := resultOf(system, "lookup", "open-half-noop", rate, o.Workers, res)
		r.add(row)
		sw.HalfNoopRate, sw.HalfNoopP99 = rate, row.Latency.P99
		sw.HalfNoopOverloaded = row.Errors > 0 || row.Throughput < 0.95*rate
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if maxRate <= 0 {
		r.rep.Sweeps = append(r.rep.Sweeps, sw)
		return nil
	}
	var prevRate, prevP99 float64
	for i, f := range r.sweepFractions() {
		if err := ctx.Err(); err != nil {
			return err
		}
		rate := max(10, f*maxRate)
		res := load.RunOpen(ctx, load.Open{Rate: rate, Duration: o.Duration, Workers: o.Workers, Warmup: warm}, fn)
		row := resultOf(system, "lookup", "sweep", rate, o.Workers, res)
		r.add(row)
		p99 := row.Latency.P99
		if !sw.Crossed {
			switch {
			case p99 > 1000 && i == 0:
				sw.Crossed, sw.CrossRate = true, 0
			case p99 > 1000:
				sw.Crossed = true
				sw.CrossRate = prevRate + (rate-prevRate)*(1000-prevP99)/(p99-prevP99)
			default:
				sw.CrossRate = rate
			}
		}
		prevRate, prevP99 = rate, p99
	}
	r.rep.Sweeps = append(r.rep.Sweeps, sw)
	if sw.Crossed {
		r.logf("%-8s p99 crosses 1 ms at about %.0f lookups/s (closed-loop max %.0f/s)", system, sw.CrossRate, maxRate)
	} else {
		r.logf("%-8s p99 stayed under 1 ms up to %.0f lookups/s (closed-loop max %.0f/s)", system, sw.CrossRate, maxRate)
	}
	return nil
}

// startTrace starts an execution trace into Options.TraceDir/name.trace,
// if the run keeps traces, and returns what stops it.
func (r *runner) startTrace(name string) (stop func() error, err error) {
	if r.opts.TraceDir == "" {
		return func() error { return nil }, nil
	}
	if err := os.MkdirAll(r.opts.TraceDir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(r.opts.TraceDir, name+".trace")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("trace %s: %w", path, err)
	}
	return func() error {
		trace.Stop()
		if err := f.Close(); err != nil {
			return fmt.Errorf("trace %s: %w", path, err)
		}
		r.logf("%-8s execution trace of the step at half the no-op's maximum: %s (go run ./bench/schedtrace %s)", strings.TrimSuffix(name, "-half-noop"), path, path)
		return nil
	}, nil
}

// tallyLookup returns the load.Func of fraud_detection lookups against c.
func (r *runner) tallyLookup(c *client) load.Func {
	bodies := make([][]byte, len(r.fix.lookups))
	for i := range r.fix.lookups {
		bodies[i] = r.fix.lookups[i].tallyBody(nil, 0)
	}
	return func(w int, i int64) error {
		_, err := c.post(w, pathGetFeatures, "application/json", bodies[i%int64(len(bodies))])
		return err
	}
}

func (r *runner) runTally(ctx context.Context) error {
	if !r.opts.want("lookup") && !r.opts.want("ingest") {
		return nil
	}
	ts, err := startTally(r.opts)
	if err != nil {
		return err
	}
	defer ts.stop()
	t := time.Now()
	if err := ts.load(r.fix); err != nil {
		return err
	}
	r.logf("tally    preloaded %d transactions in %s (%s)", len(r.fix.preload), time.Since(t).Round(time.Millisecond), ts.addr)
	c := newClient(ts.addr, r.opts.Workers)
	defer c.close()
	// The size of a real response, for the no-op baseline.
	body, err := c.post(0, pathGetFeatures, "application/json", r.fix.lookups[0].tallyBody(nil, 0))
	if err != nil {
		return fmt.Errorf("first lookup: %w", err)
	}
	r.respSize = len(body)
	if r.opts.want("lookup") {
		noop, err := startNoop(r.respSize)
		if err != nil {
			return fmt.Errorf("noop: %w", err)
		}
		defer noop.stop()
		nc := newClient(noop.addr, r.opts.Workers)
		defer nc.close()
		if err := r.lookupSuite(ctx, "noop", 0, r.tallyLookup(nc)); err != nil {
			return fmt.Errorf("noop: %w", err)
		}
		if err := r.lookupSuite(ctx, "tally", 0, r.tallyLookup(c)); err != nil {
			return err
		}
		if err := r.runTallyFeastAPI(ctx, c); err != nil {
			return err
		}
		if err := r.paired(ctx, "tally", r.tallyLookup(nc), r.tallyLookup(c)); err != nil {
			return err
		}
		for _, d := range r.opts.Calibrate {
			if err := r.calibrate(ctx, nc, d); err != nil {
				return err
			}
		}
	}
	if r.opts.want("ingest") {
		r.tallyIngest(ctx, c)
	}
	return nil
}

// ingestBodies pre-builds n request bodies of per events each, stamped
// from ts upward one millisecond apart per event batch.
func ingestBodies(g *workload.Generator, n, per int, ts int64, build func([]byte, []workload.Txn) []byte) [][]byte {
	out := make([][]byte, n)
	txns := make([]workload.Txn, per)
	for i := range out {
		for j := range txns {
			txns[j] = g.Next(ts + int64(i))
		}
		out[i] = build(nil, txns)
	}
	return out
}

func (r *runner) tallyIngest(ctx context.Context, c *client) {
	cfg := r.fix.cfg
	cfg.Seed += 17
	g := workload.New(cfg)
	now := time.Now().UnixMilli() - 60_000
	const workers = 4
	var events atomic.Int64 // events sent by both scenarios, for their event times
	for _, s := range []struct {
		name, path, ctype string
		per               int
		build             func([]byte, []workload.Txn) []byte
	}{
		{"ingest-json", pathIngest, "application/json", 100, ingestJSON},
		{"ingest-bulk", pathBulk, "application/x-ndjson", 1000, ndjson},
	} {
		if ctx.Err() != nil {
			return
		}
		bodies := ingestBodies(g, 100, s.per, now, s.build)
		// Bodies are reused, but every request carries fresh, increasing
		// event times (as a live stream does): each worker restamps its own
		// copy in place before sending it.
		offs := make([][]int, len(bodies))
		for i, b := range bodies {
			offs[i] = timestampOffsets(b)
		}
		copies := make([][][]byte, workers)
		for w := range copies {
			for _, b := range bodies {
				copies[w] = append(copies[w], append([]byte(nil), b...))
			}
		}
		res := load.RunClosed(ctx, load.Closed{Workers: workers, Duration: r.opts.Duration}, func(w int, i int64) error {
			k := i % int64(len(bodies))
			body := copies[w][k]
			seq := events.Add(int64(len(offs[k]))) - int64(len(offs[k]))
			wall := time.Now().UnixMilli()
			for j, off := range offs[k] {
				restamp(body[off:off+13], streamTime(now, seq+int64(j), wall))
			}
			_, err := c.post(w, s.path, s.ctype, body)
			return err
		})
		row := resultOf("tally", s.name, "closed", 0, workers, res)
		row.EventsPerS = float64((res.Requests-res.Errors)*int64(s.per)) / res.Elapsed.Seconds()
		row.Description = fmt.Sprintf("%d events per request, %d requests in flight", s.per, workers)
		r.add(row)
	}
}

// pairedRounds is how many rounds a Paired comparison runs.
const pairedRounds = 3

// paired measures system beside the no-op server in alternating rounds
// (see Paired): noop and fn are the same lookups against each.
func (r *runner) paired(ctx context.Context, system string, noop, fn load.Func) error {
	if r.noopMax <= 0 {
		return nil
	}
	o := r.opts
	pr := Paired{System: system, Rate: r.noopMax / 2}
	warm := o.Duration / 5
	closed := func(fn load.Func) float64 {
		res := load.RunClosed(ctx, load.Closed{Workers: o.Workers, Duration: o.Duration}, fn)
		return res.Throughput()
	}
	open := func(fn load.Func) float64 {
		res := load.RunOpen(ctx, load.Open{Rate: pr.Rate, Duration: o.Duration, Workers: o.Workers, Warmup: warm}, fn)
		return latencyOf(res.Latency).P99
	}
	var maxes, p99s []float64
	for range pairedRounds {
		var rd PairedRound
		rd.NoopMax = closed(noop)
		rd.Max = closed(fn)
		rd.NoopP99 = open(noop)
		rd.P99 = open(fn)
		if err := ctx.Err(); err != nil {
			return err
		}
		pr.Rounds = append(pr.Rounds, rd)
		if rd.NoopMax > 0 && rd.NoopP99 > 0 {
			maxes, p99s = append(maxes, rd.Max/rd.NoopMax), append(p99s, rd.P99/rd.NoopP99)
		}
		r.logf("%-8s beside the no-op server: closed-loop max %.0f/s vs %.0f/s, open-loop p99 at %.0f/s %s vs %s",
			system, rd.Max, rd.NoopMax, pr.Rate, strings.TrimSpace(fmtUs(rd.P99)), strings.TrimSpace(fmtUs(rd.NoopP99)))
	}
	pr.MaxRatio, pr.P99Ratio = median(maxes), median(p99s)
	r.rep.Paired = append(r.rep.Paired, pr)
	return nil
}

// calibrate pairs the no-op server (reached by nc) with a copy of it whose
// handler spins for work before each answer (Options.Calibrate).
func (r *runner) calibrate(ctx context.Context, nc *client, work time.Duration) error {
	ws, err := StartNoopWork("127.0.0.1:0", r.respSize, work)
	if err != nil {
		return fmt.Errorf("noop+%s: %w", work, err)
	}
	defer ws.stop()
	wc := newClient(ws.addr, r.opts.Workers)
	defer wc.close()
	return r.paired(ctx, "noop+"+work.String(), r.tallyLookup(nc), r.tallyLookup(wc))
}

// timestampOffsets returns where each 13-digit epoch-millisecond event time
// of a body starts.
func timestampOffsets(body []byte) []int {
	var offs []int
	key := []byte(`"timestamp":`)
	for i := 0; ; {
		j := bytes.Index(body[i:], key)
		if j < 0 {
			return offs
		}
		offs = append(offs, i+j+len(key))
		i += j + len(key)
	}
}

// streamTime is the event time of event seq of a stream started at start
// (ms), at wall time wall: 16 events per millisecond, in order, until the
// stream catches up with the clock, then now, as a live stream's events
// are stamped. (At 400k events/s the first rule alone ran the events' time
// 25x ahead of the clock, and the node refused them as too far in the
// future.)
func streamTime(start, seq, wall int64) int64 { return min(start+seq/16, wall) }

// restamp writes ts as exactly len(dst) decimal digits.
func restamp(dst []byte, ts int64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = byte('0' + ts%10)
		ts /= 10
	}
}
