package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/internal/loopback"
)

var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Binary returns the path of the tally binary built from this checkout,
// building it on the first call of the test process. A build failure fails
// t (with the compiler's output).
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "tally-harness-")
		if build.err != nil {
			return
		}
		build.path = filepath.Join(build.dir, "tally")
		out, err := exec.Command("go", "build", "-o", build.path, "github.com/tally-ml/tally/cmd/tally").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("build tally: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// Main runs the tests of m and then removes the binary Binary built: call
// it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago,
// outside the kernel's ephemeral range (loopback.FreeAddr).
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// Options configure a node.
type Options struct {
	// Args follow "serve" on the command line (e.g. "--repo", dir); the
	// harness adds --listen, --data-dir and --config.
	Args []string
	// PerNode, when set, returns more arguments for node i of StartN,
	// given every node's address (a cluster's peers, say).
	PerNode func(i int, addrs []string) []string
	// Config, when set, is written to a file passed with --config (YAML, as
	// node.LoadConfig reads it).
	Config string
	// DataDir is the node's data directory; empty makes a fresh one under
	// t.TempDir(). StartN refuses a DataDir for more than one node.
	DataDir string
	// APIKey is the key the node's Client sends.
	APIKey string
	// ReadyTimeout bounds the wait for /readyz after a start; default 30 s.
	ReadyTimeout time.Duration
	// StopTimeout bounds Stop's wait for the process to exit; default 30 s.
	StopTimeout time.Duration
	// FileLimit, when > 0, runs the process under `ulimit -n FileLimit`
	// (through sh, which execs tally: signals reach tally itself).
	FileLimit int
}

// Node is one tally process (and its restarts) of a test.
type Node struct {
	// Name is node0, node1, ... in the order StartN started them.
	Name string
	// Addr is host:port, URL its http:// form.
	Addr, URL string
	DataDir   string
	// Client talks to the node (with Options.APIKey); it outlives restarts.
	Client *client.Client

	t     testing.TB
	o     Options
	args  []string
	probe *client.Client // readiness, never retried

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current run's process has exited
	err    error         // its exit status, once exited
	runs   []*buffer     // each run's output
}

// Start starts one node and waits until it is ready.
func Start(t testing.TB, o Options) *Node {
	t.Helper()
	return StartN(t, 1, o)[0]
}

// StartN starts n nodes, each on its own port with its own data directory,
// and waits until every one is ready.
func StartN(t testing.TB, n int, o Options) []*Node {
	t.Helper()
	nodes := launchN(t, n, o)
	for _, nd := range nodes {
		nd.WaitReady()
	}
	return nodes
}

// Launch starts one node without waiting for it to be ready: for a test of
// a node that should refuse to start (wait on Exited, then read Output) or
// of what it answers while recovering. WaitReady waits for it.
func Launch(t testing.TB, o Options) *Node {
	t.Helper()
	return launchN(t, 1, o)[0]
}

func launchN(t testing.TB, n int, o Options) []*Node {
	t.Helper()
	if n > 1 && o.DataDir != "" {
		t.Fatalf("harness: %d nodes cannot share DataDir %s: leave it empty", n, o.DataDir)
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 30 * time.Second
	}
	bin := Binary(t)
	var config string
	if o.Config != "" {
		config = filepath.Join(t.TempDir(), "tally.yaml")
		if err := os.WriteFile(config, []byte(o.Config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = FreeAddr(t)
	}
	nodes := make([]*Node, n)
	for i := range nodes {
		nd := &Node{Name: fmt.Sprintf("node%d", i), Addr: addrs[i], DataDir: o.DataDir, t: t, o: o}
		if nd.DataDir == "" {
			nd.DataDir = t.TempDir()
		}
		nd.URL = "http://" + nd.Addr
		nd.Client = nd.NewClient(client.Options{APIKey: o.APIKey})
		nd.probe = nd.NewClient(client.Options{Retries: -1})
		nd.args = append([]string{bin, "serve"}, o.Args...)
		if o.PerNode != nil {
			nd.args = append(nd.args, o.PerNode(i, addrs)...)
		}
		nd.args = append(nd.args, "--listen", nd.Addr, "--data-dir", nd.DataDir)
		if config != "" {
			nd.args = append(nd.args, "--config", config)
		}
		t.Cleanup(nd.cleanup)
		nd.launch()
		nodes[i] = nd
	}
	return nodes
}

// NewClient returns another client of the node (its own connections,
// options o), closed when the test ends.
func (n *Node) NewClient(o client.Options) *client.Client {
	c, err := client.New(n.URL, o)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(c.CloseIdleConnections)
	return c
}

// launch starts a run of the process; it does not wait for readiness.
func (n *Node) launch() {
	n.t.Helper()
	out := &buffer{}
	cmd := exec.Command(n.args[0], n.args[1:]...)
	if n.o.FileLimit > 0 {
		cmd = exec.Command("sh", append([]string{"-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, n.o.FileLimit)}, n.args...)...)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("%s: start %v: %v", n.Name, n.args, err)
	}
	exited := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.exited, n.err = cmd, exited, nil
	n.runs = append(n.runs, out)
	n.mu.Unlock()
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		n.err = err
		n.mu.Unlock()
		close(exited)
	}()
}

// WaitReady polls /readyz until it answers 200; the process exiting first,
// or ReadyTimeout passing, fails the test with the node's output.
func (n *Node) WaitReady() {
	n.t.Helper()
	deadline := time.Now().Add(n.o.ReadyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ok, _ := n.probe.Readyz(ctx)
		cancel()
		if ok {
			return
		}
		select {
		case <-n.Exited():
			n.t.Fatalf("%s exited before it was ready: %v\n%s", n.Name, n.ExitErr(), n.Output())
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s not ready after %s\n%s", n.Name, n.o.ReadyTimeout, n.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pid is the process id of the current run.
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd.Process.Pid
}

// Exited is closed when the current run's process has exited.
func (n *Node) Exited() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.exited
}

// Running reports whether the current run's process has not exited.
func (n *Node) Running() bool {
	select {
	case <-n.Exited():
		return false
	default:
		return true
	}
}

// ExitErr is how the current run's process exited: nil for status 0, an
// *exec.ExitError otherwise; nil while it runs.
func (n *Node) ExitErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err
}

// Signal sends sig to the running process.
func (n *Node) Signal(sig os.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL (a crash: no shutdown, no final snapshot) and waits
// until the process has exited.
func (n *Node) Kill() {
	n.t.Helper()
	if err := n.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		n.t.Fatalf("%s: kill: %v", n.Name, err)
	}
	<-n.Exited()
}

// Stop sends SIGTERM (a graceful shutdown) and waits up to StopTimeout for
// the process to exit; it returns the exit error (nil for a clean exit) and
// fails the test if the process did not exit in time.
func (n *Node) Stop() error {
	n.t.Helper()
	if err := n.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		n.t.Fatalf("%s: SIGTERM: %v", n.Name, err)
	}
	select {
	case <-n.Exited():
		return n.ExitErr()
	case <-time.After(n.o.StopTimeout):
		// A Go process dumps every goroutine's stack on SIGQUIT and exits:
		// the dump shows where the shutdown hangs.
		n.Signal(syscall.SIGQUIT)
		select {
		case <-n.Exited():
		case <-time.After(10 * time.Second):
		}
		out := n.Output()
		logs, dump := out, ""
		if i := strings.Index(out, "SIGQUIT: quit"); i >= 0 {
			logs, dump = out[:i], out[i:]
		}
		n.t.Fatalf("%s did not stop within %s of SIGTERM; its goroutines then:\n%s\nthe end of its log:\n%s", n.Name, n.o.StopTimeout, dump, lastLines(logs, 60))
		return nil
	}
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			if n--; n == 0 {
				return s[i+1:]
			}
		}
	}
	return s
}

// Pause stops the process with SIGSTOP: it keeps its connections and port
// but answers nothing until Resume. It returns once every thread of the
// process is stopped (on Linux, read from /proc; elsewhere after 100 ms),
// since a signal takes effect some time after it is sent.
func (n *Node) Pause() {
	n.t.Helper()
	if err := n.Signal(syscall.SIGSTOP); err != nil {
		n.t.Fatalf("%s: SIGSTOP: %v", n.Name, err)
	}
	n.mu.Lock()
	pid := n.cmd.Process.Pid
	n.mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		stopped, err := allStopped(pid)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			return
		}
		if stopped {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: still running 10 s after SIGSTOP", n.Name)
		}
	}
}

