package batch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tally-ml/tally/score"
)

// echo is a fake Scorer: each row's Value is the sum of its values, and
// Probabilities is [sum, -sum]. It records batch sizes and concurrency, and
// can be held at a gate.
type echo struct {
	width int
	gate  chan struct{} // when set, each Score waits for a token
	delay time.Duration
	// badNaN: a batch with a NaN fails with ErrBadInput.
	badNaN bool
	err    error

	mu      sync.Mutex
	batches []int

	cur, max atomic.Int64
	entered  chan int // when set, receives each batch's size on entry
}

func (e *echo) NumInputs() int    { return e.width }
func (e *echo) Inputs() []string  { return nil }
func (e *echo) Classes() []string { return nil }

func (e *echo) Score(ctx context.Context, rows []float32, n int, out []score.Prediction) error {
	c := e.cur.Add(1)
	defer e.cur.Add(-1)
	for {
		m := e.max.Load()
		if c <= m || e.max.CompareAndSwap(m, c) {
			break
		}
	}
	e.mu.Lock()
	e.batches = append(e.batches, n)
	e.mu.Unlock()
	if e.entered != nil {
		e.entered <- n
	}
	if e.gate != nil {
		<-e.gate
	}
	if e.delay > 0 {
		time.Sleep(e.delay)
	}
	if e.err != nil {
		return e.err
	}
	for i := 0; i < n; i++ {
		var s float32
		for _, v := range rows[i*e.width : (i+1)*e.width] {
			if math.IsNaN(float64(v)) && e.badNaN {
				return fmt.Errorf("%w: NaN in row %d", score.ErrBadInput, i)
			}
			s += v
		}
		out[i].Value = float64(s)
		out[i].Probabilities = append(out[i].Probabilities[:0], s, -s)
	}
	return nil
}

func (e *echo) sizes() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]int(nil), e.batches...)
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func (b *Batcher) queuedRows() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.queued
}

// rowsFor makes n rows of width w whose sums identify caller g, call k.
func rowsFor(g, k, n, w int) ([]float32, []float64) {
	rows := make([]float32, n*w)
	sums := make([]float64, n)
	for i := 0; i < n; i++ {
		var s float32
		for j := 0; j < w; j++ {
			v := float32(g*1000+k*10+i) + float32(j)/4
			rows[i*w+j] = v
			s += v
		}
		sums[i] = float64(s)
	}
	return rows, sums
}

