package wal

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"
)

// BenchmarkAppendSyncAlways: records/s with fsync on every group, from 1, 8
// and 64 concurrent appenders, each appending batches of 100 records of 100
// bytes (a bulk ingest request), on the real disk.
func BenchmarkAppendSyncAlways(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			l, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			batch := make([][]byte, 100)
			for i := range batch {
				batch[i] = make([]byte, 100)
			}
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
			b.ReportMetric(float64(per*writers*len(batch))/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkFsync reports the median latency of one fsync of a small write.
func BenchmarkFsync(b *testing.B) {
	l, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	lat := make([]time.Duration, 0, b.N)
	rec := make([]byte, 100)
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
	dir := b.TempDir()
	l, err := Open(dir, Options{Sync: SyncNever, SegmentSize: 8 << 20, Compress: true})
	if err != nil {
		b.Fatal(err)
	}
	const n = 200_000
	rec := make([]byte, 100)
	batch := make([][]byte, 1000)
	for i := range batch {
		batch[i] = rec
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
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		count := 0
		if err := l.Replay(1, func(uint64, []byte) error { count++; return nil }); err != nil || count != n {
			b.Fatalf("replayed %d: %v", count, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}
