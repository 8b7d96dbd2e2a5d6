package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/valyala/fasthttp"

	"github.com/tally-ml/tally/cluster"
	"github.com/tally-ml/tally/node"
)

// transferBody is the body of POST /api/v1/cluster/transfer-leader.
type transferBody struct {
	Group *int   `json:"group"`
	To    string `json:"to,omitempty"`
}

func init() {
	adminOps = append(adminOps, adminOp{method: http.MethodPost, path: "/api/v1/cluster/transfer-leader", run: func(c *cluster.Cluster, ctx *fasthttp.RequestCtx) (any, error) {
		var b transferBody
		if err := adminBody(ctx, &b); err != nil {
			return nil, err
		}
		if b.Group == nil {
			return nil, &node.APIError{Status: 400, Code: "BAD_REQUEST", Message: `name the group: {"group": N, "to": "node-id"} ("to" optional)`}
		}
		return c.TransferLeader(*b.Group, b.To)
	}})
	clusterCtlCmds = append(clusterCtlCmds, transferLeaderCmd)
}

func transferLeaderCmd(c *ctl) *cobra.Command {
	var group int
	var to string
	cmd := &cobra.Command{
		Use:   "transfer-leader --group N [--to NODE]",
		Short: "Hand a group's leadership to another of its replicas, and make it the preferred leader",
		Long: `transfer-leader asks the group's leader to hand its leadership to --to (or, without
it, to the follower Raft finds most up to date) and waits until the new leader
is in place. The new leader also becomes the group's preferred leader (first in
the map's replica list): the cluster hands leadership back to each group's
preferred leader every few seconds, so without that the transfer would be undone.

Exit 0: the new leader is in place. Exit 1: the transfer failed (the target is
not a replica of the group, is down, or is behind the leader's log); nothing
was changed. Exit 2: --group missing.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if group < 0 {
				return &exitError{exitUsage, errors.New("--group is required; run 'tally cluster transfer-leader --help'")}
			}
			var res cluster.TransferResult
			if err := c.call(cmd, http.MethodPost, "/api/v1/cluster/transfer-leader", transferBody{Group: &group, To: to}, &res); err != nil {
				return err
			}
			return c.print(res, func(w *tabwriter.Writer) {
				if res.From == res.To {
					fmt.Fprintf(w, "group %d: %s already leads; preferred order now %s\n", res.Group, res.To, strings.Join(res.Replicas, ", "))
					return
				}
				fmt.Fprintf(w, "group %d: leader %s -> %s; preferred order now %s\n", res.Group, res.From, res.To, strings.Join(res.Replicas, ", "))
			})
		},
	}
	cmd.Flags().IntVar(&group, "group", -1, "the group whose leadership moves (required)")
	cmd.Flags().StringVar(&to, "to", "", "the replica (node id) to lead it (default: the most up-to-date follower)")
	return cmd
}
