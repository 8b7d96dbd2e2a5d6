package windows

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/tally-ml/tally/ring"
)

// Snapshot format (version 2). Every integer is little-endian; "uv" is an
// unsigned varint, "sv" a zigzag varint.
//
//	section   = magic[4] version:u16 spec:u64 [partition:u32] bodyLen:u64 body
//	magic     = "TWSP" (partition) or "TWSM" (meta)
//	spec      = xxhash of the view's spec (name, columns, aggregations,
//	            lateness): a snapshot is only read into an identical view
//	meta body = watermark:u64 tooLate:u64
//	part body = nstr:uv nstr x (column:uv len:uv bytes)  string values referenced
//	            nslots:uv cursor:uv ticks:uv expired:uv
//	            nslots x slot
//	            nfree:uv nfree x slot index:uv       free slot stack, bottom first
//	slot      = 0 (free) | 1 keyLen:uv key newest:sv folded:sv
//	            nraw:uv nraw x raw  ntile:uv ntile x tile
//	raw       = ts (sv for the first, uv delta after)  one value per kept column
//	tile      = start (sv for the first, uv delta after)  one value per tile word
//	value     = Float column or tile statistic: u64 bits (a null Float is
//	            the NaN 0x7ff4deadbeef0001; a Float column that is only
//	            counted is written as 0 when not null);
//	            String value: uv, 0 for none, else 1 + index in the string table
//	            (of an entry of the same column);
//	            distinct set: n:uv  n x string table index:uv
//
// Version 2 has the layout of version 1; what changed is that tiles may
// also summarize raw events (an eager entity: tiles starting at or after
// folded hold exactly its raw events whose tile starts after newest -
// horizon, see partition.eager). A version 1 section has no such tile and
// reads as is; a build that reads only version 1 refuses version 2 rather
// than count those events twice.
//
// Values are written as values whatever the raw layout in memory (see
// layout.go): a section reads into a view of any layout (a value or a
// dictionary id its layout cannot hold widens the reading partition first).
//
// A partition section is self-contained: string values are written by value,
// not by dictionary id, so a partition can be read into any view with the
// same spec (another process, another replica) and re-interned there.
// Slots, the free stack and the sweep cursor and ticks are kept as they were, so a
// restored view expires and places entities exactly as the original would.
const (
	snapVersion   = 2
	snapOldest    = 1 // the oldest version this build reads
	snapMaxBody   = 1 << 40
	magicPart     = "TWSP"
	magicMeta     = "TWSM"
	partHeaderLen = 4 + 2 + 8 + 4 + 8
	metaHeaderLen = 4 + 2 + 8 + 8
)

// ErrSnapshot reports a snapshot that cannot be read: corrupt, truncated,
// of another version, or written for a different spec or partition. Nothing
// was changed.
var ErrSnapshot = errors.New("bad windows snapshot")

// fingerprint identifies the view's spec in snapshot headers.
func (v *View) fingerprint() uint64 {
	b := binary.AppendUvarint(nil, uint64(len(v.spec.Name)))
	b = append(b, v.spec.Name...)
	b = binary.AppendVarint(b, v.spec.Lateness)
	for _, c := range v.spec.Columns {
		b = binary.AppendUvarint(b, uint64(len(c.Name)))
		b = append(b, c.Name...)
		b = append(b, byte(c.Kind))
	}
	for _, a := range v.spec.Aggregations {
		b = binary.AppendUvarint(b, uint64(a.Column))
		b = append(b, byte(a.Func))
		b = binary.AppendVarint(b, a.Window)
		b = binary.AppendVarint(b, a.Interval)
		b = binary.AppendVarint(b, int64(a.N))
	}
	return xxhash.Sum64(b)
}

// tileWord says what a tile word holds, for snapshots.
type tileWord struct {
	kind uint8 // wordBits, wordStr or wordSet
	col  int   // spec column
	cnt  int   // the column's count word
}

const (
	wordBits = iota // u64
	wordStr         // dictionary id of a String column's last value, if its count > 0
	wordSet         // distinct set of dictionary ids
)