func TestCoalescesAndRoutesRows(t *testing.T) {
	for _, local := range []bool{false, true} {
		t.Run(fmt.Sprintf("local=%v", local), func(t *testing.T) {
			e := &echo{width: 3, delay: 200 * time.Microsecond}
			b := New(e, Options{MaxRows: 32, MaxWait: time.Millisecond, MaxInFlight: 1, Local: local})
			defer b.Close()
			const goroutines, perG = 32, 25
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			for g := 0; g < goroutines; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					out := make([]score.Prediction, 3)
					for k := 0; k < perG; k++ {
						n := 1 + (g+k)%3
						rows, sums := rowsFor(g, k, n, 3)
						if err := b.Score(context.Background(), rows, n, out); err != nil {
							errs <- err
							return
						}
						for i := 0; i < n; i++ {
							if out[i].Value != sums[i] || len(out[i].Probabilities) != 2 || out[i].Probabilities[0] != float32(sums[i]) {
								errs <- fmt.Errorf("goroutine %d call %d row %d: got %v %v, want %v", g, k, i, out[i].Value, out[i].Probabilities, sums[i])
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			st := b.Stats()
			sizes := e.sizes()
			total := 0
			for _, s := range sizes {
				if s > 32 {
					t.Errorf("batch of %d rows, MaxRows 32", s)
				}
				total += s
			}
			if st.Calls != goroutines*perG || st.Batches != uint64(len(sizes)) || st.Rows != uint64(total) {
				t.Errorf("stats %+v; scorer saw %d batches, %d rows", st, len(sizes), total)
			}
			if st.Batches >= st.Calls {
				t.Errorf("no coalescing: %d batches for %d calls", st.Batches, st.Calls)
			}
			t.Logf("%d calls in %d batches (%.1f rows/batch)", st.Calls, st.Batches, float64(st.Rows)/float64(st.Batches))
		})
	}
}

// A local scorer scores at once when idle and coalesces while busy.
func TestLocalScoresAtOnceWhenIdle(t *testing.T) {
	e := &echo{width: 2, gate: make(chan struct{}), entered: make(chan int, 16)}
	// A MaxWait far beyond the test: only idleness can send the first batch.
	b := New(e, Options{MaxRows: 64, MaxWait: time.Hour, MaxInFlight: 1, Local: true})
	defer b.Close()
	out := make([]score.Prediction, 1)
	first := make(chan error, 1)
	go func() { first <- b.Score(context.Background(), []float32{1, 2}, 1, out) }()
	if n := <-e.entered; n != 1 {
		t.Fatalf("first batch has %d rows, want 1", n)
	}
	const k = 10
	var wg sync.WaitGroup
	results := make([][]score.Prediction, k)
	for i := 0; i < k; i++ {
		wg.Add(1)
		results[i] = make([]score.Prediction, 1)
		go func() {
			defer wg.Done()
			if err := b.Score(context.Background(), []float32{float32(i), 100}, 1, results[i]); err != nil {
				t.Error(err)
			}
		}()
	}
	waitFor(t, "10 queued rows", func() bool { return b.queuedRows() == k })
	e.gate <- struct{}{} // the first batch finishes; the queue goes as one batch
	if err := <-first; err != nil || out[0].Value != 3 {
		t.Fatalf("first call: %v, value %v", err, out[0].Value)
	}
	if n := <-e.entered; n != k {
		t.Fatalf("second batch has %d rows, want %d", n, k)
	}
	e.gate <- struct{}{}
	wg.Wait()
	for i, r := range results {
		if r[0].Value != float64(i+100) {
			t.Errorf("caller %d got %v, want %d", i, r[0].Value, i+100)
		}
	}
	if got := e.sizes(); len(got) != 2 {
		t.Errorf("batches %v, want [1 %d]", got, k)
	}
}

// A remote batcher waits MaxWait for a batch to fill, and sends a full one
// at once.
func TestRemoteFillsBatches(t *testing.T) {
	e := &echo{width: 1, entered: make(chan int, 16)}
	b := New(e, Options{MaxRows: 4, MaxWait: time.Hour, MaxInFlight: 1})
	defer b.Close()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]score.Prediction, 1)
			if err := b.Score(context.Background(), []float32{float32(i)}, 1, out); err != nil || out[0].Value != float64(i) {
				t.Errorf("call %d: %v, value %v", i, err, out[0].Value)
			}
		}()
	}
	wg.Wait() // with MaxWait an hour, only full batches can have gone
	if got := e.sizes(); len(got) != 2 || got[0] != 4 || got[1] != 4 {
		t.Errorf("batches %v, want [4 4]", got)
	}
}

func TestQueueFullSheds(t *testing.T) {
	e := &echo{width: 1, gate: make(chan struct{}), entered: make(chan int, 16)}
	b := New(e, Options{MaxRows: 4, QueueRows: 8, MaxInFlight: 1, Local: true})
	defer b.Close()
	var wg sync.WaitGroup
	score1 := func(n int) {
		defer wg.Done()
		out := make([]score.Prediction, n)
		if err := b.Score(context.Background(), make([]float32, n), n, out); err != nil {
			t.Error(err)
		}
	}
	wg.Add(1)
	go score1(1)
	<-e.entered // in flight, held
	wg.Add(2)
	go score1(4)
	go score1(4)
	waitFor(t, "8 queued rows", func() bool { return b.queuedRows() == 8 })

	start := time.Now()
	err := b.Score(context.Background(), []float32{1}, 1, make([]score.Prediction, 1))
	if !errors.Is(err, score.ErrOverloaded) {
		t.Fatalf("full queue: got %v, want ErrOverloaded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shedding took %v; it should not wait", d)
	}
	if st := b.Stats(); st.Shed != 1 {
		t.Errorf("Shed %d, want 1", st.Shed)
	}
	for range 3 {
		e.gate <- struct{}{}
	}
	wg.Wait()
}

