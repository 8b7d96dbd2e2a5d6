package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hashicorp/raft"
)

var testKey = []byte("0123456789abcdef-test-cluster-key")

func testConfig(bindIP string) Config {
	return Config{ClusterID: "test", Key: testKey, BindIP: bindIP,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func listen(t *testing.T, cfg Config) *Mux {
	t.Helper()
	m, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// waitFor polls cond every 10ms for at most limit; it reports whether cond
// held. Bounded in count and time; no assertion on how long it took.
func waitFor(limit time.Duration, cond func() bool) bool {
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// counterFSM sums the uint64 commands it applies.
type counterFSM struct {
	mu  sync.Mutex
	sum uint64
	n   int
}

func (f *counterFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sum += binary.BigEndian.Uint64(l.Data)
	f.n++
	return nil
}

func (f *counterFSM) get() (uint64, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sum, f.n
}

func (f *counterFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnap{}, nil }
func (f *counterFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnap struct{}

func (nopSnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnap) Release()                          {}

// Three nodes, each one Mux (its cluster port, dialing from its own loopback
// IP); three groups, each a real 3-node hashicorp/raft cluster over the Muxes.
// Node 2 opens group g2 only after the others started, so their first
// connections for it are refused and raft has to retry. Every group elects
// and replicates an entry to all three replicas.
func TestRaftGroupsOverOneMuxPerNode(t *testing.T) {
	const nodes, groups = 3, 3
	muxes := make([]*Mux, nodes)
	for i := range muxes {
		muxes[i] = listen(t, testConfig(fmt.Sprintf("127.0.0.%d", 11+i)))
	}
	var servers []raft.Server
	for i, m := range muxes {
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprintf("n%d", i)), Address: raft.ServerAddress(m.Addr().String())})
	}
	fsms := make([][]*counterFSM, groups)
	rafts := make([][]*raft.Raft, groups)
	start := func(g, i int) {
		conf := raft.DefaultConfig()
		conf.LocalID = servers[i].ID
		conf.HeartbeatTimeout = 300 * time.Millisecond
		conf.ElectionTimeout = 300 * time.Millisecond
		conf.LeaderLeaseTimeout = 150 * time.Millisecond
		conf.CommitTimeout = 10 * time.Millisecond
		conf.LogOutput = io.Discard
		store := raft.NewInmemStore()
		trans := muxes[i].Transport(fmt.Sprintf("g%d", g), 3, 2*time.Second, io.Discard)
		r, err := raft.NewRaft(conf, fsms[g][i], store, store, raft.NewInmemSnapshotStore(), trans)
		if err != nil {
			t.Fatal(err)
		}
		rafts[g][i] = r
		t.Cleanup(func() { r.Shutdown().Error(); trans.Close() })
		if i == 0 {
			if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for g := 0; g < groups; g++ {
		fsms[g] = []*counterFSM{{}, {}, {}}
		rafts[g] = make([]*raft.Raft, nodes)
		for i := 0; i < nodes; i++ {
			if g == 2 && i == 2 {
				continue
			}
			start(g, i)
		}
	}
	// Until g2 is open on node 2, dials for it are refused with a reason.
	if _, err := muxes[0].dial("g2", muxes[2].Addr().String(), time.Second); err == nil || !strings.Contains(err.Error(), `group "g2" is not open`) {
		t.Fatalf("dial for a group not open yet: %v, want a refusal naming it", err)
	}
	start(2, 2)

	for g := 0; g < groups; g++ {
		var leader *raft.Raft
		if !waitFor(20*time.Second, func() bool {
			for _, r := range rafts[g] {
				if r.State() == raft.Leader {
					leader = r
					return true
				}
			}
			return false
		}) {
			t.Fatalf("group g%d elected no leader", g)
		}
		cmd := binary.BigEndian.AppendUint64(nil, uint64(100+g))
		if err := leader.Apply(cmd, 5*time.Second).Error(); err != nil {
			t.Fatalf("group g%d apply: %v", g, err)
		}
		for i, f := range fsms[g] {
			if !waitFor(20*time.Second, func() bool { s, _ := f.get(); return s == uint64(100+g) }) {
				s, n := f.get()
				t.Fatalf("group g%d node %d applied sum %d over %d entries, want %d", g, i, s, n, 100+g)
			}
		}
	}
	for i, m := range muxes {
		if m.Refused() != 0 && i != 2 {
			t.Errorf("node %d refused %d handshakes among honest peers", i, m.Refused())
		}
	}
}

// BindIP makes outbound conns come from that loopback address.
func TestBindIP(t *testing.T) {
	a, b := listen(t, testConfig("")), listen(t, testConfig("127.0.0.12"))
	la := a.Layer("g")
	c, err := b.Layer("g").Dial(raft.ServerAddress(a.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := la.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ip := s.RemoteAddr().(*net.TCPAddr).IP.String(); ip != "127.0.0.12" {
		t.Fatalf("accepted conn from %s, want 127.0.0.12", ip)
	}
	// The stream carries bytes both ways after the handshake.
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

func refusedMetric(m *Mux, reason string) string {
	var buf bytes.Buffer
	m.set.WritePrometheus(&buf)
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.HasPrefix(line, `tally_cluster_handshakes_refused_total{reason="`+reason+`"}`) {
			return line[strings.LastIndexByte(line, ' ')+1:]
		}
	}
	return "0"
}

func TestRefusals(t *testing.T) {
	cfg := testConfig("")
	cfg.HandshakeTimeout = 300 * time.Millisecond
	cfg.Metrics = metrics.NewSet()
	a := listen(t, cfg)
	a.Layer("g")
	addr := raft.ServerAddress(a.Addr().String())
	var want uint64
	expect := func(t *testing.T, reason string) {
		t.Helper()
		want++
		if got := a.Refused(); got != want {
			t.Fatalf("Refused() = %d, want %d", got, want)
		}
		if got := refusedMetric(a, reason); got == "0" {
			t.Fatalf("metric for reason %s not counted", reason)
		}
	}

	t.Run("wrong key", func(t *testing.T) {
		c := testConfig("")
		c.Key = []byte("another-key-of-enough-bytes")
		_, err := listen(t, c).Layer("g").Dial(addr, time.Second)
		var re *RefusedError
		if !errors.As(err, &re) || !strings.Contains(re.Reason, "bad cluster key") {
			t.Fatalf("dial with a wrong key: %v, want a refusal saying bad cluster key", err)
		}
		expect(t, reasonKey)
	})
	t.Run("wrong cluster id", func(t *testing.T) {
		c := testConfig("")
		c.ClusterID = "other"
		_, err := listen(t, c).Layer("g").Dial(addr, time.Second)
		if err == nil || !strings.Contains(err.Error(), `wrong cluster id "other"`) {
			t.Fatalf("dial with a wrong id: %v", err)
		}
		expect(t, reasonClusterID)
	})
	t.Run("unknown group", func(t *testing.T) {
		_, err := listen(t, testConfig("")).Layer("nope").Dial(addr, time.Second)
		if err == nil || !strings.Contains(err.Error(), `group "nope" is not open`) {
			t.Fatalf("dial for an unknown group: %v", err)
		}
		expect(t, reasonGroup)
	})
	t.Run("plain TCP garbage", func(t *testing.T) {
		c, err := net.Dial("tcp", string(addr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		c.SetDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || !strings.Contains(string(got), "not a tally cluster handshake") {
			t.Fatalf("garbage answered %q, %v; want the reason, then close", got, err)
		}
		expect(t, reasonMalformed)
	})
	t.Run("oversized name", func(t *testing.T) {
		c, err := net.Dial("tcp", string(addr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{'T', 'L', 'Y', 'C', version, 200})
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("want a close, got %v", err)
		}
		expect(t, reasonMalformed)
	})
	t.Run("slowloris", func(t *testing.T) {
		c, err := net.Dial("tcp", string(addr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("TL")) // and then nothing
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("a silent peer must be closed by the handshake deadline, got %v", err)
		}
		expect(t, reasonTimeout)
	})
	t.Run("peer that cannot prove the key", func(t *testing.T) {
		// A fake cluster port that accepts any proof and answers a random MAC:
		// the dialer must refuse it.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			s, err := ln.Accept()
			if err != nil {
				return
			}
			defer s.Close()
			if _, _, err := readHello(s); err != nil {
				return
			}
			n := newNonce()
			s.Write(append([]byte(magic+"\x01\x00"), n[:]...))
			io.ReadFull(s, make([]byte, macLen))
			s.Write(append([]byte{statusOK}, make([]byte, macLen)...))
			io.Copy(io.Discard, s)
		}()
		b := listen(t, testConfig(""))
		_, err = b.Layer("g").Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
		if err == nil || !strings.Contains(err.Error(), "did not prove the cluster key") {
			t.Fatalf("dial to an impostor: %v", err)
		}
		if b.Refused() != 1 {
			t.Fatalf("dialer Refused() = %d, want 1", b.Refused())
		}
	})
	// After all that, an honest peer still gets in.
	c, err := listen(t, testConfig("")).Layer("g").Dial(addr, time.Second)
	if err != nil {
		t.Fatalf("honest dial after refusals: %v", err)
	}
	c.Close()
}

// Beyond MaxHandshakes in progress, new conns are closed at once.
func TestHandshakeLimit(t *testing.T) {
	cfg := testConfig("")
	cfg.MaxHandshakes = 2
	cfg.HandshakeTimeout = 10 * time.Second
	a := listen(t, cfg)
	var silent []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", a.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	// The two silent conns hold both slots once accepted; the third is refused.
	if !waitFor(10*time.Second, func() bool {
		c, err := net.Dial("tcp", a.Addr().String())
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 1))
		return err == io.EOF
	}) {
		t.Fatal("a conn beyond the handshake limit was not closed")
	}
	if refusedMetric(a, reasonBusy) == "0" {
		t.Fatal("busy refusal not counted")
	}
	// Mux.Close ends the handshakes in progress instead of waiting them out.
	a.Close()
	for _, c := range silent {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("silent conn not closed by Mux.Close: %v", err)
		}
	}
}

// Closing a layer ends its Accept and unregisters the group; the Mux and other
// groups keep serving, and the group can be opened again.
func TestLayerClose(t *testing.T) {
	a, b := listen(t, testConfig("")), listen(t, testConfig(""))
	addr := raft.ServerAddress(a.Addr().String())
	g, h := a.Layer("g"), a.Layer("h")
	if a.Layer("g") != g {
		t.Fatal("Layer of an open group returned a new layer")
	}
	acceptErr := make(chan error, 1)
	go func() { _, err := g.Accept(); acceptErr <- err }()
	g.Close()
	if err := <-acceptErr; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
	if _, err := b.Layer("g").Dial(addr, time.Second); err == nil {
		t.Fatal("dial for a closed group succeeded")
	}
	dialAccept := func(l *Layer, group string) {
		t.Helper()
		done := make(chan error, 1)
		go func() {
			c, err := l.Accept()
			if err == nil {
				c.Close()
			}
			done <- err
		}()
		c, err := b.Layer(group).Dial(addr, time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", group, err)
		}
		c.Close()
		if err := <-done; err != nil {
			t.Fatalf("accept %s: %v", group, err)
		}
	}
	dialAccept(h, "h")
	g2 := a.Layer("g")
	if g2 == g {
		t.Fatal("Layer after Close returned the closed layer")
	}
	dialAccept(g2, "g")

	a.Close()
	if _, err := h.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Mux.Close: %v", err)
	}
	if _, err := a.Layer("late").Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a layer made after Mux.Close: %v", err)
	}
}

func TestListenRefusesBadConfig(t *testing.T) {
	for _, c := range []Config{
		{Key: testKey},
		{ClusterID: strings.Repeat("x", 65), Key: testKey},
		{ClusterID: "c", Key: []byte("short")},
		{ClusterID: "c", Key: testKey, BindIP: "not-an-ip"},
	} {
		if m, err := Listen("127.0.0.1:0", c); err == nil {
			m.Close()
			t.Errorf("Listen accepted %+v", c)
		}
	}
}

func TestAdvertise(t *testing.T) {
	cfg := testConfig("")
	cfg.Advertise = "127.0.0.99:7000"
	m := listen(t, cfg)
	if got := m.Layer("g").Addr().String(); got != "127.0.0.99:7000" {
		t.Fatalf("layer Addr = %s, want the advertised address", got)
	}
	if got := m.Transport("h", 1, time.Second, io.Discard).LocalAddr(); got != "127.0.0.99:7000" {
		t.Fatalf("raft LocalAddr = %s, want the advertised address", got)
	}
	// A wildcard listener needs an advertise address.
	if m, err := Listen("0.0.0.0:0", testConfig("")); err == nil {
		m.Close()
		t.Fatal("Listen on 0.0.0.0 without an advertise address succeeded")
	} else if !strings.Contains(err.Error(), "advertise") {
		t.Fatalf("error %q does not say what to set", err)
	}
	cfg.Advertise = "127.0.0.1:7000"
	m2, err := Listen("0.0.0.0:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	m2.Close()
}

// Refusals are all counted but logged at most once a second.
func TestRefusalLogRateLimited(t *testing.T) {
	var buf syncBuffer
	cfg := testConfig("")
	cfg.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	a := listen(t, cfg)
	start := time.Now()
	for i := 0; i < 10; i++ {
		c, err := net.Dial("tcp", a.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("garbage!garbage!"))
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.ReadAll(c)
		c.Close()
	}
	if a.Refused() != 10 {
		t.Fatalf("Refused() = %d, want 10", a.Refused())
	}
	// At most one line per started second (plus the first).
	limit := 1 + int(time.Since(start)/time.Second)
	if lines := strings.Count(buf.String(), "handshake refused"); lines < 1 || lines > limit || lines == 10 {
		t.Fatalf("%d log lines for 10 refusals in %v; want 1 to %d:\n%s", lines, time.Since(start), limit, buf.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
