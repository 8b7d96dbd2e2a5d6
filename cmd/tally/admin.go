package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/wal"
)

func adminCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "admin", Short: "Operate on a node's data directory"}
	walCmd := &cobra.Command{Use: "wal", Short: "The write-ahead log"}
	var dataDir string
	repair := &cobra.Command{
		Use:   "repair",
		Short: "Keep every log record before the first corrupt one; move the rest aside (nothing is deleted)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			lock, err := node.LockDataDir(dataDir)
			if err != nil {
				return err
			}
			defer lock.Release()
			dir := filepath.Join(dataDir, "wal")
			kept, err := wal.Repair(dir, wal.Options{})
			if err != nil {
				return fmt.Errorf("repair %s: %w", dir, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wal %s: %d records kept; anything after the corruption is in %s/corrupt-<time>/\n", dir, kept, dir)
			return nil
		},
	}
	repair.Flags().StringVar(&dataDir, "data-dir", "./tally-data", "the node's data directory (stop the node first)")
	walCmd.AddCommand(repair)
	cmd.AddCommand(walCmd)
	return cmd
}
