package wal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadSegment: arbitrary bytes as a segment file give records or a
// *CorruptionError, never a panic or an allocation beyond the file's size.
func FuzzReadSegment(f *testing.F) {
	dir := f.TempDir()
	l, err := Open(dir, Options{SegmentSize: 4096})
	if err != nil {
		f.Fatal(err)
	}
	for i := uint64(1); i <= 5; i++ {
		l.Append(record(i))
	}
	l.Close()
	seed, _ := os.ReadFile(filepath.Join(dir, segmentName(1)))
	f.Add(seed)
	f.Add(seed[:100])
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, segmentName(1)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		sr, err := openSegmentReader(OS, d, segmentInfo{first: 1, name: segmentName(1)})
		if err != nil {
			var ce *CorruptionError
			if !errors.As(err, &ce) {
				t.Fatalf("open: %v", err)
			}
			return
		}
		defer sr.close()
		for n := 0; ; n++ {
			rec, err := sr.frame()
			if err != nil {
				var ce *CorruptionError
				if err != errEnd && !errors.As(err, &ce) {
					t.Fatalf("frame: %v", err)
				}
				break
			}
			if len(rec) > len(data) {
				t.Fatalf("record of %d bytes from a %d-byte file", len(rec), len(data))
			}
		}
		// Open must also cope: recover a torn tail or refuse with a
		// CorruptionError.
		if l, err := Open(d, Options{SegmentSize: 4096}); err == nil {
			l.Close()
		} else {
			var ce *CorruptionError
			if !errors.As(err, &ce) {
				t.Fatalf("open log: %v", err)
			}
		}
	})
}
