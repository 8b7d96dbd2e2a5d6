package load

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Func performs request number i on behalf of worker w (0 <= w < Workers)
// and reports whether it failed. It must be safe to call from Workers
// goroutines at once, each with its own w.
type Func func(w int, i int64) error

// Histogram bounds: 1 us to 60 s, 3 significant digits. Values are recorded
// in nanoseconds.
const (
	minLatency = int64(time.Microsecond)
	maxLatency = int64(60 * time.Second)
)

// NewHistogram returns an empty latency histogram in nanoseconds.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(minLatency, maxLatency, 3)
}

// workerHists holds the workers' histograms between runs. A histogram is
// about 200 KB: a run of 64 workers allocated 25 MB of them, and the
// garbage collections that garbage caused ran during the next runs, in the
// process that (in bench) also serves the lookups being measured.
var workerHists = sync.Pool{New: func() any { return NewHistogram() }}

// workerHist returns an empty histogram of the pool; putHist returns one.
func workerHist() *hdrhistogram.Histogram {
	h := workerHists.Get().(*hdrhistogram.Histogram)
	h.Reset()
	return h
}

func putHist(h *hdrhistogram.Histogram) { workerHists.Put(h) }

func record(h *hdrhistogram.Histogram, ns int64) {
	_ = h.RecordValue(min(max(ns, minLatency), maxLatency))
}

// Result is what one run measured.
type Result struct {
	Requests int64         // requests completed (including failed ones)
	Errors   int64         // failed requests, and due requests never sent before the hard stop
	Unsent   int64         // of Errors: due but never sent
	Elapsed  time.Duration // from the first due time to the last completion
	Latency  *hdrhistogram.Histogram
	// SendLag (open loop only) is how late each request was sent after
	// its due time (1 us when on time or early): the generator's own
	// timing error plus any wait for a free worker.
	SendLag  *hdrhistogram.Histogram
	FirstErr error // the first failure, for the report
}

// Throughput is completed requests per second.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Open is an open-loop run.
type Open struct {
	Rate     float64       // requests per second, > 0
	Duration time.Duration // requests are due during this long
	Workers  int           // requests in flight at most (default 64)
	// Grace is how long after Duration the run waits for late requests
	// before it stops; default 5 s.
	Grace time.Duration
	// Warmup requests are sent on the same schedule before the measured
	// ones and not recorded; default none.
	Warmup time.Duration
}

// RunOpen sends requests at o.Rate for o.Duration (after o.Warmup).
func RunOpen(ctx context.Context, o Open, f Func) Result {
	if o.Workers <= 0 {
		o.Workers = 64
	}
	if o.Grace <= 0 {
		o.Grace = 5 * time.Second
	}
	interval := float64(time.Second) / o.Rate
	warm := int64(float64(o.Warmup) / interval)
	total := warm + int64(float64(o.Duration)/interval)
	hardStop := o.Warmup + o.Duration + o.Grace
	ctx, cancel := context.WithTimeout(ctx, hardStop)
	defer cancel()

	var next atomic.Int64
	var mu sync.Mutex
	res := Result{Latency: NewHistogram(), SendLag: NewHistogram()}
	start := time.Now()
	var lastDone atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			h, lag := workerHist(), workerHist()
			defer putHist(h)
			defer putHist(lag)
			var n, errs, unsent int64
			var firstErr error
			for {
				i := next.Add(1) - 1
				if i >= total {
					break
				}
				due := time.Duration(float64(i) * interval)
				if ctx.Err() != nil {
					// The hard stop: i was due and never sent.
					if i >= warm {
						unsent++
						errs++
						record(h, int64(time.Since(start)-due))
					}
					continue
				}
				sent := waitUntil(start, due)
				err := f(w, i)
				done := time.Since(start)
				if i < warm {
					continue
				}
				record(lag, int64(sent-due))
				n++
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
				}
				record(h, int64(done-min(due, sent)))
				if d := int64(done); d > lastDone.Load() {
					lastDone.Store(d)
				}
			}
			mu.Lock()
			res.Latency.Merge(h)
			res.SendLag.Merge(lag)
			res.Requests += n
			res.Errors += errs
			res.Unsent += unsent
			if res.FirstErr == nil {
				res.FirstErr = firstErr
			}
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	res.Elapsed = time.Duration(lastDone.Load()) - o.Warmup
	if res.Elapsed < o.Duration/2 {
		res.Elapsed = o.Duration
	}
	return res
}

// waitUntil sleeps until about start+due and returns the time since start.
// The runtime rounds sleeps under a millisecond up to one when the process
// is idle, so a wait shorter than early is not slept at all: the request
// goes out up to early ahead of its due time and its latency is measured
// from when it was sent.
func waitUntil(start time.Time, due time.Duration) time.Duration {
	now := time.Since(start)
	if left := due - now; left > early {
		time.Sleep(left - early)
		now = time.Since(start)
	}
	return now
}

// early is how far ahead of its due time a request may be sent.
const early = time.Millisecond

// Closed is a closed-loop run: Workers each send their next request as soon
// as the last one returns. It measures the most the target serves with that
// many requests in flight; its latencies are service times, not what users
// at a given rate would see.
type Closed struct {
	Workers  int           // default 64
	Duration time.Duration //
	Max      int64         // stop after this many requests (0: no limit but Duration)
}

// RunClosed runs c.
func RunClosed(ctx context.Context, c Closed, f Func) Result {
	if c.Workers <= 0 {
		c.Workers = 64
	}
	ctx, cancel := context.WithTimeout(ctx, c.Duration)
	defer cancel()
	var next atomic.Int64
	var mu sync.Mutex
	res := Result{Latency: NewHistogram()}
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < c.Workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			h := workerHist()
			defer putHist(h)
			var n, errs int64
			var firstErr error
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if c.Max > 0 && i >= c.Max {
					break
				}
				t := time.Now()
				err := f(w, i)
				record(h, int64(time.Since(t)))
				n++
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
				}
			}
			mu.Lock()
			res.Latency.Merge(h)
			res.Requests += n
			res.Errors += errs
			if res.FirstErr == nil {
				res.FirstErr = firstErr
			}
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}
