package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tally-ml/tally/bench/load"
	"github.com/tally-ml/tally/bench/localcluster"
	"github.com/tally-ml/tally/bench/workload"
)

// ClusterReport is what the cluster scenarios measured (Options.Cluster):
// a single node and 3-node clusters, all real processes of one binary on
// this machine, so every ratio is of processes sharing the same cores.
type ClusterReport struct {
	Nodes   int `json:"nodes"`
	Groups  int `json:"groups"`
	Preload int `json:"preload_events"`
	// Runs is how many times each throughput step ran; the Results rows of
	// the cluster scenarios are the median run.
	Runs int `json:"runs"`
	// FixedRate is the open-loop lookup rate used for the single node and
	// the cluster alike (a quarter of the single node's closed-loop max).
	FixedRate float64 `json:"fixed_rate"`
	// FailoverMs is, per leader kill, the milliseconds from kill -9 of a
	// group's leader to the next acknowledged write that touches every
	// group (so that group too), sent to a surviving node.
	FailoverMs       []float64 `json:"failover_ms"`
	FailoverMedianMs float64   `json:"failover_median_ms"`
	// ElectedMs is, per kill, the milliseconds until a survivor reported
	// itself the killed group's new leader (polled every 10 ms): the part
	// of FailoverMs that is Raft's failure detection and election.
	ElectedMs       []float64 `json:"elected_ms"`
	ElectedMedianMs float64   `json:"elected_median_ms"`
	CatchUp         []CatchUp `json:"catch_up"`
	// Ratios name a comparison (e.g. "lookup closed: cluster/single") and
	// its value; Notes say what they mean.
	Ratios []Ratio  `json:"ratios"`
	Notes  []string `json:"notes,omitempty"`
}

// CatchUp is one replica catching up after it was down while its group
// went on.
type CatchUp struct {
	Group int `json:"group"`
	// LogEntries is the leader's applied index of the group when the
	// follower was restarted (its Raft log's length, snapshots included).
	LogEntries uint64 `json:"log_entries"`
	// BySnapshot says whether the leader had a snapshot and the follower
	// held one once caught up (it may be the follower's own, taken before
	// it was killed: since session 21 the follower keeps its log, and
	// catches up by the log unless the leader compacted past it).
	BySnapshot bool `json:"by_snapshot"`
	// SnapshotBytes is the size of the leader's newest snapshot of the
	// group (0 when it has none): the state sent.
	SnapshotBytes int64 `json:"snapshot_bytes"`
	// ReadyMs is from the relaunch to /readyz; CaughtUpMs from the
	// relaunch to the replica's applied index reaching the leader's.
	ReadyMs    float64 `json:"ready_ms"`
	CaughtUpMs float64 `json:"caught_up_ms"`
}

// Ratio is one comparison of the cluster report.
type Ratio struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

const (
	sysSingle = "1-node"
	sysR3     = "3-node-R3"
	sysR1     = "3-node-R1"
)