func TestCallerDeadline(t *testing.T) {
	e := &echo{width: 1, gate: make(chan struct{}), entered: make(chan int, 16)}
	// Remote, so that A goes through the dispatcher and a worker; the echo
	// scorer ignores ctx, so A's return is the batcher's doing.
	b := New(e, Options{MaxRows: 8, MaxWait: time.Millisecond, MaxInFlight: 1})
	defer b.Close()

	// A: in flight, held at the gate; its ctx expires there.
	outA := []score.Prediction{{Value: -1}}
	errA := make(chan error, 1)
	ctxA, cancelA := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelA()
	go func() { errA <- b.Score(ctxA, []float32{7}, 1, outA) }()
	<-e.entered

	// B: queued behind A; its ctx expires in the queue.
	const timeout = 50 * time.Millisecond
	ctxB, cancelB := context.WithTimeout(context.Background(), timeout)
	defer cancelB()
	start := time.Now()
	err := b.Score(ctxB, []float32{5, 6}, 2, make([]score.Prediction, 2))
	took := time.Since(start)
	if !errors.Is(err, score.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued caller: got %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	if took < timeout/2 || took > timeout+2*time.Second {
		t.Errorf("queued caller returned after %v; deadline was %v", took, timeout)
	}
	if err := <-errA; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("in-flight caller: got %v, want DeadlineExceeded", err)
	}

	// C, queued after B expired, goes in the next batch without B's rows.
	errC := make(chan error, 1)
	outC := make([]score.Prediction, 1)
	go func() { errC <- b.Score(context.Background(), []float32{9}, 1, outC) }()
	waitFor(t, "C queued", func() bool { return b.queuedRows() == 1 })
	e.gate <- struct{}{} // release A's batch
	if n := <-e.entered; n != 1 {
		t.Errorf("batch after B expired has %d rows, want 1 (C only)", n)
	}
	e.gate <- struct{}{}
	if err := <-errC; err != nil || outC[0].Value != 9 {
		t.Errorf("C: %v, value %v", err, outC[0].Value)
	}
	b.Close()
	if outA[0].Value != -1 {
		t.Errorf("expired caller's out was written: %v", outA[0].Value)
	}
	if st := b.Stats(); st.Expired != 2 || st.Rows != 2 {
		t.Errorf("stats %+v, want 2 expired, 2 rows scored", st)
	}
}

func TestMaxInFlight(t *testing.T) {
	e := &echo{width: 2, delay: time.Millisecond}
	b := New(e, Options{MaxRows: 4, MaxWait: 100 * time.Microsecond, MaxInFlight: 3})
	defer b.Close()
	var wg sync.WaitGroup
	for g := 0; g < 24; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]score.Prediction, 2)
			for k := 0; k < 20; k++ {
				rows, sums := rowsFor(g, k, 2, 2)
				if err := b.Score(context.Background(), rows, 2, out); err != nil || out[1].Value != sums[1] {
					t.Errorf("%v %v", err, out[1].Value)
					return
				}
			}
		}()
	}
	wg.Wait()
	if m := e.max.Load(); m > 3 {
		t.Errorf("%d batches in flight at once, MaxInFlight 3", m)
	}
}

