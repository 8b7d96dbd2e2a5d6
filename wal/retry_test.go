package wal

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// appendUntilRoll appends record(i) from i on until the log holds one more
// segment, and returns the next i.
func appendUntilRoll(t *testing.T, l *Log, i uint64) uint64 {
	t.Helper()
	segs := l.Segments()
	for ; l.Segments() == segs; i++ {
		if i > 10_000 {
			t.Fatal("no roll after 10,000 records")
		}
		appendN(t, l, i, i)
	}
	return i
}

func promText(s *metrics.Set) string {
	var b bytes.Buffer
	s.WritePrometheus(&b)
	return b.String()
}

// TestRollSurvivesDescriptorShortage: with no file descriptor to be had, the
// next roll still succeeds (its file was made ahead); the roll after it
// fails, and so does every Append meanwhile, with the cause (EMFILE), but
// the log is not broken: once descriptors are back it rolls (on the next
// Append, or by itself) and appends at the next index. Every acknowledged
// record is in the log once, at its index, and nothing else is.
func TestRollSurvivesDescriptorShortage(t *testing.T) {
	for _, fault := range []string{"open", "sync-dir"} {
		t.Run(fault, func(t *testing.T) {
			mfs := newMemFS()
			ms := metrics.NewSet()
			opts := Options{FS: mfs, SegmentSize: 4096, Metrics: ms}
			l := mustOpen(t, "/wal", opts)
			defer l.Close()
			next := appendUntilRoll(t, l, 1)
			set := func(on bool) {
				mfs.Set(func(m *memFS) {
					m.FailOpen, m.FailDir = nil, nil
					if on && fault == "open" {
						m.FailOpen = syscall.EMFILE
					} else if on {
						m.FailDir = syscall.EIO
					}
				})
			}
			set(true)
			if fault == "open" {
				// The spare made ahead needs no descriptor at the roll.
				next = appendUntilRoll(t, l, next)
			}
			// The next roll needs a new file: it fails, and so do the
			// appends after it, with the cause.
			segs, last := l.Segments(), l.LastIndex()
			var failed int
			for i := next; failed < 3; i++ {
				if i > next+10_000 {
					t.Fatal("no failed roll")
				}
				got, err := l.Append(record(i))
				if err == nil {
					if got != i {
						t.Fatalf("append at %d, want %d", got, i)
					}
					last, next = got, i+1
					continue
				}
				failed++
				if l.LastIndex() != last || l.Segments() != segs {
					t.Fatalf("a failed roll changed the log: last %d (was %d), %d segments (were %d)", l.LastIndex(), last, l.Segments(), segs)
				}
				want := map[string]error{"open": syscall.EMFILE, "sync-dir": syscall.EIO}[fault]
				if !errors.Is(err, want) || !errors.Is(l.Err(), want) {
					t.Fatalf("append error %v, Err %v: want %v", err, l.Err(), want)
				}
			}
			if txt := promText(ms); !strings.Contains(txt, "tally_wal_durable 0\n") ||
				!regexp.MustCompile(fmt.Sprintf(`tally_wal_errors_total\{kind=%q\} [1-9]`, ErrorKind(l.Err()))).MatchString(txt) {
				t.Fatalf("metrics while the log cannot roll:\n%s", txt)
			}
			set(false)
			if fault == "open" {
				// The next Append rolls.
				appendN(t, l, next, next)
				next++
			} else {
				// The writer rolls by itself.
				for i := 0; l.Err() != nil; i++ {
					if i == 100 {
						t.Fatalf("the log did not recover by itself: %v", l.Err())
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			if l.Err() != nil || l.Segments() != segs+1 {
				t.Fatalf("after recovery: Err %v, %d segments (were %d)", l.Err(), l.Segments(), segs)
			}
			if txt := promText(ms); !strings.Contains(txt, "tally_wal_durable 1\n") {
				t.Fatalf("metrics after recovery:\n%s", txt)
			}
			next = appendUntilRoll(t, l, next)
			appendN(t, l, next, next+20)
			l.Close()
			l = mustOpen(t, "/wal", opts)
			if got := replayAll(t, l); uint64(len(got)) != next+20 || got[len(got)-1] != next+20 {
				t.Fatalf("reopened: %d records, want 1..%d", len(got), next+20)
			}
		})
	}
}

// TestFailedFsyncStaysBroken: a failed fsync of appended records may have
// lost them, so the log refuses every later Append and reports why, even
// once the disk answers again.
func TestFailedFsyncStaysBroken(t *testing.T) {
	mfs := newMemFS()
	ms := metrics.NewSet()
	l := mustOpen(t, "/wal", Options{FS: mfs, SegmentSize: 4096, Metrics: ms})
	defer l.Close()
	appendN(t, l, 1, 10)
	mfs.Set(func(m *memFS) { m.FailSync = true })
	if _, err := l.Append(record(11)); err == nil {
		t.Fatal("append acknowledged although its fsync failed")
	}
	mfs.Set(func(m *memFS) { m.FailSync = false })
	if _, err := l.Append(record(11)); !errors.Is(err, syscall.EIO) || !errors.Is(l.Err(), syscall.EIO) {
		t.Fatalf("after a failed fsync: append %v, Err %v; want the fsync's EIO", err, l.Err())
	}
	if txt := promText(ms); !strings.Contains(txt, "tally_wal_durable 0\n") || !strings.Contains(txt, `tally_wal_errors_total{kind="eio"} 1`) {
		t.Fatalf("metrics after a failed fsync:\n%s", txt)
	}
}

// TestConcurrentAppendsAcrossFailingRolls: appenders race a descriptor
// shortage that comes and goes. Whatever an Append answered, the reopened
// log holds exactly the acknowledged records, each once, at its index, with
// consecutive indexes: a failed roll costs no index and writes nothing.
func TestConcurrentAppendsAcrossFailingRolls(t *testing.T) {
	mfs := newMemFS()
	opts := Options{FS: mfs, SegmentSize: 4096}
	l := mustOpen(t, "/wal", opts)
	var mu sync.Mutex
	acked := map[uint64]string{}
	var failures atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 400; i++ {
				batch := [][]byte{[]byte(fmt.Sprintf("w%d-%d-a", w, i)), []byte(fmt.Sprintf("w%d-%d-b-%s", w, i, strings.Repeat("x", i%90)))}
				last, err := l.Append(batch...)
				if err != nil {
					if !errors.Is(err, syscall.EMFILE) {
						t.Errorf("append: %v", err)
						return
					}
					failures.Add(1)
					continue
				}
				mu.Lock()
				acked[last-1], acked[last] = string(batch[0]), string(batch[1])
				mu.Unlock()
			}
		}(w)
	}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for on := true; ; on = !on {
			select {
			case <-stop:
				mfs.Set(func(m *memFS) { m.FailOpen = nil })
				return
			case <-time.After(time.Millisecond):
			}
			mfs.Set(func(m *memFS) {
				m.FailOpen = nil
				if on {
					m.FailOpen = syscall.EMFILE
				}
			})
		}
	}()
	wg.Wait()
	close(stop)
	<-stopped
	t.Logf("%d appends failed, %d records acknowledged", failures.Load(), len(acked))
	l.Close()
	l = mustOpen(t, "/wal", opts)
	defer l.Close()
	n := 0
	err := l.Replay(1, func(i uint64, rec []byte) error {
		n++
		if uint64(n) != i {
			return fmt.Errorf("record %d at position %d", i, n)
		}
		if acked[i] != string(rec) {
			return fmt.Errorf("record %d is %q, acknowledged %q", i, rec, acked[i])
		}
		return nil
	})
	if err != nil || n != len(acked) {
		t.Fatalf("replayed %d records of %d acknowledged: %v", n, len(acked), err)
	}
}