// runCluster runs the cluster scenarios: a single node process, a 3-node
// cluster with R=3 and one with R=1, each preloaded alike.
func (r *runner) runCluster(ctx context.Context) error {
	if !r.opts.Cluster {
		return nil
	}
	if r.opts.Binary == "" {
		return fmt.Errorf("cluster scenarios need the tally binary (Options.Binary)")
	}
	runs, kills, preload := 3, 10, 100_000
	if r.opts.Quick {
		runs, kills, preload = 3, 3, 20_000
	}
	preload = min(preload, len(r.fix.preload))
	cr := &ClusterReport{Nodes: 3, Groups: 8, Preload: preload, Runs: runs}
	r.rep.Cluster = cr
	dir, err := os.MkdirTemp("", "tally-bench-cluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	start := func(name string, nodes, replicas int) (*localcluster.Cluster, []*client, error) {
		t := time.Now()
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, nil, err
		}
		c, err := localcluster.Start(ctx, localcluster.Options{Binary: r.opts.Binary, Dir: d, Nodes: nodes, Groups: cr.Groups, Replicas: replicas})
		if err != nil {
			return nil, nil, fmt.Errorf("start %s: %w", name, err)
		}
		ts := &tallyServer{addr: c.Nodes[0].Addr}
		f := *r.fix
		f.preload = f.preload[len(f.preload)-preload:]
		if err := ts.load(&f); err != nil {
			c.Stop()
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		var cs []*client
		for _, a := range c.Addrs() {
			cs = append(cs, newClient(a, r.opts.Workers))
		}
		r.logf("%-9s %d process(es) started and preloaded with %d transactions in %s", name, len(c.Nodes), preload, time.Since(t).Round(time.Millisecond))
		return c, cs, nil
	}
	closeAll := func(cs []*client) {
		for _, c := range cs {
			c.close()
		}
	}

	// The single node and the R=3 cluster, both running: closed-loop
	// lookups on each, then both open loop at the same rate (half the
	// lower maximum), then bulk ingest. The idle one costs little.
	single, scs, err := start(sysSingle, 0, 0)
	if err != nil {
		return err
	}
	defer func() { closeAll(scs); single.Stop() }()
	c3, cs3, err := start(sysR3, 3, 3)
	if err != nil {
		return err
	}
	defer func() { closeAll(cs3); c3.Stop() }()
	if err := c3.WaitLeaders(ctx, cr.Groups, time.Minute); err != nil {
		return err
	}
	sLook := r.medianRow(runs, func() Result { return r.clusterLookup(ctx, sysSingle, scs, "", 0) })
	cLook := r.medianRow(runs, func() Result { return r.clusterLookup(ctx, sysR3, cs3, "", 0) })
	cLocal := r.medianRow(runs, func() Result { return r.clusterLookup(ctx, sysR3, cs3, "local", 0) })
	cLin := r.medianRow(runs, func() Result { return r.clusterLookup(ctx, sysR3, cs3, "linearizable", 0) })
	cr.FixedRate = max(100, float64(int(min(sLook.Throughput, cLook.Throughput)/2/100))*100)
	sOpen := r.medianRow(runs, func() Result { return r.clusterLookup(ctx, sysSingle, scs, "", cr.FixedRate) })
	cOpen := r.medianRow(runs, func() Result { return r.clusterLookup(ctx, sysR3, cs3, "", cr.FixedRate) })
	sIn := &ingester{g: workload.New(r.fix.cfg)}
	sIng := r.medianRow(runs, func() Result { return r.clusterIngest(ctx, sysSingle, scs, sIn) })
	closeAll(scs)
	single.Stop()
	in3 := &ingester{g: workload.New(r.fix.cfg), ids: "r3-"}
	cIng := r.medianRow(runs, func() Result { return r.clusterIngest(ctx, sysR3, cs3, in3) })
	if err := r.leaderKills(ctx, c3, cs3, cr, kills); err != nil {
		return err
	}
	if !r.opts.Quick {
		// Grow the groups' logs past Raft's snapshot threshold, so that
		// the leaders snapshot and compact and a lagging replica may be
		// sent a snapshot.
		if err := r.fillLogs(ctx, c3, cs3, cr); err != nil {
			return err
		}
	}
	if err := r.catchUp(ctx, c3, cs3, cr); err != nil {
		return err
	}
	closeAll(cs3)
	c3.Stop()

	// The R=1 cluster: ingest only (the cost of replication).
	c1, cs1, err := start(sysR1, 3, 1)
	if err != nil {
		return err
	}
	in1 := &ingester{g: workload.New(r.fix.cfg), ids: "r1-"}
	c1Ing := r.medianRow(runs, func() Result { return r.clusterIngest(ctx, sysR1, cs1, in1) })
	closeAll(cs1)
	c1.Stop()

	ratio := func(name string, a, b float64) {
		if b > 0 {
			cr.Ratios = append(cr.Ratios, Ratio{name, a / b})
		}
	}
	ratio("lookup closed-loop throughput: R=3 cluster (default level) / single node", cLook.Throughput, sLook.Throughput)
	ratio("lookup closed-loop throughput: R=3 cluster local / default level (fan-out cost)", cLocal.Throughput, cLook.Throughput)
	ratio("lookup closed-loop throughput: R=3 cluster linearizable / default level", cLin.Throughput, cLook.Throughput)
	ratio("lookup open-loop p50: R=3 cluster / single node", cOpen.Latency.P50, sOpen.Latency.P50)
	ratio("lookup open-loop p99: R=3 cluster / single node", cOpen.Latency.P99, sOpen.Latency.P99)
	ratio("bulk ingest events/s: R=3 / R=1 (3 nodes)", cIng.EventsPerS, c1Ing.EventsPerS)
	ratio("bulk ingest events/s: R=1 (3 nodes) / single node", c1Ing.EventsPerS, sIng.EventsPerS)
	ratio("bulk ingest events/s: R=3 (3 nodes) / single node", cIng.EventsPerS, sIng.EventsPerS)
	cr.Notes = append(cr.Notes,
		"All processes share this machine's cores: a 3-node cluster here does 3 processes' work on the cores one node had, so a ratio below 1 is the cluster's overhead (Raft, fan-out, 3 copies), not its capacity; on 3 machines each node has its own cores and disk.",
		"Fan-out: a fraud_detection lookup reads 3 keys (user, merchant, country) in up to 3 groups; at the default level each group is read on its leader, one sub-request per remote group in parallel; `local` reads this node's replicas (with R=3 on 3 nodes every node holds every group) and shows the lookup without the hop.")
	return nil
}

