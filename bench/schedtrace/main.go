package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

func main() {
	long := flag.Duration("long", time.Millisecond, "report run slices at least this long")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: schedtrace [--long D] TRACE...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	for _, path := range flag.Args() {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		s, err := Analyze(f, *long)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			os.Exit(1)
		}
		fmt.Printf("%s\n%s", path, s)
	}
}

// Stats is what Analyze finds in one trace.
type Stats struct {
	Span time.Duration // from the first event to the last
	// Latency holds every scheduling latency seen, sorted: runnable to
	// running.
	Latency []time.Duration
	// Slices is the number of run slices seen; Long those of at least the
	// threshold, each with the frames (innermost first) where it ended.
	Slices int
	Long   []Slice
	// Syscalls is the number of syscalls seen end; HandedOff those whose
	// goroutine came back runnable, not running: the runtime gave its P
	// to another thread while it was in the kernel, so for a while more
	// threads wanted a core than GOMAXPROCS.
	Syscalls, HandedOff int
}

// Slice is one long run slice.
type Slice struct {
	D     time.Duration
	Where string // see where
}

// Analyze reads an execution trace and measures its goroutines' scheduling
// latencies and run slices (see the command's doc).
func Analyze(r io.Reader, long time.Duration) (*Stats, error) {
	tr, err := trace.NewReader(r)
	if err != nil {
		return nil, err
	}
	runnable := map[trace.GoID]trace.Time{}
	running := map[trace.GoID]trace.Time{}
	s := &Stats{}
	var first, last trace.Time
	for {
		ev, err := tr.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if first == 0 {
			first = ev.Time()
		}
		last = ev.Time()
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		id := st.Resource.Goroutine()
		from, to := st.Goroutine()
		if from == trace.GoSyscall {
			s.Syscalls++
			if to == trace.GoRunnable {
				s.HandedOff++
			}
		}
		switch {
		case to == trace.GoRunnable:
			runnable[id] = ev.Time()
		case to == trace.GoRunning:
			if t, ok := runnable[id]; ok {
				s.Latency = append(s.Latency, time.Duration(ev.Time()-t))
				delete(runnable, id)
			}
			running[id] = ev.Time()
		}
		if from == trace.GoRunning && to != trace.GoRunning {
			t, ok := running[id]
			if !ok {
				continue
			}
			delete(running, id)
			s.Slices++
			if d := time.Duration(ev.Time() - t); d >= long {
				s.Long = append(s.Long, Slice{D: d, Where: where(st.Stack)})
			}
		}
	}
	s.Span = time.Duration(last - first)
	slices.Sort(s.Latency)
	return s, nil
}

// where names the innermost frame of stk and the innermost frame outside
// the standard library (package main, or an import path whose first element
// has a dot), which tells a server's write from a client's.
func where(stk trace.Stack) string {
	var inner, own string
	for f := range stk.Frames() {
		if inner == "" {
			inner = f.Func
		}
		if first, _, slash := strings.Cut(f.Func, "/"); strings.HasPrefix(f.Func, "main.") ||
			slash && strings.Contains(first, ".") && !strings.HasPrefix(f.Func, "golang.org/x/") {
			own = f.Func
			break
		}
	}
	switch {
	case inner == "":
		return "(no stack)"
	case own == "" || own == inner:
		return inner
	}
	return inner + " in " + own
}

// Quantile is the q-quantile of the scheduling latencies, 0 if none.
func (s *Stats) Quantile(q float64) time.Duration {
	if len(s.Latency) == 0 {
		return 0
	}
	return s.Latency[int(float64(len(s.Latency)-1)*q)]
}

// Over is how many scheduling latencies exceed d.
func (s *Stats) Over(d time.Duration) int {
	i, _ := slices.BinarySearch(s.Latency, d+1)
	return len(s.Latency) - i
}

func (s *Stats) String() string {
	var b strings.Builder
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2fms", d.Seconds()*1000) }
	fmt.Fprintf(&b, "  span %s, %d run slices\n", s.Span.Round(time.Millisecond), s.Slices)
	fmt.Fprintf(&b, "  scheduling latency of %d wakeups: p50 %s p90 %s p99 %s p99.9 %s max %s\n", len(s.Latency),
		ms(s.Quantile(.5)), ms(s.Quantile(.9)), ms(s.Quantile(.99)), ms(s.Quantile(.999)), ms(s.Quantile(1)))
	fmt.Fprintf(&b, "  syscalls %d, of which %d came back without their P (handed to another thread meanwhile)\n", s.Syscalls, s.HandedOff)
	fmt.Fprintf(&b, "  over 1ms %d, 2ms %d, 3ms %d, 4ms %d\n", s.Over(time.Millisecond), s.Over(2*time.Millisecond),
		s.Over(3*time.Millisecond), s.Over(4*time.Millisecond))
	type group struct {
		where string
		n     int
		total time.Duration
		max   time.Duration
	}
	var gs []*group
	byWhere := map[string]*group{}
	var total time.Duration
	for _, l := range s.Long {
		g := byWhere[l.Where]
		if g == nil {
			g = &group{where: l.Where}
			byWhere[l.Where] = g
			gs = append(gs, g)
		}
		g.n++
		g.total += l.D
		g.max = max(g.max, l.D)
		total += l.D
	}
	slices.SortFunc(gs, func(a, b *group) int { return int(b.total - a.total) })
	fmt.Fprintf(&b, "  long run slices: %d, %s in all\n", len(s.Long), ms(total))
	for _, g := range gs {
		fmt.Fprintf(&b, "    %4d  max %s  %s\n", g.n, ms(g.max), g.where)
	}
	return b.String()
}
