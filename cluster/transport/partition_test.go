package transport

import (
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/tally-ml/tally/systemtest/faultproxy"
	"github.com/tally-ml/tally/systemtest/harness"
)

// A 3-node raft group over Muxes, each node's cluster port behind a fault
// proxy and each node dialing from its own loopback IP. The leader is cut off
// (blackholed both ways, connections stall, no reset): its write is never
// acknowledged, the other two elect a leader and commit; after the heal the
// old leader rejoins, and every replica holds exactly the acknowledged writes.
func TestRaftGroupSurvivesIsolatedLeader(t *testing.T) {
	const nodes = 3
	// Ports first, then the proxies in front of them, then the Muxes, which
	// advertise their proxy's address (as raft reports a leader).
	targets := make([]string, nodes)
	for i := range targets {
		targets[i] = harness.FreeAddr(t)
	}
	fnet, err := faultproxy.NewNet(targets)
	if err != nil {
		t.Fatal(err)
	}
	defer fnet.Close()
	muxes := make([]*Mux, nodes)
	for i := range muxes {
		cfg := testConfig(faultproxy.NodeIP(i))
		cfg.Advertise = fnet.Proxies[i].Addr()
		if muxes[i], err = Listen(targets[i], cfg); err != nil {
			t.Fatal(err)
		}
		defer muxes[i].Close()
	}
	var servers []raft.Server
	for i := range muxes {
		servers = append(servers, raft.Server{ID: raft.ServerID(faultproxy.NodeIP(i)), Address: raft.ServerAddress(fnet.Proxies[i].Addr())})
	}
	fsms := []*counterFSM{{}, {}, {}}
	rafts := make([]*raft.Raft, nodes)
	for i := range rafts {
		conf := raft.DefaultConfig()
		conf.LocalID = servers[i].ID
		conf.HeartbeatTimeout = 300 * time.Millisecond
		conf.ElectionTimeout = 300 * time.Millisecond
		conf.LeaderLeaseTimeout = 150 * time.Millisecond
		conf.CommitTimeout = 10 * time.Millisecond
		conf.LogOutput = io.Discard
		store := raft.NewInmemStore()
		trans := muxes[i].Transport("g", 3, time.Second, io.Discard)
		r, err := raft.NewRaft(conf, fsms[i], store, store, raft.NewInmemSnapshotStore(), trans)
		if err != nil {
			t.Fatal(err)
		}
		rafts[i] = r
		defer func() { r.Shutdown().Error(); trans.Close() }()
	}
	if err := rafts[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}
	leader := func(except int) int {
		l := -1
		if !waitFor(30*time.Second, func() bool {
			for i, r := range rafts {
				if i != except && r.State() == raft.Leader {
					l = i
					return true
				}
			}
			return false
		}) {
			t.Fatalf("no leader elected (excluding node %d)", except)
		}
		return l
	}
	cmd := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

	old := leader(-1)
	if err := rafts[old].Apply(cmd(1), 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	fnet.Isolate(old)
	if err := rafts[old].Apply(cmd(100), 5*time.Second).Error(); err == nil {
		t.Fatal("an isolated leader acknowledged a write")
	}
	now := leader(old)
	if err := rafts[now].Apply(cmd(2), 5*time.Second).Error(); err != nil {
		t.Fatalf("majority side apply: %v", err)
	}
	// The majority's follower knows its leader by the advertised (proxy) address.
	follower := 3 - old - now
	if addr, _ := rafts[follower].LeaderWithID(); string(addr) != fnet.Proxies[now].Addr() {
		t.Fatalf("node %d sees leader at %q, want node %d's advertised %s", follower, addr, now, fnet.Proxies[now].Addr())
	}
	fnet.Heal()
	for i, f := range fsms {
		if !waitFor(30*time.Second, func() bool { s, _ := f.get(); return s == 3 }) {
			s, n := f.get()
			t.Fatalf("node %d holds sum %d over %d entries after the heal, want 3 (1+2, not the unacknowledged 100)", i, s, n)
		}
	}
}
