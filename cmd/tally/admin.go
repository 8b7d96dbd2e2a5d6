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
		Short: "Keep every log record before the first corrupt one; move the rest aside (nothing is deleted)",
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
			// log's front, never cut with the records after it.
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
			kept, aside, err := wal.Repair(dir, covered, wal.Options{})
			if err != nil {
				return fmt.Errorf("repair %s: %w", dir, err)
			}
			after, _ := wal.Inspect(dir)
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"dir": dir, "first": after.First, "kept": kept, "movedTo": aside})
			}
			if aside == "" {
				fmt.Fprintf(cmd.OutOrStdout(), "wal %s: the log is clean, nothing moved (%d records)\n", dir, kept)
				return nil
			}
			if after.First > before.First {
				fmt.Fprintf(cmd.OutOrStdout(), "wal %s: records %d..%d, corrupt ones among them, are held by snapshot %s and were moved to %s; "+
					"the log now starts at record %d (historical features before it answer ARCHIVE_INCOMPLETE)\n",
					dir, before.First, after.First-1, snap.ID, aside, after.First)
			}
			// A cut keeps a copy of the segment it cut, which is still in the log.
			moved, _ := wal.Inspect(aside)
			if n := len(moved.Segments); n > 0 && moved.Segments[n-1].First >= after.First {
				fmt.Fprintf(cmd.OutOrStdout(), "wal %s: %d records kept; everything after the corruption is in %s\n", dir, kept, aside)
			}
			return nil
		},
	}
	repair.Flags().StringVar(&dataDir, "data-dir", "./tally-data", "the node's data directory (stop the node first)")
	walCmd.AddCommand(repair)
	cmd.AddCommand(walCmd, inspectCmd(&asJSON))
	return cmd
}
