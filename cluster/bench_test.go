package cluster

import (
	"fmt"
	"io/fs"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
)

// benchCluster opens n in-process cluster nodes on loopback, each with
// its node front, and closes them when b ends.
func benchCluster(b *testing.B, n, groups, replicas int) []*node.Node {
	b.Helper()
	_, fronts := openTestCluster(b, nil, n, groups, replicas)
	return fronts
}

// openTestCluster opens n in-process cluster nodes on loopback serving the
// repo in fsys (nil: the default repo), each with its node front, waits
// until a first write succeeds, and closes them when b ends.
func openTestCluster(b testing.TB, fsys fs.FS, n, groups, replicas int) ([]*Cluster, []*node.Node) {
	b.Helper()
	if fsys == nil {
		fsys = features.DefaultFS()
	}
	repo, err := features.Load(fsys)
	if err != nil {
		b.Fatal(err)
	}
	var peers []Member
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		peers = append(peers, Member{ID: fmt.Sprintf("n%d", i), ClusterAddr: ln.Addr().String()})
		ln.Close()
	}
	cs := make([]*Cluster, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			c, err := Open(Config{NodeID: peers[i].ID, DataDir: b.TempDir(), ClusterAddr: peers[i].ClusterAddr, ClusterID: "bench",
				Key: []byte("bench-cluster-key-0123"), Peers: peers, Groups: groups, Replicas: replicas, WriteTimeout: 30 * time.Second}, repo)
			cs[i] = c
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		for _, c := range cs {
			c.Close()
		}
	})
	var fronts []*node.Node
	for _, c := range cs {
		nd, err := node.New(repo, node.DefaultConfig(), node.Options{Cluster: c, RepoFS: fsys})
		if err != nil {
			b.Fatal(err)
		}
		nd.SetReady(true)
		fronts = append(fronts, nd)
	}
	// Wait until every group has a leader: a first write succeeds.
	body := []byte(fmt.Sprintf(`{"user_id":"warm","merchant":"m","category":"c","amt":1,"country":"FR","lat":1,"long":2,"timestamp":%d}`, time.Now().UnixMilli()))
	for g := 0; g < 50; g++ {
		if _, err := fronts[0].IngestNDJSONAs("", "transactions", body, false); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return cs, fronts
}

// BenchmarkClusterIngest measures bulk ingest (1,000 events a request,
// through one node, 3 nodes, R=3, 8 groups) of events spread over many
// users, merchants and countries, beside events that all share one user,
// one merchant and one country (a hot key: every event lands in the same
// groups, so one group's leader takes the whole stream). events/s is per
// request stream; the hot key's is the limit of one group.
func BenchmarkClusterIngest(b *testing.B) {
	for _, hot := range []bool{false, true} {
		name := "spread"
		if hot {
			name = "hot-key"
		}
		b.Run(name, func(b *testing.B) {
			fronts := benchCluster(b, 3, 8, 3)
			// Timestamps grow from request to request (in order, as a live
			// stream's), so a hot entity takes appends, not inserts.
			now := time.Now().UnixMilli() - 600_000
			bodies := make([][]byte, 64)
			for k := range bodies {
				var sb strings.Builder
				for e := range 1000 {
					u, m, c := fmt.Sprintf("u%d", (k*1000+e)%5000), fmt.Sprintf("m%d", e%500), []string{"FR", "DE", "US", "GB", "ES"}[e%5]
					if hot {
						u, m, c = "hot-user", "hot-merchant", "FR"
					}
					fmt.Fprintf(&sb, `{"user_id":%q,"merchant":%q,"category":"c","amt":%d,"country":%q,"lat":1,"long":2,"timestamp":%d}`+"\n", u, m, e%100, c, now+int64(k*1000+e))
				}
				bodies[k] = []byte(sb.String())
			}
			var next atomic.Int64
			b.SetParallelism(2) // 2 x GOMAXPROCS concurrent requests
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					k := int(next.Add(1)-1) % len(bodies) // in order, up to concurrency
					if _, err := fronts[0].IngestNDJSONAs("", "transactions", bodies[k], false); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
