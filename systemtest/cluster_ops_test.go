package systemtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/systemtest/harness"
)

const (
	opsAdminKey = "systemtest-admin-key-0123456789abcdef"
	opsReadKey  = "systemtest-read-key-0123456789abcdef"
)

// opsKeys is a node config with an admin and a read key.
var opsKeys = fmt.Sprintf(`api_keys:
  - {name: admin, key: %s, scopes: [admin]}
  - {name: reader, key: %s, scopes: [read]}
`, opsAdminKey, opsReadKey)

// startKeyedCluster is startCluster on nodes that require API keys
// (opsKeys); the nodes' clients send the admin key.
func startKeyedCluster(t *testing.T, n, groups, replicas int) *testCluster {
	t.Helper()
	key := writeClusterKey(t, "systemtest-cluster-key-0123456789")
	c := &testCluster{t: t, caddr: make([]string, n)}
	var peers []string
	for i := range n {
		c.caddr[i] = harness.FreeAddr(t)
		peers = append(peers, fmt.Sprintf("n%d=%s", i, c.caddr[i]))
	}
	c.nodes = harness.StartN(t, n, harness.Options{
		Args: []string{"--cluster-id", "systemtest", "--cluster-key-file", key, "--cluster-peers", strings.Join(peers, ","),
			"--cluster-groups", fmt.Sprint(groups), "--cluster-replicas", fmt.Sprint(replicas)},
		PerNode: func(i int, _ []string) []string {
			return []string{"--node-id", fmt.Sprintf("n%d", i), "--cluster-addr", c.caddr[i]}
		},
		Config: opsKeys, APIKey: opsAdminKey, ReadyTimeout: 2 * time.Minute,
	})
	return c
}

// overview is the part of GET /api/v1/cluster/overview the tests read.
type overview struct {
	Node string `json:"node"`
	Map  struct {
		Version uint64 `json:"version"`
	} `json:"map"`
	Nodes []struct {
		ID       string `json:"id"`
		HTTPAddr string `json:"httpAddr"`
		Up       bool   `json:"up"`
		Error    string `json:"error"`
		Replicas int    `json:"replicas"`
		Leads    int    `json:"leads"`
		Requests *struct {
			IngestedEvents uint64 `json:"ingestedEvents"`
			Lookups        uint64 `json:"lookups"`
		} `json:"requests"`
	} `json:"nodes"`
	Groups []struct {
		ID       int    `json:"id"`
		Leader   string `json:"leader"`
		Replicas []struct {
			Node    string `json:"node"`
			Up      bool   `json:"up"`
			State   string `json:"state"`
			Applied uint64 `json:"appliedIndex"`
			Lag     uint64 `json:"lag"`
		} `json:"replicas"`
	} `json:"groups"`
}

