package transport_test

import (
	"log"
	"os"
	"time"

	"github.com/hashicorp/raft"
	"github.com/tally-ml/tally/cluster/transport"
)

// A node opens its cluster port once and gives every Raft group it hosts a
// transport on it; peers' addresses in each group's configuration are their
// cluster ports (or their advertised addresses).
func ExampleMux() {
	mux, err := transport.Listen("127.0.0.1:0", transport.Config{
		ClusterID: "prod-eu",
		Key:       []byte(os.Getenv("TALLY_CLUSTER_KEY")), // 16+ random bytes, the same on every node
	})
	if err != nil {
		log.Fatal(err)
	}
	defer mux.Close()
	for _, group := range []string{"meta", "g0", "g1"} {
		trans := mux.Transport(group, 3, 10*time.Second, os.Stderr)
		conf := raft.DefaultConfig()
		conf.LocalID = "node-1"
		store := raft.NewInmemStore()
		r, err := raft.NewRaft(conf, nil /* the group's FSM */, store, store, raft.NewInmemSnapshotStore(), trans)
		if err != nil {
			log.Fatal(err)
		}
		defer r.Shutdown()
	}
}
