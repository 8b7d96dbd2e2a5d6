package main

import (
	"embed"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/valyala/fasthttp"

	"github.com/tally-ml/tally/cluster"
	"github.com/tally-ml/tally/node"
)

// The read-only side of `tally cluster`: the overview endpoint, the
// status, nodes and groups subcommands, and the status page.

func init() {
	overview := func(c *cluster.Cluster, ctx *fasthttp.RequestCtx) (any, error) { return c.Overview(ctx), nil }
	// GET /cluster is the same overview at a short path, for operators' curl.
	adminOps = append(adminOps, adminOp{method: http.MethodGet, path: "/api/v1/cluster/overview", run: overview},
		adminOp{method: http.MethodGet, path: "/cluster", run: overview})
	clusterCtlCmds = append(clusterCtlCmds, clusterStatusCmd, clusterNodesCmd, clusterGroupsCmd)
}

// registerOps wires a cluster node's operator views: its cluster metrics
// and request counters, and the status page at /ui.
func registerOps(srv *node.Server, c *cluster.Cluster, n *node.Node) {
	c.Observe(n.Metrics(), n.Counters)
	srv.HandleGet("/ui", "other", node.ScopePublic, statusPage)
}

//go:embed ui/status.html
var uiFS embed.FS

// statusPage serves the status page. It holds no data: its script reads
// /api/v1/cluster/overview with the admin key the operator types in (kept
// in the tab's sessionStorage), so the page itself needs no key.
func statusPage(ctx *fasthttp.RequestCtx) {
	b, _ := uiFS.ReadFile("ui/status.html")
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.Response.Header.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
	ctx.Response.Header.Set("X-Frame-Options", "DENY")
	ctx.SetBody(b)
}

// overview fetches the cluster's overview.
func (c *ctl) overview(cmd *cobra.Command) (*cluster.Overview, error) {
	var o cluster.Overview
	if err := c.call(cmd, http.MethodGet, "/api/v1/cluster/overview", nil, &o); err != nil {
		return nil, err
	}
	return &o, nil
}

// problems are what makes `tally cluster status` exit 1: nodes down,
// groups without a leader, and nodes running different feature repos.
func problems(o *cluster.Overview) []string {
	var p []string
	if m := o.RepoMismatch(); m != "" {
		p = append(p, m)
	}
	for _, n := range o.Nodes {
		if !n.Up {
			p = append(p, fmt.Sprintf("node %s is down (%s)", n.ID, n.Error))
		}
	}
	for _, g := range o.Groups {
		if g.Leader == "" {
			p = append(p, fmt.Sprintf("group %d has no leader", g.ID))
		}
	}
	return p
}

func clusterStatusCmd(c *ctl) *cobra.Command {
	var maxLag uint64
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Summary: nodes up and down, each group's leader, the map version, lagging replicas",
		Long: `status asks the node at --addr for the cluster's overview (it asks every member
for its own status, 1 s each, in parallel) and prints a summary. It exits 1 when a
node is down, a group has no leader, or nodes run different feature repos (their
lookups answer differently), after printing what it found; 0 otherwise.
A replica more than --max-lag log entries behind its leader is listed as lagging.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := c.overview(cmd)
			if err != nil {
				return err
			}
			err = c.print(o, func(w *tabwriter.Writer) {
				up := 0
				for _, n := range o.Nodes {
					if n.Up {
						up++
					}
				}
				version := uint64(0)
				if o.Map != nil {
					version = o.Map.Version
				}
				fmt.Fprintf(w, "cluster map version %d, metadata leader %s, %d of %d nodes up (asked %s)\n\n", version, orNone(o.MetaLeader), up, len(o.Nodes), o.Node)
				fmt.Fprintln(w, "NODE\tUP\tHTTP\tREPLICAS\tLEADS\tNOTE")
				for _, n := range o.Nodes {
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\n", n.ID, yesNo(n.Up), orNone(n.HTTPAddr), n.Replicas, n.Leads, nodeNote(n))
				}
				fmt.Fprintln(w, "\nGROUP\tLEADER\tTERM\tREPLICAS (state lag)")
				var lagging []string
				for _, g := range o.Groups {
					fmt.Fprintf(w, "%d\t%s\t%d\t%s\n", g.ID, orNone(g.Leader), g.Term, replicasCell(g))
					for _, r := range g.Replicas {
						if r.Up && r.Lag > maxLag {
							lagging = append(lagging, fmt.Sprintf("%s in group %d (%d behind)", r.Node, g.ID, r.Lag))
						}
					}
				}
				w.Flush()
				if len(lagging) > 0 {
					fmt.Fprintf(w, "\nlagging replicas (more than %d entries behind): %s\n", maxLag, strings.Join(lagging, ", "))
				}
			})
			if err != nil {
				return err
			}
			if p := problems(o); len(p) > 0 {
				return &exitError{exitFailed, fmt.Errorf("%s: see 'tally cluster nodes' and the nodes' logs; a group needs a quorum of its replicas up to elect a leader", strings.Join(p, "; "))}
			}
			return nil
		},
	}
	cmd.Flags().Uint64Var(&maxLag, "max-lag", 1000, "list replicas more than this many log entries behind their leader as lagging")
	return cmd
}

func clusterNodesCmd(c *ctl) *cobra.Command {
	return &cobra.Command{
		Use:   "nodes",
		Short: "The cluster's nodes: addresses, up or down, replicas held and led, request totals",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := c.overview(cmd)
			if err != nil {
				return err
			}
			return c.print(o, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "NODE\tUP\tHTTP\tCLUSTER\tREPLICAS\tLEADS\tINGESTED EVENTS\tLOOKUPS\tNOTE")
				for _, n := range o.Nodes {
					ing, lk := "-", "-"
					if n.Requests != nil {
						ing, lk = fmt.Sprint(n.Requests.IngestedEvents), fmt.Sprint(n.Requests.Lookups)
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", n.ID, yesNo(n.Up), orNone(n.HTTPAddr), n.ClusterAddr, n.Replicas, n.Leads, ing, lk, nodeNote(n))
				}
			})
		},
	}
}

func clusterGroupsCmd(c *ctl) *cobra.Command {
	return &cobra.Command{
		Use:   "groups",
		Short: "The cluster's groups: leader, term, and per replica its state, commit and applied index and lag",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := c.overview(cmd)
			if err != nil {
				return err
			}
			return c.print(o, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "GROUP\tLEADER\tREPLICA\tSTATE\tTERM\tCOMMIT\tAPPLIED\tLAG")
				for _, g := range o.Groups {
					for _, r := range g.Replicas {
						if !r.Up {
							fmt.Fprintf(w, "%d\t%s\t%s\tDOWN\t-\t-\t-\t-\n", g.ID, orNone(g.Leader), r.Node)
							continue
						}
						fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", g.ID, orNone(g.Leader), r.Node, orNone(r.State), r.Term, r.CommitIndex, r.Applied, r.Lag)
					}
				}
			})
		},
	}
}

func replicasCell(g cluster.GroupOverview) string {
	var parts []string
	for _, r := range g.Replicas {
		if !r.Up {
			parts = append(parts, r.Node+" DOWN")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s %d", r.Node, orNone(r.State), r.Lag))
	}
	return strings.Join(parts, ", ")
}

func nodeNote(n cluster.NodeOverview) string {
	if !n.Up {
		return n.Error
	}
	if n.NotReady != "" {
		return "not ready: " + n.NotReady
	}
	return ""
}

func yesNo(b bool) string {
	if b {
		return "up"
	}
	return "DOWN"
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
