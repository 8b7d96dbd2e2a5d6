package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tally-ml/tally/bench/load"
	"github.com/tally-ml/tally/bench/localcluster"
	"github.com/tally-ml/tally/bench/workload"
	"github.com/tally-ml/tally/features"
)

// KafkaReport is the kafka scenario: the same transactions into one tally
// process (`tally serve`, WAL with fsync=always) from an 8-partition topic
// of a local broker (scripts/kafka.sh) and, into another fresh process,
// as HTTP bulk ingest, and the
// freshness of a record from its produce to a lookup that shows it.
type KafkaReport struct {
	Events     int     `json:"events"`
	Partitions int     `json:"partitions"`
	KafkaEvS   float64 `json:"kafka_events_per_s"`
	BulkEvS    float64 `json:"bulk_events_per_s"`
	// ClusterEvS: the same records, in a topic of their own, into a 3-node
	// cluster (8 groups, R=3) sharing one consumer group: those consumed
	// from the moment the group is stable until the nodes report every
	// record consumed and no lag (to within the lag gauges' 1 s refresh).
	ClusterEvS float64 `json:"cluster_events_per_s"`
	// Freshness: from the producer's acknowledgement of one record (a new
	// user) to the first lookup that counts it.
	Freshness *Freshness `json:"freshness,omitempty"`
	NotRun    string     `json:"not_run,omitempty"`
}

const kafkaBenchTopic = "tally-bench-transactions"

