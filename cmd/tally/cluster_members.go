package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/valyala/fasthttp"

	"github.com/tally-ml/tally/cluster"
	"github.com/tally-ml/tally/node"
)

// Changing a cluster's members and placement: the admin endpoints and
// their subcommands (cluster/membership.go does the work).

// changeTimeout bounds a change on the node (a move waits for the new
// replica to catch up); a change cut short goes on when run again.
const changeTimeout = 10 * time.Minute

func init() {
	change := func(path string, run func(ctx context.Context, c *cluster.Cluster, body *fasthttp.RequestCtx) (cluster.Outcome, error)) adminOp {
		return adminOp{method: http.MethodPost, path: path, run: func(c *cluster.Cluster, ctx *fasthttp.RequestCtx) (any, error) {
			cctx, cancel := context.WithTimeout(context.Background(), changeTimeout)
			defer cancel()
			out, err := run(cctx, c, ctx)
			var ae *node.APIError
			if errors.As(err, &ae) {
				return nil, err
			}
			if err != nil {
				return nil, &node.APIError{Status: 409, Code: "CHANGE_FAILED", Message: err.Error()}
			}
			return out, nil
		}}
	}
	adminOps = append(adminOps,
		change("/api/v1/cluster/add-node", func(ctx context.Context, c *cluster.Cluster, rc *fasthttp.RequestCtx) (cluster.Outcome, error) {
			var mb cluster.Member
			if err := adminBody(rc, &mb); err != nil {
				return cluster.Outcome{}, err
			}
			return c.AddNode(ctx, mb)
		}),
		change("/api/v1/cluster/remove-node", func(ctx context.Context, c *cluster.Cluster, rc *fasthttp.RequestCtx) (cluster.Outcome, error) {
			var req struct {
				ID string `json:"id"`
			}
			if err := adminBody(rc, &req); err != nil {
				return cluster.Outcome{}, err
			}
			return c.RemoveNode(ctx, req.ID)
		}),
		change("/api/v1/cluster/move-replica", func(ctx context.Context, c *cluster.Cluster, rc *fasthttp.RequestCtx) (cluster.Outcome, error) {
			var mv cluster.Move
			if err := adminBody(rc, &mv); err != nil {
				return cluster.Outcome{}, err
			}
			return c.MoveReplica(ctx, mv)
		}),
		change("/api/v1/cluster/rebalance", func(ctx context.Context, c *cluster.Cluster, rc *fasthttp.RequestCtx) (cluster.Outcome, error) {
			var req struct {
				DryRun bool `json:"dryRun"`
			}
			if len(rc.PostBody()) > 0 {
				if err := adminBody(rc, &req); err != nil {
					return cluster.Outcome{}, err
				}
			}
			return c.Rebalance(ctx, req.DryRun)
		}),
	)
	clusterCtlCmds = append(clusterCtlCmds, addNodeCmd, removeNodeCmd, moveReplicaCmd, rebalanceCmd)
}

func addNodeCmd(c *ctl) *cobra.Command {
	var mb cluster.Member
	cmd := &cobra.Command{
		Use:   "add-node",
		Short: "Admit a node started with --cluster-join (it holds no replica until rebalance)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if mb.ID == "" || mb.ClusterAddr == "" {
				return &exitError{exitUsage, fmt.Errorf("add-node needs --id and --cluster-addr")}
			}
			if _, _, err := net.SplitHostPort(mb.ClusterAddr); err != nil {
				return &exitError{exitUsage, fmt.Errorf("--cluster-addr %q: %v", mb.ClusterAddr, err)}
			}
			var out cluster.Outcome
			if err := c.call(cmd, http.MethodPost, "/api/v1/cluster/add-node", mb, &out); err != nil {
				return err
			}
			return c.print(out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "node %s is a member (map version %d); it holds no replica yet: run `tally cluster rebalance`\n", mb.ID, out.Map.Version)
			})
		},
	}
	cmd.Flags().StringVar(&mb.ID, "id", "", "the node's --node-id")
	cmd.Flags().StringVar(&mb.ClusterAddr, "cluster-addr", "", "the cluster address its peers dial (its --cluster-advertise, else --cluster-addr)")
	cmd.Flags().StringVar(&mb.HTTPAddr, "http-addr", "", "its client API address (optional: the node reports it itself)")
	return cmd
}

func removeNodeCmd(c *ctl) *cobra.Command {
	return &cobra.Command{
		Use:   "remove-node ID",
		Short: "Move every replica off a node, then take it out of the cluster (stop it afterwards)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out cluster.Outcome
			if err := c.call(cmd, http.MethodPost, "/api/v1/cluster/remove-node", map[string]string{"id": args[0]}, &out); err != nil {
				return err
			}
			return c.print(out, func(w *tabwriter.Writer) {
				printMoves(w, out.Plan)
				fmt.Fprintf(w, "node %s removed (map version %d): stop it; its data dir is no longer used\n", args[0], out.Map.Version)
			})
		},
	}
}

