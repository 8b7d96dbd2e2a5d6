package mlflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tally-ml/tally/score"
)

// slack is how far past its deadline a failing call may return: generous,
// for a shared 2-core machine; the tests check behaviour, not speed.
const slack = 2 * time.Second

// server is a loopback stand-in for an MLflow scoring server, for failure
// modes. handle answers the i-th request (from 0).
type server struct {
	*httptest.Server
	n      atomic.Int64
	handle func(i int64, w http.ResponseWriter, body []byte)
	stop   chan struct{} // closed at cleanup: frees handlers that sleep
}

func newServer(t *testing.T, handle func(i int64, w http.ResponseWriter, body []byte)) *server {
	s := &server{handle: handle, stop: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := s.n.Add(1) - 1
		if r.URL.Path != "/invocations" || r.Method != http.MethodPost {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		body, _ := io.ReadAll(r.Body)
		s.handle(i, w, body)
	}))
	t.Cleanup(func() {
		close(s.stop)
		s.Close()
	})
	return s
}

func ok(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, body)
}

func fail(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

var testColumns = []string{"amount", "txn_count_1h"}

func newClient(t *testing.T, endpoint string, opts Options) *Client {
	t.Helper()
	opts.Endpoint = endpoint
	if opts.Columns == nil {
		opts.Columns = testColumns
	}
	if opts.RetryBackoff == 0 {
		opts.RetryBackoff = time.Millisecond
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func within(t *testing.T, timeout time.Duration) (context.Context, func() time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	start := time.Now()
	return ctx, func() time.Duration { return time.Since(start) }
}

func TestRequestBody(t *testing.T) {
	var got struct {
		auth, ctype string
		body        []byte
	}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.auth, got.ctype = r.Header.Get("Authorization"), r.Header.Get("Content-Type")
		got.body, _ = io.ReadAll(r.Body)
		ok(w, `{"predictions": [1, 2]}`)
	}))
	defer s.Close()
	c := newClient(t, s.URL+"/", Options{Token: "dapi-123"})
	rows := []float32{0.1, float32(math.NaN()), 1e-7, 123456.78}
	if err := c.Score(context.Background(), rows, 2, make([]Prediction, 2)); err != nil {
		t.Fatal(err)
	}
	if got.auth != "Bearer dapi-123" || got.ctype != "application/json" {
		t.Errorf("headers: Authorization %q, Content-Type %q", got.auth, got.ctype)
	}
	var req struct {
		DataframeSplit struct {
			Columns []string     `json:"columns"`
			Data    [][]*float64 `json:"data"`
		} `json:"dataframe_split"`
	}
	if err := json.Unmarshal(got.body, &req); err != nil {
		t.Fatalf("%v: %s", err, got.body)
	}
	if fmt.Sprint(req.DataframeSplit.Columns) != fmt.Sprint(testColumns) || len(req.DataframeSplit.Data) != 2 {
		t.Fatalf("request %s", got.body)
	}
	for i, row := range req.DataframeSplit.Data {
		for j, v := range row {
			want := rows[i*2+j]
			switch {
			case math.IsNaN(float64(want)):
				if v != nil {
					t.Errorf("row %d col %d: NaN sent as %v, want null", i, j, *v)
				}
			case v == nil || *v != float64(want):
				t.Errorf("row %d col %d: sent %v, want the float32's exact value %v", i, j, v, float64(want))
			}
		}
	}
}