// medianRow runs step n times, adds the run with the median throughput
// (events/s for ingest) to the results, and returns it.
func (r *runner) medianRow(n int, step func() Result) Result {
	var rows []Result
	for range n {
		rows = append(rows, step())
	}
	key := func(x Result) float64 { return max(x.Throughput, x.EventsPerS) }
	if rows[0].Mode == "open" {
		key = func(x Result) float64 { return x.Latency.P99 }
	}
	slices.SortFunc(rows, func(a, b Result) int {
		switch {
		case key(a) < key(b):
			return -1
		case key(a) > key(b):
			return 1
		}
		return 0
	})
	m := rows[len(rows)/2]
	m.Description = fmt.Sprintf("median of %d runs; %s", n, m.Description)
	r.add(m)
	return m
}

// clusterLookup measures fraud_detection lookups spread over the nodes
// (worker w asks node w mod N), at a read level ("" default); rate 0 is the
// closed loop.
func (r *runner) clusterLookup(ctx context.Context, system string, cs []*client, level string, rate float64) Result {
	bodies := make([][]byte, len(r.fix.lookups))
	for i := range r.fix.lookups {
		b := r.fix.lookups[i].tallyBody(nil, 0)
		if level != "" {
			b = bytes.Replace(b, []byte(`{"params":{`), []byte(`{"params":{"read_level":"`+level+`",`), 1)
		}
		bodies[i] = b
	}
	fn := func(w int, i int64) error {
		_, err := cs[w%len(cs)].post(w, pathGetFeatures, "application/json", bodies[i%int64(len(bodies))])
		return err
	}
	scenario := "cl-lookup"
	if level != "" {
		scenario += "-" + level
	}
	o := r.opts
	if rate > 0 {
		res := load.RunOpen(ctx, load.Open{Rate: rate, Duration: o.Duration, Workers: o.Workers, Warmup: o.Duration / 5}, fn)
		return resultOf(system, scenario, "open", rate, o.Workers, res)
	}
	res := load.RunClosed(ctx, load.Closed{Workers: o.Workers, Duration: o.Duration}, fn)
	return resultOf(system, scenario, "closed", 0, o.Workers, res)
}

// ingester makes bulk bodies with fresh, increasing event times, and a
// request id per request when ids is set.
type ingester struct {
	g      *workload.Generator
	ids    string
	next   int64 // request sequence
	lastTs int64
}

const clusterIngestPer, clusterIngestWorkers = 1000, 4

