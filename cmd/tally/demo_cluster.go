package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tally-ml/tally/bench/localcluster"
	"github.com/tally-ml/tally/bench/workload"
	"github.com/tally-ml/tally/client"
)

// demoCluster is `tally demo --nodes N`: N tally processes of this binary
// form a cluster on loopback (data dirs and a generated cluster key under
// --data-dir, default a new temporary directory), and the demo streams into
// every node and reads through every node. Ctrl-C stops them all.
func demoCluster(cmd *cobra.Command, f serveFlags, nodes, rate, users int, seed uint64, duration time.Duration, kafka string) error {
	if f.cluster.enabled() || f.listen != "" {
		return fmt.Errorf("demo --nodes %d starts its own cluster on free loopback ports: drop --listen and the --cluster-* flags", nodes)
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	dir := f.dataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "tally-demo-cluster-"); err != nil {
			return err
		}
	}
	if err := claimDemoDir(dir); err != nil {
		return err
	}
	var args []string
	if f.repo != "" {
		args = append(args, "--repo", f.repo)
	}
	if f.config != "" {
		args = append(args, "--config", f.config)
	}
	prod, kargs, err := demoClusterKafka(kafka, f.repo, dir)
	if err != nil {
		return err
	}
	if prod != nil {
		defer prod.cl.Close()
		args = append(args, kargs...)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "tally demo: starting %d nodes under %s (logs: %s/n*.log)\n", nodes, dir, dir)
	c, err := localcluster.Start(ctx, localcluster.Options{Binary: bin, Dir: dir, Nodes: nodes, Args: args})
	if err != nil {
		return err
	}
	defer c.Stop()
	for i := range c.Nodes {
		fmt.Fprintf(out, "  %s\n", c.Command(i))
	}
	if duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	d := &demo{out: out, ids: "demo-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-", kafka: prod,
		gen: workload.New(workload.Config{Seed: seed, Users: users, Merchants: 500, FraudRate: 0.002})}
	for _, addr := range c.Addrs() {
		cl, err := client.New(addr, client.Options{})
		if err != nil {
			return err
		}
		d.cs = append(d.cs, cl)
	}
	d.c = d.cs[0]
	return d.run(ctx, rate)
}