// get is a GET of nd's path with key ("" for none): status and body.
func get(t *testing.T, nd *harness.Node, path, key string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, nd.URL+path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// tallyCluster runs `tally cluster args...` against nd: output and exit code.
func tallyCluster(t *testing.T, nd *harness.Node, key string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(harness.Binary(t), append([]string{"cluster", "--addr", nd.URL, "--timeout", "20s"}, args...)...)
	cmd.Env = append(os.Environ(), "TALLY_API_KEY="+key)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// TestClusterOperatorViews: on a real 3-node cluster requiring API keys,
// the overview (API and `tally cluster status|nodes|groups`), the
// per-group metrics, pprof behind the admin scope, the status page in a
// real headless chromium, and readiness as nodes die: after one of three
// is killed the page shows it down and the others stay ready; after a
// second, the last one's /readyz says which groups have no leader.
func TestClusterOperatorViews(t *testing.T) {
	const groups = 4
	c := startKeyedCluster(t, 3, groups, 3)
	n0 := c.nodes[0]
	ctx := context.Background()

	// Some traffic through n0, so that its counters and apply histograms move.
	var lines []string
	for i := range 20 {
		lines = append(lines, clusterEvent(fmt.Sprintf("u%d", i), "m1", "FR", 5))
	}
	if _, err := n0.Client.IngestBulk(ctx, "transactions", []byte(strings.Join(lines, "\n")), client.WriteOptions{RequestID: "ops-1"}); err != nil {
		t.Fatal(err)
	}

	t.Run("overview", func(t *testing.T) {
		// A follower applies the ingest a moment after the leader
		// acknowledged it (Applied 0, Lag 3 on a busy machine): the
		// overview is read again until every replica has applied, up to
		// 10 s, and then checked.
		var o overview
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			o = overview{}
			if err := c.nodes[1].Client.Admin(ctx, http.MethodGet, "/api/v1/cluster/overview", nil, &o); err != nil {
				t.Fatal(err)
			}
			if allApplied(o) || time.Now().After(deadline) {
				break
			}
		}
		if o.Node != "n1" || o.Map.Version == 0 || len(o.Nodes) != 3 || len(o.Groups) != groups {
			t.Fatalf("overview: %+v", o)
		}
		replicas := 0
		for _, n := range o.Nodes {
			if !n.Up || n.Requests == nil || n.HTTPAddr == "" {
				t.Fatalf("node %s: up %v, requests %v, http %q (%s)", n.ID, n.Up, n.Requests, n.HTTPAddr, n.Error)
			}
			replicas += n.Replicas
			if n.ID == "n0" && n.Requests.IngestedEvents != 20 {
				t.Fatalf("n0 reports %d ingested events, want 20", n.Requests.IngestedEvents)
			}
		}
		if replicas != groups*3 {
			t.Fatalf("nodes report %d replicas, want %d", replicas, groups*3)
		}
		for _, g := range o.Groups {
			if g.Leader == "" || len(g.Replicas) != 3 {
				t.Fatalf("group %d: leader %q, %d replicas", g.ID, g.Leader, len(g.Replicas))
			}
			for _, r := range g.Replicas {
				if !r.Up || r.State == "" || r.Applied == 0 {
					t.Fatalf("group %d replica %+v", g.ID, r)
				}
			}
		}
		if st, _ := get(t, n0, "/api/v1/cluster/overview", opsReadKey); st != 403 {
			t.Fatalf("overview with a read key: %d, want 403", st)
		}
		var short overview
		if err := c.nodes[2].Client.Admin(ctx, http.MethodGet, "/cluster", nil, &short); err != nil || short.Node != "n2" || len(short.Groups) != groups {
			t.Fatalf("GET /cluster: %v, %+v", err, short)
		}
	})

	t.Run("cli", func(t *testing.T) {
		out, code := tallyCluster(t, c.nodes[2], opsAdminKey, "status")
		if code != 0 || !strings.Contains(out, "3 of 3 nodes up") || !strings.Contains(out, "GROUP") {
			t.Fatalf("status: exit %d\n%s", code, out)
		}
		out, code = tallyCluster(t, n0, opsAdminKey, "nodes")
		if code != 0 || strings.Count(out, " up ") != 3 {
			t.Fatalf("nodes: exit %d\n%s", code, out)
		}
		out, code = tallyCluster(t, n0, opsAdminKey, "groups")
		if code != 0 || len(strings.Split(strings.TrimSpace(out), "\n")) != 1+groups*3 {
			t.Fatalf("groups: exit %d\n%s", code, out)
		}
		out, code = tallyCluster(t, n0, opsAdminKey, "status", "--json")
		var o overview
		if code != 0 || json.Unmarshal([]byte(out), &o) != nil || len(o.Nodes) != 3 {
			t.Fatalf("status --json: exit %d\n%s", code, out)
		}
		if out, code = tallyCluster(t, n0, "", "status"); code != 3 || !strings.Contains(out, "API key") {
			t.Fatalf("status without a key: exit %d, want 3\n%s", code, out)
		}
		if out, code = tallyCluster(t, n0, opsAdminKey, "status", "extra"); code != 2 {
			t.Fatalf("status with an argument: exit %d, want 2\n%s", code, out)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		st, body := get(t, n0, "/metrics", opsAdminKey)
		if st != 200 {
			t.Fatalf("/metrics: %d %s", st, body)
		}
		for g := range groups {
			for _, name := range []string{"tally_cluster_group_leader", "tally_cluster_group_term", "tally_cluster_group_commit_index",
				"tally_cluster_group_applied_index", "tally_cluster_group_lag", "tally_cluster_group_snapshot_restores_total", "tally_cluster_group_repeats_total"} {
				if !bytes.Contains(body, fmt.Appendf(nil, "%s{group=\"%d\"} ", name, g)) {
					t.Errorf("/metrics lacks %s for group %d", name, g)
				}
			}
		}
		for _, want := range []string{"tally_cluster_group_role{group=\"0\",role=",
			"tally_cluster_transport_refused_total ", "tally_cluster_map_version ", "tally_cluster_groups_without_leader 0"} {
			if !bytes.Contains(body, []byte(want)) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		if t.Failed() {
			t.Logf("/metrics:\n%s", body)
		}
		// The leaders timed the ingest's proposals (wherever they are).
		timed := 0
		for _, nd := range c.nodes {
			_, body := get(t, nd, "/metrics", opsAdminKey)
			timed += bytes.Count(body, []byte("tally_cluster_apply_duration_seconds_count{group="))
		}
		if timed == 0 {
			t.Error("no node's /metrics has tally_cluster_apply_duration_seconds for the ingest's proposals")
		}
	})

	t.Run("pprof", func(t *testing.T) { checkPprof(t, n0) })

	t.Run("page-public", func(t *testing.T) {
		st, body := get(t, n0, "/ui", "")
		if st != 200 || !bytes.Contains(body, []byte("/api/v1/cluster/overview")) {
			t.Fatalf("/ui without a key: %d", st)
		}
	})

	// The status page in a real browser (scripts/chromium.sh installs it).
	browser := chromiumPath(t)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.Flag("disable-dev-shm-usage", true))...)
	defer cancelAlloc()
	bctx, cancelB := chromedp.NewContext(allocCtx)
	defer cancelB()
	bctx, cancelT := context.WithTimeout(bctx, 2*time.Minute)
	defer cancelT()
	if err := chromedp.Do(bctx,
		chromedp.Navigate(n0.URL+"/ui"),
		// Without a key the page asks for one.
		chromedp.WaitVisible("#key"),
		chromedp.SendKeys("#key", opsAdminKey),
		chromedp.Click("#login button"),
	); err != nil {
		t.Fatalf("status page: %v", err)
	}
	page := func(expr string, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < within {
			ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](expr))
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				return time.Since(start)
			}
			time.Sleep(100 * time.Millisecond)
		}
		html, _ := chromedp.Run(bctx, chromedp.OuterHTML("body"))
		t.Fatalf("the page did not show %s within %s:\n%s", expr, within, html)
		return 0
	}
	allUp := fmt.Sprintf(`document.querySelectorAll("tr.node[data-up=true]").length === 3 &&
		document.querySelectorAll("tr.group").length === %d &&
		[...document.querySelectorAll("tr.group")].every(r => /^n[0-2]$/.test(r.dataset.leader))`, groups)
	page(allUp, 30*time.Second)

	// Events ingested through n0 show as a rate in its row at a refresh.
	ingestRate := `Number(document.querySelector("tr.node[data-node=n0]").children[6].textContent) > 0`
	for i := 0; ; i++ {
		var lines []string
		for j := range 50 {
			lines = append(lines, clusterEvent(fmt.Sprintf("r%d", j), "m2", "DE", 3))
		}
		if _, err := n0.Client.IngestBulk(ctx, "transactions", []byte(strings.Join(lines, "\n")), client.WriteOptions{RequestID: fmt.Sprint("ops-rate-", i)}); err != nil {
			t.Fatal(err)
		}
		if ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](ingestRate)); err != nil {
			t.Fatal(err)
		} else if ok {
			break
		}
		if i == 100 {
			t.Fatal("the page never showed n0's ingest rate above 0 while it ingested")
		}
		time.Sleep(100 * time.Millisecond)
	}

	c.nodes[2].Kill()
	took := page(`document.querySelector("tr.node[data-node=n2]").dataset.up === "false" &&
		document.querySelector("tr.node[data-node=n2]").classList.contains("down")`, 20*time.Second)
	t.Logf("the page showed n2 down %s after its kill -9", took.Round(100*time.Millisecond))
	// The survivors elect leaders for n2's groups and stay ready.
	page(fmt.Sprintf(`[...document.querySelectorAll("tr.group")].filter(r => /^n[01]$/.test(r.dataset.leader)).length === %d`, groups), 30*time.Second)
	if ok, err := n0.Client.Readyz(ctx); !ok {
		t.Fatalf("n0 not ready with 2 of 3 nodes up: %v", err)
	}
	out, code := tallyCluster(t, n0, opsAdminKey, "status")
	if code != 1 || !strings.Contains(out, "node n2 is down") {
		t.Fatalf("status with n2 down: exit %d, want 1\n%s", code, out)
	}

	// With a second node gone no group has a quorum: n0 is not ready, and says why.
	c.nodes[1].Kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, body := get(t, n0, "/readyz", "")
		if st == 503 && bytes.Contains(body, []byte("not ready")) && bytes.Contains(body, []byte("no leader")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n0 /readyz with 1 of 3 nodes up: %d %s", st, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, code := tallyCluster(t, n0, opsAdminKey, "status"); code != 1 || !strings.Contains(out, "has no leader") || !strings.Contains(out, "node n1 is down") {
		t.Fatalf("status with 1 of 3 nodes up: exit %d, want 1 naming n1 and the groups without a leader\n%s", code, out)
	}
	page(`document.getElementById("summary").classList.contains("bad") && document.querySelectorAll("tr.node[data-up=false]").length === 2`, 20*time.Second)
}

