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
			if _, err := os.Stat(filepath.Join(dataDir, "wal")); err != nil {
				return fmt.Errorf("no write-ahead log in %s (is --data-dir the node's data directory?): %w", dataDir, err)
			}
			lock, err := store.LockDataDir(dataDir)
			if err != nil {
				return err
			}
			defer lock.Release()
			dir := filepath.Join(dataDir, "wal")
			kept, aside, err := wal.Repair(dir, wal.Options{})
			if err != nil {
				return fmt.Errorf("repair %s: %w", dir, err)
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"dir": dir, "kept": kept, "movedTo": aside})
			}
			if aside == "" {
				fmt.Fprintf(cmd.OutOrStdout(), "wal %s: the log is clean, nothing moved (%d records)\n", dir, kept)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wal %s: %d records kept; everything after the corruption is in %s\n", dir, kept, aside)
			return nil
		},
	}
	repair.Flags().StringVar(&dataDir, "data-dir", "./tally-data", "the node's data directory (stop the node first)")
	walCmd.AddCommand(repair)
	cmd.AddCommand(walCmd, inspectCmd(&asJSON))
	return cmd
}
