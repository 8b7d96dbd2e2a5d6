package main

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"runtime/trace"
	"strings"
	"testing"
	"time"
)

// spin holds its thread for d without a call the runtime could preempt or
// trace, then blocks on done: one run slice of at least d.
func spin(d time.Duration, started chan<- struct{}, done chan struct{}) {
	go func() { started <- struct{}{} }() // runnable now, runs after spin
	for t := time.Now(); time.Since(t) < d; {
	}
	<-done
}

// TestAnalyzeSeesAHeldP traces a goroutine that holds the only P for 5 ms
// while another is runnable: the analysis must show a run slice of about
// 5 ms ending in spin, and a scheduling latency of about 5 ms.
func TestAnalyzeSeesAHeldP(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	// A collection would preempt the spin and split its slice.
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	const hold = 5 * time.Millisecond
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Fatal(err)
	}
	started, done := make(chan struct{}), make(chan struct{})
	go spin(hold, started, done)
	<-started
	close(done)
	time.Sleep(time.Millisecond)
	trace.Stop()

	s, err := Analyze(&buf, 4*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(s)
	var found bool
	for _, l := range s.Long {
		if l.D >= hold && strings.Contains(l.Where, "spin") {
			found = true
		}
	}
	if !found {
		t.Errorf("no run slice of at least %s ending in spin among %v", hold, s.Long)
	}
	if s.Over(hold-time.Millisecond/2) == 0 {
		t.Errorf("no scheduling latency near %s; max %s", hold, s.Quantile(1))
	}
	if s.Slices == 0 || s.Span <= 0 {
		t.Errorf("slices %d span %s", s.Slices, s.Span)
	}
}

func TestAnalyzeRefusesWhatIsNotATrace(t *testing.T) {
	if _, err := Analyze(strings.NewReader("not a trace"), time.Millisecond); err == nil {
		t.Fatal("a text read as a trace")
	}
}