// checkPprof: the profiler answers an admin key, and refuses no key and a
// read key.
func checkPprof(t *testing.T, nd *harness.Node) {
	t.Helper()
	st, body := get(t, nd, "/debug/pprof/profile?seconds=1", opsAdminKey)
	if st != 200 || len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
		t.Fatalf("CPU profile with an admin key: %d, %d bytes (want a gzipped profile)", st, len(body))
	}
	if st, body = get(t, nd, "/debug/pprof/heap", opsAdminKey); st != 200 || len(body) == 0 {
		t.Fatalf("heap profile: %d", st)
	}
	if st, body = get(t, nd, "/debug/pprof/", opsAdminKey); st != 200 || !bytes.Contains(body, []byte("goroutine")) {
		t.Fatalf("pprof index: %d %s", st, body)
	}
	if st, _ = get(t, nd, "/debug/pprof/profile?seconds=1", ""); st != 401 {
		t.Fatalf("CPU profile without a key: %d, want 401", st)
	}
	if st, _ = get(t, nd, "/debug/pprof/heap", opsReadKey); st != 403 {
		t.Fatalf("heap profile with a read key: %d, want 403", st)
	}
}

// TestSinglePprof: a single node serves pprof to admin keys only.
func TestSinglePprof(t *testing.T) {
	nd := harness.Start(t, harness.Options{Config: opsKeys, APIKey: opsAdminKey})
	checkPprof(t, nd)
}

