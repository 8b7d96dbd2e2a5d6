package kafkatest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Broker is a running broker; Addr is its bootstrap host:port.
type Broker struct {
	Dir, Addr string
	script    string
}

var (
	once   sync.Once
	shared *Broker
	err    error
	out    string
)

// Required reports whether a missing broker fails the test (TALLY_REQUIRE_KAFKA).
func Required() bool { return os.Getenv("TALLY_REQUIRE_KAFKA") != "" }

// Shared returns the test binary's broker, starting it on first use.
func Shared(tb testing.TB) *Broker {
	tb.Helper()
	once.Do(func() {
		var dir string
		if dir, err = os.MkdirTemp("", "tally-kafka-"); err != nil {
			return
		}
		shared = &Broker{Dir: dir, script: script()}
		out, err = shared.run("start")
		shared.Addr = lastLine(out)
	})
	if err != nil {
		if Required() {
			tb.Fatalf("kafka broker: %v\n%s", err, out)
		}
		tb.Skipf("no kafka broker (set TALLY_REQUIRE_KAFKA=1 to fail instead): %v", err)
	}
	return shared
}

// Start starts a broker of the test's own (stopped when it ends), for a
// package whose TestMain is another's.
func Start(tb testing.TB) *Broker {
	tb.Helper()
	b := &Broker{Dir: tb.TempDir(), script: script()}
	out, err := b.run("start")
	if err != nil {
		if Required() {
			tb.Fatalf("kafka broker: %v\n%s", err, out)
		}
		tb.Skipf("no kafka broker (set TALLY_REQUIRE_KAFKA=1 to fail instead): %v", err)
	}
	b.Addr = lastLine(out)
	tb.Cleanup(func() {
		if tb.Failed() {
			log, _ := os.ReadFile(filepath.Join(b.Dir, "broker.log"))
			if len(log) > 8000 {
				log = log[len(log)-8000:]
			}
			tb.Logf("broker log (tail):\n%s", log)
		}
		b.run("stop")
	})
	return b
}

// Main runs the tests, then stops the shared broker.
func Main(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.run("stop")
		os.RemoveAll(shared.Dir)
	}
	os.Exit(code)
}

// Stop stops the broker (its data stays); Start starts it again on the
// same ports.
func (b *Broker) Stop(tb testing.TB) {
	tb.Helper()
	if out, err := b.run("stop"); err != nil {
		tb.Fatalf("stop broker: %v\n%s", err, out)
	}
}

// Start starts a stopped broker again.
func (b *Broker) Start(tb testing.TB) {
	tb.Helper()
	if out, err := b.run("start"); err != nil {
		tb.Fatalf("start broker: %v\n%s", err, out)
	}
}

// CreateTopic creates a topic of the given partitions.
func (b *Broker) CreateTopic(tb testing.TB, topic string, partitions int32) {
	tb.Helper()
	cl := b.Client(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopics(ctx, partitions, 1, nil, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		tb.Fatalf("create topic %s: %v", topic, err)
	}
}

// DeleteTopic deletes a topic and waits until the broker no longer lists
// it (it may then be created again under the same name).
func (b *Broker) DeleteTopic(tb testing.TB, topic string) {
	tb.Helper()
	adm := kadm.NewClient(b.Client(tb))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.DeleteTopics(ctx, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		tb.Fatalf("delete topic %s: %v", topic, err)
	}
	for ctx.Err() == nil {
		if md, err := adm.Metadata(ctx, topic); err == nil && md.Topics[topic].Err != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("topic %s still listed 30 s after its deletion", topic)
}

// Client returns a client of the broker, closed when the test ends.
func (b *Broker) Client(tb testing.TB, opts ...kgo.Opt) *kgo.Client {
	tb.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.Addr)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	return cl
}

func (b *Broker) run(cmd string) (string, error) {
	c := exec.Command(b.script, cmd, b.Dir)
	// The broker goes with the test binary, however it ends.
	c.Env = append(os.Environ(), "TALLY_KAFKA_OWNER_PID="+strconv.Itoa(os.Getpid()))
	// The broker's address is the last line of standard output alone: a
	// first start also fetches Kafka, and Maven's output on standard error
	// may end without a newline (in escape codes) before the address.
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// script is scripts/kafka.sh of the module this package is in.
func script() string {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "scripts", "kafka.sh")
		}
		if filepath.Dir(d) == d {
			return "scripts/kafka.sh"
		}
	}
}
