package mlflow

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/tally-ml/tally/score"
)

// trivialServer answers every /invocations with one [p, 1-p] per row, on
// loopback, with fasthttp: what remains is the client's cost and the
// loopback round trip.
func trivialServer(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var resp []byte
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		n := bytes.Count(ctx.PostBody(), []byte("],[")) + 1
		resp = append(resp[:0], `{"predictions": [`...)
		for i := 0; i < n; i++ {
			if i > 0 {
				resp = append(resp, ", "...)
			}
			resp = append(resp, "[0.96776313034808, 0.03223686965191]"...)
		}
		resp = append(resp, "]}"...)
		ctx.SetContentType("application/json")
		ctx.SetBody(resp)
	}, Concurrency: 64}
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { _ = srv.Shutdown() })
	return "http://" + l.Addr().String()
}

var benchColumns = []string{"amount", "amount_zscore_1h", "txn_count_1h", "txn_count_24h",
	"distinct_merchants_24h", "account_age_days", "is_foreign", "hour_of_day"}

func BenchmarkClientRoundTrip(b *testing.B) {
	endpoint := trivialServer(b)
	for _, n := range []int{1, 64} {
		b.Run("rows="+strconv.Itoa(n), func(b *testing.B) {
			c, err := New(Options{Endpoint: endpoint, Columns: benchColumns, Classes: []string{"0", "1"}})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			rows := make([]float32, n*len(benchColumns))
			for i := range rows {
				rows[i] = float32(i) * 1.37
			}
			out := make([]score.Prediction, n)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Score(ctx, rows, n, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkClientEncodeDecode is the client's CPU cost per 64-row batch
// without the network: request body and response parse.
func BenchmarkClientEncodeDecode(b *testing.B) {
	c, err := New(Options{Endpoint: "http://127.0.0.1:1", Columns: benchColumns, Classes: []string{"0", "1"}})
	if err != nil {
		b.Fatal(err)
	}
	const n = 64
	rows := make([]float32, n*len(benchColumns))
	for i := range rows {
		rows[i] = float32(i) * 1.37
	}
	resp := []byte(`{"predictions": [`)
	for i := 0; i < n; i++ {
		if i > 0 {
			resp = append(resp, ", "...)
		}
		resp = append(resp, "[0.96776313034808, 0.03223686965191]"...)
	}
	resp = append(resp, "]}"...)
	out := make([]score.Prediction, n)
	b.ReportAllocs()
	for b.Loop() {
		bp := c.body(rows, n, len(benchColumns))
		c.bodies.Put(bp)
		if err := c.decode(resp, n, out); err != nil {
			b.Fatal(err)
		}
	}
}
