package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

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
	var dataDir string
	repair := &cobra.Command{
		Use:   "repair",
		Short: "Keep every log record before the first corrupt one, and those after the newest snapshot; move the rest aside (nothing is deleted)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := store.CheckDataDir(dataDir); err != nil {
				return err
			}
			if _, err := os.Stat(filepath.Join(dataDir, "wal")); err != nil {
				return fmt.Errorf("no write-ahead log in %s (is --data-dir the node's data directory?): %w", dataDir, err)
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
	walCmd.AddCommand(repair)
	cmd.AddCommand(walCmd, inspectCmd(&asJSON))
	return cmd
}