// tileWords returns what each tile word holds (index 0, the start, unused).
func (v *View) tileWords() []tileWord {
	r := make([]tileWord, v.tileStride)
	for c, tc := range v.tcols {
		if tc.bm != 0 {
			r[tc.bm] = tileWord{wordSet, c, tc.cnt}
		}
		if tc.last != 0 && v.dicts[c] != nil {
			r[tc.last] = tileWord{wordStr, c, tc.cnt}
		}
	}
	return r
}

// snapWriter is the scratch of one WritePartition.
type snapWriter struct {
	head  []byte
	strs  []byte
	body  []byte
	local map[uint64]uint64 // column<<32 | dictionary id -> 1 + index in the string table
	nstr  uint64
	ids   []uint64
}

var snapWriters = sync.Pool{New: func() any { return &snapWriter{local: map[uint64]uint64{}} }}

// strRef returns the string table reference (1 + index) of dictionary id
// of column c, adding the value to the table on first use.
func (v *View) strRef(s *snapWriter, c int, id uint32) uint64 {
	k := uint64(c)<<32 | uint64(id)
	if ref, ok := s.local[k]; ok {
		return ref
	}
	val := v.dicts[c].str(id)
	s.strs = binary.AppendUvarint(s.strs, uint64(c))
	s.strs = binary.AppendUvarint(s.strs, uint64(len(val)))
	s.strs = append(s.strs, val...)
	s.nstr++
	s.local[k] = s.nstr
	return s.nstr
}

// WritePartition writes partition p's state to w as one self-contained
// section (format above): every entity with its key, raw events and tiles,
// the string values they reference, and the partition's expiry state.
//
// It holds the partition's lock only while it encodes the state into memory
// (a few milliseconds for ten thousand entities; Reads of that partition
// wait, nothing else does) and writes to w after releasing it. The caller
// must not Add to partition p while WritePartition runs, so that the section
// is the partition's state at one log position. See WriteMeta for the rest.
func (v *View) WritePartition(w io.Writer, p uint32) error {
	if p >= uint32(len(v.parts)) {
		return fmt.Errorf("write partition %d: out of range [0, %d)", p, len(v.parts))
	}
	s := snapWriters.Get().(*snapWriter)
	defer snapWriters.Put(s)
	clear(s.local)
	s.strs, s.body, s.nstr = s.strs[:0], s.body[:0], 0
	part := &v.parts[p]
	part.mu.Lock()
	v.encodePartition(part, s)
	part.mu.Unlock()

	var n [binary.MaxVarintLen64]byte
	nn := binary.PutUvarint(n[:], s.nstr)
	h := append(s.head[:0], magicPart...)
	h = binary.LittleEndian.AppendUint16(h, snapVersion)
	h = binary.LittleEndian.AppendUint64(h, v.fp)
	h = binary.LittleEndian.AppendUint32(h, p)
	h = binary.LittleEndian.AppendUint64(h, uint64(nn+len(s.strs)+len(s.body)))
	h = append(h, n[:nn]...)
	s.head = h
	for _, b := range [][]byte{s.head, s.strs, s.body} {
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("write partition %d: %w", p, err)
		}
	}
	return nil
}

