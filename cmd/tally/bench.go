package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tally-ml/tally/bench"
	"github.com/tally-ml/tally/bench/inprocess"
)

func benchCmd() *cobra.Command {
	var opts bench.Options
	var peers []string
	var inMemory bool
	var cpuProfile string
	cmd := &cobra.Command{
		Use:   "bench",
		Args:  noArgs,
		Short: "Measure tally under load beside Redis and Feast on this machine, and write a report",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			opts.Peers = peers
			if !cmd.Flags().Changed("peers") {
				opts.Peers = nil
			}
			// tally under test writes its write-ahead log with
			// fsync=always, as `tally serve` does by default.
			tally := inprocess.Options{WAL: !inMemory}
			opts.Tally = func() (string, func(), error) { return inprocess.Start(tally) }
			opts.TallySetup = inprocess.Setup(tally)
			if opts.Cluster || slices.Contains(opts.Scenarios, "cluster") || len(opts.Scenarios) == 0 || slices.Contains(opts.Scenarios, "kafka") {
				bin, err := os.Executable()
				if err != nil {
					return err
				}
				opts.Binary = bin
			}
			if cpuProfile != "" {
				// The whole run, client and server alike (they share the
				// process): where a scenario's CPU goes beside the no-op's.
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			rep, err := bench.Run(ctx, opts, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			if rep.Mismatches() > 0 {
				return errors.New("lookups under load disagreed with the reference")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&opts.Quick, "quick", false, "a short run (under 2 minutes), as CI runs it")
	cmd.Flags().StringVar(&opts.OutDir, "out", "", "report directory (default results/<timestamp>)")
	cmd.Flags().StringSliceVar(&peers, "peers", nil, "peers to measure beside tally: redis, feast, onnxruntime (default all three)")
	cmd.Flags().BoolVar(&opts.NoPlots, "no-plots", false, "skip the PNG plots")
	cmd.Flags().BoolVar(&opts.UniformLookups, "uniform-lookups", false, "draw lookup keys uniformly over the users (default: with the events' skew)")
	cmd.Flags().DurationSliceVar(&opts.Calibrate, "calibrate", nil, "also pair the no-op server with copies of it that spin this long per request (e.g. 1us,3us): what a lookup costing that much more scores")
	cmd.Flags().BoolVar(&inMemory, "in-memory", false, "run tally without its write-ahead log (default: WAL with fsync=always)")
	cmd.Flags().StringSliceVar(&opts.Scenarios, "scenarios", nil, "only these scenarios: lookup, ingest, mixed, score, cluster, kafka")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (client and in-process server) to this file")
	cmd.Flags().StringVar(&opts.TraceDir, "trace", "", "write an execution trace of each lookup system's open-loop step at half the no-op server's maximum into this directory (read them with go run ./bench/schedtrace)")
	cmd.Flags().BoolVar(&opts.Cluster, "cluster", false, "also measure a single node beside 3-node clusters (R=3, R=1) of child processes: lookups, ingest, leader kills, a replica's catch-up after it was down")
	return cmd
}
