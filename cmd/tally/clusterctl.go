package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tally-ml/tally/client"
)

// Exit codes of `tally cluster` (and the rest of tally), for scripts.
const (
	exitOK = 0
	// exitFailed: the command ran and the answer is bad news: an
	// operation the cluster refused or could not finish, `check` finding
	// replicas that differ, `status` finding a node down or a group
	// without a leader.
	exitFailed = 1
	// exitUsage: wrong flags or arguments; nothing was sent.
	exitUsage = 2
	// exitUnreachable: no node answered at --addr (or it refused the API
	// key); nothing is known about the cluster.
	exitUnreachable = 3
)

// exitError is an error with its exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode is the process's exit code for err.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFailed
}

// ctl is what every `tally cluster` subcommand shares: where the cluster
// is and how to print.
type ctl struct {
	addr    string
	apiKey  string
	cluster string // --cluster-id: the cluster every request is meant for
	json    bool
	timeout time.Duration
	out     io.Writer
}

// clusterCtlCmds build the subcommands of `tally cluster`; each file adds
// its own in an init function.
var clusterCtlCmds []func(*ctl) *cobra.Command

func clusterCmd() *cobra.Command {
	c := &ctl{}
	cmd := group(&cobra.Command{
		Use:   "cluster",
		Short: "Inspect and change a running cluster (through any of its nodes)",
		Long: `tally cluster talks to any node of a running cluster over its admin API
(an API key with the admin scope when the node requires keys). Changes are
forwarded to the metadata group's leader. Output is a table; --json prints the
API's answer for scripts.

With several clusters, give --cluster-id (or TALLY_CLUSTER_ID): a node of
another cluster then refuses every request, doing nothing, so a command sent
to the wrong cluster's address cannot change it.

Exit codes: 0 ok; 1 the cluster answered with bad news (an operation refused or
not finished, check found replicas that differ, status found a node down or a
group without a leader); 2 bad flags or arguments; 3 no node answered at --addr.`,
	})
	cmd.PersistentFlags().StringVar(&c.addr, "addr", cmp.Or(os.Getenv("TALLY_ADDR"), "http://127.0.0.1:8080"), "any node's client API (or set TALLY_ADDR)")
	cmd.PersistentFlags().StringVar(&c.apiKey, "api-key", os.Getenv("TALLY_API_KEY"), "an API key with the admin scope (or set TALLY_API_KEY)")
	cmd.PersistentFlags().StringVar(&c.cluster, "cluster-id", os.Getenv("TALLY_CLUSTER_ID"), "the cluster the command is for (or set TALLY_CLUSTER_ID): a node of another cluster refuses it, doing nothing")
	cmd.PersistentFlags().BoolVar(&c.json, "json", false, "print the answer as JSON")
	cmd.PersistentFlags().DurationVar(&c.timeout, "timeout", 2*time.Minute, "give up after this long")
	for _, build := range clusterCtlCmds {
		cmd.AddCommand(build(c))
	}
	return cmd
}

// call performs one admin request and decodes its answer into out. Its
// errors carry the exit codes above and say what to do.
func (c *ctl) call(cmd *cobra.Command, method, path string, in, out any) error {
	c.out = cmd.OutOrStdout()
	addr := c.addr
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	cl, err := client.New(addr, client.Options{APIKey: c.apiKey, ClusterID: c.cluster})
	if err != nil {
		return &exitError{exitUsage, fmt.Errorf("--addr %q: %w", c.addr, err)}
	}
	defer cl.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(cmd.Context(), c.timeout)
	defer cancel()
	err = cl.Admin(ctx, method, path, in, out)
	var ae *client.Error
	var ne net.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae) && (ae.Status == 401 || ae.Status == 403):
		return &exitError{exitUnreachable, fmt.Errorf("%s refused the API key (%s): pass a key with the admin scope with --api-key or TALLY_API_KEY", c.addr, ae.Message)}
	case errors.As(err, &ae) && ae.Status == 404:
		return &exitError{exitUnreachable, fmt.Errorf("%s has no cluster API (%s): is it a node started in cluster mode (--node-id ...)?", c.addr, ae.Message)}
	case errors.As(err, &ae):
		return &exitError{exitFailed, fmt.Errorf("%s: %s", ae.Code, ae.Message)}
	case method != http.MethodGet && !dialFailed(err) && (errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded)):
		// The change was sent and no answer came: the node may have made
		// it in part, or still be making it (a move waits for the new
		// replica to catch up, up to its own 10 minutes).
		return &exitError{exitFailed, fmt.Errorf("no answer from %s to %s: %w; the change was sent and may have been made in part or still be running on the cluster: see `tally cluster status`, then run the same command again (it goes on from where it stopped; raise --timeout for a long move)", c.addr, path, err)}
	case errors.As(err, &ne), errors.Is(err, context.DeadlineExceeded):
		return &exitError{exitUnreachable, fmt.Errorf("no answer from %s: %w; is the node up? (point --addr or TALLY_ADDR at any node of the cluster)", c.addr, err)}
	}
	return &exitError{exitUnreachable, err}
}

// dialFailed reports whether err happened while opening the connection,
// so that nothing of the request reached the node.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// print writes v as indented JSON (--json) or calls table.
func (c *ctl) print(v any, table func(w *tabwriter.Writer)) error {
	if c.json {
		enc := json.NewEncoder(c.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}
