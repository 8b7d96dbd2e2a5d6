package systemtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binary is the tally binary built once for the package's tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tally-systemtest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tally")
	out, err := exec.Command("go", "build", "-o", binary, "../cmd/tally").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build tally: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a running tally process.
type proc struct {
	cmd  *exec.Cmd
	base string
	out  *bytes.Buffer
	done chan error
}

func startTally(t *testing.T, args ...string) *proc {
	t.Helper()
	addr := freeAddr(t)
	args = append(args, "--listen", addr)
	cmd := exec.Command(binary, args...)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, base: "http://" + addr, out: out, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(p.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case err := <-p.done:
			t.Fatalf("tally exited before it was ready: %v\n%s", err, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tally not ready after 20 s\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) post(t *testing.T, path, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(p.base+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestServeIngestLookupStop(t *testing.T) {
	p := startTally(t, "serve", "--data-dir", t.TempDir())
	now := time.Now().UnixMilli()
	var recs []string
	for i := 0; i < 50; i++ {
		recs = append(recs, fmt.Sprintf(`{"record":{"user_id":"u42","merchant":"m%d","category":"grocery_pos","country":"FR","amt":%d,"lat":48.85,"long":2.35,"is_fraud":0,"timestamp":%d}}`,
			i%5, i+1, now-int64(i)*1000))
	}
	code, body := p.post(t, "/api/v1/ingest", `{"workspace_name":"default","records":{"transactions":[`+strings.Join(recs, ",")+`]}}`)
	if code != 200 || !bytes.Contains(body, []byte(`"accepted":50`)) {
		t.Fatalf("ingest: %d %s", code, body)
	}
	code, body = p.post(t, "/api/v1/feature-service/get-features",
		`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"u42","merchant":"m1","country":"FR"},"request_context_map":{"amt":100,"lat":48.85,"long":2.35}}}`)
	if code != 200 {
		t.Fatalf("get-features: %d %s", code, body)
	}
	var r struct {
		Result   struct{ Features []any }
		Metadata struct {
			Features []struct{ Name, Status string }
		}
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	for i, m := range r.Metadata.Features {
		got[m.Name] = r.Result.Features[i]
	}
	if got["user_transaction_counts.amt_count_1h"] != 50.0 || got["user_transaction_amounts.amt_sum_1h"] != 1275.0 ||
		got["user_distinct_merchants.merchant_distinct_count_1h"] != 5.0 || got["merchant_transaction_counts.amt_count_1h"] != 10.0 {
		t.Fatalf("features over HTTP from the real binary: %s", body)
	}
	// An unknown service is a 404 with a JSON error naming it.
	code, body = p.post(t, "/api/v1/feature-service/get-features", `{"params":{"feature_service_name":"fraud","join_key_map":{}}}`)
	if code != 404 || !bytes.Contains(body, []byte(`"UNKNOWN_FEATURE_SERVICE"`)) {
		t.Fatalf("unknown service: %d %s", code, body)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("tally exited with %v after SIGTERM\n%s", err, p.out)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("tally did not stop within 10 s of SIGTERM\n%s", p.out)
	}
	if !strings.Contains(p.out.String(), "shutting down") {
		t.Fatalf("no graceful shutdown in the log:\n%s", p.out)
	}
}

func TestDemoServesFeatures(t *testing.T) {
	addr := freeAddr(t)
	cmd := exec.Command(binary, "demo", "--listen", addr, "--data-dir", t.TempDir(), "--duration", "3s", "--rate", "500", "--users", "200")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "km_from_home") || !strings.Contains(s, "sent ") {
		t.Fatalf("demo printed no feature vectors:\n%s", s)
	}
}

func TestRefusesPublicListenWithoutKeys(t *testing.T) {
	out, err := exec.Command(binary, "serve", "--listen", "0.0.0.0:0", "--data-dir", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--insecure") {
		t.Fatalf("serve on 0.0.0.0 without keys: %v\n%s", err, out)
	}
}
