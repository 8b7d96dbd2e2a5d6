package systemtest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/systemtest/harness"
)

// TestConnectionFloodUnderLowFileLimit runs the real binary under
// `ulimit -n 256` with small log segments, opens 400 idle connections (more
// descriptors than the process may have), and ingests meanwhile on a
// connection opened before: every request is acknowledged, across several
// segment rolls, /readyz stays ready, the log never fails, and every event
// is counted. tally takes half the open-file limit (128) for connections
// and refuses the rest at once; before it did, the flood used every
// descriptor and the node stopped accepting or could not roll its log.
func TestConnectionFloodUnderLowFileLimit(t *testing.T) {
	p := harness.Start(t, harness.Options{Config: "durability: {segment_size: 65536}\n", FileLimit: 256})
	dir, addr := p.DataDir, p.Addr

	// One keep-alive connection, opened before the flood.
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	get := func(path string) (int, string, error) {
		resp, err := client.Get(p.URL + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	if code, _, err := get("/readyz"); err != nil || code != 200 {
		t.Fatalf("/readyz before the flood: %d %v", code, err)
	}
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for i := 0; i < 400; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("flood connection %d: %v", i, err)
		}
		flood = append(flood, c)
	}

	now := time.Now().UnixMilli()
	const requests, events = 300, 20
	for i := 0; i < requests; i++ {
		var recs []string
		for j := 0; j < events; j++ {
			recs = append(recs, fmt.Sprintf(`{"record":{"user_id":"flood-u%d","merchant":"m%d","category":"grocery_pos","country":"FR","amt":%d,"lat":48.85,"long":2.35,"is_fraud":0,"timestamp":%d}}`,
				i%10, j, j+1, now-int64(j)*1000))
		}
		body := `{"workspace_name":"default","records":{"transactions":[` + strings.Join(recs, ",") + `]}}`
		resp, err := client.Post(p.URL+"/api/v1/ingest", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("ingest %d during the flood: %v\n%s", i, err, p.Output())
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("ingest %d during the flood: %d %s\n%s", i, resp.StatusCode, b, p.Output())
		}
	}
	if code, body, err := get("/readyz"); err != nil || code != 200 || body != `{"status":"ready"}` {
		t.Fatalf("/readyz during the flood: %d %s %v", code, body, err)
	}
	plain, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	zst, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal.zst"))
	if segs := len(plain) + len(zst); segs < 4 {
		t.Fatalf("%d log segments: the ingest did not roll the log", segs)
	}
	// Once the flood ends, new connections are served again.
	for _, c := range flood {
		c.Close()
	}
	for i := 0; ; i++ {
		resp, err := http.Get(p.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if i == 200 {
			t.Fatalf("new connections still refused 10 s after the flood ended: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for u := 0; u < 10; u++ {
		if got := userCount(t, p, fmt.Sprintf("flood-u%d", u)); got != requests/10*events {
			t.Fatalf("flood-u%d counts %d events, %d acknowledged", u, got, requests/10*events)
		}
	}
	if strings.Contains(p.Output(), "level=ERROR") {
		t.Fatalf("errors logged during the flood:\n%s", p.Output())
	}
}
