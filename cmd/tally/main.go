package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "tally:", err)
		os.Exit(exitCode(err))
	}
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "tally",
		Short:         "tally: a real-time feature serving node for machine learning",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{exitUsage, fmt.Errorf("%w; run '%s --help'", err, c.CommandPath())}
	})
	root.AddCommand(serveCmd(), demoCmd(), exportCmd(), importCmd(), modelCmd(), benchCmd(), adminCmd(), clusterCmd(), versionCmd(), feastRepoCmd())
	return root
}

// group makes cmd a command that only holds subcommands: run alone or with
// an unknown subcommand it fails (exit 1) instead of printing its usage
// and succeeding.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("unknown command %q for %q; run '%s --help'", args[0], c.CommandPath(), c.CommandPath())
		}
		return nil
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		return fmt.Errorf("%s needs a subcommand; run '%s --help'", c.CommandPath(), c.CommandPath())
	}
	return cmd
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "tally", version)
		},
	}
}
