package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Peer names accepted in Options.Peers.
const (
	PeerRedis       = "redis"
	PeerFeast       = "feast"
	PeerOnnxRuntime = "onnxruntime"
)

// Options configure a run. The zero value (plus OutDir) is a full run.
type Options struct {
	// Quick runs every scenario briefly (under 2 minutes in all, for CI);
	// otherwise a full run takes under 15 minutes on 2 cores.
	Quick bool
	// OutDir receives report.json, report.md and the plots; default
	// ./results/<UTC timestamp>. "-" writes no files.
	OutDir string
	// Peers to measure beside tally: redis, feast, onnxruntime. Nil means
	// all three.
	Peers []string
	// Duration of each measured step; default 1.5 s quick, 8 s full.
	Duration time.Duration
	// Rate of the fixed-rate lookup step, requests/s; default 20000 (the
	// design's target).
	Rate float64
	// Seed of the workload; default 1.
	Seed uint64
	// Users in the workload; default 10000.
	Users int
	// Preload is how many transactions (spread over the last day) each
	// system holds before lookups are measured; default 100k quick, 300k
	// full.
	Preload int
	// Workers is the number of connections and requests in flight at most;
	// default 64.
	Workers int
	// NoPlots skips the PNG plots.
	NoPlots bool
	// UniformLookups draws lookup keys uniformly over the users; by default
	// they are drawn with the events' skew, as a fraud system's are (it
	// scores the card holders that are transacting, the hot ones most).
	UniformLookups bool
	// Calibrate lists server times per request to compare with the no-op
	// server's: for each, after tally's paired rounds, the no-op server is
	// paired the same way with a copy of itself that spins that long
	// before each answer ("noop+1.5µs"). The ratios those rounds measure
	// are what a lookup costing that much more than the no-op's handler
	// would score against the goals (README: what bounds the lookup
	// ratios).
	Calibrate []time.Duration
	// TraceDir, if set, receives an execution trace (runtime/trace) of
	// each lookup system's open-loop step at half the no-op server's
	// maximum, <system>-half-noop.trace, for bench/schedtrace: what
	// delayed the goroutines of client and server (they share the
	// process). Tracing costs each request a few hundred nanoseconds, so
	// those steps' figures are not comparable with untraced ones.
	TraceDir string
	// RepoRoot is where scripts/ and .venv-bench are looked for (peers);
	// default: the current directory or its nearest parent with a go.mod.
	RepoRoot string
	// Tally starts the tally node under test and returns its host:port
	// and a function that stops it and removes its state; Run reaches it
	// only over HTTP, and calls Tally for each scenario group that needs a
	// fresh node (twice in a full run). Required: the tally command passes
	// bench/inprocess.Start.
	Tally func() (addr string, stop func(), err error)
	// TallySetup says in the report what Tally starts (e.g.
	// inprocess.Setup).
	TallySetup string
	// Scenarios limits the run to these scenario names (lookup, ingest,
	// mixed, score, kafka; "cluster" alone runs only the cluster scenarios,
	// "kafka" alone only Kafka's, which needs Binary); nil runs all.
	Scenarios []string
	// Cluster adds the cluster scenarios (cluster.go): a single node and
	// 3-node clusters as child processes of Binary.
	Cluster bool
	// Binary is the tally binary the cluster scenarios start (the tally
	// command passes os.Executable()).
	Binary string
}

