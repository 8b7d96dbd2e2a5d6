package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/windows"
)

// The read sub-request a node sends a group's replica, and its answer, are
// binary: uvarints, little-endian float64s and length-prefixed strings.
//
//	request: varint t, uvarint n, n x (byte table, uvarint view, bytes key)
//	answer:  per read in order: a table's columns (uvarint n, n x (byte ok,
//	         f64, bytes)), or a feature view's values (uvarint n, n x value)
//	value:   byte present, f64 num, bytes str, uvarint n + n x f64, uvarint n + n x bytes

var errShort = errors.New("cluster wire: truncated message")

func appendBytes(dst []byte, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func appendF64(dst []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(dst, math.Float64bits(f))
}

func appendReads(dst []byte, t int64, reads []node.Read, idx []int) []byte {
	dst = binary.AppendVarint(dst, t)
	dst = binary.AppendUvarint(dst, uint64(len(idx)))
	for _, i := range idx {
		r := reads[i]
		tb := byte(0)
		if r.Table {
			tb = 1
		}
		dst = append(dst, tb)
		dst = binary.AppendUvarint(dst, uint64(r.View))
		dst = appendBytes(dst, r.Key)
	}
	return dst
}

// wireReader decodes; the first error sticks.
type wireReader struct {
	b   []byte
	err error
}

func (r *wireReader) uvarint(limit uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > limit {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) byte() byte {
	if r.err != nil || len(r.b) < 1 {
		r.err = errShort
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *wireReader) f64() float64 {
	if r.err != nil || len(r.b) < 8 {
		r.err = errShort
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return f
}

func (r *wireReader) bytes() []byte {
	n := r.uvarint(uint64(len(r.b)))
	if r.err == nil && n > uint64(len(r.b)) {
		r.err = errShort
	}
	if r.err != nil {
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

// maxPeerReads is the most reads one read sub-request may hold: what a
// peer's request makes a node read and answer is bounded by it, not by the
// request's size (a read of a few bytes can answer kilobytes). Cluster.Read
// splits larger reads of a group into several requests. A variable so
// tests can lower it.
var maxPeerReads = 4096

// peerReadKeyBytes is the key length a read sub-request of maxPeerReads
// reads is sized for: limits.max_key_bytes' default (node.DefaultConfig).
// Reads of longer keys (a node whose max_key_bytes is raised, or a lookup
// of a key no write would take) go fewer to a request.
const peerReadKeyBytes = 1 << 10

// maxPeerReadBody is the most bytes a read sub-request's body may hold:
// maxPeerReads reads of keys of peerReadKeyBytes with the largest view
// numbers decodeReads takes (about 4 MiB for 4096). The read route reads
// no more; Cluster.Read splits a group's reads so that no request holds
// more.
func maxPeerReadBody() int64 {
	const read = 1 + 3 + 2 + peerReadKeyBytes // table byte, view (< 1<<21), key length, key
	return 2*binary.MaxVarintLen64 + int64(maxPeerReads)*read
}

// peerReadParts splits the reads idx of one group into the read
// sub-requests a peer takes: at most maxPeerReads reads and
// maxPeerReadBody bytes each. A read no request can hold (a key of about
// 4 MiB, which no write under the default limits takes) is an error.
func peerReadParts(reads []node.Read, idx []int) ([][]int, error) {
	limit := maxPeerReadBody() - 2*binary.MaxVarintLen64 // the reads, after t and their count
	var parts [][]int
	start, size := 0, int64(0)
	for j, i := range idx {
		r := reads[i]
		n := int64(1 + uvarintLen(uint64(r.View)) + uvarintLen(uint64(len(r.Key))) + len(r.Key))
		if n > limit {
			return nil, fmt.Errorf("a read of a %d-byte key: more than a read sub-request to a peer may hold (%d bytes)", len(r.Key), maxPeerReadBody())
		}
		if j-start == maxPeerReads || size+n > limit {
			parts, start, size = append(parts, idx[start:j]), j, 0
		}
		size += n
	}
	if start < len(idx) {
		parts = append(parts, idx[start:])
	}
	return parts, nil
}

// uvarintLen is the length of v's uvarint.
func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// decodeReads parses a read sub-request; views are checked against the
// repo's counts by the caller. A request of more than maxPeerReads reads
// is refused before any is decoded.
func decodeReads(b []byte) (t int64, reads []node.Read, err error) {
	r := wireReader{b: b}
	t = r.varint()
	n := r.uvarint(uint64(len(b)))
	if r.err == nil && n > uint64(maxPeerReads) {
		return t, nil, fmt.Errorf("cluster wire: a read sub-request of %d reads, more than the %d one request may hold: the sender must split it (a node of another version?)", n, maxPeerReads)
	}
	for range n {
		tb := r.byte()
		v := r.uvarint(1 << 20)
		k := r.bytes()
		if r.err != nil {
			break
		}
		reads = append(reads, node.Read{Table: tb == 1, View: int(v), Key: k})
	}
	return t, reads, r.err
}

func appendValue(dst []byte, v *windows.Value) []byte {
	p := byte(0)
	if v.Present {
		p = 1
	}
	dst = append(dst, p)
	dst = appendF64(dst, v.Num)
	dst = appendBytes(dst, []byte(v.Str))
	dst = binary.AppendUvarint(dst, uint64(len(v.Nums)))
	for _, f := range v.Nums {
		dst = appendF64(dst, f)
	}
	dst = binary.AppendUvarint(dst, uint64(len(v.Strs)))
	for _, s := range v.Strs {
		dst = appendBytes(dst, []byte(s))
	}
	return dst
}

func (r *wireReader) value(v *windows.Value) {
	v.Present = r.byte() == 1
	v.Num = r.f64()
	v.Str = string(r.bytes())
	n := r.uvarint(uint64(len(r.b)) / 8)
	v.Nums = v.Nums[:0]
	for range n {
		v.Nums = append(v.Nums, r.f64())
	}
	n = r.uvarint(uint64(len(r.b)))
	v.Strs = v.Strs[:0]
	for range n {
		v.Strs = append(v.Strs, string(r.bytes()))
	}
}

// appendAnswer encodes what out holds for reads (out laid out as
// node.ReadOut for exactly these reads).
func appendAnswer(dst []byte, reads []node.Read, out node.ReadOut) []byte {
	v, tb := 0, 0
	for _, r := range reads {
		if r.Table {
			dst = binary.AppendUvarint(dst, uint64(len(out.TOK[tb])))
			for c := range out.TOK[tb] {
				// 1: a value; 0: null; 2: no row for the key (a node
				// that predates 2 sends 0, read as a row of nulls).
				ok := byte(0)
				switch {
				case out.TFound != nil && !out.TFound[tb]:
					ok = 2
				case out.TOK[tb][c]:
					ok = 1
				}
				dst = append(dst, ok)
				dst = appendF64(dst, out.TNums[tb][c])
				dst = appendBytes(dst, []byte(out.TStrs[tb][c]))
			}
			tb++
			continue
		}
		dst = binary.AppendUvarint(dst, uint64(len(out.Vals[v])))
		for i := range out.Vals[v] {
			dst = appendValue(dst, &out.Vals[v][i])
		}
		v++
	}
	return dst
}

// decodeAnswer reads an answer to the reads idx of reads into out, at the
// positions vpos/tpos of those reads.
func decodeAnswer(b []byte, reads []node.Read, idx []int, vpos, tpos []int, out node.ReadOut) error {
	r := wireReader{b: b}
	for _, i := range idx {
		if reads[i].Table {
			tb := tpos[i]
			n := r.uvarint(uint64(len(out.TOK[tb])))
			if r.err == nil && int(n) != len(out.TOK[tb]) {
				return errors.New("cluster wire: table answer has the wrong number of columns (nodes on different repos?)")
			}
			found := n == 0
			for c := range n {
				ok := r.byte()
				found = found || ok != 2
				out.TOK[tb][c] = ok == 1
				out.TNums[tb][c] = r.f64()
				out.TStrs[tb][c] = string(r.bytes())
			}
			if out.TFound != nil {
				out.TFound[tb] = found
			}
			continue
		}
		v := vpos[i]
		n := r.uvarint(1 << 16)
		vals := out.Vals[v][:0]
		for range n {
			if r.err != nil {
				break
			}
			vals = append(vals, windows.Value{})
			r.value(&vals[len(vals)-1])
		}
		out.Vals[v] = vals
	}
	if r.err == nil && len(r.b) != 0 {
		return errors.New("cluster wire: answer longer than its reads")
	}
	return r.err
}