func (v *View) encodePartition(p *partition, s *snapWriter) {
	b := s.body
	b = binary.AppendUvarint(b, uint64(len(p.ents)))
	b = binary.AppendUvarint(b, uint64(p.cursor))
	b = binary.AppendUvarint(b, uint64(p.ticks))
	b = binary.AppendUvarint(b, uint64(p.expired))
	words := v.tileWords()
	r := make([]uint64, v.recLen)
	for slot := range p.ents {
		e, th := &p.ents[slot], p.tl(uint32(slot))
		if !e.live {
			b = append(b, 0)
			continue
		}
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(e.keyLen))
		b = append(b, p.keys[e.keyOff:e.keyOff+e.keyLen]...)
		b = binary.AppendVarint(b, e.newest)
		b = binary.AppendVarint(b, th.folded)
		b = binary.AppendUvarint(b, uint64(e.rawLen))
		prev := int64(0)
		for i := range e.rawLen {
			p.getRaw(v, e, p.rawAt(e, i), r)
			ts := int64(r[0])
			if i == 0 {
				b = binary.AppendVarint(b, ts)
			} else {
				b = binary.AppendUvarint(b, uint64(ts-prev))
			}
			prev = ts
			for j, c := range v.stored {
				x := r[1+j]
				switch {
				case v.dicts[c] == nil:
					if !v.colWide[j] && x == 0 {
						x = 0 // a counted-only value: any non-null float
					} else if !v.colWide[j] {
						x = nullBits
					}
					b = binary.LittleEndian.AppendUint64(b, x)
				case x == nullID:
					b = append(b, 0)
				default:
					b = binary.AppendUvarint(b, v.strRef(s, c, uint32(x)))
				}
			}
		}
		b = binary.AppendUvarint(b, uint64(th.tileLen))
		for i := range th.tileLen {
			t := p.words[v.tileAt(th, i):][:v.tileStride]
			if i == 0 {
				b = binary.AppendVarint(b, int64(t[0]))
			} else {
				b = binary.AppendUvarint(b, uint64(int64(t[0])-prev))
			}
			prev = int64(t[0])
			for j := 1; j < v.tileStride; j++ {
				tw := words[j]
				switch {
				case tw.kind == wordBits:
					b = binary.LittleEndian.AppendUint64(b, t[j])
				case tw.kind == wordStr && t[tw.cnt] == 0:
					b = append(b, 0)
				case tw.kind == wordStr:
					b = binary.AppendUvarint(b, v.strRef(s, tw.col, uint32(t[j])))
				default:
					s.ids = p.appendDistinct(s.ids[:0], t[j])
					b = binary.AppendUvarint(b, uint64(len(s.ids)))
					for _, id := range s.ids {
						b = binary.AppendUvarint(b, v.strRef(s, tw.col, uint32(id))-1)
					}
				}
			}
		}
	}
	b = binary.AppendUvarint(b, uint64(len(p.freeEnt)))
	for _, slot := range p.freeEnt {
		b = binary.AppendUvarint(b, uint64(slot))
	}
	s.body = b
}

// ReadPartition replaces partition p's state with a section WritePartition
// wrote (by this or another process, for a view with the same spec). String
// values are added to the view's dictionaries. It reads and checks the
// whole section before it changes anything: on error (ErrSnapshot for bad
// content) the partition is unchanged. Reads of the partition may run
// concurrently; the caller must not Add to it meanwhile.
func (v *View) ReadPartition(r io.Reader, p uint32) error {
	if p >= uint32(len(v.parts)) {
		return fmt.Errorf("read partition %d: out of range [0, %d)", p, len(v.parts))
	}
	body, err := v.readSection(r, magicPart, p)
	if err != nil {
		return fmt.Errorf("read partition %d: %w", p, err)
	}
	np := &partition{}
	if err := v.decodePartition(&snapReader{b: body}, np, p); err != nil {
		return fmt.Errorf("read partition %d: %w: %v", p, ErrSnapshot, err)
	}
	part := &v.parts[p]
	part.mu.Lock()
	part.partState = np.partState
	part.mu.Unlock()
	return nil
}

// SkipSection reads past one meta or partition section of any view and
// spec, for a reader dropping a view the snapshot holds but it no longer
// serves.
func SkipSection(r io.Reader) error {
	var hdr [partHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return fmt.Errorf("%w: header: %v", ErrSnapshot, err)
	}
	hl := metaHeaderLen
	switch string(hdr[:4]) {
	case magicPart:
		hl = partHeaderLen
	case magicMeta:
	default:
		return fmt.Errorf("%w: not a section (magic %q)", ErrSnapshot, hdr[:4])
	}
	if _, err := io.ReadFull(r, hdr[4:hl]); err != nil {
		return fmt.Errorf("%w: header: %v", ErrSnapshot, err)
	}
	n := binary.LittleEndian.Uint64(hdr[hl-8 : hl])
	if n > snapMaxBody {
		return fmt.Errorf("%w: body of %d bytes", ErrSnapshot, n)
	}
	if m, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
		return fmt.Errorf("%w: body truncated at %d of %d bytes: %v", ErrSnapshot, m, n, err)
	}
	return nil
}

