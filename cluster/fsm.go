package cluster

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/store"
)

// A group's Raft entries are requests: 'Q', uvarint(len id), id, then the
// store's log record (events with their acknowledgement clock, or a table
// upload). The id is what the FSM applies once.
const requestTag = 'Q'

// appendRequest appends the entry of record rec under request id.
func appendRequest(dst []byte, id string, rec []byte) []byte {
	dst = append(dst, requestTag)
	dst = binary.AppendUvarint(dst, uint64(len(id)))
	dst = append(dst, id...)
	return append(dst, rec...)
}

// decodeRequest splits an entry into its request id and record.
func decodeRequest(b []byte) (id, rec []byte, err error) {
	if len(b) < 2 || b[0] != requestTag {
		return nil, nil, errors.New("not a request entry")
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > uint64(len(b)-1-k) {
		return nil, nil, errors.New("request entry: bad id length")
	}
	at := 1 + k
	return b[at : at+int(n)], b[at+int(n):], nil
}

// A group's FSM remembers the ids (their xxhash, store.RequestKey) of
// the last store.RequestWindowSize requests it applied (see DESIGN.md: by
// count, so that replicas agree).
func newDedup() *store.RequestWindow { return store.NewRequestWindow(store.RequestWindowSize) }

// applied is what a group's FSM answers a committed request with (the
// future's Response): the store's counts, or that the id was a repeat.
type applied struct {
	tooLate, deferred int
	repeat            bool
	err               error
	stream            streamApplied // a stream record's partition after it (kafka.go)
}

// groupFSM is a replica group's raft.FSM: the store of the group's
// partitions behind the request-id filter.
type groupFSM struct {
	st       atomic.Pointer[store.Store]
	newStore func() (*store.Store, error) // an empty store of the group's partitions
	seen     *store.RequestWindow
	mu       sync.Mutex // serialises Snapshot's copy of seen with Apply
	applies  atomic.Uint64
	restores atomic.Uint64 // snapshots restored (status: snapshotRestores)
	repeats  atomic.Uint64 // requests dropped as repeats of applied ones
	cps      checkpoints   // check.go: checksums at checkpoint entries
}

func newGroupFSM(newStore func() (*store.Store, error)) (*groupFSM, error) {
	st, err := newStore()
	if err != nil {
		return nil, err
	}
	f := &groupFSM{newStore: newStore, seen: newDedup()}
	f.st.Store(st)
	return f, nil
}

// Store is the group's current state (a restore swaps it).
func (f *groupFSM) Store() *store.Store { return f.st.Load() }

// Apply applies a committed request once.
func (f *groupFSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if isCheckpoint(l.Data) {
		return f.checkpoint(l.Index)
	}
	id, rec, err := decodeRequest(l.Data)
	if err != nil {
		return applied{err: fmt.Errorf("raft entry %d: %w", l.Index, err)}
	}
	h := xxhash.Sum64(id)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen.Has(h) {
		f.repeats.Add(1)
		return f.streamResult(rec, applied{repeat: true})
	}
	f.applies.Add(1)
	tooLate, deferred, err := f.Store().ApplyCounted(l.Index, rec)
	if err == nil {
		// Only an applied request is remembered: a record the store
		// refuses (every replica alike) is refused again on a retry, not
		// acknowledged as a repeat of something that never happened.
		f.seen.Add(h)
	}
	return f.streamResult(rec, applied{tooLate: tooLate, deferred: deferred, err: err})
}

// holds reports whether the FSM applied every request whose hashed id is
// in keys, as far as its window of ids remembers.
func (f *groupFSM) holds(keys []uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		if !f.seen.Has(k) {
			return false
		}
	}
	return true
}

// Snapshot captures the store (in apply order: raft calls it between
// applies) and the request ids.
func (f *groupFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ss, err := f.Store().Snapshot()
	if err != nil {
		return nil, err
	}
	return &groupSnapshot{ss: ss, ids: f.seen.AppendKeys(nil)}, nil
}

const groupSnapMagic = "TALLYGS1"

// Restore replaces the state with a snapshot's, in a fresh store.
func (f *groupFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 1<<20)
	var hdr [12]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return fmt.Errorf("group snapshot header: %w", err)
	}
	if string(hdr[:8]) != groupSnapMagic {
		return errors.New("not a tally group snapshot")
	}
	n := binary.LittleEndian.Uint32(hdr[8:])
	if n > store.RequestWindowSize {
		return fmt.Errorf("group snapshot holds %d request ids, more than %d", n, store.RequestWindowSize)
	}
	seen := newDedup()
	var b [8]byte
	for range n {
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return fmt.Errorf("group snapshot request ids: %w", err)
		}
		seen.Add(binary.LittleEndian.Uint64(b[:]))
	}
	st, err := f.newStore()
	if err != nil {
		return err
	}
	if err := st.Restore(br); err != nil {
		return err
	}
	f.mu.Lock()
	f.seen = seen
	f.st.Store(st)
	f.mu.Unlock()
	f.restores.Add(1)
	return nil
}

type groupSnapshot struct {
	ss  *store.StateSnapshot
	ids []uint64
}

func (s *groupSnapshot) Persist(sink raft.SnapshotSink) error {
	bw := bufio.NewWriterSize(sink, 1<<20)
	err := func() error {
		var hdr [12]byte
		copy(hdr[:], groupSnapMagic)
		binary.LittleEndian.PutUint32(hdr[8:], uint32(len(s.ids)))
		if _, err := bw.Write(hdr[:]); err != nil {
			return err
		}
		var b [8]byte
		for _, h := range s.ids {
			binary.LittleEndian.PutUint64(b[:], h)
			if _, err := bw.Write(b[:]); err != nil {
				return err
			}
		}
		if err := s.ss.Persist(bw); err != nil {
			return err
		}
		return bw.Flush()
	}()
	if err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *groupSnapshot) Release() {}
