package bench

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tally-ml/tally/bench/load"
	"github.com/tally-ml/tally/bench/workload"
	tallyclient "github.com/tally-ml/tally/client"
)

// fixture is the seeded data every system is measured with.
type fixture struct {
	cfg     workload.Config
	users   []workload.User
	preload []workload.Txn // ts ascending, over [t0-1d, t0)
	t0      int64          // end of the preload, epoch ms
	lookups []lookupKey    // drawn with the events' skew (or uniformly: Options.UniformLookups)
	profile []byte         // user_profile CSV
	homes   map[string][2]float64
}

// lookupKey is one fraud_detection request: the join keys and request
// context of a transaction being scored.
type lookupKey struct {
	User, Merchant, Country string
	Amt, Lat, Long          float64
}

func newFixture(o Options) *fixture {
	cfg := workload.DefaultConfig()
	cfg.Seed, cfg.Users = o.Seed, o.Users
	f := &fixture{cfg: cfg, t0: time.Now().UnixMilli() - 1000, homes: map[string][2]float64{}}
	g := workload.New(cfg)
	f.users = g.Users()
	f.preload = make([]workload.Txn, o.Preload)
	const day = 86_400_000
	for i := range f.preload {
		f.preload[i] = g.Next(f.t0 - day + int64(i)*day/int64(o.Preload))
	}
	// Lookups come from their own stream of the same shape: the keys of
	// transactions being scored, skewed like the events.
	lcfg := cfg
	lcfg.Seed = cfg.Seed + workload.LookupSeed
	lcfg.UniformUsers = o.UniformLookups
	lg := workload.New(lcfg)
	f.lookups = make([]lookupKey, 20_000)
	for i := range f.lookups {
		t := lg.Next(f.t0)
		f.lookups[i] = lookupKey{t.UserID, t.Merchant, t.Country, t.Amt, t.Lat, t.Long}
	}
	csv := []byte("user_id,home_lat,home_long\n")
	for _, u := range f.users {
		lat, lon := strconv.FormatFloat(u.HomeLat, 'f', 5, 64), strconv.FormatFloat(u.HomeLong, 'f', 5, 64)
		csv = append(csv, u.ID...)
		csv = append(csv, ',')
		csv = append(csv, lat...)
		csv = append(csv, ',')
		csv = append(csv, lon...)
		csv = append(csv, '\n')
		pl, _ := strconv.ParseFloat(lat, 64)
		pg, _ := strconv.ParseFloat(lon, 64)
		f.homes[u.ID] = [2]float64{pl, pg}
	}
	f.profile = csv
	return f
}

// tallyBody is the get-features request for k; asOf > 0 names the read time.
func (k *lookupKey) tallyBody(dst []byte, asOf int64) []byte {
	dst = append(dst, `{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":`...)
	dst = strconv.AppendQuote(dst, k.User)
	dst = append(dst, `,"merchant":`...)
	dst = strconv.AppendQuote(dst, k.Merchant)
	dst = append(dst, `,"country":`...)
	dst = strconv.AppendQuote(dst, k.Country)
	dst = append(dst, `},"request_context_map":{"amt":`...)
	dst = strconv.AppendFloat(dst, k.Amt, 'g', -1, 64)
	dst = append(dst, `,"lat":`...)
	dst = strconv.AppendFloat(dst, k.Lat, 'g', -1, 64)
	dst = append(dst, `,"long":`...)
	dst = strconv.AppendFloat(dst, k.Long, 'g', -1, 64)
	dst = append(dst, '}')
	if asOf > 0 {
		dst = append(dst, `,"as_of":`...)
		dst = strconv.AppendInt(dst, asOf, 10)
	}
	return append(dst, "}}"...)
}

// ndjson appends txns as bulk-ingest lines.
func ndjson(dst []byte, txns []workload.Txn) []byte {
	for i := range txns {
		dst = txns[i].AppendJSON(dst)
		dst = append(dst, '\n')
	}
	return dst
}

