package windows

import (
	"sync"

	"github.com/cespare/xxhash/v2"
)

// dictShards spreads a column's dictionary over independently locked shards
// so that concurrent Adds on two cores rarely touch the same lock.
const (
	dictShardBits = 6
	dictShards    = 1 << dictShardBits
	dictMaxLocal  = 1<<(32-dictShardBits) - 2 // keeps every id below nullID
)

// dict encodes the values of one String column as uint32 ids, view-wide.
// Ids are never reused: a dictionary grows with the distinct values the
// view has ever accepted (see package doc).
type dict struct {
	shards [dictShards]dictShard
}

type dictShard struct {
	mu    sync.RWMutex
	ids   map[string]uint32
	vals  []string
	bytes int
	_     [40]byte // keep shards on separate cache lines
}

// id returns b's id, adding b if it is new. It allocates only for a new value.
// ok is false if the shard is full.
func (d *dict) id(b []byte) (uint32, bool) {
	h := xxhash.Sum64(b)
	s := &d.shards[h&(dictShards-1)]
	s.mu.RLock()
	local, found := s.ids[string(b)]
	s.mu.RUnlock()
	if !found {
		s.mu.Lock()
		if local, found = s.ids[string(b)]; !found {
			if len(s.vals) >= dictMaxLocal {
				s.mu.Unlock()
				return 0, false
			}
			if s.ids == nil {
				s.ids = make(map[string]uint32)
			}
			str := string(b)
			local = uint32(len(s.vals))
			s.ids[str] = local
			s.vals = append(s.vals, str)
			s.bytes += len(str) + 16 + 32 // string header, slice slot and map entry, roughly
		}
		s.mu.Unlock()
	}
	return local<<dictShardBits | uint32(h&(dictShards-1)), true
}

// str returns the value of id.
func (d *dict) str(id uint32) string {
	s := &d.shards[id&(dictShards-1)]
	s.mu.RLock()
	v := s.vals[id>>dictShardBits]
	s.mu.RUnlock()
	return v
}

// size returns the dictionary's values and approximate bytes.
func (d *dict) size() (n, bytes int64) {
	for i := range d.shards {
		s := &d.shards[i]
		s.mu.RLock()
		n += int64(len(s.vals))
		bytes += int64(s.bytes)
		s.mu.RUnlock()
	}
	return n, bytes
}