// allStopped reports whether every thread of process pid is stopped, from
// /proc/<pid>/task/*/stat (the state follows the command name in parens).
func allStopped(pid int) (bool, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if err != nil {
			return false, err
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			return false, fmt.Errorf("%s: unexpected stat %q", task.Name(), b)
		}
		if st := b[i+2]; st != 'T' && st != 't' {
			return false, nil
		}
	}
	return true, nil
}

// Resume continues a paused process with SIGCONT.
func (n *Node) Resume() {
	n.t.Helper()
	if err := n.Signal(syscall.SIGCONT); err != nil {
		n.t.Fatalf("%s: SIGCONT: %v", n.Name, err)
	}
}

// Restart starts the node again, with the same arguments, port and data
// directory, and waits until it is ready. The node must have exited (Kill
// or Stop it first).
func (n *Node) Restart() {
	n.t.Helper()
	if n.Running() {
		n.t.Fatalf("%s: Restart of a running node: Kill or Stop it first", n.Name)
	}
	n.launch()
	n.WaitReady()
}

// Relaunch starts the node again like Restart, but does not wait until it
// is ready: for nodes that wait for each other (a whole cluster restarted),
// Relaunch them all, then WaitReady each.
func (n *Node) Relaunch() {
	n.t.Helper()
	if n.Running() {
		n.t.Fatalf("%s: Relaunch of a running node: Kill or Stop it first", n.Name)
	}
	n.launch()
}

// Output is what the current run has written to stdout and stderr so far.
func (n *Node) Output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.runs[len(n.runs)-1].String()
}

// cleanup kills a node still running and, when the test failed, logs the
// output of every run.
func (n *Node) cleanup() {
	n.mu.Lock()
	started := n.cmd != nil
	n.mu.Unlock()
	if !started {
		return
	}
	if n.Running() {
		n.Signal(syscall.SIGKILL)
		<-n.Exited()
	}
	if n.t.Failed() {
		n.mu.Lock()
		defer n.mu.Unlock()
		for i, r := range n.runs {
			n.t.Logf("%s (%s) run %d output:\n%s", n.Name, n.Addr, i+1, r.String())
		}
	}
}

// buffer is a bytes.Buffer safe for a writing process and a reading test.
type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
