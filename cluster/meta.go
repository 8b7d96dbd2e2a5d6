package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// metaFSM is the metadata group's state machine: the cluster map.
type metaFSM struct {
	mu      sync.Mutex
	m       *Map
	changed chan struct{} // closed and replaced on every change
}

func newMetaFSM() *metaFSM { return &metaFSM{changed: make(chan struct{})} }

// metaCommand is a change to the map.
type metaCommand struct {
	Op  string          `json:"op"` // "init": set the first map (ignored once there is one)
	Map json.RawMessage `json:"map"`
}

// current returns the map (nil before the first) and a channel closed at
// the next change.
func (f *metaFSM) current() (*Map, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m, f.changed
}

func (f *metaFSM) set(m *Map) {
	f.m = m
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *metaFSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	var cmd metaCommand
	if err := json.Unmarshal(l.Data, &cmd); err != nil {
		return fmt.Errorf("metadata entry %d: %w", l.Index, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch cmd.Op {
	case "init":
		if f.m != nil {
			return nil
		}
		m, err := DecodeMap(cmd.Map)
		if err != nil {
			return err
		}
		f.set(m)
		return nil
	case "set-preferred": // transfer.go
		return f.applyPreferred(l.Data)
	}
	return fmt.Errorf("metadata entry %d: unknown op %q", l.Index, cmd.Op)
}

func (f *metaFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b []byte
	if f.m != nil {
		b = f.m.Encode()
	}
	return metaSnapshot(b), nil
}

func (f *metaFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(b) == 0 {
		return nil
	}
	m, err := DecodeMap(b)
	if err != nil {
		return err
	}
	f.set(m)
	return nil
}

type metaSnapshot []byte

func (s metaSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (metaSnapshot) Release() {}
