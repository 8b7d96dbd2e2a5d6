package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// segIndex is a sealed segment opened for random access: the offset of
// every frame, and a reader over the plain bytes.
type segIndex struct {
	first uint64
	name  string
	offs  []uint32
	end   int64 // offset after the last frame
	r     io.ReaderAt
	c     io.Closer // nil for decompressed bytes
}

func (s *segIndex) close() {
	if s.c != nil {
		s.c.Close()
	}
}

// segCache keeps the last two sealed segments Get used. Raft reads recent
// entries, which are mostly in the active segment or the one before it.
type segCache struct {
	mu   sync.Mutex
	ents []*segIndex // most recent first
}

const segCacheSize = 2

// get returns the record at index of the sealed segment s, loading s.
func (c *segCache) get(l *Log, s segmentInfo, index uint64) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var si *segIndex
	for i, e := range c.ents {
		if e.first == s.first {
			si = e
			copy(c.ents[1:i+1], c.ents[:i])
			c.ents[0] = si
			break
		}
	}
	if si == nil {
		var err error
		if si, err = l.loadIndex(s); err != nil {
			return nil, err
		}
		c.putLocked(si)
	}
	i := index - si.first
	if i >= uint64(len(si.offs)) {
		return nil, &CorruptionError{Segment: s.name, Offset: si.end, Index: si.first + uint64(len(si.offs)),
			Reason: fmt.Sprintf("segment ends before index %d, where the log continues", index)}
	}
	end := si.end
	if i+1 < uint64(len(si.offs)) {
		end = int64(si.offs[i+1])
	}
	return readFrame(si.r, si.first, int64(si.offs[i]), end, index)
}

func (l *Log) loadIndex(s segmentInfo) (*segIndex, error) {
	if !s.compressed {
		f, err := l.fs.OpenFile(filepath.Join(l.dir, s.name), os.O_RDONLY, 0)
		if err == nil {
			// err, not a new one: a scan that finds the file gone must reach
			// the compressed fallback below, not return (nil, nil).
			var res scanResult
			res, err = scanSegment(l.fs, l.dir, s)
			if err == nil && res.err != errEnd {
				err = res.err
			}
			if err == nil {
				return &segIndex{first: s.first, name: s.name, offs: res.offs, end: res.end, r: f, c: f}, nil
			}
			f.Close()
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		// Compressed since listed (the plain file can go between the open
		// and the scan, which opens it by name).
		s.name, s.compressed = s.name+".zst", true
	}
	res, err := scanSegment(l.fs, l.dir, s)
	if err == nil && res.err != errEnd {
		err = res.err
	}
	if err != nil {
		return nil, err
	}
	f, err := l.fs.OpenFile(filepath.Join(l.dir, s.name), os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<31))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	data := make([]byte, res.end)
	if _, err := io.ReadFull(dec, data); err != nil {
		return nil, fmt.Errorf("wal: decompress %s: %w", s.name, err)
	}
	return &segIndex{first: s.first, name: s.name, offs: res.offs, end: res.end, r: bytes.NewReader(data)}, nil
}

// put adds a sealed segment the writer just rolled away from.
func (c *segCache) put(si *segIndex) {
	si.name = segmentName(si.first)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(si)
}

func (c *segCache) putLocked(si *segIndex) {
	for i, e := range c.ents {
		if e.first == si.first {
			e.close()
			c.ents = append(c.ents[:i], c.ents[i+1:]...)
			break
		}
	}
	c.ents = append([]*segIndex{si}, c.ents...)
	for len(c.ents) > segCacheSize {
		c.ents[len(c.ents)-1].close()
		c.ents = c.ents[:len(c.ents)-1]
	}
}

// drop closes and forgets segment first, if cached: compression is about
// to remove its plain file, whose space an open descriptor would keep taken
// (the next Get reads the compressed copy).
func (c *segCache) drop(first uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, e := range c.ents {
		if e.first == first {
			e.close()
			c.ents = append(c.ents[:i], c.ents[i+1:]...)
			return
		}
	}
}

func (c *segCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.ents {
		e.close()
	}
	c.ents = nil
}