// chromiumPath is the browser scripts/chromium.sh installs; without it the
// test fails under TALLY_REQUIRE_CHROMIUM (make test) and is skipped
// otherwise.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, b := range []string{os.Getenv("TALLY_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if b == "" {
			continue
		}
		if p, err := exec.LookPath(b); err == nil {
			return p
		}
	}
	if os.Getenv("TALLY_REQUIRE_CHROMIUM") != "" {
		t.Fatal("no chromium: run scripts/chromium.sh")
	}
	t.Skip("no chromium (scripts/chromium.sh installs it; TALLY_REQUIRE_CHROMIUM=1 makes this a failure)")
	return ""
}

// TestClusterPeersByName: a cluster whose peers and advertised addresses
// are host names, not IPs (as deploy/kubernetes gives them: the pods'
// names in the headless service), forms, takes a write and answers it.
func TestClusterPeersByName(t *testing.T) {
	key := writeClusterKey(t, "systemtest-cluster-key-0123456789")
	const n = 3
	caddr := make([]string, n)
	var peers []string
	for i := range n {
		caddr[i] = harness.FreeAddr(t)
		_, port, _ := strings.Cut(caddr[i], ":")
		peers = append(peers, fmt.Sprintf("n%d=localhost:%s", i, port))
	}
	nodes := harness.StartN(t, n, harness.Options{
		Args: []string{"--cluster-id", "byname", "--cluster-key-file", key, "--cluster-peers", strings.Join(peers, ","),
			"--cluster-groups", "2", "--cluster-replicas", "3"},
		PerNode: func(i int, _ []string) []string {
			_, port, _ := strings.Cut(caddr[i], ":")
			return []string{"--node-id", fmt.Sprintf("n%d", i), "--cluster-addr", caddr[i], "--cluster-advertise", "localhost:" + port}
		},
		ReadyTimeout: 2 * time.Minute,
	})
	ctx := context.Background()
	if _, err := nodes[0].Client.IngestBulk(ctx, "transactions", []byte(clusterEvent("byname", "m1", "FR", 7)), client.WriteOptions{RequestID: "byname-1"}); err != nil {
		t.Fatal(err)
	}
	var o overview
	if err := nodes[2].Client.Admin(ctx, http.MethodGet, "/api/v1/cluster/overview", nil, &o); err != nil {
		t.Fatal(err)
	}
	for _, nd := range o.Nodes {
		if !nd.Up {
			t.Fatalf("node %s down: %s", nd.ID, nd.Error)
		}
	}
	for _, g := range o.Groups {
		if g.Leader == "" {
			t.Fatalf("group %d has no leader", g.ID)
		}
	}
}

// allApplied reports whether every replica of every group in o has applied
// an entry.
func allApplied(o overview) bool {
	for _, g := range o.Groups {
		for _, r := range g.Replicas {
			if r.Applied == 0 {
				return false
			}
		}
	}
	return true
}