// runKafka measures the kafka scenario: only when asked for by name, or in
// a full or quick run of every scenario.
func (r *runner) runKafka(ctx context.Context) error {
	if !r.opts.want("kafka") {
		return nil
	}
	kr := &KafkaReport{Partitions: 8}
	r.rep.Kafka = kr
	notRun := func(why string) error {
		kr.NotRun = why
		r.logf("kafka    not run: %s", why)
		return nil
	}
	if r.opts.Binary == "" {
		return notRun("needs the tally binary (Options.Binary)")
	}
	dir, err := os.MkdirTemp("", "tally-bench-kafka-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(r.opts.RepoRoot, "scripts", "kafka.sh")
	brokerDir := filepath.Join(dir, "broker")
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, "bash", script, "start", brokerDir)
	cmd.Env = append(os.Environ(), "TALLY_KAFKA_OWNER_PID="+strconv.Itoa(os.Getpid()))
	// The address is the last line of standard output alone: a first start
	// also fetches Kafka, and Maven's output on standard error may end
	// without a newline (in escape codes) before it.
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return notRun(fmt.Sprintf("the broker did not start (%s start: %v): %s", script, err, lastLine(errOut.String()+out.String())))
	}
	defer exec.Command("bash", script, "stop", brokerDir).Run()
	addr := lastLine(out.String())
	r.logf("kafka    broker at %s (started in %s)", addr, time.Since(t0).Round(time.Millisecond))

	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(1<<17))
	if err != nil {
		return err
	}
	defer prod.Close()
	if _, err := kadm.NewClient(prod).CreateTopic(ctx, int32(kr.Partitions), 1, nil, kafkaBenchTopic); err != nil {
		return notRun("create topic: " + err.Error())
	}
	repoDir := filepath.Join(dir, "repo")
	if err := WriteKafkaRepo(repoDir, addr, kafkaBenchTopic, "tally-bench", "earliest"); err != nil {
		return err
	}
	n := 200_000
	if r.opts.Quick {
		n = 50_000
	}
	txns := r.fix.preload[max(0, len(r.fix.preload)-n):]
	kr.Events = len(txns)
	// The whole stream is in the topic before tally starts, so the rate is
	// tally's, not the producer's.
	recs := make([]*kgo.Record, len(txns))
	for i := range txns {
		recs[i] = &kgo.Record{Topic: kafkaBenchTopic, Key: []byte(txns[i].UserID), Value: txns[i].AppendJSON(nil)}
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return notRun("produce: " + err.Error())
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	bulkDir := filepath.Join(dir, "bulk")
	if err := os.MkdirAll(bulkDir, 0o755); err != nil {
		return err
	}
	bn, err := localcluster.Start(ctx, localcluster.Options{Binary: r.opts.Binary, Dir: bulkDir})
	if err != nil {
		return err
	}
	bulkBase := "http://" + bn.Addrs()[0]
	// HTTP bulk: the same events into a node of its own serving the same
	// views (the default repo), 10,000 a request, one connection (as the
	// consumer commits one batch at a time).
	start := time.Now()
	var errs int64
	for i := 0; i < len(txns); i += 10_000 {
		resp, err := hc.Post(bulkBase+pathBulk, "application/x-ndjson", bytes.NewReader(ndjson(nil, txns[i:min(i+10_000, len(txns))])))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = fmt.Errorf("bulk: %s", resp.Status)
			}
		}
		if err != nil {
			errs++
		}
	}
	kr.BulkEvS = float64(len(txns)) / time.Since(start).Seconds()
	r.add(Result{System: "tally", Scenario: "kafka-bulk", Mode: "closed", EventsPerS: kr.BulkEvS, Throughput: kr.BulkEvS, Workers: 1, Errors: errs,
		DurationS: time.Since(start).Seconds(), Description: "the same events over HTTP bulk, 10k a request, a node of its own"})

	bn.Stop()

	nodeDir := filepath.Join(dir, "node")
	if err := os.MkdirAll(nodeDir, 0o755); err != nil {
		return err
	}
	lc, err := localcluster.Start(ctx, localcluster.Options{Binary: r.opts.Binary, Dir: nodeDir, Args: []string{"--repo", repoDir}})
	if err != nil {
		return err
	}
	defer lc.Stop()
	base := "http://" + lc.Addrs()[0]

	// Kafka: from the node's readiness until it has consumed every record.
	start, c0 := time.Now(), consumed(hc, base)
	deadline := start.Add(5 * time.Minute)
	for consumed(hc, base) < int64(len(txns)) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return notRun(fmt.Sprintf("consumed %d of %d records in 5 minutes", consumed(hc, base), len(txns)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	kr.KafkaEvS = float64(int64(len(txns))-c0) / time.Since(start).Seconds()
	r.add(Result{System: "tally", Scenario: "kafka", Mode: "consume", EventsPerS: kr.KafkaEvS, Throughput: kr.KafkaEvS, Workers: 1,
		DurationS: time.Since(start).Seconds(), Description: fmt.Sprintf("%d events from %d partitions, one consumer", len(txns)-int(c0), kr.Partitions)})

	kr.Freshness = r.kafkaFreshness(ctx, hc, base, prod)
	r.logf("kafka    freshness (produce acknowledged to visible in a lookup): p50 %s p99 %s; %d of %d probes visible on the first lookup, %d never",
		strings.TrimSpace(fmtUs(kr.Freshness.Latency.P50)), strings.TrimSpace(fmtUs(kr.Freshness.Latency.P99)), kr.Freshness.FirstLookup, kr.Freshness.Probes, kr.Freshness.NeverVisible)
	lc.Stop()
	return r.kafkaCluster(ctx, kr, dir, addr, hc, prod, recs)
}

// kafkaCluster measures recs, in a topic of their own, consumed by a
// 3-node cluster sharing one consumer group: from the moment the group is
// stable until the nodes report every record consumed and no lag.
func (r *runner) kafkaCluster(ctx context.Context, kr *KafkaReport, dir, broker string, hc *http.Client, prod *kgo.Client, recs []*kgo.Record) error {
	topic, group := kafkaBenchTopic+"-cluster", "tally-bench-cluster"
	adm := kadm.NewClient(prod)
	if _, err := adm.CreateTopic(ctx, int32(kr.Partitions), 1, nil, topic); err != nil {
		r.logf("kafka    cluster not run: create topic: %v", err)
		return nil
	}
	repoDir, nodesDir := filepath.Join(dir, "repo-cluster"), filepath.Join(dir, "cluster")
	if err := WriteKafkaRepo(repoDir, broker, topic, group, "earliest"); err != nil {
		return err
	}
	if err := os.MkdirAll(nodesDir, 0o755); err != nil {
		return err
	}
	// The records wait in the topic; the rate counts from the moment the
	// group is stable with its 3 members (the nodes join as they start,
	// and the first ones consume meanwhile) to the last record.
	for _, rec := range recs {
		rec.Topic = topic
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		r.logf("kafka    cluster not run: produce: %v", err)
		return nil
	}
	c, err := localcluster.Start(ctx, localcluster.Options{Binary: r.opts.Binary, Dir: nodesDir, Nodes: 3, Args: []string{"--repo", repoDir}})
	if err != nil {
		return err
	}
	defer c.Stop()
	count := func() (n, lag int64) {
		for _, a := range c.Addrs() {
			n += consumed(hc, "http://"+a)
			lag += lagSum(hc, "http://"+a)
		}
		return n, lag
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(50 * time.Millisecond) {
		gs, err := adm.DescribeGroups(ctx, group)
		if g, ok := gs[group]; err == nil && ok && g.State == "Stable" && len(g.Members) == 3 {
			break
		}
	}
	start := time.Now()
	before, _ := count()
	total := int64(len(recs))
	deadline := start.Add(5 * time.Minute)
	for {
		n, lag := count()
		if n >= total && lag == 0 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.logf("kafka    cluster: consumed %d of %d records in 5 minutes (lag %d)", n, total, lag)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	el := time.Since(start)
	kr.ClusterEvS = float64(total-before) / el.Seconds()
	r.add(Result{System: "tally-cluster", Scenario: "kafka", Mode: "consume", EventsPerS: kr.ClusterEvS, Throughput: kr.ClusterEvS, Workers: 3,
		DurationS: el.Seconds(), Description: fmt.Sprintf("%d events from %d partitions into 3 nodes (8 groups, R=3), one consumer group, once stable", total-before, kr.Partitions)})
	return nil
}

var lagLine = regexp.MustCompile(`(?m)^tally_kafka_lag\{[^}]*\} (\d+)$`)

// lagSum is the node's lag over the partitions it consumes (0 when
// unreadable).
func lagSum(hc *http.Client, base string) int64 {
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var n int64
	for _, m := range lagLine.FindAllSubmatch(b, -1) {
		v, _ := strconv.ParseInt(string(m[1]), 10, 64)
		n += v
	}
	return n
}

// kafkaFreshness produces one record at a time, each of a new user, and
// times from the producer's acknowledgement to the first lookup counting
// it (at most 5 s a probe).
func (r *runner) kafkaFreshness(ctx context.Context, hc *http.Client, base string, prod *kgo.Client) *Freshness {
	probes := 300
	if r.opts.Quick {
		probes = 100
	}
	f := &Freshness{}
	h := load.NewHistogram()
	for i := range probes {
		if ctx.Err() != nil {
			break
		}
		txn := workload.Txn{UserID: "kafka_fresh_" + strconv.Itoa(i), Merchant: "m_fresh", Category: "c", Country: "FR", Amt: 1, TS: time.Now().UnixMilli()}
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: kafkaBenchTopic, Key: []byte(txn.UserID), Value: txn.AppendJSON(nil)}).FirstErr(); err != nil {
			f.Probes++
			f.NeverVisible++
			continue
		}
		acked := time.Now()
		k := lookupKey{User: txn.UserID, Merchant: txn.Merchant, Country: txn.Country, Amt: 1}
		req := k.tallyBody(nil, 0)
		f.Probes++
		seen := false
		for try := 1; try <= 5000 && time.Since(acked) < 5*time.Second; try++ {
			resp, err := hc.Post(base+pathGetFeatures, "application/json", bytes.NewReader(req))
			if err != nil {
				break
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			v, err := parseVector(body)
			if err != nil {
				break
			}
			if n, ok := v["user_transaction_counts.amt_count_1m"]; ok && n.present && n.num >= 1 {
				if try == 1 {
					f.FirstLookup++
				}
				_ = h.RecordValue(max(1, int64(time.Since(acked))))
				seen = true
				break
			}
		}
		if !seen {
			f.NeverVisible++
		}
	}
	f.Latency = latencyOf(h)
	return f
}

var consumedLine = regexp.MustCompile(`(?m)^tally_kafka_records_consumed_total\{[^}]*\} (\d+)$`)

// consumed is the node's count of consumed records (0 when unreadable).
func consumed(hc *http.Client, base string) int64 {
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var n int64
	for _, m := range consumedLine.FindAllSubmatch(b, -1) {
		v, _ := strconv.ParseInt(string(m[1]), 10, 64)
		n += v
	}
	return n
}

// WriteKafkaRepo writes the default feature repo into dir with its
// transactions source consumed from topic on broker in group, starting a
// new group at start (earliest, latest), for processes started with
// --repo dir (the bench, `tally demo --kafka --nodes N`).
func WriteKafkaRepo(dir, broker, topic, group, start string) error {
	src := features.DefaultFS()
	err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, p), 0o755)
		}
		b, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".yaml") {
			b = bytes.Replace(b, []byte("  - name: transactions\n"), fmt.Appendf(nil, "  - name: transactions\n    kafka: {brokers: [%s], topic: %s, group: %s, start: %s}\n", broker, topic, group, start), 1)
		}
		return os.WriteFile(filepath.Join(dir, p), b, 0o644)
	})
	if err != nil {
		return fmt.Errorf("write the kafka bench repo: %w", err)
	}
	return nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// printText writes the scenario's lines of the text report.
