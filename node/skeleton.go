package node

import (
	"slices"
	"sync/atomic"
)

// A lookupSkeleton is the shape of a lookup body quickParse read: the
// body's bytes with the join keys' and the request context's values cut
// out. A client sends the lookups of a service in one shape (its encoder
// writes the same members in the same order), so a body usually differs
// from the one before only inside those values. read compares the bytes
// between the values (one comparison for each run of them) and reads each
// value with the function quickParse reads it with (quickKey, quickValue),
// without finding, comparing or counting a member name. A body that
// differs anywhere else goes to quickParse, which learns its shape.
//
// What read accepts, quickParse accepts and reads alike: the bytes read
// compares are bytes quickParse accepted in the learned body (member names,
// the service's name, a workspace name, punctuation, whitespace, in that
// order, so no member is missing, repeated or unknown), each value is read
// by quickParse's own function for it, and each run of bytes after a value
// starts where that function stopped in the learned body.
type lookupSkeleton struct {
	plan *servicePlan
	// text is the runs of bytes between the values, back to back: run i,
	// text[ends[i-1]:ends[i]], precedes slot i, and the last one ends the
	// body.
	text  []byte
	ends  []int
	slots []quickSpan // the values in body order (start and end unused)
}

// learnSkeleton returns the skeleton of body, which quickParse read as a
// lookup of p with its values at spans; nil if the spans are not in order
// within body (they always are).
func learnSkeleton(p *servicePlan, body []byte, spans []quickSpan) *lookupSkeleton {
	sorted := slices.Clone(spans)
	slices.SortFunc(sorted, func(a, b quickSpan) int { return a.start - b.start })
	k := &lookupSkeleton{plan: p, slots: sorted}
	at := 0
	for _, sp := range sorted {
		if sp.start < at || sp.end < sp.start || sp.end > len(body) {
			return nil
		}
		k.text = append(k.text, body[at:sp.start]...)
		k.ends = append(k.ends, len(k.text))
		at = sp.end
	}
	k.text = append(k.text, body[at:]...)
	k.ends = append(k.ends, len(k.text))
	return k
}

// read reads body into w as quickParse would, if it has k's shape, and
// reports whether it did. When it did not, w holds part of a read, which
// quickParse overwrites.
func (k *lookupSkeleton) read(n *Node, w *lookupWork, body []byte) bool {
	p := k.plan
	p.prepare(n, w)
	s := quickScan{b: body}
	from := 0
	for i, sl := range k.slots {
		lit := k.text[from:k.ends[i]]
		from = k.ends[i]
		if len(body)-s.i < len(lit) || string(body[s.i:s.i+len(lit)]) != string(lit) {
			return false
		}
		s.i += len(lit)
		if sl.ctx {
			if !p.quickValue(w, &s, sl.idx) {
				return false
			}
		} else if !quickKey(w, &s, sl.idx) {
			return false
		}
	}
	if string(body[s.i:]) != string(k.text[from:]) {
		return false
	}
	w.level, w.info = ReadDefault, ReadInfo{}
	return true
}

// skeletonSlots is how many body shapes a node keeps; skeletonEvery is how
// often (in bodies no skeleton read) it learns one when every slot is
// taken, so that clients of ever new shapes cost an allocation only now
// and then.
const (
	skeletonSlots = 4
	skeletonEvery = 16
)

// skeletons are the body shapes a node reads lookups by.
type skeletons struct {
	slots  [skeletonSlots]atomic.Pointer[lookupSkeleton]
	misses atomic.Uint64 // bodies no skeleton read
}

// parseLookup reads a single-row lookup body by a known shape, else by
// quickParse (learning the shape now and then); nil when neither takes it.
func (n *Node) parseLookup(w *lookupWork, body []byte) *servicePlan {
	for i := range n.skels.slots {
		if k := n.skels.slots[i].Load(); k != nil && k.read(n, w, body) {
			return k.plan
		}
	}
	p := n.quickParse(w, body)
	if p == nil {
		return nil
	}
	m := n.skels.misses.Add(1)
	slot := -1
	for i := range n.skels.slots {
		if n.skels.slots[i].Load() == nil {
			slot = i
			break
		}
	}
	if slot < 0 && m%skeletonEvery == 0 {
		slot = int(m/skeletonEvery) % skeletonSlots
	}
	if slot >= 0 {
		if k := learnSkeleton(p, body, w.spans); k != nil {
			n.skels.slots[slot].Store(k)
		}
	}
	return p
}
