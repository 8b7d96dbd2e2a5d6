package wal

import (
	"errors"
	"testing"
)

// FuzzReadSegment: arbitrary bytes as a segment file give records or a
// *CorruptionError, never a panic or an allocation beyond the file's size;
// Open then recovers the file or refuses it with a *CorruptionError, and a
// log it opens appends.
func FuzzReadSegment(f *testing.F) {
	mfs := newMemFS()
	l, err := Open("/seed", Options{FS: mfs, SegmentSize: 4096})
	if err != nil {
		f.Fatal(err)
	}
	for i := uint64(1); i <= 5; i++ {
		l.Append(record(i), record(i+10))
	}
	l.Close()
	seed := mfs.ReadFile("/seed/" + segmentName(1))
	f.Add(seed)
	f.Add(seed[:100])
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		mfs := newMemFS()
		mfs.MkdirAll("/d", 0o755)
		mfs.WriteFile("/d/"+segmentName(1), data)
		sr, err := openSegmentReader(mfs, "/d", segmentInfo{first: 1, name: segmentName(1)})
		if err != nil {
			var ce *CorruptionError
			if !errors.As(err, &ce) {
				t.Fatalf("open: %v", err)
			}
		} else {
			for {
				rec, err := sr.frame()
				if err != nil {
					var ce *CorruptionError
					if err != errEnd && !errors.As(err, &ce) {
						t.Fatalf("frame: %v", err)
					}
					break
				}
				if len(rec) > len(data) || cap(sr.buf) > len(data) {
					t.Fatalf("record of %d bytes (buffer %d) from a %d-byte file", len(rec), cap(sr.buf), len(data))
				}
			}
			sr.close()
		}
		l, err := Open("/d", Options{FS: mfs, SegmentSize: 4096})
		if err != nil {
			var ce *CorruptionError
			if !errors.As(err, &ce) {
				t.Fatalf("open log: %v", err)
			}
			return
		}
		defer l.Close()
		last := l.LastIndex()
		if got, err := l.Append([]byte("x")); err != nil || got != last+1 {
			t.Fatalf("append after open: %d, %v", got, err)
		}
	})
}

// FuzzReadCompressedSegment: arbitrary bytes as a compressed segment give
// Repair's reader plain bytes (what decodes, lostByte for what does not),
// never a panic or an error (the file reads), and the streaming readers
// records or a *CorruptionError.
func FuzzReadCompressedSegment(f *testing.F) {
	old := zstdChunk
	zstdChunk = 256
	mfs := newMemFS()
	l, err := Open("/seed", Options{FS: mfs, SegmentSize: 1024, Compress: true})
	if err != nil {
		f.Fatal(err)
	}
	for i := uint64(1); i <= 30; i++ {
		l.Append(record(i))
	}
	l.Close()
	zstdChunk = old
	seed := mfs.ReadFile("/seed/" + segmentName(1) + ".zst")
	if seed == nil {
		f.Fatal("segment 1 was not compressed")
	}
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add(seed[chunkHdr:])
	f.Fuzz(func(t *testing.T, data []byte) {
		mfs := newMemFS()
		mfs.MkdirAll("/d", 0o755)
		s := segmentInfo{first: 1, name: segmentName(1) + ".zst", compressed: true}
		mfs.WriteFile("/d/"+s.name, data)
		_, size, done, err := plainBytes(mfs, "/d", s)
		if err != nil {
			t.Fatalf("plain bytes: %v", err)
		}
		done()
		if size > int64(len(data)/chunkHdr+1)*maxChunk {
			t.Fatalf("%d plain bytes from %d", size, len(data))
		}
		res, err := scanSegment(mfs, "/d", s)
		var ce *CorruptionError
		if err != nil && !errors.As(err, &ce) {
			t.Fatalf("scan: %v", err)
		}
		if err == nil && res.err != errEnd && !errors.As(res.err, &ce) {
			t.Fatalf("scan: %v", res.err)
		}
	})
}