func TestDecode(t *testing.T) {
	p := func(v ...float32) []float32 { return v }
	for _, tc := range []struct {
		name    string
		classes []string
		resp    string
		want    []Prediction
	}{
		{"regression", nil, `{"predictions": [1.5, -2]}`,
			[]Prediction{{Value: 1.5}, {Value: -2}}},
		{"labels", []string{"0", "1"}, `{"predictions": [0, 1]}`,
			[]Prediction{{HasLabel: true, Label: 0}, {HasLabel: true, Label: 1, Value: 1}}},
		{"mlflow 1.x bare list", []string{"0", "1"}, `[1, 0]`,
			[]Prediction{{HasLabel: true, Label: 1, Value: 1}, {HasLabel: true, Label: 0}}},
		{"probabilities", []string{"0", "1"}, `{"predictions": [[0.25, 0.75], [0.5, 0.5]]}`,
			[]Prediction{{HasLabel: true, Label: 1, Probabilities: p(0.25, 0.75)}, {HasLabel: true, Label: 0, Probabilities: p(0.5, 0.5)}}},
		{"probabilities, string classes", []string{"legit", "fraud"}, `{"predictions": [[0.25, 0.75], [0.9, 0.1]]}`,
			[]Prediction{{HasLabel: true, Label: 1, LabelString: "fraud", Probabilities: p(0.25, 0.75)}, {HasLabel: true, LabelString: "legit", Probabilities: p(0.9, 0.1)}}},
		{"string labels", []string{"legit", "fraud"}, `{"predictions": ["fraud", "legit"]}`,
			[]Prediction{{HasLabel: true, Label: 1, LabelString: "fraud"}, {HasLabel: true, LabelString: "legit"}}},
		{"string labels, no classes", nil, `{"predictions": ["fraud", "legit"]}`,
			[]Prediction{{HasLabel: true, Label: -1, LabelString: "fraud"}, {HasLabel: true, Label: -1, LabelString: "legit"}}},
		{"2-D regression", nil, `{"predictions": [[3.5], [null]]}`,
			[]Prediction{{Value: 3.5}, {Value: math.NaN()}}},
		{"objects", []string{"0", "1"}, `{"predictions": [{"label": 1, "probabilities": [0.4, 0.6]}, {"label": 0, "probabilities": [0.7, 0.3]}]}`,
			[]Prediction{{HasLabel: true, Label: 1, Probabilities: p(0.4, 0.6)}, {HasLabel: true, Label: 0, Probabilities: p(0.7, 0.3)}}},
		{"objects keyed by class", []string{"legit", "fraud"}, `{"predictions": [{"legit": 0.2, "fraud": 0.8}, {"fraud": 0.1, "legit": 0.9}]}`,
			[]Prediction{{HasLabel: true, Label: 1, LabelString: "fraud", Probabilities: p(0.2, 0.8)}, {HasLabel: true, LabelString: "legit", Probabilities: p(0.9, 0.1)}}},
		{"objects with one field", nil, `{"predictions": [{"0": 4.25}, {"0": 1}]}`,
			[]Prediction{{Value: 4.25}, {Value: 1}}},
		{"objects with a prediction", nil, `{"predictions": [{"prediction": 2.5}, {"prediction": 1, "extra": "x"}]}`,
			[]Prediction{{Value: 2.5}, {Value: 1}}},
		{"one column", nil, `{"predictions": {"prediction": [2.5, -1]}}`,
			[]Prediction{{Value: 2.5}, {Value: -1}}},
		{"columns of labels and probabilities", []string{"legit", "fraud"}, `{"predictions": {"label": ["fraud", "legit"], "legit": [0.2, 0.9], "fraud": [0.8, 0.1]}}`,
			[]Prediction{{HasLabel: true, Label: 1, LabelString: "fraud", Probabilities: p(0.2, 0.8)}, {HasLabel: true, LabelString: "legit", Probabilities: p(0.9, 0.1)}}},
		{"split orient", []string{"0", "1"}, `{"predictions": {"columns": ["0", "1"], "index": [0, 1], "data": [[0.3, 0.7], [0.6, 0.4]]}}`,
			[]Prediction{{HasLabel: true, Label: 1, Probabilities: p(0.3, 0.7)}, {HasLabel: true, Label: 0, Probabilities: p(0.6, 0.4)}}},
		{"split orient, numbered columns", []string{"0", "1"}, `{"predictions": {"columns": [0, 1], "data": [[0.3, 0.7], [0.6, 0.4]]}}`,
			[]Prediction{{HasLabel: true, Label: 1, Probabilities: p(0.3, 0.7)}, {HasLabel: true, Label: 0, Probabilities: p(0.6, 0.4)}}},
		{"split orient, one column", nil, `{"predictions": {"columns": ["y"], "data": [[4], [null]]}}`,
			[]Prediction{{Value: 4}, {Value: math.NaN()}}},
		{"records of a multi-output regressor", nil, `{"predictions": [{"a": 1.5, "b": -2}, {"a": 3, "b": null}]}`,
			[]Prediction{{Probabilities: p(1.5, -2)}, {Probabilities: p(3, float32(math.NaN()))}}},
		{"columns of a multi-output regressor", nil, `{"predictions": {"a": [1.5, 3], "b": [-2, 4]}}`,
			[]Prediction{{Probabilities: p(1.5, -2)}, {Probabilities: p(3, 4)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, func(_ int64, w http.ResponseWriter, _ []byte) { ok(w, tc.resp) })
			c := newClient(t, s.URL, Options{Classes: tc.classes})
			// Stale fields must not survive; the backing array is reused.
			out := []Prediction{{HasLabel: true, Label: 9, LabelString: "x", Value: 9, Probabilities: make([]float32, 0, 4)}, {Value: 7}}
			if err := c.Score(context.Background(), []float32{1, 2, 3, 4}, 2, out); err != nil {
				t.Fatal(err)
			}
			for i := range tc.want {
				if !samePrediction(out[i], tc.want[i]) {
					t.Errorf("row %d: got %+v, want %+v", i, out[i], tc.want[i])
				}
			}
		})
	}
}

