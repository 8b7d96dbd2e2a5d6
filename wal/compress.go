package wal

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"

	"github.com/tally-ml/tally/wal/walfs"
)

// compressLater compresses a sealed segment in the background: write
// name.zst.tmp, fsync, rename to name.zst, fsync the directory, then remove
// the plain file. A crash at any point leaves a complete plain or .zst file.
// next is the index the next segment begins at: a segment whose frames end
// before it is corrupt (a zeroed frame with records after it) and is left
// plain, as it is, for Replay to refuse and Repair to copy aside.
func (l *Log) compressLater(s segmentInfo, next uint64) {
	l.compressWG.Add(1)
	go func() {
		defer l.compressWG.Done()
		if err := l.compress(s, next); err != nil {
			// The plain segment stays; compression is an optimisation.
			l.m.compress.Inc()
		}
	}()
}

func (l *Log) compress(s segmentInfo, next uint64) error {
	src := filepath.Join(l.dir, s.name)
	in, err := l.fs.OpenFile(src, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	// Only the written frames: read them to find the end of data.
	res, err := scanSegment(l.fs, l.dir, s)
	if err != nil {
		return err
	}
	if res.err != errEnd {
		return res.err
	}
	if res.next != next {
		return &CorruptionError{Segment: s.name, Offset: res.end, Index: res.next,
			Reason: fmt.Sprintf("segment ends before index %d, where the next one begins", next)}
	}
	end := res.end
	out, err := walfs.CreateAtomic(l.fs, src+".zst.tmp")
	if err != nil {
		return err
	}
	enc, err := zstd.NewWriter(out, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		out.Abort()
		return err
	}
	if _, err := io.Copy(enc, io.NewSectionReader(in, 0, end)); err != nil {
		enc.Close()
		out.Abort()
		return fmt.Errorf("compress %s: %w", s.name, err)
	}
	if err := enc.Close(); err != nil {
		out.Abort()
		return err
	}
	if err := out.Commit(src + ".zst"); err != nil {
		return err
	}
	l.mu.Lock()
	for i := range l.segs {
		if l.segs[i].first == s.first {
			l.segs[i].name, l.segs[i].compressed = s.name+".zst", true
		}
	}
	l.mu.Unlock()
	return l.fs.Remove(src)
}
