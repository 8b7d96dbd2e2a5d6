package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/wal"
)

// A cluster's number of groups (G) and replicas per group (R) are fixed
// when it is created: --cluster-groups and --cluster-replicas say what a
// new cluster is created with. A node restarted with other values started
// as if they applied and silently ran the cluster's, so an operator who
// meant to change them (or mistyped them) was never told. Open refuses a
// start whose values, when given, differ from the cluster's: from the map
// its data dir holds before anything in it is opened (storedMap), else
// (a new data dir, a cluster forming) once the map is known (waitMap). A
// value not given (0) takes the cluster's.

// checkShape refuses cfg's groups or replicas, where given, that differ
// from map m's, saying what the cluster has and how to start.
func checkShape(cfg Config, m *Map) error {
	var given []string
	if cfg.Groups != 0 && cfg.Groups != len(m.Groups) {
		given = append(given, fmt.Sprintf("--cluster-groups %d", cfg.Groups))
	}
	if cfg.Replicas != 0 && cfg.Replicas != m.Replicas {
		given = append(given, fmt.Sprintf("--cluster-replicas %d", cfg.Replicas))
	}
	if len(given) == 0 {
		return nil
	}
	return fmt.Errorf("cluster: cluster %q has %d groups of %d replicas, fixed when it was created, but this node was started with %s (the flag, or groups/replicas in the config file's cluster block): "+
		"start it without them (a member runs the cluster's), or with --cluster-groups %d --cluster-replicas %d; a cluster's groups and replicas per group cannot be changed (move-replica and rebalance move replicas between nodes)",
		m.ID, len(m.Groups), m.Replicas, strings.Join(given, " and "), len(m.Groups), m.Replicas)
}

// errFound stops storedMap's replay at the first map.
var errFound = errors.New("found")

// storedMap reads the cluster map the metadata replica in dataDir holds,
// without opening it and without writing anything: the newest snapshot's
// map, else the first map the log sets ("init"). It is for checkShape
// only: groups and replicas per group never change after the first map,
// so an older map answers as well as the newest. Nil when the data dir
// holds no map it can read (a new one, a node not admitted yet, a log the
// replica's open refuses, with its own error).
func storedMap(dataDir string) *Map {
	dir := groupDir(dataDir, "meta")
	var newest struct {
		ID    string
		Index uint64
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "snapshots"))
	for _, e := range ents {
		var meta struct {
			ID    string
			Index uint64
		}
		b, err := os.ReadFile(filepath.Join(dir, "snapshots", e.Name(), "meta.json"))
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") || err != nil || json.Unmarshal(b, &meta) != nil {
			continue
		}
		if meta.Index >= newest.Index {
			newest.ID, newest.Index = e.Name(), meta.Index
		}
	}
	if newest.ID != "" {
		if b, err := os.ReadFile(filepath.Join(dir, "snapshots", newest.ID, "state.bin")); err == nil && len(b) > 0 {
			if m, err := DecodeMap(b); err == nil {
				return m
			}
		}
	}
	a, err := wal.OpenArchive(nil, filepath.Join(dir, "log"))
	if err != nil {
		return nil
	}
	var found *Map
	a.Replay(newest.Index+1, func(index uint64, rec []byte) error {
		typ, data, err := wal.DecodeRaftEntry(rec, index)
		if err != nil || typ != raft.LogCommand {
			return nil
		}
		var cmd metaCommand
		if json.Unmarshal(data, &cmd) != nil || cmd.Op != "init" {
			return nil
		}
		if m, err := DecodeMap(cmd.Map); err == nil {
			found = m
			return errFound
		}
		return nil
	})
	return found
}
