package bench

import (
	"context"
	"fmt"
	"math"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tally-ml/tally/bench/load"
	"github.com/tally-ml/tally/bench/workload"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/internal/loopback"
	"github.com/tally-ml/tally/windows"
	"github.com/tally-ml/tally/windows/windowstest"
)

// The Redis peer is the sliding-window store most teams hand-build first:
//
//   - u:<user>     sorted set of the user's events (score: event time,
//     member: "amt|merchant|seq"), trimmed on every write with
//     ZREMRANGEBYSCORE to the longest window (1 d) plus 5 min lateness,
//     with an EXPIRE;
//   - m:<merchant> sorted set of the merchant's event times, trimmed to 1 h;
//   - c:<country>  hash of per-day tiles "s:<day>" (HINCRBYFLOAT of amt)
//     and "n:<day>" (HINCRBY), the 365 d mean's 1-day tiles;
//   - p:<user>     hash home_lat, home_long (the profile table).
//
// One lookup is one pipeline of 8 commands (ZCOUNT for the user's 1m/5m/1h
// counts and the merchant's 5m/1h, ZRANGEBYSCORE WITHSCORES of the user's
// day for sums, means, max, stddev and distinct merchants, HGETALL of the
// country, HMGET of the profile), and the client computes the 18 features
// of fraud_detection from the replies, as the service in front of Redis
// would. One event is one pipeline of 7 commands.
const redisDiffers = "the same 18 features, computed by the Go client from 8 pipelined commands per lookup (ZCOUNT per window, ZRANGEBYSCORE of the user's day for sums/means/max/stddev and distinct merchants, per-day tile hashes for the country mean, HMGET for the profile) with go-redis; values are read at the client's clock and returned as a Go slice (no JSON, no metadata, no per-feature status); trimming happens on write"

const (
	dayMs     = 86_400_000
	latenessM = 5 * 60_000
)

type redisPeer struct {
	cmd  *exec.Cmd
	addr string
	rdb  *redis.Client
	seq  int64
}

func freePort() (int, error) {
	addr, err := loopback.FreeAddr()
	if err != nil {
		return 0, err
	}
	_, p, _ := net.SplitHostPort(addr)
	return strconv.Atoi(p)
}

