package localcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tally-ml/tally/internal/loopback"
)

// Options describe the processes to start.
type Options struct {
	// Binary is the tally binary (the running one: os.Executable()).
	Binary string
	// Dir holds each node's data dir (<Dir>/<id>), its log (<Dir>/<id>.log)
	// and the cluster key; it must exist.
	Dir string
	// Nodes is the number of cluster nodes (ids n0, n1, ...). 0 starts one
	// plain single node (`tally serve`, no cluster flags; id "single").
	Nodes int
	// Groups and Replicas are --cluster-groups and --cluster-replicas
	// (0: the defaults, 8 and 3).
	Groups, Replicas int
	// Args are added to every node's `serve` arguments (--repo, say).
	Args []string
	// ReadyTimeout bounds the wait for every node's /readyz; default 2 min.
	ReadyTimeout time.Duration
}

// Cluster is the started processes.
type Cluster struct {
	Nodes []*Node
	o     Options
	hc    *http.Client
}

// Node is one tally process (and its restarts).
type Node struct {
	ID          string
	Addr        string // client API, host:port
	ClusterAddr string // cluster port ("" for a single node)
	DataDir     string
	LogPath     string

	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start launches the nodes (all at once: a cluster forms when every
// initial node is up) and waits until each answers /readyz.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.Binary == "" || o.Dir == "" {
		return nil, errors.New("localcluster: Options.Binary and Options.Dir are required")
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 2 * time.Minute
	}
	c := &Cluster{o: o, hc: &http.Client{Timeout: 5 * time.Second}}
	n := max(o.Nodes, 1)
	var peers []string
	for i := range n {
		nd := &Node{ID: "single"}
		if o.Nodes > 0 {
			nd.ID = "n" + strconv.Itoa(i)
		}
		var err error
		if nd.Addr, err = freeAddr(); err != nil {
			return nil, err
		}
		if o.Nodes > 0 {
			if nd.ClusterAddr, err = freeAddr(); err != nil {
				return nil, err
			}
			peers = append(peers, nd.ID+"="+nd.ClusterAddr)
		}
		nd.DataDir = filepath.Join(o.Dir, nd.ID)
		nd.LogPath = filepath.Join(o.Dir, nd.ID+".log")
		c.Nodes = append(c.Nodes, nd)
	}
	var common []string
	if o.Nodes > 0 {
		key := make([]byte, 24)
		rand.Read(key)
		keyFile := filepath.Join(o.Dir, "cluster.key")
		if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(key)), 0o600); err != nil {
			return nil, err
		}
		common = []string{"--cluster-id", "local-" + hex.EncodeToString(key[:4]), "--cluster-key-file", keyFile,
			"--cluster-peers", strings.Join(peers, ",")}
		if o.Groups > 0 {
			common = append(common, "--cluster-groups", strconv.Itoa(o.Groups))
		}
		if o.Replicas > 0 {
			common = append(common, "--cluster-replicas", strconv.Itoa(o.Replicas))
		}
	}
	for _, nd := range c.Nodes {
		nd.args = append([]string{"serve", "--listen", nd.Addr, "--data-dir", nd.DataDir}, common...)
		if nd.ClusterAddr != "" {
			nd.args = append(nd.args, "--node-id", nd.ID, "--cluster-addr", nd.ClusterAddr)
		}
		nd.args = append(nd.args, o.Args...)
		if err := c.launch(nd); err != nil {
			c.Stop()
			return nil, err
		}
	}
	for _, nd := range c.Nodes {
		if err := c.waitReady(ctx, nd); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

// Addrs are the nodes' client addresses.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, nd := range c.Nodes {
		out = append(out, nd.Addr)
	}
	return out
}

// Command is node i's command line, for logs and the README.
func (c *Cluster) Command(i int) string {
	return c.o.Binary + " " + strings.Join(c.Nodes[i].args, " ")
}

func (c *Cluster) launch(nd *Node) error {
	logf, err := os.OpenFile(nd.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.o.Binary, nd.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", nd.ID, err)
	}
	done := make(chan struct{})
	nd.mu.Lock()
	nd.cmd, nd.done = cmd, done
	nd.mu.Unlock()
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	return nil
}