func samePrediction(a, b Prediction) bool {
	sameFloat := func(x, y float64) bool { return x == y || (math.IsNaN(x) && math.IsNaN(y)) }
	return a.HasLabel == b.HasLabel && a.Label == b.Label && a.LabelString == b.LabelString &&
		sameFloat(a.Value, b.Value) && fmt.Sprint(a.Probabilities) == fmt.Sprint(b.Probabilities)
}

// failsBy checks err wraps want, and that the call ended by its deadline
// (plus slack).
func failsBy(t *testing.T, err, want error, took, deadline time.Duration) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want an error wrapping %v", err, want)
	}
	if took > deadline+slack {
		t.Errorf("call took %v, deadline %v", took, deadline)
	}
	t.Logf("%v after %v", err, took.Round(time.Millisecond))
}

func TestEndpointDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	c := newClient(t, "http://"+addr, Options{MaxRetries: 3})
	ctx, took := within(t, 500*time.Millisecond)
	err = c.Score(ctx, []float32{1, 2}, 1, make([]Prediction, 1))
	failsBy(t, err, score.ErrUnavailable, took(), 500*time.Millisecond)
	if st := c.Stats(); st.Requests < 2 || st.Requests > 4 || st.Failures != 1 {
		t.Errorf("stats %+v: want 2-4 attempts (connection errors retry) and one failure", st)
	}
}

func TestEndpointSlow(t *testing.T) {
	var s *server
	s = newServer(t, func(_ int64, w http.ResponseWriter, _ []byte) {
		select {
		case <-time.After(30 * time.Second):
		case <-s.stop:
		}
		ok(w, `{"predictions": [1]}`)
	})
	c := newClient(t, s.URL, Options{})
	const deadline = 200 * time.Millisecond
	ctx, took := within(t, deadline)
	err := c.Score(ctx, []float32{1, 2}, 1, make([]Prediction, 1))
	failsBy(t, err, score.ErrUnavailable, took(), deadline)
	if took() < deadline/2 {
		t.Errorf("gave up after %v, before the deadline %v", took(), deadline)
	}
	if st := c.Stats(); st.Requests != 1 {
		t.Errorf("%d requests: a timed-out call has no time left to retry", st.Requests)
	}
}

