package cluster

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tally-ml/tally/features"
)

// TestStartingNodeSendsChangesToTheLeader: a node killed while it led the
// metadata group and restarted answered a change forwarded to it (a peer
// had not yet seen the new election) "503 node starting"; the peer's
// forwarding does not retry a 503 (a change that failed), so the move
// failed with that text alone, neither finished nor refused. Until its
// groups are open, a node now answers the metadata RPCs as a follower
// (421), which the forwarding follows to the leader; other RPCs keep 503.
func TestStartingNodeSendsChangesToTheLeader(t *testing.T) {
	repo, err := features.Load(features.DefaultFS())
	if err != nil {
		t.Fatal(err)
	}
	h := (&Cluster{repo: repo}).rpcHandler()
	for path, want := range map[string]int{"/v1/admin": http.StatusMisdirectedRequest, "/v1/meta": http.StatusMisdirectedRequest, "/v1/propose": http.StatusServiceUnavailable} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, strings.NewReader("{}")))
		if w.Code != want {
			t.Errorf("POST %s to a node starting: %d %s, want %d", path, w.Code, strings.TrimSpace(w.Body.String()), want)
		}
	}
}
