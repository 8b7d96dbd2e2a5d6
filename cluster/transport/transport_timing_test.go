package transport

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// BenchmarkAppendEntries measures raft AppendEntries RPCs (64 entries of 256
// bytes each, one at a time, as a follower's replication loop sends them)
// over the Mux beside raft's own plain TCP transport, so the cost of the mux
// shows as the difference. The follower side answers every RPC at once.
//
//	go test -run '^$' -bench AppendEntries -benchtime 2s ./cluster/transport
func BenchmarkAppendEntries(b *testing.B) {
	b.Run("mux", func(b *testing.B) {
		server, client := listen2(b), listen2(b)
		benchAppend(b, server.Transport("g", 2, 10*time.Second, io.Discard),
			client.Transport("g", 2, 10*time.Second, io.Discard))
	})
	b.Run("tcp", func(b *testing.B) {
		server, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 10*time.Second, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		client, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 10*time.Second, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		benchAppend(b, server, client)
	})
}

func listen2(b *testing.B) *Mux {
	m, err := Listen("127.0.0.1:0", testConfig(""))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

func benchAppend(b *testing.B, server, client *raft.NetworkTransport) {
	defer server.Close()
	defer client.Close()
	go func() {
		for rpc := range server.Consumer() {
			req := rpc.Command.(*raft.AppendEntriesRequest)
			rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: req.PrevLogEntry + uint64(len(req.Entries)), Success: true}, nil)
		}
	}()
	entries := make([]*raft.Log, 64)
	for i := range entries {
		entries[i] = &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: make([]byte, 256)}
	}
	req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("leader"), Addr: []byte(client.LocalAddr())},
		Term: 1, Entries: entries, LeaderCommitIndex: 1}
	var resp raft.AppendEntriesResponse
	target := server.LocalAddr()
	// One warm-up RPC dials and handshakes outside the timing.
	if err := client.AppendEntries("server", target, req, &resp); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(entries) * 256))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := client.AppendEntries("server", target, req, &resp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandshake is the cost of one new authenticated connection (dial,
// two HMACs each side, three round trips on loopback), paid once per pooled
// connection.
func BenchmarkHandshake(b *testing.B) {
	server, client := listen2(b), listen2(b)
	l := server.Layer("g")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := raft.ServerAddress(server.Addr().String())
	cl := client.Layer("g")
	b.ReportAllocs()
	for b.Loop() {
		c, err := cl.Dial(addr, 5*time.Second)
		if err != nil {
			b.Fatalf("%v (server refused %d)", err, server.Refused())
		}
		c.Close()
	}
}
