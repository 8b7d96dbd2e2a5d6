package wal

import (
	"fmt"
	"os"
	"sort"
	"sync"
	"testing"
	"time"
)

// timedFS records the latency of every fsync of a segment.
type timedFS struct {
	osFS
	mu  sync.Mutex
	lat []time.Duration
}

type timedFile struct {
	File
	fs *timedFS
}

func (t *timedFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := t.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return timedFile{f, t}, nil
}

func (f timedFile) Sync() error {
	start := time.Now()
	err := f.File.Sync()
	d := time.Since(start)
	f.fs.mu.Lock()
	f.fs.lat = append(f.fs.lat, d)
	f.fs.mu.Unlock()
	return err
}

func (t *timedFS) median() (time.Duration, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lat) == 0 {
		return 0, 0
	}
	sort.Slice(t.lat, func(i, j int) bool { return t.lat[i] < t.lat[j] })
	return t.lat[len(t.lat)/2], len(t.lat)
}

// BenchmarkAppendSyncAlways: records/s with fsync on every group, from 1, 8
// and 64 concurrent appenders, each appending batches of 100 records of 100
// bytes (a bulk ingest request), on the real disk. It also reports the
// median fsync latency and how many Appends shared each fsync.
func BenchmarkAppendSyncAlways(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			tfs := &timedFS{}
			l, err := Open(b.TempDir(), Options{FS: tfs})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			batch := make([][]byte, 100)
			for i := range batch {
				batch[i] = make([]byte, 100)
			}
			tfs.lat = tfs.lat[:0]
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			per := (b.N + writers - 1) / writers
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < per; i++ {
						if _, err := l.Append(batch...); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			med, syncs := tfs.median()
			b.ReportMetric(float64(per*writers*len(batch))/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(med.Microseconds()), "fsync-median-us")
			if syncs > 0 {
				b.ReportMetric(float64(per*writers)/float64(syncs), "appends/fsync")
			}
		})
	}
}

// BenchmarkAppendOneRecord: the latency of a lone Append of one 100-byte
// record under SyncAlways (one write and one fsync).
func BenchmarkAppendOneRecord(b *testing.B) {
	l, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	lat := make([]time.Duration, 0, b.N)
	rec := make([]byte, 100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := time.Now()
		if _, err := l.Append(rec); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "median-us")
}

// BenchmarkReplay: records/s read back from compressed and plain segments.
func BenchmarkReplay(b *testing.B) {
	for _, compress := range []bool{false, true} {
		b.Run(fmt.Sprintf("compressed=%v", compress), func(b *testing.B) {
			dir := b.TempDir()
			l, err := Open(dir, Options{Sync: SyncNever, SegmentSize: 8 << 20, Compress: compress})
			if err != nil {
				b.Fatal(err)
			}
			const n = 200_000
			batch := make([][]byte, 1000)
			for i := range batch {
				batch[i] = make([]byte, 100)
			}
			for i := 0; i < n/len(batch); i++ {
				l.Append(batch...)
			}
			l.Close()
			l, err = Open(dir, Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				count := 0
				if err := l.Replay(1, func(uint64, []byte) error { count++; return nil }); err != nil || count != n {
					b.Fatalf("replayed %d: %v", count, err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkGet: random access to records of the active segment (Raft's
// reads when it applies and replicates).
func BenchmarkGet(b *testing.B) {
	l, err := Open(b.TempDir(), Options{Sync: SyncNever})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	batch := make([][]byte, 1000)
	for i := range batch {
		batch[i] = make([]byte, 100)
	}
	for i := 0; i < 10; i++ {
		l.Append(batch...)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := l.Get(uint64(i%10000) + 1); err != nil {
			b.Fatal(err)
		}
	}
}
