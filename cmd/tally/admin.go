package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tally-ml/tally/cluster"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/wal"
)

func adminCmd() *cobra.Command {
	cmd := group(&cobra.Command{Use: "admin", Short: "Operate on a node's data directory",
		Long: `tally admin works on a node's data directory (--data-dir) rather than on a running
cluster (that is tally cluster). --json prints the answer for scripts.

Exit codes, as tally cluster's: 0 ok; 1 the command ran and the answer is bad news
(nothing of tally's there, a log that could not be read or repaired); 2 bad flags
or arguments.`})
	var asJSON bool
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print the answer as JSON")
	walCmd := group(&cobra.Command{Use: "wal", Short: "The write-ahead log"})
	var dataDir, group string
	var acceptLoss bool
	repair := &cobra.Command{
		Use:   "repair",
		Short: "Keep every log record before the first corrupt one, and those after the newest snapshot; move the rest aside (nothing is deleted)",
		Long: `repair makes a log with a corrupt record usable again, on a stopped node's data dir
(it takes the data dir's lock). What it does not keep is moved into the log's
corrupt-<time>/ directory, never deleted.

A single node's log (--data-dir/wal): corrupt records the newest snapshot holds are
moved aside with the log's front, keeping the records after the snapshot; a corrupt
record after the snapshot is cut, with every record after it.

A cluster node's replica (--group meta, g0, g1, ...: its Raft log in
--data-dir/cluster/<group>): corrupt entries the replica's newest Raft snapshot holds
are moved aside with the log's front, keeping every entry after the snapshot, whatever
the replication factor (the replica forgets nothing it acknowledged). A corrupt entry
after the snapshot is cut only when the group has one replica (--cluster-replicas 1:
this is its only copy, and the cut keeps every entry before the corruption) and
--accept-data-loss is given; without it, repair says what would be lost and changes
nothing. A group with more replicas is never cut (the replica would vote having
forgotten entries it acknowledged): replace the node instead, as the refusal says.

Exit 0: repaired, or nothing to repair. Exit 1: refused or failed (nothing changed
when refused). Exit 2: bad flags.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := store.CheckDataDir(dataDir); err != nil {
				return err
			}
			if group != "" {
				return repairReplica(cmd, dataDir, group, acceptLoss, asJSON)
			}
			if _, err := os.Stat(filepath.Join(dataDir, "wal")); err != nil {
				if groups := cluster.LocalGroups(dataDir); len(groups) > 0 {
					return &exitError{exitUsage, fmt.Errorf("%s is a cluster node's data dir: name the replica to repair with --group (its groups: %s)", dataDir, strings.Join(groups, ", "))}
				}
				return fmt.Errorf("no write-ahead log in %s (is --data-dir the node's data directory?): %w", dataDir, err)
			}
			if acceptLoss {
				return &exitError{exitUsage, fmt.Errorf("--accept-data-loss is for a cluster replica's log (--group): a single node's repair cuts at a corrupt record after the snapshot without it")}
			}
			lock, err := store.LockDataDir(dataDir)
			if err != nil {
				return err
			}
			defer lock.Release()
			// The newest snapshot that verifies is the state a start
			// restores: corrupt records it covers are moved aside with the
			// log's front, never cut with the records after it (see
			// wal.Repair).
			snap, err := store.NewSnapshotStore(nil, dataDir, nil).Newest()
			if err != nil {
				return fmt.Errorf("repair: find the newest snapshot (nothing changed): %w", err)
			}
			var covered uint64
			if snap != nil {
				covered = snap.Index
			}
			dir := filepath.Join(dataDir, "wal")
			before, _ := wal.Inspect(dir)
			rep, err := wal.Repair(dir, covered, wal.Options{})
			if err != nil {
				return fmt.Errorf("repair %s: %w", dir, err)
			}
			after, _ := wal.Inspect(dir)
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"dir": dir, "first": after.First, "kept": rep.Kept, "movedTo": rep.Aside,
					"cutAt": rep.Cut, "notFound": rep.Missing})
			}
			if rep.Aside == "" {
				fmt.Fprintf(cmd.OutOrStdout(), "wal %s: the log is clean, nothing moved (%d records)\n", dir, rep.Kept)
				return nil
			}
			if rep.Front != 0 {
				// The segment moved may also hold records after the
				// snapshot: Repair copied them into a segment of their own.
				fmt.Fprintf(cmd.OutOrStdout(), "wal %s: records %d..%d, corrupt ones among them, are held by snapshot %s and were moved to %s; "+
					"the log now starts at record %d (historical features before it answer ARCHIVE_INCOMPLETE)\n",
					dir, before.First, rep.Front-1, snap.ID, rep.Aside, rep.Front)
			}
			if rep.Missing != 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "wal %s: corrupt record %d is held by snapshot %s, but record %d, the first after the snapshot, "+
					"was not found intact after it, so the log is cut at the corruption as well: the records after the snapshot that the log held "+
					"are only in %s, and the next start serves the snapshot without them\n",
					dir, rep.Cut, snap.ID, rep.Missing, rep.Aside)
			}
			if rep.Cut != 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "wal %s: %d records kept; everything after the corruption is in %s\n", dir, rep.Kept, rep.Aside)
			}
			return nil
		},
	}
	repair.Flags().StringVar(&dataDir, "data-dir", "./tally-data", "the node's data directory (stop the node first)")
	repair.Flags().StringVar(&group, "group", "", "a cluster node: the replica whose Raft log to repair (meta, g0, g1, ...; tally admin inspect lists them)")
	repair.Flags().BoolVar(&acceptLoss, "accept-data-loss", false, "with --group, of a group with one replica: cut its log at a corrupt entry after the snapshot, losing that entry and every later one")
	walCmd.AddCommand(repair)
	cmd.AddCommand(walCmd, inspectCmd(&asJSON))
	return cmd
}

// repairReplica is `tally admin wal repair --group`: the Raft log of this
// node's replica of group (cluster.RepairReplica).
func repairReplica(cmd *cobra.Command, dataDir, group string, acceptLoss, asJSON bool) error {
	if _, err := strconv.Atoi(group); err == nil {
		group = "g" + group
	}
	groups := cluster.LocalGroups(dataDir)
	if !slices.Contains(groups, group) {
		if len(groups) == 0 {
			return &exitError{exitUsage, fmt.Errorf("--group %s: %s holds no cluster node's data (no %s): drop --group to repair a single node's log", group, dataDir, filepath.Join(dataDir, "cluster"))}
		}
		return &exitError{exitUsage, fmt.Errorf("--group %s: %s holds no replica of it (its groups: %s)", group, dataDir, strings.Join(groups, ", "))}
	}
	lock, err := store.LockDataDir(dataDir)
	if err != nil {
		return fmt.Errorf("%w (the node must be stopped: repair rewrites its replica's log)", err)
	}
	defer lock.Release()
	before, _ := wal.Inspect(filepath.Join(dataDir, "cluster", group, "log"))
	rr, err := cluster.RepairReplica(dataDir, group, acceptLoss)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if asJSON {
		after, _ := wal.Inspect(rr.Log)
		return json.NewEncoder(out).Encode(map[string]any{"group": group, "dir": rr.Log, "snapshot": rr.Snapshot, "snapshotIndex": rr.SnapshotIndex,
			"first": after.First, "kept": rr.Kept, "movedTo": rr.Aside, "cutAt": rr.Cut, "notFound": rr.Missing, "replicas": rr.Replicas})
	}
	if rr.Aside == "" {
		fmt.Fprintf(out, "group %s: the log %s is clean, nothing moved (%d entries)\n", group, rr.Log, rr.Kept)
		return nil
	}
	if rr.Front != 0 {
		fmt.Fprintf(out, "group %s: entries %d..%d, corrupt ones among them, are held by snapshot %s and were moved to %s; "+
			"the log now starts at entry %d and keeps every entry after the snapshot (historical features before it answer ARCHIVE_INCOMPLETE)\n",
			group, before.First, rr.Front-1, rr.Snapshot, rr.Aside, rr.Front)
	}
	if rr.Missing != 0 {
		fmt.Fprintf(out, "group %s: corrupt entry %d is held by snapshot %s, but entry %d, the first after it, was not found intact, "+
			"so the log is cut at the corruption: the entries after the snapshot are only in %s, and the group serves the snapshot's state\n",
			group, rr.Cut, rr.Snapshot, rr.Missing, rr.Aside)
	} else if rr.Cut != 0 {
		fmt.Fprintf(out, "group %s: the log is cut at corrupt entry %d (%d kept): it and every later entry are only in %s, "+
			"and the group (its only replica) serves its state as of entry %d\n", group, rr.Cut, rr.Kept, rr.Aside, rr.Kept)
	}
	return nil
}