// readSection reads and checks a section's header and returns its body.
// Memory grows with the bytes actually read, never with a length field.
func (v *View) readSection(r io.Reader, magic string, p uint32) ([]byte, error) {
	hl := metaHeaderLen
	if magic == magicPart {
		hl = partHeaderLen
	}
	var hdr [partHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:hl]); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrSnapshot, err)
	}
	h := hdr[:hl]
	if string(h[:4]) != magic {
		return nil, fmt.Errorf("%w: not a %s section (magic %q)", ErrSnapshot, magic, h[:4])
	}
	if ver := binary.LittleEndian.Uint16(h[4:]); ver < snapOldest || ver > snapVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads %d to %d", ErrSnapshot, ver, snapOldest, snapVersion)
	}
	if binary.LittleEndian.Uint64(h[6:]) != v.fp {
		return nil, fmt.Errorf("%w: written for another spec of view %s", ErrSnapshot, v.spec.Name)
	}
	h = h[14:]
	if magic == magicPart {
		if got := binary.LittleEndian.Uint32(h); got != p {
			return nil, fmt.Errorf("%w: section of partition %d", ErrSnapshot, got)
		}
		h = h[4:]
	}
	n := binary.LittleEndian.Uint64(h)
	if n > snapMaxBody {
		return nil, fmt.Errorf("%w: body of %d bytes", ErrSnapshot, n)
	}
	var buf bytes.Buffer
	if m, err := io.CopyN(&buf, r, int64(n)); err != nil {
		return nil, fmt.Errorf("%w: body truncated at %d of %d bytes: %v", ErrSnapshot, m, n, err)
	}
	return buf.Bytes(), nil
}

// snapReader decodes a section body. After the first error every read
// returns zero, so decoding loops end quickly; err says what was wrong.
type snapReader struct {
	b   []byte
	err error
}

func (d *snapReader) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
	d.b = nil
}