func (k *KafkaReport) printText(w io.Writer) {
	if k.NotRun != "" {
		fmt.Fprintf(w, "kafka: not run: %s\n", k.NotRun)
		return
	}
	fmt.Fprintf(w, "kafka: %d events from %d partitions at %.0f events/s; HTTP bulk of the same events %.0f events/s; into a 3-node cluster %.0f events/s\n", k.Events, k.Partitions, k.KafkaEvS, k.BulkEvS, k.ClusterEvS)
	if f := k.Freshness; f != nil {
		fmt.Fprintf(w, "kafka freshness: produce acknowledged to visible p50 %s p99 %s (%d probes, %d never)\n",
			strings.TrimSpace(fmtUs(f.Latency.P50)), strings.TrimSpace(fmtUs(f.Latency.P99)), f.Probes, f.NeverVisible)
	}
}

// markdown writes the scenario's section of report.md.
func (k *KafkaReport) markdown(b *strings.Builder) {
	b.WriteString("\n## Kafka\n\n")
	if k.NotRun != "" {
		fmt.Fprintf(b, "Not run: %s\n", k.NotRun)
		return
	}
	fmt.Fprintf(b, "One `tally serve` process (WAL, fsync always) consuming an %d-partition topic of a local broker (`scripts/kafka.sh`), beside HTTP bulk of the same %d events into another fresh process:\n\n", k.Partitions, k.Events)
	b.WriteString("| path | events/s |\n| --- | --- |\n")
	fmt.Fprintf(b, "| Kafka | %.0f |\n| HTTP bulk (10k a request, one connection) | %.0f |\n| Kafka into a 3-node cluster (8 groups, R=3; one consumer group) | %.0f |\n", k.KafkaEvS, k.BulkEvS, k.ClusterEvS)
	if f := k.Freshness; f != nil {
		fmt.Fprintf(b, "\nFreshness, from the producer's acknowledgement of a record to the first lookup counting it: p50 %s, p99 %s over %d probes (%d never visible).\n",
			strings.TrimSpace(fmtUs(f.Latency.P50)), strings.TrimSpace(fmtUs(f.Latency.P99)), f.Probes, f.NeverVisible)
	}
}