func TestNoDeadlineUsesTimeout(t *testing.T) {
	var s *server
	s = newServer(t, func(_ int64, w http.ResponseWriter, _ []byte) {
		<-s.stop
	})
	c := newClient(t, s.URL, Options{Timeout: 100 * time.Millisecond})
	start := time.Now()
	err := c.Score(context.Background(), []float32{1, 2}, 1, make([]Prediction, 1))
	failsBy(t, err, score.ErrUnavailable, time.Since(start), 100*time.Millisecond)
}

func TestStatusCodes(t *testing.T) {
	const mlflow400 = `{"error_code": "BAD_REQUEST", "message": "Failed to enforce schema: Model is missing inputs ['txn_count_1h']."}`
	for _, tc := range []struct {
		name     string
		status   int
		body     string
		want     error
		requests int64
		mention  string
	}{
		{"400 explains", 400, mlflow400, score.ErrBadInput, 1, "missing inputs"},
		{"422", 422, `not a row`, score.ErrBadInput, 1, "not a row"},
		{"401 no retry", 401, `{"message": "invalid token"}`, score.ErrUnavailable, 1, "invalid token"},
		{"404 no retry", 404, ``, score.ErrUnavailable, 1, "404"},
		{"500 no retry", 500, `{"error_code": "INTERNAL_ERROR", "message": "boom"}`, score.ErrUnavailable, 1, "boom"},
		{"503 retried", 503, `busy`, score.ErrUnavailable, 3, "busy"},
		{"504 retried", 504, `gateway`, score.ErrUnavailable, 3, "504"},
		{"429 retried", 429, `slow down`, score.ErrUnavailable, 3, "slow down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, func(_ int64, w http.ResponseWriter, _ []byte) { fail(w, tc.status, tc.body) })
			c := newClient(t, s.URL, Options{MaxRetries: 2})
			ctx, took := within(t, 2*time.Second)
			err := c.Score(ctx, []float32{1, 2}, 1, make([]Prediction, 1))
			failsBy(t, err, tc.want, took(), 2*time.Second)
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", err, tc.mention)
			}
			if n := s.n.Load(); n != tc.requests {
				t.Errorf("%d requests, want %d", n, tc.requests)
			}
		})
	}
}

func TestRetryThenSuccess(t *testing.T) {
	s := newServer(t, func(i int64, w http.ResponseWriter, _ []byte) {
		if i == 0 {
			fail(w, 503, `{"message": "warming up"}`)
			return
		}
		ok(w, `{"predictions": [[0.1, 0.9]]}`)
	})
	c := newClient(t, s.URL, Options{Classes: []string{"0", "1"}})
	ctx, _ := within(t, 2*time.Second)
	out := make([]Prediction, 1)
	if err := c.Score(ctx, []float32{1, 2}, 1, out); err != nil {
		t.Fatal(err)
	}
	if out[0].Label != 1 || len(out[0].Probabilities) != 2 {
		t.Errorf("got %+v", out[0])
	}
	if st := c.Stats(); st.Requests != 2 || st.Retries != 1 || st.Failures != 0 {
		t.Errorf("stats %+v, want 2 requests, 1 retry", st)
	}
}

