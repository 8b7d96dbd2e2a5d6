package linearize

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Kind is what an operation does.
type Kind uint8

const (
	// Add is an ingest of N events for Key.
	Add Kind = iota
	// Read returns Key's count.
	Read
)

// Input is an operation as it was asked.
type Input struct {
	Kind Kind
	Key  string
	N    int64 // events added; Add only
}

// Output is an operation's answer.
type Output struct {
	Count   int64 // Read only: the count returned
	Unknown bool  // Add only: the outcome is unknown (timed out or failed after sending)
}

// Handle names one begun operation; pass it to End.
type Handle int

// Recorder collects a concurrent history. It is safe for concurrent use by any
// number of clients; each client must use its own client id (0, 1, ...) and
// run one operation at a time, as porcupine's visualization draws one lane per
// client.
type Recorder struct {
	// VisualizationPath is where Check writes the HTML visualization of a
	// failed check; empty means a new file in os.TempDir().
	VisualizationPath string

	start time.Time
	mu    sync.Mutex
	last  int64 // last timestamp handed out; timestamps strictly increase
	ops   []porcupine.Operation
	state []opState
}

type opState uint8

const (
	pending opState = iota
	ended
	discarded
)

// NewRecorder returns an empty Recorder whose clock starts now.
func NewRecorder() *Recorder {
	return &Recorder{start: time.Now()}
}

// now is nanoseconds on the monotonic clock since the Recorder was made,
// strictly greater than any earlier timestamp, so operations one after another
// in real time never look concurrent (porcupine's intervals are closed). r.mu
// must be held.
func (r *Recorder) now() int64 {
	t := int64(time.Since(r.start))
	if t <= r.last {
		t = r.last + 1
	}
	r.last = t
	return t
}

// Begin records the call of an operation by client and returns its Handle.
// Call it before the request leaves the client.
func (r *Recorder) Begin(client int, in Input) Handle {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.now()
	r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: in, Call: t, Return: math.MaxInt64})
	r.state = append(r.state, pending)
	return Handle(len(r.ops) - 1)
}

// BeginAdd is Begin(client, Input{Kind: Add, Key: key, N: n}).
func (r *Recorder) BeginAdd(client int, key string, n int64) Handle {
	return r.Begin(client, Input{Kind: Add, Key: key, N: n})
}

// BeginRead is Begin(client, Input{Kind: Read, Key: key}).
func (r *Recorder) BeginRead(client int, key string) Handle {
	return r.Begin(client, Input{Kind: Read, Key: key})
}

// End records the answer of h. Call it after the answer arrived. An Add ended
// with Output{Unknown: true} keeps its return at +infinity (it may take effect
// at any later moment, or never). Ending a Read with Unknown set panics: a read
// without an answer constrains nothing, Discard it.
func (r *Recorder) End(h Handle, out Output) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.now()
	op := &r.ops[h]
	if r.state[h] != pending {
		panic(fmt.Sprintf("linearize: operation %d ended twice", h))
	}
	in := op.Input.(Input)
	if in.Kind == Read && out.Unknown {
		panic("linearize: a read without an answer must be discarded, not ended as unknown")
	}
	r.state[h] = ended
	op.Output = out
	if !out.Unknown {
		op.Return = t
	}
}

// Ack ends an Add the cluster acknowledged.
func (r *Recorder) Ack(h Handle) { r.End(h, Output{}) }

// Unknown ends an Add whose outcome is unknown.
func (r *Recorder) Unknown(h Handle) { r.End(h, Output{Unknown: true}) }

// Count ends a Read that returned count.
func (r *Recorder) Count(h Handle, count int64) { r.End(h, Output{Count: count}) }

// Discard drops h from the history: an Add certainly not applied, or a Read
// that failed.
func (r *Recorder) Discard(h Handle) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state[h] != pending {
		panic(fmt.Sprintf("linearize: operation %d ended twice", h))
	}
	r.state[h] = discarded
}

// Len is the number of operations recorded and not discarded.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.state {
		if s != discarded {
			n++
		}
	}
	return n
}

// history is a copy of the recorded operations, without discarded ones.
// Pending operations are Adds of unknown outcome (return at +infinity); a
// pending Read is dropped (it returned nothing).
func (r *Recorder) history() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := make([]porcupine.Operation, 0, len(r.ops))
	for i, op := range r.ops {
		switch r.state[i] {
		case discarded:
			continue
		case pending:
			if op.Input.(Input).Kind == Read {
				continue
			}
			op.Output = Output{Unknown: true}
		}
		h = append(h, op)
	}
	return h
}

// ErrTimeout is returned by Check when porcupine could not decide in time.
var ErrTimeout = errors.New("linearize: check did not finish in time; record a shorter history or fewer concurrent clients")

// Check decides whether the history is linearizable, giving up after timeout
// (0 = no limit). It returns (true, nil) when it is; (false, ErrTimeout) when
// undecided; and (false, err) naming the visualization file when it is not.
// Operations may still be recorded while Check runs; they are not checked.
func (r *Recorder) Check(timeout time.Duration) (bool, error) {
	h := r.history()
	res, info := porcupine.CheckOperationsVerbose(Model, h, timeout)
	switch res {
	case porcupine.Ok:
		return true, nil
	case porcupine.Unknown:
		return false, ErrTimeout
	}
	path := r.VisualizationPath
	if path == "" {
		f, err := os.CreateTemp("", "linearize-*.html")
		if err != nil {
			return false, fmt.Errorf("linearize: history of %d operations is not linearizable (visualization not written: %w)", len(h), err)
		}
		path = f.Name()
		f.Close()
	}
	if err := porcupine.VisualizePath(Model, info, path); err != nil {
		return false, fmt.Errorf("linearize: history of %d operations is not linearizable (visualization not written: %w)", len(h), err)
	}
	abs, _ := filepath.Abs(path)
	return false, fmt.Errorf("linearize: history of %d operations is not linearizable; open %s in a browser to see where", len(h), abs)
}

// Model is the porcupine model of per-key event counters: a key's state is its
// count; Add always succeeds and adds N; Read must return the count.
var Model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(Input).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		count, in, out := state.(int64), input.(Input), output.(Output)
		if in.Kind == Add {
			return true, count + in.N
		}
		return out.Count == count, count
	},
	Hash: func(state any) uint64 { return uint64(state.(int64)) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(Input), output.(Output)
		if in.Kind == Add {
			if out.Unknown {
				return fmt.Sprintf("add(%s, %d) -> ?", in.Key, in.N)
			}
			return fmt.Sprintf("add(%s, %d)", in.Key, in.N)
		}
		return fmt.Sprintf("read(%s) -> %d", in.Key, out.Count)
	},
	DescribeState: func(state any) string { return fmt.Sprint(state.(int64)) },
}
