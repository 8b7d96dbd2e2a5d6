package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tally-ml/tally/cluster"
	"github.com/tally-ml/tally/store"
)

func init() { clusterCtlCmds = append(clusterCtlCmds, recoverCmd) }

// recoverCmd is `tally cluster recover`: offline, on a stopped node's data
// dir (cluster/recover.go does the work).
func recoverCmd(c *ctl) *cobra.Command {
	var dataDir, keep, repoDir string
	var yes, acceptLoss bool
	cmd := &cobra.Command{
		Use:   "recover --data-dir D --keep ID[,ID...] [--yes]",
		Short: "Offline: bring a cluster that lost its quorum for good back on its surviving nodes",
		Long: `recover is the way back when nodes are lost for good (machines and disks gone) and
groups lost their quorum: a 3-node cluster with 3 replicas that lost two nodes cannot
write, and waiting does not help. Unlike the other subcommands it does not talk to a
running cluster: stop every surviving node, then run it on each one's data dir with the
same --keep (the surviving node ids, this one included). At its start a recovered node
asks the other members for their recovery and refuses, naming both sets, while one was
recovered with another --keep or a kept node was not recovered.

It rewrites the Raft configuration of every group the node holds (the metadata group
and its data groups) to the kept nodes, and records a map change that the node makes at
its next start: the lost nodes stop being members (to come back, each needs a new id,
--cluster-join and add-node, as a replaced node), and each group keeps its replicas on
kept nodes. Every entry in the node's logs counts as committed, including writes that
were in flight and never acknowledged.

A group with no replica on a kept node refuses the recovery, naming it; with
--accept-data-loss it is recreated EMPTY on the kept nodes: its events are lost.

Without --yes it prints what it would do and changes nothing. Refused while the node
runs (the data dir's lock). After it: start the kept nodes with their usual flags. The
groups then hold fewer replicas than the cluster's replica count: start fresh nodes
(new ids, --cluster-join), admit them with add-node, and run tally cluster rebalance,
which adds the missing replicas.

Exit 0: done (or the dry run's plan). Exit 1: refused or failed (the node runs, a group
would be lost, a replica move was stopped half-way). Exit 2: bad flags (no --keep, an id
that is no member, this node not kept).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c.out = cmd.OutOrStdout()
			for _, name := range onlineFlags {
				if cmd.Flags().Changed(name) {
					return &exitError{exitUsage, fmt.Errorf("--%s: recover talks to no node (it works offline, on the stopped node's --data-dir): leave --%s out", name, name)}
				}
			}
			ids := strings.FieldsFunc(keep, func(r rune) bool { return r == ',' || r == ' ' })
			if len(ids) == 0 {
				return &exitError{exitUsage, errors.New("--keep is required: the ids of the surviving nodes, this one included (see tally cluster recover --help)")}
			}
			if err := store.CheckDataDir(dataDir); err != nil {
				return &exitError{exitUsage, err}
			}
			if st, err := os.Stat(filepath.Join(dataDir, "cluster")); err != nil || !st.IsDir() {
				return &exitError{exitUsage, fmt.Errorf("--data-dir %s holds no cluster node's data (no %s): point it at the stopped node's data dir", dataDir, filepath.Join(dataDir, "cluster"))}
			}
			lock, err := store.LockDataDir(dataDir)
			if err != nil {
				return fmt.Errorf("recover: %w (the node must be stopped: recover rewrites its Raft state)", err)
			}
			defer lock.Release()
			repo, _, err := loadRepo(repoDir)
			if err != nil {
				return &exitError{exitUsage, fmt.Errorf("--repo: %w", err)}
			}
			opts := cluster.RecoverOptions{DataDir: dataDir, Keep: ids, AcceptLoss: acceptLoss, Repo: repo, LogOut: cmd.ErrOrStderr()}
			if c.cluster != "" {
				// The plan reads the data dir and changes nothing; an error
				// is run's again below.
				if p, err := cluster.PlanRecovery(opts); err == nil && p.Cluster != c.cluster {
					return &exitError{exitUsage, fmt.Errorf("--cluster-id %s: --data-dir %s holds node %s of cluster %q: nothing was done", c.cluster, dataDir, p.Node, p.Cluster)}
				}
			}
			run := cluster.PlanRecovery
			if yes {
				run = cluster.Recover
			}
			p, err := run(opts)
			if errors.Is(err, cluster.ErrRecoverArgs) {
				return &exitError{exitUsage, err}
			}
			if err != nil {
				return err
			}
			return c.print(p, func(w *tabwriter.Writer) { printRecovery(w, p, yes) })
		},
	}
	cmd.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		for _, name := range onlineFlags {
			if f := cmd.InheritedFlags().Lookup(name); f != nil {
				f.Hidden = true // the help ends the run: hiding it from the parent too is harmless
			}
		}
		cmd.Parent().HelpFunc()(cmd, args)
	})
	fl := cmd.Flags()
	fl.StringVar(&dataDir, "data-dir", "./tally-data", "the stopped node's data directory")
	fl.StringVar(&keep, "keep", "", "the surviving node ids, comma-separated, this node included (required)")
	fl.StringVar(&repoDir, "repo", "", "the feature repo the node runs (default: the embedded fraud repo)")
	fl.BoolVar(&yes, "yes", false, "do it (without it: print what would be done, change nothing)")
	fl.BoolVar(&acceptLoss, "accept-data-loss", false, "recreate EMPTY the groups no kept node holds: their events are lost")
	return cmd
}

// onlineFlags are the `tally cluster` flags about reaching a running node:
// recover refuses them (exit 2) rather than ignore them, and leaves them
// out of its help.
var onlineFlags = []string{"addr", "api-key", "timeout"}

func printRecovery(w *tabwriter.Writer, p *cluster.RecoveryPlan, done bool) {
	fmt.Fprintf(w, "node %s of cluster %s, map version %d: keep %s; lost for good: %s\n",
		p.Node, p.Cluster, p.MapVersion, strings.Join(p.Keep, ", "), strings.Join(p.Drop, ", "))
	fmt.Fprintln(w, "GROUP\tREPLICAS\tAFTER\tTHIS NODE'S RAFT VOTERS\tAFTER\tENTRIES COMMITTED UP TO")
	for _, g := range p.Groups {
		reps, after := strings.Join(g.Replicas, ","), strings.Join(g.NewReplicas, ",")
		if g.Name == "meta" {
			reps, after = "every member", "every kept node"
		}
		if slices.ContainsFunc(p.Lost, func(id int) bool { return g.Name == fmt.Sprintf("g%d", id) }) {
			after += " (EMPTY: data lost)"
		}
		voters, vafter, upTo := "-", "-", "-"
		if g.Here {
			voters, vafter, upTo = strings.Join(g.Voters, ","), strings.Join(g.NewVoters, ","), fmt.Sprint(g.LastIndex)
		} else if !slices.ContainsFunc(p.Lost, func(id int) bool { return g.Name == fmt.Sprintf("g%d", id) }) {
			voters = "none here (recover on " + strings.Join(g.NewReplicas, ",") + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", g.Name, reps, after, voters, vafter, upTo)
	}
	w.Flush()
	if done {
		fmt.Fprintf(w, "done: start node %s with its usual flags; the map drops %s at its start. Run the same command on every other kept node before starting it.\n",
			p.Node, strings.Join(p.Drop, ", "))
		return
	}
	fmt.Fprintln(w, "dry run: nothing was changed; run again with --yes to do it (on every kept node, each stopped)")
}