// A Retry-After beyond the deadline means no retry: fail now, not later.
func TestRetryAfterPastDeadline(t *testing.T) {
	s := newServer(t, func(_ int64, w http.ResponseWriter, _ []byte) {
		w.Header().Set("Retry-After", "30")
		fail(w, 429, `quota`)
	})
	c := newClient(t, s.URL, Options{})
	ctx, took := within(t, 300*time.Millisecond)
	err := c.Score(ctx, []float32{1, 2}, 1, make([]Prediction, 1))
	failsBy(t, err, score.ErrUnavailable, took(), 300*time.Millisecond)
	if n := s.n.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestGarbage(t *testing.T) {
	for _, tc := range []struct{ name, resp, mention string }{
		{"not JSON", `<html>upstream error</html>`, "not JSON"},
		{"no predictions", `{"outputs": [1]}`, "no \"predictions\""},
		{"too few predictions", `{"predictions": [1]}`, "1 predictions for 2 rows"},
		{"too many predictions", `{"predictions": [1, 2, 3]}`, "3 predictions for 2 rows"},
		{"wrong probability width", `{"predictions": [[0.1, 0.2, 0.7], [1, 0, 0]]}`, "3 probabilities for 2 classes"},
		{"unknown label", `{"predictions": ["maybe", "0"]}`, `"maybe"`},
		{"column too short", `{"predictions": {"label": [0]}}`, `column "label" has 1 entries for 2 rows`},
		{"column not a list", `{"predictions": {"label": 5}}`, `column "label" is a JSON number`},
		{"split orient too short", `{"predictions": {"columns": ["0", "1"], "data": [[0.5, 0.5]]}}`, "1 predictions for 2 rows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, func(_ int64, w http.ResponseWriter, _ []byte) { ok(w, tc.resp) })
			c := newClient(t, s.URL, Options{Classes: []string{"0", "1"}})
			ctx, took := within(t, time.Second)
			err := c.Score(ctx, []float32{1, 2, 3, 4}, 2, make([]Prediction, 2))
			failsBy(t, err, score.ErrUnavailable, took(), time.Second)
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", err, tc.mention)
			}
			if n := s.n.Load(); n != 1 {
				t.Errorf("%d requests, want 1 (garbage is not retried)", n)
			}
		})
	}
}

func TestBadRowsRefusedLocally(t *testing.T) {
	s := newServer(t, func(_ int64, w http.ResponseWriter, _ []byte) { ok(w, `{"predictions": [1]}`) })
	c := newClient(t, s.URL, Options{})
	err := c.Score(context.Background(), []float32{1, float32(math.Inf(1))}, 1, make([]Prediction, 1))
	if !errors.Is(err, score.ErrBadInput) || !strings.Contains(err.Error(), "txn_count_1h") {
		t.Errorf("infinite value: got %v, want ErrBadInput naming the column", err)
	}
	if err := c.Score(context.Background(), []float32{1, 2, 3}, 2, make([]Prediction, 2)); !errors.Is(err, score.ErrBadInput) {
		t.Errorf("short rows: got %v", err)
	}
	if n := s.n.Load(); n != 0 {
		t.Errorf("%d requests for rows refused locally", n)
	}
	// A breaker probe is not lost to a local refusal.
	if err := c.Score(context.Background(), []float32{1, 2}, 1, make([]Prediction, 1)); err != nil {
		t.Error(err)
	}
}

func TestNew(t *testing.T) {
	for _, opts := range []Options{
		{Endpoint: "127.0.0.1:5000", Columns: testColumns},
		{Endpoint: "ftp://x", Columns: testColumns},
		{Endpoint: "http://x"},
		{Endpoint: "http://x", Columns: []string{"a", "a"}},
	} {
		if _, err := New(opts); err == nil {
			t.Errorf("New(%+v) accepted", opts)
		}
	}
	for endpoint, want := range map[string]string{
		"http://h:5000": "http://h:5000/invocations",
		"https://w.cloud.databricks.com/serving-endpoints/fraud/invocations": "https://w.cloud.databricks.com/serving-endpoints/fraud/invocations",
		"http://h/prefix/": "http://h/prefix/invocations",
	} {
		c, err := New(Options{Endpoint: endpoint, Columns: testColumns})
		if err != nil || c.url != want {
			t.Errorf("New(%q): url %q, %v; want %q", endpoint, c.url, err, want)
		}
	}
}

