package cluster

import (
	"context"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
)

// TestOverviewNamesNodesWithAnotherRepo: every node must run the cluster's
// feature repo, but the start compares only what the store holds (sources,
// views, tables). A node whose repo differs in a request feature's
// expression (or a feature service, or a model) started, and its lookups
// answered other values than the other nodes' for the same keys, with
// nothing saying so. The overview now carries each node's repo digest and
// names the nodes whose repo differs (`tally cluster status` exits 1).
func TestOverviewNamesNodesWithAnotherRepo(t *testing.T) {
	w := newWipedCluster(t, 2, 2, 2)
	other := otherRepo(t)
	n0 := w.startAsync(0)
	c1, err := Open(w.cfgs[1], other)
	if err != nil {
		t.Fatalf("n1 with another request feature refused: %v", err)
	}
	w.cs[1] = c1
	if err := <-n0; err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w.write(0, "u")
	get := func(c *Cluster, repo *features.Repo, fsys fs.FS) any {
		nd, err := node.New(repo, node.DefaultConfig(), node.Options{Cluster: c, RepoFS: fsys})
		if err != nil {
			t.Fatal(err)
		}
		out, aerr := nd.GetFeatures(nil, []byte(`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"u","merchant":"m1","country":"FR"},"request_context_map":{"amt":10,"lat":1,"long":2}}}`))
		if aerr != nil {
			t.Fatal(aerr)
		}
		f, err := client.DecodeFeatures(out)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := f.Get("transaction_request.amt_to_user_mean_1d")
		return v
	}
	a, b := get(w.cs[0], w.repo, features.DefaultFS()), get(c1, other, otherFS(t))
	t.Logf("amt_to_user_mean_1d through n0: %v, through n1: %v", a, b)

	o := w.cs[0].Overview(ctx)
	msg := o.RepoMismatch()
	if msg == "" {
		t.Fatalf("n0 and n1 run different feature repos (a request feature answers %v through n0, %v through n1); the overview does not say so", a, b)
	}
	for _, want := range []string{"n0", "n1", "feature repo"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("mismatch %q does not say %q", msg, want)
		}
	}
	t.Log(msg)
	if o.Nodes[0].Repo == "" || o.Nodes[0].Repo == o.Nodes[1].Repo {
		t.Fatalf("node repos %q and %q; want two different digests", o.Nodes[0].Repo, o.Nodes[1].Repo)
	}
}

// otherFS is the default repo with one request feature's expression
// changed: the same store schema, other answers.
func otherFS(t *testing.T) fs.FS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(features.DefaultFS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(features.DefaultFS(), p)
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".yaml") {
			s := strings.Replace(string(b), "expression: request.amt / user_transaction_amounts.amt_mean_1d", "expression: request.amt * 2", 1)
			if s == string(b) {
				t.Fatalf("%s: the expression to change is gone", p)
			}
			b = []byte(s)
		}
		m[p] = &fstest.MapFile{Data: b}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func otherRepo(t *testing.T) *features.Repo {
	t.Helper()
	r, err := features.Load(otherFS(t))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRestartWithAnotherSchemaIsRefused: a member restarted with a repo
// whose views differ from the cluster's is refused once its metadata
// replica gives it the map, naming the difference, and the start's
// failure closes what it opened. The close after such a refusal reported
// the replicas' progress through a map the node never accepted: it
// panicked on the nil map (systemtest TestClusterRefusesAnotherRepo,
// rehearsal 1 of session 23).
func TestRestartWithAnotherSchemaIsRefused(t *testing.T) {
	w := newWipedCluster(t, 3, 1, 3)
	w.start(0, 1, 2)
	w.write(0, "u")
	w.stop(1)
	m := fstest.MapFS{}
	err := fs.WalkDir(features.DefaultFS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(features.DefaultFS(), p)
		if err == nil && strings.HasSuffix(p, ".yaml") {
			b = []byte(strings.Replace(string(b), "{column: amt, function: count, window: 1h}", "{column: amt, function: count, window: 2h}", 1))
		}
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	other, err := features.Load(m)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(w.cfgs[1], other)
	if err == nil {
		w.cs[1] = c
		t.Fatal("n1 restarted with a view's window changed: started")
	}
	if !strings.Contains(err.Error(), "amt_count_2h") {
		t.Fatalf("refusal %q does not name the changed feature", err)
	}
}