// clusterIngest measures bulk NDJSON ingest spread over the nodes, each
// request with its own request id (Idempotency-Key).
func (r *runner) clusterIngest(ctx context.Context, system string, cs []*client, in *ingester) Result {
	now := max(time.Now().UnixMilli()-60_000, in.lastTs+1)
	bodies := ingestBodies(in.g, 50, clusterIngestPer, now, ndjson)
	offs := make([][]int, len(bodies))
	for i, b := range bodies {
		offs[i] = timestampOffsets(b)
	}
	copies := make([][][]byte, clusterIngestWorkers)
	for w := range copies {
		for _, b := range bodies {
			copies[w] = append(copies[w], append([]byte(nil), b...))
		}
	}
	var events, reqs atomic.Int64
	base := in.next
	res := load.RunClosed(ctx, load.Closed{Workers: clusterIngestWorkers, Duration: r.opts.Duration}, func(w int, i int64) error {
		k := i % int64(len(bodies))
		body := copies[w][k]
		seq := events.Add(int64(len(offs[k]))) - int64(len(offs[k]))
		wall := time.Now().UnixMilli()
		for j, off := range offs[k] {
			restamp(body[off:off+13], streamTime(now, seq+int64(j), wall))
		}
		id := ""
		if in.ids != "" {
			id = in.ids + strconv.FormatInt(base+reqs.Add(1), 10)
		}
		_, err := cs[w%len(cs)].postID(w, pathBulk, "application/x-ndjson", body, id)
		return err
	})
	in.next = base + reqs.Load() + 1
	in.lastTs = streamTime(now, events.Load(), time.Now().UnixMilli()) + 1
	row := resultOf(system, "cl-ingest-bulk", "closed", 0, clusterIngestWorkers, res)
	row.EventsPerS = float64((res.Requests-res.Errors)*clusterIngestPer) / res.Elapsed.Seconds()
	row.Description = fmt.Sprintf("%d events per request, %d requests in flight over %d node(s)", clusterIngestPer, clusterIngestWorkers, len(cs))
	return row
}

// everyGroupBody is a bulk body of n events of distinct users: with 8
// groups and n = 256 it touches every group, so its acknowledgement needs
// every group to commit.
func (r *runner) everyGroupBody(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 5))
	cfg := r.fix.cfg
	cfg.Seed = seed
	g := workload.New(cfg)
	now := time.Now().UnixMilli()
	var body []byte
	for i := range n {
		t := g.Next(now)
		t.UserID = "failover-" + strconv.Itoa(i) + "-" + strconv.Itoa(rng.IntN(1000))
		body = t.AppendJSON(body)
		body = append(body, '\n')
	}
	return body
}