// One caller's bad rows fail that caller only.
func TestBadInputIsolated(t *testing.T) {
	e := &echo{width: 1, gate: make(chan struct{}), entered: make(chan int, 64), badNaN: true}
	b := New(e, Options{MaxRows: 16, MaxInFlight: 1, Local: true})
	defer b.Close()
	first := make(chan error, 1)
	go func() { first <- b.Score(context.Background(), []float32{0}, 1, make([]score.Prediction, 1)) }()
	<-e.entered // held, so that the next four calls share a batch
	var wg sync.WaitGroup
	errs := make([]error, 4)
	outs := make([][]score.Prediction, 4)
	for i := range 4 {
		outs[i] = make([]score.Prediction, 1)
		v := float32(i)
		if i == 2 {
			v = float32(math.NaN())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.Score(context.Background(), []float32{v}, 1, outs[i])
		}()
	}
	waitFor(t, "4 queued", func() bool { return b.queuedRows() == 4 })
	close(e.gate)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		switch {
		case i == 2 && !errors.Is(err, score.ErrBadInput):
			t.Errorf("caller with NaN: got %v, want ErrBadInput", err)
		case i != 2 && err != nil:
			t.Errorf("caller %d: %v", i, err)
		case i != 2 && outs[i][0].Value != float64(i):
			t.Errorf("caller %d: value %v", i, outs[i][0].Value)
		}
	}
	if got := fmt.Sprint(e.sizes()); got != "[1 4 1 1 1 1]" {
		t.Errorf("batches %s, want [1 4 1 1 1 1] (the failed batch re-scored call by call)", got)
	}
	if st := b.Stats(); st.Split != 1 {
		t.Errorf("Split %d, want 1 (stats %+v)", st.Split, st)
	}
}

func TestErrorsReachEveryCaller(t *testing.T) {
	e := &echo{width: 1, err: fmt.Errorf("%w: endpoint down", score.ErrUnavailable)}
	b := New(e, Options{})
	defer b.Close()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Score(context.Background(), []float32{1}, 1, make([]score.Prediction, 1)); !errors.Is(err, score.ErrUnavailable) {
				t.Errorf("got %v, want ErrUnavailable", err)
			}
		}()
	}
	wg.Wait()
}

func TestBadShapes(t *testing.T) {
	b := New(&echo{width: 3}, Options{})
	defer b.Close()
	if err := b.Score(context.Background(), make([]float32, 5), 2, make([]score.Prediction, 2)); !errors.Is(err, score.ErrBadInput) {
		t.Errorf("short rows: %v", err)
	}
	if err := b.Score(context.Background(), make([]float32, 6), 2, make([]score.Prediction, 1)); !errors.Is(err, score.ErrBadInput) {
		t.Errorf("short out: %v", err)
	}
	if err := b.Score(context.Background(), nil, 0, nil); err != nil {
		t.Errorf("no rows: %v", err)
	}
}

func TestCloseDrains(t *testing.T) {
	e := &echo{width: 1, delay: 2 * time.Millisecond}
	b := New(e, Options{MaxRows: 4, MaxWait: time.Hour, MaxInFlight: 1})
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]score.Prediction, 1)
			if err := b.Score(context.Background(), []float32{float32(i)}, 1, out); err == nil && out[0].Value == float64(i) {
				ok.Add(1)
			} else {
				t.Errorf("call %d: %v, value %v", i, err, out[0].Value)
			}
		}()
	}
	waitFor(t, "10 calls queued or sent", func() bool { return b.queuedRows()+int(b.Stats().Rows) == 10 })
	b.Close() // MaxWait is an hour: only Close sends the last partial batch
	wg.Wait()
	if ok.Load() != 10 {
		t.Errorf("%d of 10 calls scored before Close returned", ok.Load())
	}
	if err := b.Score(context.Background(), []float32{1}, 1, make([]score.Prediction, 1)); !errors.Is(err, ErrClosed) || !errors.Is(err, score.ErrUnavailable) {
		t.Errorf("after Close: %v", err)
	}
	b.Close()
}
