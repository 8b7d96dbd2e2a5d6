package main

import (
	"cmp"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/valyala/fasthttp"

	"github.com/tally-ml/tally/cluster"
	"github.com/tally-ml/tally/node"
)

// groupsBody is the body of the admin operations that take an optional
// group filter: {"groups": [..]} (empty or absent: every group).
type groupsBody struct {
	Groups []int `json:"groups,omitempty"`
}

func groupsOf(ctx *fasthttp.RequestCtx) ([]int, error) {
	var b groupsBody
	if len(ctx.PostBody()) > 0 {
		if err := adminBody(ctx, &b); err != nil {
			return nil, err
		}
	}
	return b.Groups, nil
}

// badGroup makes a group filter naming no group a 400.
func badGroup(err error) error {
	if err != nil && strings.HasPrefix(err.Error(), "no group ") {
		return &node.APIError{Status: 400, Code: "BAD_REQUEST", Message: err.Error()}
	}
	return err
}

func init() {
	adminOps = append(adminOps,
		adminOp{method: http.MethodPost, path: "/api/v1/cluster/check", run: func(c *cluster.Cluster, ctx *fasthttp.RequestCtx) (any, error) {
			gs, err := groupsOf(ctx)
			if err != nil {
				return nil, err
			}
			res, err := c.Check(gs)
			return res, badGroup(err)
		}},
		adminOp{method: http.MethodPost, path: "/api/v1/cluster/snapshot", run: func(c *cluster.Cluster, ctx *fasthttp.RequestCtx) (any, error) {
			gs, err := groupsOf(ctx)
			if err != nil {
				return nil, err
			}
			res, err := c.SnapshotNow(gs)
			return res, badGroup(err)
		}},
	)
	clusterCtlCmds = append(clusterCtlCmds, checkCmd, snapshotCmd)
}

// groupFlag is the optional --group of check and snapshot.
func groupFlag(cmd *cobra.Command) *int {
	g := new(int)
	cmd.Flags().IntVar(g, "group", -1, "only this group (default: every group)")
	return g
}

func (g groupsBody) of(n int) groupsBody {
	if n >= 0 {
		g.Groups = []int{n}
	}
	return g
}

func checkCmd(c *ctl) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Compare the replicas of each group, partition by partition, at one applied index",
		Long: `check has each group's leader commit a checkpoint entry; every replica computes
its per-partition checksums when it applies it, at exactly that log position, so
replicas are compared at one index even while clients write. It names the
partitions that differ and the replica that is the odd one out (the majority is
taken as right; with two replicas, both are named). Replicas are compared with
those holding their views in the same layout only: a replica that restored a
snapshot written before version 4 keeps each view apart, one built since groups
the views of a source, and their checksums differ though they hold the same
events (the check then fails and says how to rebuild a replica in its leader's
layout).

Exit 0: every replica of every group agrees. Exit 1: a replica differs or did not
answer (the message says what to do).`,
		Args: noArgs,
	}
	g := groupFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var res cluster.CheckResult
		if err := c.call(cmd, http.MethodPost, "/api/v1/cluster/check", groupsBody{}.of(*g), &res); err != nil {
			return err
		}
		if err := c.print(res, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "GROUP\tINDEX\tNODE\tCHECKSUM\tRESULT")
			for _, gc := range res.Groups {
				if gc.Error != "" {
					fmt.Fprintf(w, "%d\t-\t-\t-\t%s\n", gc.Group, gc.Error)
					continue
				}
				for _, r := range gc.Replicas {
					status := "ok"
					switch {
					case r.Error != "":
						status = "no answer: " + r.Error
					case oddIn(gc.Differ, r.Node) > 0:
						status = fmt.Sprintf("DIFFERS in %d partition(s)", oddIn(gc.Differ, r.Node))
					case gc.LayoutsDiffer:
						status = "ok among the replicas of its layout: " + cmp.Or(r.Layout, "every view alone")
					}
					fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%s\n", gc.Group, gc.Index, r.Node, cmp.Or(r.Checksum, "-"), status)
				}
			}
			w.Flush()
			for _, gc := range res.Groups {
				for i, d := range gc.Differ {
					if i == 10 {
						fmt.Fprintf(c.out, "group %d: %d more partitions differ (--json lists them all)\n", gc.Group, len(gc.Differ)-10)
						break
					}
					if d.Majority {
						fmt.Fprintf(c.out, "group %d partition %d: %s differs from the majority\n", gc.Group, d.Partition, strings.Join(d.Odd, ", "))
					} else {
						fmt.Fprintf(c.out, "group %d partition %d: %s differ, no majority\n", gc.Group, d.Partition, strings.Join(d.Odd, " and "))
					}
				}
			}
		}); err != nil {
			return err
		}
		if !res.OK {
			return &exitError{exitFailed, fmt.Errorf("check failed: %s", res.Advice)}
		}
		return nil
	}
	return cmd
}

// oddIn counts the partitions in which node is named odd.
func oddIn(ds []cluster.PartitionDiff, node string) int {
	n := 0
	for _, d := range ds {
		for _, o := range d.Odd {
			if o == node {
				n++
			}
		}
	}
	return n
}

func snapshotCmd(c *ctl) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Have every replica (of every group, or of --group) take a Raft snapshot now",
		Long: `snapshot makes every replica of the chosen groups write a Raft snapshot now
(which also lets Raft compact its log; the segments stay as the event archive).
It reports per group and node the index of the replica's newest snapshot. A
replica with nothing applied since its last snapshot reports so; that is not a
failure.

Exit 0: every replica answered. Exit 1: a replica failed or did not answer.`,
		Args: noArgs,
	}
	g := groupFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var res cluster.SnapshotResult
		if err := c.call(cmd, http.MethodPost, "/api/v1/cluster/snapshot", groupsBody{}.of(*g), &res); err != nil {
			return err
		}
		if err := c.print(res, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "GROUP\tNODE\tSNAPSHOT INDEX\tRESULT")
			for _, s := range res.Snapshots {
				status := "taken"
				switch {
				case s.Error != "":
					status = "FAILED: " + s.Error
				case s.Note != "":
					status = s.Note
				}
				fmt.Fprintf(w, "%d\t%s\t%d\t%s\n", s.Group, s.Node, s.Index, status)
			}
		}); err != nil {
			return err
		}
		if !res.OK {
			return &exitError{exitFailed, fmt.Errorf("some replicas took no snapshot (see above): check that their nodes are up (tally cluster status) and run snapshot again")}
		}
		return nil
	}
	return cmd
}