func startRedis(ctx context.Context, workers int) (*redisPeer, string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, "", fmt.Errorf("redis-server is not installed (run scripts/bench-peers.sh redis)")
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	ver, _ := exec.Command(bin, "--version").Output()
	p := &redisPeer{addr: "127.0.0.1:" + strconv.Itoa(port)}
	p.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes")
	if err := p.cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start redis-server: %w", err)
	}
	p.rdb = redis.NewClient(&redis.Options{Addr: p.addr, PoolSize: workers, MinIdleConns: workers, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := p.rdb.Ping(ctx).Err(); err == nil {
			break
		} else if time.Now().After(deadline) {
			p.stop()
			return nil, "", fmt.Errorf("redis-server did not answer PING within 10 s: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p, strings.TrimSpace(string(ver)), nil
}

func (p *redisPeer) stop() {
	if p.rdb != nil {
		_ = p.rdb.Close()
	}
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

// write queues the commands of one event.
func (p *redisPeer) write(ctx context.Context, pipe redis.Pipeliner, t *workload.Txn, seq int64) {
	uk, mk, ck := "u:"+t.UserID, "m:"+t.Merchant, "c:"+t.Country
	amt := strconv.FormatFloat(t.Amt, 'g', -1, 64)
	pipe.ZAdd(ctx, uk, redis.Z{Score: float64(t.TS), Member: amt + "|" + t.Merchant + "|" + strconv.FormatInt(seq, 36)})
	pipe.ZRemRangeByScore(ctx, uk, "-inf", "("+strconv.FormatInt(t.TS-dayMs-latenessM, 10))
	pipe.Expire(ctx, uk, 25*time.Hour)
	pipe.ZAdd(ctx, mk, redis.Z{Score: float64(t.TS), Member: strconv.FormatInt(seq, 36)})
	pipe.ZRemRangeByScore(ctx, mk, "-inf", "("+strconv.FormatInt(t.TS-3_600_000-latenessM, 10))
	day := strconv.FormatInt(t.TS/dayMs, 10)
	pipe.HIncrByFloat(ctx, ck, "s:"+day, t.Amt)
	pipe.HIncrBy(ctx, ck, "n:"+day, 1)
}

func (p *redisPeer) load(ctx context.Context, f *fixture) error {
	pipe := p.rdb.Pipeline()
	for i := range f.users {
		h := f.homes[f.users[i].ID]
		pipe.HSet(ctx, "p:"+f.users[i].ID, "home_lat", h[0], "home_long", h[1])
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("load profiles: %w", err)
	}
	for i := 0; i < len(f.preload); i += 2000 {
		pipe := p.rdb.Pipeline()
		for j := i; j < min(i+2000, len(f.preload)); j++ {
			p.seq++
			p.write(ctx, pipe, &f.preload[j], p.seq)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("preload: %w", err)
		}
	}
	return nil
}

// redisVector is the fraud_detection vector; nil entries are MISSING_DATA.
// Order: the service's (counts 1m/5m/1h; sum_1h, mean_1h, max_1h, sum_1d,
// mean_1d, stddev_1d; distinct 1h/1d; merchant 5m/1h; country mean 365d;
// home lat/long; distance, amt/mean_1d).
type redisVector [18]*float64

func (p *redisPeer) lookup(ctx context.Context, k *lookupKey, t int64) (redisVector, error) {
	var out redisVector
	uk, mk := "u:"+k.User, "m:"+k.Merchant
	ts := strconv.FormatInt(t, 10)
	after := func(w int64) string { return "(" + strconv.FormatInt(t-w, 10) }
	pipe := p.rdb.Pipeline()
	c1 := pipe.ZCount(ctx, uk, after(60_000), ts)
	c5 := pipe.ZCount(ctx, uk, after(300_000), ts)
	c60 := pipe.ZCount(ctx, uk, after(3_600_000), ts)
	day := pipe.ZRangeByScoreWithScores(ctx, uk, &redis.ZRangeBy{Min: after(dayMs), Max: ts})
	m5 := pipe.ZCount(ctx, mk, after(300_000), ts)
	m60 := pipe.ZCount(ctx, mk, after(3_600_000), ts)
	ctry := pipe.HGetAll(ctx, "c:"+k.Country)
	prof := pipe.HMGet(ctx, "p:"+k.User, "home_lat", "home_long")
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return out, err
	}
	num := func(x float64) *float64 { return &x }
	out[0], out[1], out[2] = num(float64(c1.Val())), num(float64(c5.Val())), num(float64(c60.Val()))
	var sum1h, max1h, sum1d float64
	var n1h, n1d int
	m1h, m1d := map[string]struct{}{}, map[string]struct{}{}
	zs := day.Val()
	amts := make([]float64, 0, len(zs))
	for _, z := range zs {
		s, _ := z.Member.(string)
		a, rest, _ := strings.Cut(s, "|")
		merchant, _, _ := strings.Cut(rest, "|")
		amt, _ := strconv.ParseFloat(a, 64)
		amts = append(amts, amt)
		sum1d += amt
		n1d++
		m1d[merchant] = struct{}{}
		if int64(z.Score) > t-3_600_000 {
			if n1h == 0 || amt > max1h {
				max1h = amt
			}
			sum1h += amt
			n1h++
			m1h[merchant] = struct{}{}
		}
	}
	out[3], out[6] = num(sum1h), num(sum1d)
	if n1h > 0 {
		out[4], out[5] = num(sum1h/float64(n1h)), num(max1h)
	}
	if n1d > 0 {
		mean := sum1d / float64(n1d)
		var ss float64
		for _, a := range amts {
			ss += (a - mean) * (a - mean)
		}
		out[7], out[8] = num(mean), num(math.Sqrt(ss/float64(n1d)))
	}
	out[9], out[10] = num(float64(len(m1h))), num(float64(len(m1d)))
	out[11], out[12] = num(float64(m5.Val())), num(float64(m60.Val()))
	// Country: 1-day tiles whose start is inside the 365 d window.
	var cs, cn float64
	for f, v := range ctry.Val() {
		d, err := strconv.ParseInt(f[2:], 10, 64)
		if err != nil || d*dayMs <= t-365*dayMs || d*dayMs > t {
			continue
		}
		x, _ := strconv.ParseFloat(v, 64)
		if f[0] == 's' {
			cs += x
		} else {
			cn += x
		}
	}
	if cn > 0 {
		out[13] = num(cs / cn)
	}
	if pv := prof.Val(); len(pv) == 2 && pv[0] != nil && pv[1] != nil {
		lat, _ := strconv.ParseFloat(pv[0].(string), 64)
		lon, _ := strconv.ParseFloat(pv[1].(string), 64)
		out[14], out[15] = num(lat), num(lon)
		out[16] = num(haversineKm(k.Lat, k.Long, lat, lon))
	}
	if out[7] != nil && *out[7] != 0 {
		out[17] = num(k.Amt / *out[7])
	}
	return out, nil
}

func (r *runner) runRedis(ctx context.Context) error {
	if !r.opts.wantPeer(PeerRedis) {
		return nil
	}
	st := PeerStatus{Name: PeerRedis, Setup: "scripts/bench-peers.sh redis", Differs: redisDiffers}
	notRun := func(reason string) error {
		st.Reason = reason
		r.rep.Peers = append(r.rep.Peers, st)
		r.add(Result{System: "redis", Scenario: "lookup", Mode: "-", NotRun: reason})
		return nil
	}
	p, ver, err := startRedis(ctx, r.opts.Workers)
	if err != nil {
		return notRun(err.Error())
	}
	defer p.stop()
	st.Version = ver
	t := time.Now()
	if err := p.load(ctx, r.fix); err != nil {
		return notRun(err.Error())
	}
	r.logf("redis    %s on %s: preloaded %d transactions in %s", ver, p.addr, len(r.fix.preload), time.Since(t).Round(time.Millisecond))
	st.Ran = true
	r.rep.Peers = append(r.rep.Peers, st)
	// Check the hand-built features against the reference before loading
	// more, at the preload's end.
	r.rep.Correctness = append(r.rep.Correctness, r.checkRedis(ctx, p))
	if r.opts.want("lookup") {
		err := r.lookupSuite(ctx, "redis", 0, func(w int, i int64) error {
			_, err := p.lookup(ctx, &r.fix.lookups[i%int64(len(r.fix.lookups))], time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return err
		}
	}
	if r.opts.want("ingest") {
		cfg := r.fix.cfg
		cfg.Seed += 17
		g := workload.New(cfg)
		const per, workers = 1000, 4
		batches := make([][]workload.Txn, 100)
		now := time.Now().UnixMilli() - 60_000
		for i := range batches {
			batches[i] = make([]workload.Txn, per)
			for j := range batches[i] {
				batches[i][j] = g.Next(now + int64(i))
			}
		}
		res := load.RunClosed(ctx, load.Closed{Workers: workers, Duration: r.opts.Duration}, func(w int, i int64) error {
			pipe := p.rdb.Pipeline()
			b := batches[i%int64(len(batches))]
			for j := range b {
				p.write(ctx, pipe, &b[j], i*per+int64(j)+1<<40)
			}
			_, err := pipe.Exec(ctx)
			return err
		})
		row := resultOf("redis", "ingest-pipe", "closed", 0, workers, res)
		row.EventsPerS = float64((res.Requests-res.Errors)*per) / res.Elapsed.Seconds()
		row.Description = fmt.Sprintf("%d events (7 commands each) per pipeline, %d pipelines in flight", per, workers)
		r.add(row)
	}
	return nil
}

// checkRedis compares a sample of the hand-built vectors with the reference
// at the preload's end. It shows the Redis figures are for the same work.
func (r *runner) checkRedis(ctx context.Context, p *redisPeer) Correctness {
	c := Correctness{System: "redis", Scenario: "preloaded"}
	repo, err := features.Default()
	if err != nil {
		c.Inconclusive = err.Error()
		return c
	}
	refs := r.references(repo, nil)
	n := 300
	if r.opts.Quick {
		n = 100
	}
	t := r.fix.t0
	for i := 0; i < n && i < len(r.fix.lookups); i++ {
		k := &r.fix.lookups[i]
		vec, err := p.lookup(ctx, k, t)
		if err != nil {
			c.mismatch(err.Error())
			continue
		}
		c.Lookups++
		keys := map[string]string{"user_id": k.User, "merchant": k.Merchant, "country": k.Country}
		j, bad := 0, ""
		var mean1d windows.Value
		for vi, view := range repo.Views {
			want, scales := refs[vi].ReadScale([]byte(keys[view.Entity.JoinKey]), t)
			got := make([]windows.Value, len(want))
			for fi := range got {
				if vec[j] != nil {
					got[fi] = windows.Value{Present: true, Num: *vec[j]}
				}
				if view.Features[fi].FullName == "user_transaction_amounts.amt_mean_1d" {
					mean1d = want[fi]
				}
				j++
				c.Features++
			}
			if err := windowstest.Compare(view.Spec, got, want, scales); err != nil && bad == "" {
				bad = fmt.Sprintf("%s key %q: %v", view.Name, keys[view.Entity.JoinKey], err)
			}
		}
		if bad == "" {
			v := map[string]served{}
			names := []string{"user_profile.home_lat", "user_profile.home_long", "transaction_request.distance_from_home_km", "transaction_request.amt_to_user_mean_1d"}
			for x, name := range names {
				if vec[14+x] != nil {
					v[name] = served{present: true, num: *vec[14+x]}
				}
			}
			bad = r.checkRequestFeatures(v, *k, mean1d, &c)
		}
		if bad != "" {
			c.mismatch(bad)
		}
	}
	return c
}