func (c *Cluster) waitReady(ctx context.Context, nd *Node) error {
	deadline := time.Now().Add(c.o.ReadyTimeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+nd.Addr+"/readyz", nil)
		if resp, err := c.hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if !nd.Running() {
			return fmt.Errorf("%s exited before it was ready: see %s", nd.ID, nd.LogPath)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: see %s", nd.ID, c.o.ReadyTimeout, nd.LogPath)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Running reports whether node's current process has not exited.
func (nd *Node) Running() bool {
	nd.mu.Lock()
	done := nd.done
	nd.mu.Unlock()
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL to node i (a crash) and waits until it has exited.
func (c *Cluster) Kill(i int) {
	nd := c.Nodes[i]
	nd.mu.Lock()
	cmd, done := nd.cmd, nd.done
	nd.mu.Unlock()
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Restart relaunches node i (which must have exited) and waits until it is
// ready.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	nd := c.Nodes[i]
	if nd.Running() {
		return fmt.Errorf("restart %s: it is running: Kill it first", nd.ID)
	}
	if err := c.launch(nd); err != nil {
		return err
	}
	return c.waitReady(ctx, nd)
}

// Stop sends SIGTERM to every running node and waits up to 30 s for all of
// them, then SIGKILLs any left.
func (c *Cluster) Stop() {
	for _, nd := range c.Nodes {
		nd.mu.Lock()
		if nd.cmd != nil {
			nd.cmd.Process.Signal(syscall.SIGTERM)
		}
		nd.mu.Unlock()
	}
	deadline := time.After(30 * time.Second)
	for _, nd := range c.Nodes {
		nd.mu.Lock()
		cmd, done := nd.cmd, nd.done
		nd.mu.Unlock()
		if cmd == nil {
			continue
		}
		select {
		case <-done:
		case <-deadline:
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
	}
}

// Status is GET /api/v1/cluster/status: a node's view of its replicas.
type Status struct {
	Node       string        `json:"node"`
	MapVersion uint64        `json:"mapVersion"`
	Groups     []GroupStatus `json:"groups"`
}

// GroupStatus is one replica in a Status.
type GroupStatus struct {
	Group       int    `json:"group"`
	State       string `json:"state"` // Leader, Follower, Candidate
	Leader      string `json:"leader"`
	CommitIndex uint64 `json:"commitIndex"`
	Applied     uint64 `json:"appliedIndex"`
}

// Status reads node i's cluster status.
func (c *Cluster) Status(i int) (*Status, error) {
	resp, err := c.hc.Get("http://" + c.Nodes[i].Addr + "/api/v1/cluster/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: cluster status: %s", c.Nodes[i].ID, resp.Status)
	}
	var s Status
	return &s, json.NewDecoder(resp.Body).Decode(&s)
}

// Replica returns node i's status of group g, or nil when it has no
// replica of g (or does not answer).
func (c *Cluster) Replica(i, g int) *GroupStatus {
	s, err := c.Status(i)
	if err != nil {
		return nil
	}
	for k := range s.Groups {
		if s.Groups[k].Group == g {
			return &s.Groups[k]
		}
	}
	return nil
}

// LeaderOf returns the index of the running node that reports itself the
// leader of group g, or -1.
func (c *Cluster) LeaderOf(g int) int {
	for i, nd := range c.Nodes {
		if !nd.Running() {
			continue
		}
		if r := c.Replica(i, g); r != nil && r.State == "Leader" {
			return i
		}
	}
	return -1
}

// WaitLeaders waits until every group in 0..groups-1 has a leader (bounded
// by timeout).
func (c *Cluster) WaitLeaders(ctx context.Context, groups int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for g := 0; g < groups; {
		if c.LeaderOf(g) >= 0 {
			g++
			continue
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("group %d has no leader after %s", g, timeout)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// GroupDir is where node i keeps group g's Raft log and snapshots (its
// layout in cluster/DESIGN.md).
func (c *Cluster) GroupDir(i, g int) string {
	return filepath.Join(c.Nodes[i].DataDir, "cluster", "g"+strconv.Itoa(g))
}

func freeAddr() (string, error) { return loopback.FreeAddr() }