func (d *snapReader) uv() uint64 {
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("truncated or overlong varint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *snapReader) sv() int64 {
	x, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("truncated or overlong varint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *snapReader) u64() uint64 {
	if len(d.b) < 8 {
		d.fail("truncated")
		return 0
	}
	x := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return x
}

// count reads a count of items of at least size bytes each, which the rest
// of the body must be able to hold.
func (d *snapReader) count(what string, size int) int {
	n := d.uv()
	if n > uint64(len(d.b)/size) {
		d.fail("%s: count %d exceeds the %d bytes left", what, n, len(d.b))
		return 0
	}
	return int(n)
}

func (d *snapReader) bytes(n int) []byte {
	if n > len(d.b) {
		d.fail("truncated")
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

// decodePartition fills np from a partition body and checks it: keys belong
// to partition p and are unique, events are ordered and within bounds,
// tiles lie on the grid, references resolve. Strings are interned last.
func (v *View) decodePartition(d *snapReader, np *partition, p uint32) error {
	type entry struct {
		col int
		val []byte
	}
	strs := make([]entry, d.count("strings", 2))
	for i := range strs {
		c := d.uv()
		if c >= uint64(len(v.dicts)) || v.dicts[c] == nil {
			d.fail("string %d: column %d has no dictionary", i, c)
		}
		strs[i] = entry{int(c), d.bytes(d.count("string", 1))}
	}
	ref := func(c int, r uint64) uint64 { // string table reference of column c -> local index
		if r == 0 || r > uint64(len(strs)) || strs[r-1].col != c {
			d.fail("bad string reference %d for column %d", r, c)
			return 0
		}
		return r - 1
	}
	nslots := d.count("slots", 1)
	if nslots > math.MaxUint32 {
		d.fail("%d slots", nslots)
	}
	cursor, ticks, expired := d.uv(), d.uv(), d.uv()
	if cursor > uint64(nslots) || ticks > math.MaxUint32 || expired > math.MaxInt64 {
		d.fail("cursor %d, ticks %d or expired %d out of range", cursor, ticks, expired)
	}
	np.cursor, np.ticks, np.expired = uint32(cursor), uint32(ticks), int64(expired)
	np.ents = make([]entity, nslots)
	if v.grid != 0 {
		np.tls = make([]tileHdr, nslots)
	}
	words := v.tileWords()
	rec := make([]uint64, v.recLen)
	minRec := 1 + len(v.stored) // bytes, at least
	// The raw events are decoded as logical records, in slot order, and
	// encoded once the partition's layout is known: the narrowest that
	// holds them all (see encodeRaws). Decoding into the narrowest layout
	// and widening as values came widened most partitions a few times over
	// (a restart of 10M events rewrote 25M records: BenchmarkRestart10M).
	rb := rawBufs.Get().(*[]uint64)
	defer rawBufs.Put(rb)
	raws := (*rb)[:0]
	for slot := 0; slot < nslots && d.err == nil; slot++ {
		switch flag := d.bytes(1); {
		case flag == nil:
			continue
		case flag[0] == 0:
			continue
		case flag[0] != 1:
			d.fail("slot %d: flag %d", slot, flag[0])
			continue
		}
		key := d.bytes(d.count("key", 1))
		h := v.hash(key)
		if d.err != nil {
			break
		}
		if ring.Partition(h) != p {
			return fmt.Errorf("slot %d: key %q belongs to partition %d", slot, key, ring.Partition(h))
		}
		if _, dup := np.find(h, key); dup {
			return fmt.Errorf("slot %d: key %q twice", slot, key)
		}
		np.place(uint32(slot), h, key)
		e := &np.ents[slot]
		var folded int64
		e.newest, folded = d.sv(), d.sv()
		if e.newest < MinTime || e.newest > MaxTime || folded > e.newest+1 ||
			(folded != math.MinInt64 && (folded < MinTime-4*MaxSpan || v.grid == 0)) {
			return fmt.Errorf("slot %d: newest %d, folded %d out of range", slot, e.newest, folded)
		}
		th := np.tl(uint32(slot))
		if v.grid != 0 {
			th.folded = folded
		}
		nraw := d.count("raw events", minRec)
		ts := int64(0)
		for i := 0; i < nraw && d.err == nil; i++ {
			if i == 0 {
				ts = d.sv()
			} else if dt := d.uv(); dt > uint64(MaxTime-ts) {
				return fmt.Errorf("slot %d: raw event %d: time delta %d", slot, i, dt)
			} else {
				ts += int64(dt)
			}
			if ts <= e.newest-v.horizon || ts > e.newest || ts < folded {
				return fmt.Errorf("slot %d: raw event %d: ts %d outside (newest - horizon, newest %d] or before folded %d", slot, i, ts, e.newest, folded)
			}
			rec[0] = uint64(ts)
			for j, c := range v.stored {
				if v.dicts[c] == nil {
					x := d.u64()
					if f := math.Float64frombits(x); x != nullBits && (math.IsNaN(f) || math.IsInf(f, 0) || x == 1<<63) {
						return fmt.Errorf("slot %d: raw event %d: value bits %#x", slot, i, x)
					}
					if !v.colWide[j] && x != nullBits {
						x = 0
					} else if !v.colWide[j] {
						x = nullID
					}
					rec[1+j] = x
				} else if r := d.uv(); r == 0 {
					rec[1+j] = nullID
				} else {
					rec[1+j] = ref(c, r)
				}
			}
			raws = append(raws, rec...)
			e.rawLen++
			np.raw++
			if e.rawNull < maxRawNull && v.recHasNull(rec) {
				e.rawNull++
			}
		}
		ntile := d.count("tiles", v.tileStride)
		if ntile > 0 && v.grid == 0 {
			return fmt.Errorf("slot %d: tiles in a view without tiled aggregations", slot)
		}
		if ntile > 0 {
			th.tileOff, th.tileCls = np.allocFor(v, tileKind, ntile)
		}
		start := int64(0)
		for i := 0; i < ntile && d.err == nil; i++ {
			if i == 0 {
				start = d.sv()
			} else if dt := d.uv(); dt == 0 || dt > uint64(MaxTime-start) {
				return fmt.Errorf("slot %d: tile %d: start delta %d", slot, i, dt)
			} else {
				start += int64(dt)
			}
			if start < MinTime-v.grid || start > e.newest || floorDiv(start, v.grid)*v.grid != start {
				return fmt.Errorf("slot %d: tile %d: start %d off the %d ms grid or out of range", slot, i, start, v.grid)
			}
			at := v.tileAt(th, uint32(i))
			t := np.words[at : at+v.tileStride]
			t[0] = uint64(start)
			for j := 1; j < v.tileStride; j++ {
				tw := words[j]
				switch tw.kind {
				case wordBits:
					t[j] = d.u64()
				case wordStr:
					r := d.uv()
					if (r == 0) != (t[tw.cnt] == 0) {
						return fmt.Errorf("slot %d: tile %d: last value %d with count %d", slot, i, r, t[tw.cnt])
					}
					if r != 0 {
						t[j] = ref(tw.col, r)
					}
				case wordSet:
					for range d.count("distinct set", 1) {
						np.addDistinct(&t[j], uint32(ref(tw.col, d.uv()+1)))
					}
				}
			}
			th.tileLen++
			np.tiles++
		}
	}
	nfree := d.count("free slots", 1)
	if d.err == nil && nfree != nslots-np.live {
		return fmt.Errorf("%d free slots for %d dead", nfree, nslots-np.live)
	}
	np.freeEnt = make([]uint32, 0, nfree)
	for range nfree {
		s := d.uv()
		if d.err == nil && (s >= uint64(nslots) || np.ents[s].live || slices.Contains(np.freeEnt, uint32(s))) {
			return fmt.Errorf("free slot %d: out of range, live or repeated", s)
		}
		np.freeEnt = append(np.freeEnt, uint32(s))
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%d bytes after the partition", len(d.b))
	}
	// Everything checks: intern the strings and map local indexes to ids.
	gid := make([]uint32, len(strs))
	for i, s := range strs {
		id, ok := v.dicts[s.col].id(s.val)
		if !ok {
			return fmt.Errorf("column %s: dictionary full", v.spec.Columns[s.col].Name)
		}
		gid[i] = id
	}
	np.remap(v, words, gid)
	for k := 0; k < len(raws); k += v.recLen {
		for j, c := range v.stored {
			if x := raws[k+1+j]; v.dicts[c] != nil && x != nullID {
				raws[k+1+j] = uint64(gid[x])
			}
		}
	}
	np.encodeRaws(v, raws)
	*rb = raws
	return nil
}

// rawBufs holds decodePartition's buffers of logical raw records.
var rawBufs = sync.Pool{New: func() any { return new([]uint64) }}

// encodeRaws gives p, decoded but for its raw records, the narrowest layout
// that holds raws (the logical raw records of its live entities in slot
// order, rawLen each) and encodes them into blocks of their own.
func (p *partition) encodeRaws(v *View, raws []uint64) {
	cols := slices.Clone(v.narrowest.cols)
	for k := 0; k < len(raws); k += v.recLen {
		for i := range cols {
			if x := raws[k+1+i]; !cols[i].holds(x) {
				cols[i] = cols[i].widerFor(x)
			}
		}
	}
	p.lay = newLayout(v.tsBits, cols)
	k := 0
	for s := range p.ents {
		e := &p.ents[s]
		if !e.live || e.rawLen == 0 {
			continue
		}
		e.rawOff, e.rawCls = p.allocFor(v, rawKind, int(e.rawLen))
		for i := range e.rawLen {
			p.putRaw(v, e, p.rawAt(e, i), raws[k:k+v.recLen])
			k += v.recLen
		}
	}
}

// allocFor allocates a block of kind able to hold n records and returns
// its offset and size class.
func (p *partition) allocFor(v *View, kind, n int) (uint32, uint8) {
	cls := uint8(0)
	for int(classCap[cls]) < n {
		cls++
	}
	return p.allocBlock(v, kind, cls), cls
}

// remap replaces the string table indexes a decoded partition's tiles hold
// by dictionary ids.
func (p *partition) remap(v *View, words []tileWord, gid []uint32) {
	var ids []uint64
	for i := range p.ents {
		if !p.ents[i].live {
			continue
		}
		th := p.tl(uint32(i))
		for k := range th.tileLen {
			t := p.words[v.tileAt(th, k):][:v.tileStride]
			for j := 1; j < v.tileStride; j++ {
				switch tw := words[j]; {
				case tw.kind == wordStr && t[tw.cnt] != 0:
					t[j] = uint64(gid[t[j]])
				case tw.kind == wordSet && t[j] != 0:
					ids = p.appendDistinct(ids[:0], t[j])
					if t[j]&bmFlag != 0 {
						p.bms[uint32(t[j])].Clear()
						p.freeBms = append(p.freeBms, uint32(t[j]))
					}
					t[j] = 0
					for _, id := range ids {
						p.addDistinct(&t[j], gid[id])
					}
				}
			}
		}
	}
}

// WriteMeta writes the view-wide state that partitions do not hold: the
// watermark and the count of refused events.
//
// Order for a snapshot taken while ingest continues (partition by partition,
// each at its own log position): call WriteMeta at the log position replay
// will start from, before the first WritePartition (with Adds paused, like
// a partition). On recovery, ReadMeta and every ReadPartition, then replay
// the log from that position in order: Add the events of partitions whose
// section does not hold them yet, and pass the others to AdvanceWatermark.
// The watermark then evolves as it did, and every too-late decision is
// the same. A snapshot taken with ingest stopped needs no care.
func (v *View) WriteMeta(w io.Writer) error {
	b := make([]byte, 0, metaHeaderLen+16)
	b = append(b, magicMeta...)
	b = binary.LittleEndian.AppendUint16(b, snapVersion)
	b = binary.LittleEndian.AppendUint64(b, v.fp)
	b = binary.LittleEndian.AppendUint64(b, 16)
	b = binary.LittleEndian.AppendUint64(b, uint64(v.watermark.Load()))
	b = binary.LittleEndian.AppendUint64(b, uint64(v.tooLate.Load()))
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write meta of view %s: %w", v.spec.Name, err)
	}
	return nil
}

// ReadMeta restores what WriteMeta wrote: it sets the watermark and the
// refused count. On error nothing changes.
func (v *View) ReadMeta(r io.Reader) error {
	body, err := v.readSection(r, magicMeta, 0)
	if err != nil {
		return fmt.Errorf("read meta of view %s: %w", v.spec.Name, err)
	}
	d := &snapReader{b: body}
	wm, late := int64(d.u64()), d.u64()
	switch {
	case d.err != nil || len(d.b) != 0:
		return fmt.Errorf("read meta of view %s: %w: body of %d bytes", v.spec.Name, ErrSnapshot, len(body))
	case wm != math.MinInt64/2 && (wm < MinTime || wm > MaxTime), late > math.MaxInt64:
		return fmt.Errorf("read meta of view %s: %w: watermark %d, refused %d", v.spec.Name, ErrSnapshot, wm, late)
	}
	v.watermark.Store(wm)
	v.tooLate.Store(int64(late))
	return nil
}

// AdvanceWatermark raises the watermark to ts, as an accepted Add at ts
// would, without placing anything. Recovery uses it for logged events that
// a partition's snapshot already holds (see WriteMeta).
func (v *View) AdvanceWatermark(ts int64) {
	if ts < MinTime || ts > MaxTime {
		return
	}
	for wm := v.watermark.Load(); ts > wm && !v.watermark.CompareAndSwap(wm, ts); wm = v.watermark.Load() {
	}
}