// leaderKills kills the leader of one group after another (kill -9) and
// measures how long until a write touching every group is acknowledged
// through a surviving node; the killed node is restarted each time.
func (r *runner) leaderKills(ctx context.Context, c *localcluster.Cluster, cs []*client, cr *ClusterReport, kills int) error {
	for k := range kills {
		if err := ctx.Err(); err != nil {
			return err
		}
		g := k % cr.Groups
		li := -1
		for deadline := time.Now().Add(30 * time.Second); li < 0; time.Sleep(50 * time.Millisecond) {
			if li = c.LeaderOf(g); li < 0 && time.Now().After(deadline) {
				return fmt.Errorf("leader kills: group %d has no leader after 30s", g)
			}
		}
		wi := (li + 1) % len(cs)
		body := r.everyGroupBody(uint64(1000+k), 256)
		// A write before the kill: the path is warm and the cluster whole
		// (retried: a connection to a node restarted since is broken).
		var err error
		for attempt := 0; attempt < 50; attempt++ {
			if _, err = cs[wi].postID(0, pathBulk, "application/x-ndjson", body, fmt.Sprintf("kill%d-before", k)); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("leader kills: write before kill %d: %w", k, err)
		}
		t0 := time.Now()
		c.Kill(li)
		elected := make(chan float64, 1)
		go func() {
			for time.Since(t0) < time.Minute {
				if nl := c.LeaderOf(g); nl >= 0 && nl != li {
					elected <- float64(time.Since(t0).Microseconds()) / 1000
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
			elected <- -1
		}()
		var ms float64
		for attempt := 0; ; attempt++ {
			w := (li + 1 + attempt%2) % len(cs) // alternate the two survivors
			_, err := cs[w].postID(0, pathBulk, "application/x-ndjson", body, fmt.Sprintf("kill%d-after", k))
			if err == nil {
				ms = float64(time.Since(t0).Microseconds()) / 1000
				break
			}
			if time.Since(t0) > time.Minute {
				return fmt.Errorf("leader kills: no write acknowledged within a minute of kill %d: %w", k, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		em := <-elected
		cr.FailoverMs = append(cr.FailoverMs, ms)
		cr.FailoverMedianMs = median(cr.FailoverMs)
		cr.ElectedMs = append(cr.ElectedMs, em)
		cr.ElectedMedianMs = median(cr.ElectedMs)
		r.logf("%-9s kill -9 of %s (leader of group %d): new leader after %.0f ms, next acknowledged write after %.0f ms", sysR3, c.Nodes[li].ID, g, em, ms)
		if err := c.Restart(ctx, li); err != nil {
			return err
		}
		if err := c.WaitLeaders(ctx, cr.Groups, time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// catchUp kills a follower of a group (kill -9), writes to the group
// while it is down (through the other nodes, for catchUpWrites), restarts
// it and times until its applied index reaches the leader's. It runs Runs
// times on different groups. (It used to wipe the follower's replica
// directory instead; a voter whose replica directory is gone is refused
// at start since session 21, as it could vote having forgotten what it
// acknowledged: cluster/TestLostGroupDirIsRefused.)
func (r *runner) catchUp(ctx context.Context, c *localcluster.Cluster, cs []*client, cr *ClusterReport) error {
	for k := range cr.Runs {
		if err := ctx.Err(); err != nil {
			return err
		}
		g := k % cr.Groups
		li := c.LeaderOf(g)
		if li < 0 {
			return fmt.Errorf("catch-up: group %d has no leader", g)
		}
		fi := (li + 1) % len(c.Nodes)
		lead := c.Replica(li, g)
		if lead == nil {
			return fmt.Errorf("catch-up: no status of group %d's leader", g)
		}
		c.Kill(fi)
		body := r.everyGroupBody(uint64(91+k), 32)
		var seq atomic.Int64
		load.RunClosed(ctx, load.Closed{Workers: 8, Duration: catchUpWrites}, func(w int, i int64) error {
			cl := cs[(fi+1+w%(len(cs)-1))%len(cs)] // a live node's
			_, err := cl.postID(w, pathBulk, "application/x-ndjson", body, "catch-up-"+strconv.Itoa(k)+"-"+strconv.FormatInt(seq.Add(1), 10))
			return err
		})
		if err := ctx.Err(); err != nil {
			return err
		}
		if li = c.LeaderOf(g); li < 0 || li == fi {
			return fmt.Errorf("catch-up: group %d has no live leader after its follower's kill", g)
		}
		if lead = c.Replica(li, g); lead == nil {
			return fmt.Errorf("catch-up: no status of group %d's leader", g)
		}
		target := lead.Applied
		leaderSnaps := hasSnapshot(c.GroupDir(li, g))
		snapBytes := newestSnapshotSize(c.GroupDir(li, g))
		t0 := time.Now()
		if err := c.Restart(ctx, fi); err != nil {
			return err
		}
		cu := CatchUp{Group: g, LogEntries: target, SnapshotBytes: snapBytes, ReadyMs: float64(time.Since(t0).Microseconds()) / 1000}
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(5 * time.Millisecond) {
			if fr := c.Replica(fi, g); fr != nil && fr.Applied >= target {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("catch-up: %s's replica of group %d did not reach applied index %d in 2 minutes", c.Nodes[fi].ID, g, target)
			}
		}
		cu.CaughtUpMs = float64(time.Since(t0).Microseconds()) / 1000
		cu.BySnapshot = leaderSnaps && hasSnapshot(c.GroupDir(fi, g))
		cr.CatchUp = append(cr.CatchUp, cu)
		r.logf("%-9s %s's replica of group %d, down for %d writes (the leader at %d log entries, by snapshot: %v, %.1f MiB): ready after %.0f ms, caught up after %.0f ms",
			sysR3, c.Nodes[fi].ID, g, seq.Load(), target, cu.BySnapshot, float64(snapBytes)/(1<<20), cu.ReadyMs, cu.CaughtUpMs)
		if err := c.WaitLeaders(ctx, cr.Groups, time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// catchUpWrites is how long catchUp writes while the follower is down.
const catchUpWrites = 2 * time.Second

// snapshotThreshold is the cluster's Raft SnapshotThreshold (cluster/group.go):
// a leader snapshots (and compacts its log) once its log has grown by this
// many entries since the last snapshot, checked every 30-60 s.
const snapshotThreshold = 8192

// fillLogs sends small writes touching every group until the first Runs
// groups' logs hold more than snapshotThreshold entries, then waits (up to
// 2 minutes) for their leaders to snapshot.
func (r *runner) fillLogs(ctx context.Context, c *localcluster.Cluster, cs []*client, cr *ClusterReport) error {
	t := time.Now()
	body := r.everyGroupBody(77, 32)
	const workers = 16
	var seq atomic.Int64
	for {
		done := true
		for g := range cr.Runs {
			if li := c.LeaderOf(g); li < 0 {
				done = false
			} else if rs := c.Replica(li, g); rs == nil || rs.Applied < snapshotThreshold+512 {
				done = false
			}
		}
		if done {
			break
		}
		if time.Since(t) > 3*time.Minute {
			return fmt.Errorf("fill logs: the groups' logs did not reach %d entries in 3 minutes", snapshotThreshold)
		}
		load.RunClosed(ctx, load.Closed{Workers: workers, Duration: 2 * time.Second}, func(w int, i int64) error {
			_, err := cs[w%len(cs)].postID(w, pathBulk, "application/x-ndjson", body, "fill-"+strconv.FormatInt(seq.Add(1), 10))
			return err
		})
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	r.logf("%-9s filled the logs of groups 0-%d past %d entries with %d writes in %s; waiting for the leaders' snapshots",
		sysR3, cr.Runs-1, snapshotThreshold, seq.Load(), time.Since(t).Round(time.Millisecond))
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		done := true
		for g := range cr.Runs {
			if li := c.LeaderOf(g); li < 0 || !hasSnapshot(c.GroupDir(li, g)) {
				done = false
			}
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			cr.Notes = append(cr.Notes, "The leaders had not snapshotted within 2 minutes of their logs passing the threshold: the catch-up below is by log, not by snapshot.")
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// newestSnapshotSize is the size of the files of the newest snapshot in a
// group directory (FileSnapshotStore: snapshots/<term>-<index>-<ms>/).
func newestSnapshotSize(groupDir string) int64 {
	dir := filepath.Join(groupDir, "snapshots")
	ents, _ := os.ReadDir(dir)
	var newest os.DirEntry
	var newestMod time.Time
	for _, e := range ents {
		if info, err := e.Info(); err == nil && e.IsDir() && info.ModTime().After(newestMod) {
			newest, newestMod = e, info.ModTime()
		}
	}
	if newest == nil {
		return 0
	}
	files, _ := os.ReadDir(filepath.Join(dir, newest.Name()))
	var n int64
	for _, f := range files {
		if info, err := f.Info(); err == nil {
			n += info.Size()
		}
	}
	return n
}

// hasSnapshot reports whether a group directory holds a Raft snapshot
// (hashicorp/raft's FileSnapshotStore keeps them in snapshots/).
func hasSnapshot(groupDir string) bool {
	ents, _ := os.ReadDir(filepath.Join(groupDir, "snapshots"))
	return len(ents) > 0
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// postID is post with an Idempotency-Key (none when id is empty).
func (c *client) postID(w int, path, contentType string, body []byte, id string) ([]byte, error) {
	if id == "" {
		return c.post(w, path, contentType, body)
	}
	req, resp := c.reqs[w], c.resps[w]
	req.Reset()
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(path)
	req.Header.SetHost(c.hc.Addr)
	req.Header.SetContentType(contentType)
	req.Header.Set("Idempotency-Key", id)
	req.SetBodyRaw(body)
	if err := c.hc.Do(req, resp); err != nil {
		return nil, err
	}
	if sc := resp.StatusCode(); sc != fasthttp.StatusOK {
		return nil, &statusError{status: sc, body: truncate(string(resp.Body()), 300)}
	}
	return resp.Body(), nil
}

// printText writes the cluster figures after the table.
func (c *ClusterReport) printText(w io.Writer) {
	fmt.Fprintf(w, "cluster: %d nodes, %d groups, %d transactions preloaded; medians of %d runs; open-loop lookups at %.0f/s\n", c.Nodes, c.Groups, c.Preload, c.Runs, c.FixedRate)
	if len(c.FailoverMs) > 0 {
		fmt.Fprintf(w, "  write unavailability after kill -9 of a group leader: median %.0f ms over %d kills (%s); new leader elected after median %.0f ms (%s)\n",
			c.FailoverMedianMs, len(c.FailoverMs), msList(c.FailoverMs), c.ElectedMedianMs, msList(c.ElectedMs))
	}
	var cu []float64
	for _, x := range c.CatchUp {
		cu = append(cu, x.CaughtUpMs)
		fmt.Fprintf(w, "  replica of group %d down while it was written (%d entries, by snapshot: %v, %.1f MiB): ready %.0f ms, caught up %.0f ms after relaunch\n",
			x.Group, x.LogEntries, x.BySnapshot, float64(x.SnapshotBytes)/(1<<20), x.ReadyMs, x.CaughtUpMs)
	}
	if len(cu) > 0 {
		fmt.Fprintf(w, "  catch-up median %.0f ms\n", median(cu))
	}
	for _, r := range c.Ratios {
		fmt.Fprintf(w, "  %-80s %.2f\n", r.Name, r.Value)
	}
}

// markdown writes the cluster section of report.md.
func (c *ClusterReport) markdown(b *strings.Builder) {
	fmt.Fprintf(b, "\n## Cluster\n\n%d nodes (child processes of this binary on loopback, WAL fsync=always), %d groups; %d transactions preloaded; each throughput step is the median of %d runs (the `1-node`, `3-node-*` rows above); open-loop lookups at %.0f/s.\n\n",
		c.Nodes, c.Groups, c.Preload, c.Runs, c.FixedRate)
	if len(c.FailoverMs) > 0 {
		fmt.Fprintf(b, "- Write unavailability after `kill -9` of a group's leader (until a write touching every group is acknowledged through a survivor): **median %.0f ms** over %d kills (%s); a survivor reported itself the group's new leader after median %.0f ms (%s).\n",
			c.FailoverMedianMs, len(c.FailoverMs), msList(c.FailoverMs), c.ElectedMedianMs, msList(c.ElectedMs))
	}
	for _, x := range c.CatchUp {
		fmt.Fprintf(b, "- Replica of group %d down while it was written (%d log entries; by snapshot: %v, %.1f MiB): ready %.0f ms, caught up %.0f ms after relaunch.\n",
			x.Group, x.LogEntries, x.BySnapshot, float64(x.SnapshotBytes)/(1<<20), x.ReadyMs, x.CaughtUpMs)
	}
	b.WriteString("\n| ratio | value |\n|---|---:|\n")
	for _, r := range c.Ratios {
		fmt.Fprintf(b, "| %s | %.2f |\n", r.Name, r.Value)
	}
	for _, n := range c.Notes {
		fmt.Fprintf(b, "\n%s\n", n)
	}
}

func msList(xs []float64) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, strconv.FormatFloat(x, 'f', 0, 64))
	}
	return strings.Join(parts, ", ") + " ms"
}
