package node

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/wal"
	"github.com/tally-ml/tally/wal/walfs"
)

// The whole-node power-loss simulation: a random workload (JSON ingest,
// imports, table uploads with and without replace, snapshots with their
// retention, explicit log syncs) runs against a node opened on a walfs.Mem,
// which freezes at a random mutation, as a power loss would; the disk image
// it leaves (unsynced sectors and directory operations survive at random)
// is opened again and must hold:
//
//   - fsync always: every acknowledged change (and perhaps the one in flight),
//     and after the client retries the change in flight and an
//     acknowledged one under their request ids, every change applied once;
//   - fsync interval: a prefix of the acknowledged changes, at least up to
//     the last explicit sync (never a hole).
//
// A round runs several generations on one disk, so that what a recovery
// decides (where the log goes on, which snapshots are kept, how much log
// retention drops) is tested by the next crash; at some reopens the newest
// snapshot is also damaged, as at rest. States are compared by the answers
// of every entity written, against a node without a log fed the same
// changes.
//
// Each round has 4 generations (4 crash points). TALLY_CRASH_ROUNDS sets
// the rounds per policy (default 130: 1,040 crash points; 30 with -short),
// for a longer soak; TALLY_CRASH_SEED the seed.
func TestPowerLossWholeNode(t *testing.T) {
	rounds := 130
	if testing.Short() {
		rounds = 30
	}
	if s := os.Getenv("TALLY_CRASH_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	seed := uint64(1)
	if s := os.Getenv("TALLY_CRASH_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	// The models are not what is tested, and loading them dominates.
	c := *repo
	c.Services = nil
	for _, sv := range repo.Services {
		cp := *sv
		cp.Model = nil
		c.Services = append(c.Services, &cp)
	}
	repo = &c
	start := time.Now()
	points := 0
	for _, policy := range []string{"always", "interval"} {
		for r := 0; r < rounds; r++ {
			sim := &crashSim{t: t, repo: repo, policy: policy, rng: rand.New(rand.NewPCG(seed, uint64(r)<<1|boolBit(policy == "interval"))), slowSync: r%2 == 1}
			points += sim.run(4)
			if t.Failed() {
				t.Fatalf("policy %s round %d (seed %d) failed", policy, r, seed)
			}
		}
	}
	t.Logf("%d crash points in %s", points, time.Since(start).Round(time.Millisecond))
}

func boolBit(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// crashSim is one round: a disk, the history of acknowledged changes, and
// the state after each.
type crashSim struct {
	t      *testing.T
	repo   *features.Repo
	policy string
	rng    *rand.Rand

	ops    []crashOp // acknowledged changes, in order
	states []string  // states[k]: the answers after the first k changes
	seq    int       // makes every change's values unique

	ref  *Node // a node without a log fed ops[:refK]
	refK int

	slowSync bool
}

// crashOp is one change, applied the same way to the node under test
// (under its request id) and to the reference (without one).
type crashOp struct {
	what  string
	id    string
	apply func(n *Node, id string) error
}

var crashUsers = []string{"u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"}

func (s *crashSim) cfg() Config {
	cfg := DefaultConfig()
	cfg.DataDir = "/data"
	cfg.Durability.Fsync = s.policy
	// Half the rounds sync the log in the background every millisecond;
	// the others only when the workload asks, so that much is unsynced.
	cfg.Durability.SyncEvery = time.Millisecond
	if s.slowSync {
		cfg.Durability.SyncEvery = time.Hour
	}
	cfg.Durability.SegmentSize = 1 << 16
	cfg.Durability.Retention = 0
	cfg.Durability.SnapshotEvery = 0
	return cfg
}

func (s *crashSim) open(fsys walfs.FS) (*Instance, error) {
	clk := &testClock{}
	clk.set(t0)
	return Open(s.cfg(), s.repo, OpenOptions{Node: Options{Clock: clk.now, RepoFS: features.DefaultFS()}, FS: fsys,
		WAL: func(o *wal.Options) { o.SegmentSize = 8192 }}) // roll often: retention has segments to drop
}

// state is a node's answers for every entity the workload writes.
func (s *crashSim) state(n *Node) string {
	var b strings.Builder
	for i, u := range crashUsers {
		out, aerr := n.GetFeatures(nil, lookupBody(u, "m"+strconv.Itoa(i%3), "FR", 10, 1, 2))
		if aerr != nil {
			s.t.Fatalf("get-features: %v", aerr)
		}
		b.Write(out)
		b.WriteByte('\n')
	}
	return b.String()
}

// newOp draws a random change: a JSON ingest, an import, or a table upload
// (sometimes replacing the table). Every change moves some answer.
func (s *crashSim) newOp() crashOp {
	s.seq++
	seq := s.seq
	r := s.rng
	switch k := r.IntN(10); {
	case k < 5:
		var recs []string
		for j := 0; j < 1+r.IntN(40); j++ {
			u := r.IntN(len(crashUsers))
			recs = append(recs, txn(crashUsers[u], "m"+strconv.Itoa(r.IntN(3)), "FR", float64(seq)+float64(j)/64, t0-int64(r.IntN(50_000))))
		}
		body := ingestBody(recs...)
		return crashOp{"ingest", "op-" + strconv.Itoa(seq), func(n *Node, id string) error { _, err := n.IngestJSONAs(id, body); return err }}
	case k < 7:
		var body []byte
		for j := 0; j < 1+r.IntN(20); j++ {
			u := r.IntN(len(crashUsers))
			body = fmt.Appendf(body, `{"user_id":%q,"merchant":"m%d","category":"x","country":"FR","amt":%v,"lat":1,"long":2,"is_fraud":0,"timestamp":%d}`+"\n",
				crashUsers[u], r.IntN(3), float64(seq)+float64(j)/64, t0-int64(r.IntN(50_000)))
		}
		return crashOp{"import", "op-" + strconv.Itoa(seq), func(n *Node, id string) error {
			_, err := n.ImportNDJSONAs(id, "transactions", body, false)
			return err
		}}
	default:
		replace := r.IntN(3) == 0
		csv := []byte("user_id,home_lat,home_long\n")
		for _, u := range r.Perm(len(crashUsers))[:1+r.IntN(4)] {
			csv = fmt.Appendf(csv, "%s,%d,%d\n", crashUsers[u], seq, r.IntN(90))
		}
		return crashOp{"table", "op-" + strconv.Itoa(seq), func(n *Node, id string) error {
			if _, aerr := n.uploadTable(id, "user_profile", CSV, csv, replace, false, n.now()); aerr != nil {
				if aerr.Code == "NOT_DURABLE" {
					return fmt.Errorf("%w: %s", store.ErrLogFailed, aerr.Message)
				}
				return aerr
			}
			return nil
		}}
	}
}

// reference is a node without a log fed the first k changes.
func (s *crashSim) reference(k int) *Node {
	if s.ref == nil || k < s.refK {
		clk := &testClock{}
		clk.set(t0)
		n, err := New(s.repo, DefaultConfig(), Options{Clock: clk.now, RepoFS: features.DefaultFS()})
		if err != nil {
			s.t.Fatal(err)
		}
		s.ref, s.refK = n, 0
	}
	for _, op := range s.ops[s.refK:k] {
		if err := op.apply(s.ref, ""); err != nil {
			s.t.Fatalf("reference %s: %v", op.what, err)
		}
	}
	s.refK = k
	return s.ref
}

// run plays gens generations, each ended by a power loss, and returns the
// number of crash points.
func (s *crashSim) run(gens int) int {
	fsys := walfs.NewMem()
	s.states = []string{s.state(s.reference(0))}
	in, err := s.open(fsys)
	if err != nil {
		s.t.Errorf("open: %v", err)
		return 0
	}
	// Each generation runs on the node the last one's check reopened.
	for g := 0; g < gens; g++ {
		nOps := 5 + s.rng.IntN(25)
		// A power loss at a random mutation of what this generation will do
		// (about 12 per change: writes, fsyncs, snapshot files, renames).
		fsys.FreezeAfter(s.rng.IntN(nOps*12 + 1))
		synced := len(s.ops) // changes the log holds for sure
		if s.policy == "interval" {
			synced = -1 // filled in below
		}
		inFlight := -1
		for i := 0; i < nOps && inFlight < 0; i++ {
			switch r := s.rng.IntN(10); {
			case r <= 1:
				if _, err := in.Snapshot(); err != nil {
					i = nOps
				}
			case r == 2:
				if err := in.WAL().Sync(); err != nil {
					i = nOps
				} else if s.policy == "interval" {
					synced = len(s.ops)
				}
			default:
				op := s.newOp()
				err := op.apply(in.Node, op.id)
				if err != nil && !errors.Is(err, store.ErrLogFailed) {
					s.t.Fatalf("%s refused: %v", op.what, err)
				}
				s.ops = append(s.ops, op)
				if err != nil {
					inFlight = len(s.ops) // the in-flight change may or may not survive
					break
				}
				if s.policy == "always" {
					synced = len(s.ops)
				}
			}
		}
		img := fsys.Crash(s.rng)
		in.Close()
		fsys = img
		if s.rng.IntN(3) == 0 {
			damageNewestSnapshot(fsys, s.rng)
		}
		// Reopen and find which prefix of the history the disk holds.
		in, err = s.open(fsys)
		if err != nil {
			s.t.Errorf("generation %d (%s): open after power loss: %v", g, s.policy, err)
			return g + 1
		}
		got := s.state(in.Node)
		lo := max(synced, 0)
		hi := len(s.ops)
		for k := len(s.states); k <= hi; k++ {
			s.states = append(s.states, s.state(s.reference(k)))
		}
		match := -1
		for k := hi; k >= lo; k-- {
			if s.states[k] == got {
				match = k
				break
			}
		}
		if match < 0 {
			s.t.Errorf("generation %d (%s): after the power loss the state is none of changes %d..%d (acknowledged %d, in flight %d, synced %d); recovery %+v",
				g, s.policy, lo, hi, len(s.ops)-boolInt(inFlight >= 0), inFlight, synced, in.Recovery())
			in.Close()
			return g + 1
		}
		if s.policy == "always" && match < len(s.ops)-boolInt(inFlight >= 0) {
			s.t.Errorf("generation %d: acknowledged change %d lost", g, match+1)
		}
		if s.policy == "always" {
			// The client retries the change in flight under its id, and
			// once more an acknowledged one: each is applied once, whether
			// or not the disk held it.
			if inFlight >= 0 {
				if err := s.ops[inFlight-1].apply(in.Node, s.ops[inFlight-1].id); err != nil {
					s.t.Fatalf("generation %d: retry of %s: %v", g, s.ops[inFlight-1].what, err)
				}
				match = inFlight
			}
			if match > 0 {
				op := s.ops[s.rng.IntN(match)]
				if err := op.apply(in.Node, op.id); err != nil {
					s.t.Fatalf("generation %d: retry of %s: %v", g, op.what, err)
				}
			}
			if got := s.state(in.Node); got != s.states[match] {
				s.t.Errorf("generation %d: after the retries the state is not that of changes 1..%d applied once (in flight %d)", g, match, inFlight)
				in.Close()
				return g + 1
			}
		}
		// The disk now holds the first match changes: the history goes on
		// from there.
		s.ops, s.states = s.ops[:match], s.states[:match+1]
		if s.refK > match {
			s.ref = nil // it was fed changes the disk does not hold
		}
	}
	in.Close()
	return gens
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// damageNewestSnapshot flips a byte in the newest snapshot, as rot at rest,
// when there is an older one to fall back to: one fault at a time (with
// the fallback damaged too, what the log before it held is gone).
func damageNewestSnapshot(fsys *walfs.Mem, rng *rand.Rand) {
	ents, _ := fsys.ReadDir("/data/snapshots")
	newest, n := "", 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".snap") && !strings.HasPrefix(e.Name(), "corrupt-") {
			n++
			newest = max(newest, e.Name())
		}
	}
	if n < 2 {
		return
	}
	data := fsys.ReadFile("/data/snapshots/" + newest)
	if len(data) == 0 {
		return
	}
	data[rng.IntN(len(data))] ^= 0x40
	fsys.WriteFile("/data/snapshots/"+newest, data)
}