func TestBreaker(t *testing.T) {
	var healthy atomic.Bool
	probe := make(chan struct{}) // holds the half-open probe while set
	var holdProbe atomic.Bool
	s := newServer(t, func(_ int64, w http.ResponseWriter, _ []byte) {
		if holdProbe.Load() {
			<-probe
		}
		if healthy.Load() {
			ok(w, `{"predictions": [1]}`)
			return
		}
		fail(w, 500, `down`)
	})
	const cooldown = 100 * time.Millisecond
	c := newClient(t, s.URL, Options{BreakerFailures: 3, BreakerCooldown: cooldown})
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return c.Score(ctx, []float32{1, 2}, 1, make([]Prediction, 1))
	}

	for i := 0; i < 3; i++ {
		if err := call(); !errors.Is(err, score.ErrUnavailable) || errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	start := time.Now()
	if err := call(); !errors.Is(err, ErrCircuitOpen) || !errors.Is(err, score.ErrUnavailable) {
		t.Fatalf("after 3 failures: got %v, want ErrCircuitOpen", err)
	}
	if n := s.n.Load(); n != 3 {
		t.Errorf("%d requests; an open breaker sends none", n)
	}

	// After the cool-down one probe goes; it fails, so the breaker reopens.
	time.Sleep(cooldown - time.Since(start) + 20*time.Millisecond)
	if err := call(); errors.Is(err, ErrCircuitOpen) || !errors.Is(err, score.ErrUnavailable) {
		t.Fatalf("probe: got %v, want the endpoint's failure", err)
	}
	if err := call(); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("after a failed probe: got %v, want ErrCircuitOpen", err)
	}
	reopened := time.Now()

	// The endpoint recovers. After the cool-down the probe is the only call
	// let through while it is out; its success closes the breaker.
	healthy.Store(true)
	holdProbe.Store(true)
	time.Sleep(cooldown - time.Since(reopened) + 20*time.Millisecond)
	probeErr := make(chan error, 1)
	before := s.n.Load()
	go func() { probeErr <- call() }()
	for i := 0; s.n.Load() == before; i++ {
		if i > 1000 {
			t.Fatal("probe never reached the server")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := call(); !errors.Is(err, ErrCircuitOpen) {
		t.Errorf("during the probe: got %v, want ErrCircuitOpen", err)
	}
	holdProbe.Store(false)
	close(probe)
	if err := <-probeErr; err != nil {
		t.Fatalf("probe: %v", err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := call(); err != nil {
				t.Errorf("after recovery: %v", err)
			}
		}()
	}
	wg.Wait()
	if st := c.Stats(); st.BreakerOpens != 2 || st.FastFails != 3 {
		t.Errorf("stats %+v: want 2 opens, 3 fast failures", st)
	}
}

// 400s mean the endpoint is up: they do not open the breaker.
func TestBadInputKeepsBreakerClosed(t *testing.T) {
	s := newServer(t, func(_ int64, w http.ResponseWriter, _ []byte) { fail(w, 400, `{"message": "bad"}`) })
	c := newClient(t, s.URL, Options{BreakerFailures: 2})
	for i := 0; i < 5; i++ {
		if err := c.Score(context.Background(), []float32{1, 2}, 1, make([]Prediction, 1)); !errors.Is(err, score.ErrBadInput) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if st := c.Stats(); st.BreakerOpens != 0 || st.Requests != 5 {
		t.Errorf("stats %+v", st)
	}
}

// TestScoreBesideLabelIsAValue: a per-row object with a label and a
// "score" or "value" (a decision function, an anomaly score) carries that
// number as Prediction.Value with HasValue set, as score.Prediction's
// contract asks: without HasValue, predict's JSON drops the score beside the
// label.
func TestScoreBesideLabelIsAValue(t *testing.T) {
	s := newServer(t, func(_ int64, w http.ResponseWriter, _ []byte) {
		ok(w, `{"predictions": [{"label": 1, "score": 0.93}, {"label": 0, "value": -0.5}]}`)
	})
	c := newClient(t, s.URL, Options{Classes: []string{"0", "1"}})
	out := make([]Prediction, 2)
	if err := c.Score(context.Background(), []float32{1, 2, 3, 4}, 2, out); err != nil {
		t.Fatal(err)
	}
	for i, want := range []float64{0.93, -0.5} {
		if !out[i].HasLabel || !out[i].HasValue || out[i].Value != want {
			t.Errorf("row %d: got %+v, want a label and HasValue with Value %v", i, out[i], want)
		}
	}
}
