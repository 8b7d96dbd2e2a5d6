package main

import (
	"fmt"
	"os"
	"strings"

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
// an unknown subcommand it fails as a usage error (exit 2) instead of
// printing its usage and succeeding.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return &exitError{exitUsage, fmt.Errorf("unknown command %q for %q; run '%s --help'", args[0], c.CommandPath(), c.CommandPath())}
		}
		return nil
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		return &exitError{exitUsage, fmt.Errorf("%s needs a subcommand; run '%s --help'", c.CommandPath(), c.CommandPath())}
	}
	return cmd
}

// requireFlags makes names flags cmd cannot run without: one left out is a
// usage error (exit 2; cobra's MarkFlagRequired fails with exit 1), checked
// before cmd runs.
func requireFlags(cmd *cobra.Command, names ...string) {
	cmd.PreRunE = func(c *cobra.Command, _ []string) error {
		var missing []string
		for _, name := range names {
			if !c.Flags().Changed(name) {
				missing = append(missing, "--"+name)
			}
		}
		if len(missing) > 0 {
			return &exitError{exitUsage, fmt.Errorf("%s needs %s; run '%s --help'", c.CommandPath(), strings.Join(missing, ", "), c.CommandPath())}
		}
		return nil
	}
}

// noArgs refuses positional arguments as a usage error (exit 2, as every
// help text promises for bad arguments; cobra.NoArgs's error exits 1).
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return &exitError{exitUsage, fmt.Errorf("%s takes no arguments (got %q); run '%s --help'", cmd.CommandPath(), args, cmd.CommandPath())}
	}
	return nil
}

// exactArgs refuses any number of positional arguments but n as a usage
// error (exit 2), naming what the command takes (its Use line).
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return &exitError{exitUsage, fmt.Errorf("%s takes %d argument(s) (got %d: %q): usage: %s; run '%s --help'",
				cmd.CommandPath(), n, len(args), args, cmd.UseLine(), cmd.CommandPath())}
		}
		return nil
	}
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  noArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "tally", version)
		},
	}
}