// TestRollFailureInsideAGroup: one group commit holds a record that fits
// the active segment and one that needs a roll, and the roll fails. The
// first was sealed with the segment: it is acknowledged at its index. The
// second fails, and its index goes to the next Append.
func TestRollFailureInsideAGroup(t *testing.T) {
	mfs := newMemFS()
	opts := Options{FS: mfs, SegmentSize: 4096}
	l := mustOpen(t, "/wal", opts)
	defer l.Close()
	next := appendUntilRoll(t, l, 1)
	mfs.Set(func(m *memFS) { m.FailOpen = syscall.EMFILE })
	next = appendUntilRoll(t, l, next) // uses the spare; none can be made
	appendN(t, l, next, next+2)
	next += 3
	small, big := []byte("fits"), bytes.Repeat([]byte("b"), 4000)

	// Hold the writer (it takes the first request and waits for wmu), so
	// that the next two wait in one group.
	l.wmu.Lock()
	send := func(rec []byte) *appendReq {
		r := &appendReq{recs: [][]byte{rec}, done: make(chan struct{}, 1)}
		l.reqs <- r
		return r
	}
	first := send([]byte("alone"))
	for i := 0; len(l.reqs) != 0; i++ {
		if i == 1000 {
			t.Fatal("the writer does not take requests")
		}
		time.Sleep(time.Millisecond)
	}
	a, b := send(small), send(big)
	l.wmu.Unlock()
	for _, r := range []*appendReq{first, a, b} {
		<-r.done
	}
	if first.err != nil || first.last != next {
		t.Fatalf("first append: %d, %v", first.last, first.err)
	}
	if a.err != nil || a.last != next+1 {
		t.Fatalf("the record sealed before the failed roll: %d, %v (want acknowledged at %d)", a.last, a.err, next+1)
	}
	if !errors.Is(b.err, syscall.EMFILE) || l.LastIndex() != next+1 {
		t.Fatalf("the record after the failed roll: %v; last index %d", b.err, l.LastIndex())
	}
	mfs.Set(func(m *memFS) { m.FailOpen = nil })
	if last, err := l.Append(big); err != nil || last != next+2 {
		t.Fatalf("append after recovery: %d, %v (want %d)", last, err, next+2)
	}
	l.Close()
	l = mustOpen(t, "/wal", opts)
	var got []string
	l.Replay(next, func(i uint64, rec []byte) error { got = append(got, string(rec[:min(5, len(rec))])); return nil })
	if strings.Join(got, ",") != "alone,fits,bbbbb" {
		t.Fatalf("records from %d after reopen: %v", next, got)
	}
}