// ingestJSON appends txns as a Tecton-shaped ingest request.
func ingestJSON(dst []byte, txns []workload.Txn) []byte {
	dst = append(dst, `{"workspace_name":"default","records":{"transactions":[`...)
	for i := range txns {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"record":`...)
		dst = txns[i].AppendJSON(dst)
		dst = append(dst, '}')
	}
	return append(dst, "]}}"...)
}

// PostFunc returns a load.Func that POSTs body as JSON to path on addr
// with the harness's client (one connection per worker, nothing allocated
// per request), for measuring that client outside a run (cmd clientcpu).
func PostFunc(addr, path string, body []byte, workers int) load.Func {
	c := newClient(addr, workers)
	return func(w int, _ int64) error {
		_, err := c.post(w, path, "application/json", body)
		return err
	}
}

// client is a fasthttp client with one request and response per worker,
// reused so that the client allocates nothing per request.
type client struct {
	hc    *fasthttp.HostClient
	reqs  []*fasthttp.Request
	resps []*fasthttp.Response
}

func newClient(addr string, workers int) *client {
	c := &client{hc: &fasthttp.HostClient{
		Addr: addr, MaxConns: workers, MaxIdleConnDuration: time.Minute,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		MaxResponseBodySize: 64 << 20, NoDefaultUserAgentHeader: true,
	}}
	for range workers {
		c.reqs = append(c.reqs, new(fasthttp.Request))
		// A worker's response keeps its body's buffer from one request to
		// the next: fasthttp otherwise returns it to a pool and takes one
		// again, an allocation per response once a collection empties it.
		c.resps = append(c.resps, &fasthttp.Response{KeepBodyBuffer: true})
	}
	return c
}

// post sends body to path as worker w; the returned body is valid until w's
// next call.
func (c *client) post(w int, path, contentType string, body []byte) ([]byte, error) {
	req, resp := c.reqs[w], c.resps[w]
	req.Reset()
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(path)
	req.Header.SetHost(c.hc.Addr)
	req.Header.SetContentType(contentType)
	req.SetBodyRaw(body)
	if err := c.hc.Do(req, resp); err != nil {
		return nil, err
	}
	if sc := resp.StatusCode(); sc != fasthttp.StatusOK {
		return nil, &statusError{status: sc, body: truncate(string(resp.Body()), 300)}
	}
	return resp.Body(), nil
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// statusError is a response with an unexpected status: the server answered,
// so the request's outcome is known (it was refused).
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string { return fmt.Sprintf("status %d: %s", e.status, e.body) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// tallyServer is the tally node under test, started by Options.Tally.
type tallyServer struct {
	addr  string
	close func()
}

func startTally(o Options) (*tallyServer, error) {
	addr, stop, err := o.Tally()
	if err != nil {
		return nil, fmt.Errorf("start tally: %w", err)
	}
	return &tallyServer{addr: addr, close: stop}, nil
}

func (t *tallyServer) stop() { t.close() }

// load uploads the profile table and ingests the preload, through the Go
// client as any client would.
func (t *tallyServer) load(f *fixture) error {
	c, err := tallyclient.New(t.addr, tallyclient.Options{})
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	ctx := context.Background()
	if _, err := c.UploadTable(ctx, "user_profile", tallyclient.CSV, f.profile, tallyclient.TableOptions{}); err != nil {
		return fmt.Errorf("upload user_profile: %w", err)
	}
	var body []byte
	for i := 0; i < len(f.preload); i += 20_000 {
		body = ndjson(body[:0], f.preload[i:min(i+20_000, len(f.preload))])
		if _, err := c.IngestBulk(ctx, "transactions", body, tallyclient.WriteOptions{}); err != nil {
			return fmt.Errorf("preload: %w", err)
		}
	}
	return nil
}

// NoopServer answers every request with a fixed body of a lookup
// response's size: the client's and the loopback's own cost.
type NoopServer struct {
	srv  *fasthttp.Server
	ln   net.Listener
	addr string
	done chan error
}

func startNoop(respSize int) (*NoopServer, error) { return StartNoop("127.0.0.1:0", respSize) }

// StartNoop starts the harness's no-op server on addr, answering every
// request with respSize bytes (a JSON object of spaces), for measuring it
// outside a run (cmd noopserver: scripts/cpu-per-request.sh compares
// processes).
func StartNoop(addr string, respSize int) (*NoopServer, error) {
	return StartNoopWork(addr, respSize, 0)
}

// StartNoopWork is StartNoop for a server that also spins for work (on the
// CPU, reading the clock) before each answer: a server whose handler costs
// work more than the no-op's, as tally's lookup does (Options.Calibrate).
func StartNoopWork(addr string, respSize int, work time.Duration) (*NoopServer, error) {
	body := make([]byte, max(respSize, 2))
	for i := range body {
		body[i] = ' '
	}
	body[0], body[len(body)-1] = '{', '}'
	s := &NoopServer{done: make(chan error, 1)}
	s.srv = &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if work > 0 {
			for t0 := time.Now(); time.Since(t0) < work; {
			}
		}
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}, NoDefaultServerHeader: true, CloseOnShutdown: true}
	var err error
	if s.ln, err = net.Listen("tcp", addr); err != nil {
		return nil, err
	}
	s.addr = s.ln.Addr().String()
	go func() { s.done <- s.srv.Serve(s.ln) }()
	return s, nil
}

func (s *NoopServer) stop() {
	// fasthttp's Shutdown closes only the listeners its Serve has
	// registered: one that runs first would leave Serve to start after it
	// and serve on. A closed listener ends Serve wherever it is.
	s.ln.Close()
	_ = s.srv.Shutdown()
	<-s.done
}

// Wait blocks until the server stops.
func (s *NoopServer) Wait() error { return <-s.done }