func moveReplicaCmd(c *ctl) *cobra.Command {
	var mv cluster.Move
	cmd := &cobra.Command{
		Use:   "move-replica",
		Short: "Move a group's replica from one node to another (the new one is caught up before the old one leaves)",
		Long: `move-replica moves group --group's replica from node --from to node --to: --to is
listed in the map, caught up with a snapshot and the log, made a voter; then --from
leaves the group and the map. Refused, with nothing changed, when --to does not answer.

It also finishes or undoes a change left half-way (the refusals of other changes name
the command). In a group listing at most the cluster's replica count, --from a listed
node that is not a voter of the group (an addition cut short, its node down) --to one
of the group's voters takes --from out of the group and the map: not a voter, it holds
no acknowledged write the voters lack; then run rebalance to add the missing replica.

Exit 0: done. Exit 1: refused or not finished. Exit 2: bad flags.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if mv.Group < 0 || mv.From == "" || mv.To == "" {
				return &exitError{exitUsage, fmt.Errorf("move-replica needs --group, --from and --to")}
			}
			var out cluster.Outcome
			if err := c.call(cmd, http.MethodPost, "/api/v1/cluster/move-replica", mv, &out); err != nil {
				return err
			}
			return c.print(out, func(w *tabwriter.Writer) {
				if out.Map != nil && mv.Group < len(out.Map.Groups) {
					if reps := out.Map.Groups[mv.Group].Replicas; len(reps) < out.Map.Replicas && !slices.Contains(reps, mv.From) {
						// dropLeftover: mv.From was listed, not a voter.
						fmt.Fprintf(w, "group %d: %s taken out (it was not a voter of the group); the group holds %d of %d replicas (%s): run `tally cluster rebalance` to add the missing ones (map version %d)\n",
							mv.Group, mv.From, len(reps), out.Map.Replicas, strings.Join(reps, ", "), out.Map.Version)
						return
					}
				}
				fmt.Fprintf(w, "group %d: replica moved from %s to %s (map version %d)\n", mv.Group, mv.From, mv.To, out.Map.Version)
			})
		},
	}
	cmd.Flags().IntVar(&mv.Group, "group", -1, "the group")
	cmd.Flags().StringVar(&mv.From, "from", "", "the node holding the replica")
	cmd.Flags().StringVar(&mv.To, "to", "", "the node to hold it")
	return cmd
}

func rebalanceCmd(c *ctl) *cobra.Command {
	var dry bool
	cmd := &cobra.Command{
		Use:   "rebalance [--dry-run]",
		Short: "Bring every group to the cluster's replica count, then even out replicas and preferred leaders",
		Long: `rebalance first adds a replica to every group holding fewer than the cluster's
replica count (after tally cluster recover, say): each on the least loaded node that
answers and holds none of the group's, caught up with a snapshot and the log before it
counts as a voter. Then it moves replicas from the most to the least loaded nodes that
answer (a node down gets none and keeps its own; the plan names it), and orders each
group's replicas so that preferred leaders spread.

Refused, with nothing changed, when too few nodes answer to bring every group to the
replica count (it names the groups and how many nodes to add: start them with
--cluster-join and admit them with add-node first), and while a move is left half-way.
An addition cut short goes on when rebalance runs again.

The plan is a table: GROUP FROM TO, FROM "(new)" for a replica added; then the groups
whose preferred leader changes. --dry-run prints it and changes nothing.

Exit 0: done, or nothing to do. Exit 1: refused or not finished. Exit 2: bad flags.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out cluster.Outcome
			if err := c.call(cmd, http.MethodPost, "/api/v1/cluster/rebalance", map[string]bool{"dryRun": dry}, &out); err != nil {
				return err
			}
			return c.print(out, func(w *tabwriter.Writer) {
				printMoves(w, out.Plan)
				if len(out.Plan.Down) > 0 {
					fmt.Fprintf(w, "not answering, left as they are (no replica moved to or from them): %s; run rebalance again once they are back\n", strings.Join(out.Plan.Down, ", "))
				}
				switch {
				case len(out.Plan.Adds) == 0 && len(out.Plan.Moves) == 0 && len(out.Plan.Leaders) == 0:
					fmt.Fprintln(w, "balanced: nothing to do")
				case dry:
					fmt.Fprintln(w, "dry run: nothing changed")
				default:
					fmt.Fprintf(w, "done (map version %d); leaders move to their preferred nodes within seconds\n", out.Map.Version)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&dry, "dry-run", false, "print the plan, change nothing")
	return cmd
}

// printMoves writes a plan as a table.
func printMoves(w *tabwriter.Writer, p cluster.Plan) {
	if len(p.Adds)+len(p.Moves) > 0 {
		fmt.Fprintln(w, "GROUP\tFROM\tTO")
		for _, mv := range slices.Concat(p.Adds, p.Moves) {
			fmt.Fprintf(w, "%d\t%s\t%s\n", mv.Group, cmp.Or(mv.From, "(new)"), mv.To)
		}
	}
	if len(p.Leaders) > 0 {
		fmt.Fprintln(w, "GROUP\tPREFERRED LEADER\tREPLICAS")
		for _, g := range p.Leaders {
			fmt.Fprintf(w, "%d\t%s\t%v\n", g.ID, g.Replicas[0], g.Replicas)
		}
	}
}