func (o *Options) defaults() error {
	if o.Tally == nil {
		return errors.New("bench: Options.Tally is nil: give the function that starts the tally node to measure (bench/inprocess.Start)")
	}
	if o.Duration <= 0 {
		o.Duration = 8 * time.Second
		if o.Quick {
			o.Duration = 1500 * time.Millisecond
		}
	}
	if o.Rate <= 0 {
		o.Rate = 20000
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Users <= 0 {
		o.Users = 10000
	}
	if o.Preload <= 0 {
		o.Preload = 300_000
		if o.Quick {
			o.Preload = 100_000
		}
	}
	if o.Workers <= 0 {
		o.Workers = 64
	}
	if o.Peers == nil {
		o.Peers = []string{PeerRedis, PeerFeast, PeerOnnxRuntime}
	}
	for _, p := range o.Peers {
		if p != PeerRedis && p != PeerFeast && p != PeerOnnxRuntime {
			return fmt.Errorf("unknown peer %q: use redis, feast or onnxruntime", p)
		}
	}
	for _, d := range o.Calibrate {
		if d <= 0 || d > time.Second {
			return fmt.Errorf("calibrate %s: give server times per request between 0 and 1s", d)
		}
	}
	for _, s := range o.Scenarios {
		if s != "lookup" && s != "ingest" && s != "mixed" && s != "score" && s != "cluster" && s != "kafka" {
			return fmt.Errorf("unknown scenario %q: use lookup, ingest, mixed, score, cluster or kafka", s)
		}
	}
	if slices.Contains(o.Scenarios, "cluster") {
		o.Cluster = true
	}
	if o.OutDir == "" {
		o.OutDir = filepath.Join("results", time.Now().UTC().Format("20060102T150405Z"))
	}
	if o.RepoRoot == "" {
		o.RepoRoot = findRepoRoot()
	}
	return nil
}

func (o *Options) want(scenario string) bool {
	return len(o.Scenarios) == 0 || slices.Contains(o.Scenarios, scenario)
}

func (o *Options) wantPeer(p string) bool { return slices.Contains(o.Peers, p) }

func findRepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// Latency is a latency distribution in microseconds.
type Latency struct {
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p999_us"`
	Max  float64 `json:"max_us"`
	Mean float64 `json:"mean_us"`
}

// Result is one measured step: one system, one scenario, one load shape.
type Result struct {
	System   string `json:"system"`   // tally, noop, redis, feast, onnxruntime
	Scenario string `json:"scenario"` // lookup, ingest-json, ingest-bulk, mixed-lookup, mixed-ingest
	// Mode is "open" (fixed rate, latency from each request's due time),
	// "closed" (Workers back to back: maximum throughput, service times)
	// or "sweep" (open loop, one point of the rate sweep).
	Mode        string  `json:"mode"`
	TargetRate  float64 `json:"target_rate,omitempty"` // requests/s asked for (open, sweep)
	Throughput  float64 `json:"throughput"`            // requests/s completed
	EventsPerS  float64 `json:"events_per_s,omitempty"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	Workers     int     `json:"workers"`
	DurationS   float64 `json:"duration_s"`
	Latency     Latency `json:"latency"`
	SendLagP99  float64 `json:"send_lag_p99_us,omitempty"` // how late the client sent (open loop)
	NotRun      string  `json:"not_run,omitempty"`
	Description string  `json:"description,omitempty"`
}

// Sweep is where one system's lookup p99 crosses 1 ms.
type Sweep struct {
	System string `json:"system"`
	// CrossRate is the rate (requests/s, interpolated between the two
	// sweep points around it) at which p99 crosses 1 ms; 0 when even the
	// lowest rate is above; Crossed is false when no tested rate reached it
	// (then CrossRate is the highest rate tested, a lower bound).
	CrossRate float64 `json:"p99_1ms_rate"`
	Crossed   bool    `json:"crossed"`
	MaxClosed float64 `json:"max_closed_loop"`
	// HalfNoopRate is half the no-op server's closed-loop maximum, the
	// rate of the open-loop step every lookup system also runs at (the
	// no-op server is measured first), and HalfNoopP99 that step's p99,
	// µs; 0 when it did not run.
	HalfNoopRate float64 `json:"half_noop_rate,omitempty"`
	HalfNoopP99  float64 `json:"half_noop_p99_us,omitempty"`
	// HalfNoopOverloaded: that step served under 95% of its rate or had
	// errors, so its p99 is the length of its queue, not a latency to
	// compare.
	HalfNoopOverloaded bool `json:"half_noop_overloaded,omitempty"`
}

// Paired is the side-by-side comparison with the no-op server that the
// lookup targets are ratios of. Each round measures the no-op server and
// the system back to back, closed loop, then open loop at one rate (half
// the no-op server's maximum in its suite), so that both see the same
// moment of a shared machine; the ratios quoted are the medians of the
// rounds'. (Single suites minutes apart put the no-op server's maximum
// anywhere from 66k to 85k lookups/s on one machine in one session.)
type Paired struct {
	System string        `json:"system"`
	Rate   float64       `json:"open_rate"`
	Rounds []PairedRound `json:"rounds"`
	// MaxRatio is the median of the rounds' closed-loop maxima ratios
	// (system / no-op), P99Ratio of their open-loop p99 ratios.
	MaxRatio float64 `json:"max_ratio_median"`
	P99Ratio float64 `json:"p99_ratio_median"`
}

// PairedRound is one round of a Paired comparison: closed-loop maxima
// (lookups/s) and open-loop p99s (µs).
type PairedRound struct {
	NoopMax float64 `json:"noop_max"`
	Max     float64 `json:"max"`
	NoopP99 float64 `json:"noop_p99_us"`
	P99     float64 `json:"p99_us"`
}

// Freshness is how soon an acknowledged ingest shows in a lookup.
type Freshness struct {
	Probes       int     `json:"probes"`
	FirstLookup  int     `json:"visible_on_first_lookup"`
	NeverVisible int     `json:"never_visible"`
	Latency      Latency `json:"ack_to_visible"`
}

// Correctness is the check of loaded lookups against the reference.
type Correctness struct {
	System     string   `json:"system"`
	Scenario   string   `json:"scenario"`
	Lookups    int      `json:"lookups_checked"`
	Features   int      `json:"features_checked"`
	Mismatches int      `json:"mismatches"`
	Examples   []string `json:"examples,omitempty"`
	// Inconclusive says why a check could not be exact (an ingest whose
	// outcome is unknown); empty when it was.
	Inconclusive string `json:"inconclusive,omitempty"`
}

// PeerStatus says whether a peer ran and, if not, why.
type PeerStatus struct {
	Name    string `json:"name"`
	Ran     bool   `json:"ran"`
	Reason  string `json:"reason,omitempty"`
	Version string `json:"version,omitempty"`
	Setup   string `json:"setup,omitempty"` // the script that installs it
	Differs string `json:"differs,omitempty"`
}

// Report is everything a run measured.
type Report struct {
	Started    time.Time `json:"started"`
	ElapsedS   float64   `json:"elapsed_s"`
	Quick      bool      `json:"quick"`
	GoVersion  string    `json:"go_version"`
	NumCPU     int       `json:"num_cpu"`
	GOMAXPROCS int       `json:"gomaxprocs"`
	Seed       uint64    `json:"seed"`
	Users      int       `json:"users"`
	Preload    int       `json:"preload_events"`
	Workers    int       `json:"workers"`
	StepS      float64   `json:"step_duration_s"`
	TallySetup string    `json:"tally_setup"`
	// UniformLookups: lookup keys were drawn uniformly, not with the skew.
	UniformLookups bool          `json:"uniform_lookups"`
	Results        []Result      `json:"results"`
	Sweeps         []Sweep       `json:"sweeps"`
	Paired         []Paired      `json:"paired,omitempty"`
	Freshness      *Freshness    `json:"freshness,omitempty"`
	Correctness    []Correctness `json:"correctness"`
	Peers          []PeerStatus  `json:"peers"`
	// Scoring is the scoring scenario: each model beside onnxruntime.
	Scoring []ScoreComparison `json:"scoring,omitempty"`
	Notes   []string          `json:"notes,omitempty"`
	OutDir  string            `json:"out_dir,omitempty"`
	Files   []string          `json:"files,omitempty"`

	// Cluster is what the cluster scenarios measured (Options.Cluster).
	Cluster *ClusterReport `json:"cluster,omitempty"`
	// Kafka is the kafka scenario (kafka.go).
	Kafka *KafkaReport `json:"kafka,omitempty"`
}

// Mismatches is the total of reference mismatches over every check.
func (r *Report) Mismatches() int {
	n := 0
	for _, c := range r.Correctness {
		n += c.Mismatches
	}
	return n
}

// ErrMismatch is returned by Run (with the complete report) when a checked
// lookup disagreed with the reference.
var ErrMismatch = errors.New("bench: lookups disagreed with the reference")

// Run measures tally and the requested peers and writes the report. It
// prints progress and the final table to progress (io.Discard for none). It
// returns the report even with an error when one was measured; the error is
// ErrMismatch (wrapped) when a checked lookup was wrong, or what stopped the
// run. Cancelling ctx stops the run early.
func Run(ctx context.Context, opts Options, progress io.Writer) (*Report, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if progress == nil {
		progress = io.Discard
	}
	r := &runner{opts: opts, out: progress, rep: &Report{
		Started: time.Now().UTC(), Quick: opts.Quick, GoVersion: runtime.Version(), NumCPU: runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), Seed: opts.Seed, Users: opts.Users, Preload: opts.Preload,
		Workers: opts.Workers, StepS: opts.Duration.Seconds(),
		TallySetup: opts.TallySetup, UniformLookups: opts.UniformLookups,
	}}
	err := r.run(ctx)
	r.rep.ElapsedS = time.Since(r.rep.Started).Seconds()
	if opts.OutDir != "-" {
		if werr := r.rep.write(opts.OutDir, !opts.NoPlots); werr != nil && err == nil {
			err = werr
		}
	}
	r.rep.printTable(progress)
	if err == nil && r.rep.Mismatches() > 0 {
		err = fmt.Errorf("%w: %d mismatches", ErrMismatch, r.rep.Mismatches())
	}
	return r.rep, err
}

// runner carries one run's state.
type runner struct {
	opts Options
	out  io.Writer
	rep  *Report
	fix  *fixture
	// noopMax is the no-op server's closed-loop maximum lookups/s, once
	// measured (runNoop, before every other lookup system).
	noopMax float64
	// respSize is the size of a tally lookup response: the no-op
	// baseline answers with as many bytes.
	respSize int
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.out, "[%6.1fs] ", time.Since(r.rep.Started).Seconds())
	fmt.Fprintf(r.out, format, args...)
	fmt.Fprintln(r.out)
}

func (r *runner) add(res Result) {
	r.rep.Results = append(r.rep.Results, res)
	switch {
	case strings.HasPrefix(res.Scenario, "score-"):
		// runOnnx logs its own lines (ns per row).
	case res.NotRun != "":
		r.logf("%-8s %-12s %-6s not run: %s", res.System, res.Scenario, res.Mode, res.NotRun)
	case res.EventsPerS > 0:
		r.logf("%-8s %-12s %-6s %10.0f events/s  p50 %s  p99 %s  errors %d", res.System, res.Scenario, res.Mode,
			res.EventsPerS, fmtUs(res.Latency.P50), fmtUs(res.Latency.P99), res.Errors)
	default:
		r.logf("%-8s %-12s %-6s target %7.0f/s  got %8.0f/s  p50 %s  p99 %s  p99.9 %s  errors %d", res.System, res.Scenario, res.Mode,
			res.TargetRate, res.Throughput, fmtUs(res.Latency.P50), fmtUs(res.Latency.P99), fmtUs(res.Latency.P999), res.Errors)
	}
}

func (r *runner) run(ctx context.Context) error {
	r.logf("tally bench (quick=%v): %d CPUs, GOMAXPROCS %d, %s per step, peers %v, results in %s",
		r.opts.Quick, runtime.NumCPU(), runtime.GOMAXPROCS(0), r.opts.Duration, r.opts.Peers, r.opts.OutDir)
	r.fix = newFixture(r.opts)
	r.logf("workload: %d users, %d preloaded transactions over the last day, %d lookup keys (seed %d)",
		r.opts.Users, len(r.fix.preload), len(r.fix.lookups), r.opts.Seed)

	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"tally", r.runTally}, // measures the no-op server first (runNoop)
		{"mixed", r.runMixed},
		{"redis", r.runRedis},
		{"feast", r.runFeast},
		{"onnxruntime", r.runOnnx},
		{"cluster", r.runCluster},
		{"kafka", r.runKafka},
	}
	if slices.Equal(r.opts.Scenarios, []string{"cluster"}) {
		steps = steps[len(steps)-2 : len(steps)-1]
	}
	if slices.Equal(r.opts.Scenarios, []string{"kafka"}) {
		steps = steps[len(steps)-1:]
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

func fmtUs(us float64) string {
	switch {
	case us >= 10_000:
		return fmt.Sprintf("%6.1fms", us/1000)
	case us >= 1000:
		return fmt.Sprintf("%6.2fms", us/1000)
	}
	return fmt.Sprintf("%6.0fus", us)
}
