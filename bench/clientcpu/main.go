// Command clientcpu measures the load harness's own client: it drives a
// server (the harness's no-op server as a process: go run
// ./bench/noopserver ADDR BYTES) with the harness's client and load loops,
// closed loop and open loop at each given rate, 3 s each, and prints its
// own CPU time per request (getrusage: user and system, the kernel's
// loopback work on its side included), with the throughput and latency:
//
//	go run ./bench/clientcpu 127.0.0.1:18081 BODY_FILE closed 20000 40000
//
// The harness runs its client on the cores the server uses, so what the
// client costs per request bounds what any server can show in it.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/tally-ml/tally/bench"
	"github.com/tally-ml/tally/bench/load"
	"github.com/tally-ml/tally/internal/cputime"
)

const (
	workers = 64 // the harness's default
	warmup  = 500 * time.Millisecond
	path    = "/api/v1/feature-service/get-features"
)

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: clientcpu ADDR BODY_FILE closed|RATE ...")
		os.Exit(2)
	}
	body, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	f := bench.PostFunc(os.Args[1], path, body, workers)
	ctx := context.Background()
	for _, shape := range os.Args[3:] {
		var rate float64
		if shape != "closed" {
			if rate, err = strconv.ParseFloat(shape, 64); err != nil || rate <= 0 {
				fmt.Fprintf(os.Stderr, "%q: give closed or a rate in requests per second\n", shape)
				os.Exit(2)
			}
		}
		c0 := cputime.Now()
		var r load.Result
		if rate == 0 {
			r = load.RunClosed(ctx, load.Closed{Workers: workers, Duration: 3 * time.Second}, f)
		} else {
			r = load.RunOpen(ctx, load.Open{Rate: rate, Duration: 3 * time.Second, Workers: workers, Warmup: warmup}, f)
		}
		cpu := cputime.Now() - c0
		if r.Requests == 0 || r.Errors > 0 {
			fmt.Fprintf(os.Stderr, "%s: %d requests, %d errors: %v\n", shape, r.Requests, r.Errors, r.FirstErr)
			os.Exit(1)
		}
		// CPU over the warmup too (open loop): per request of both.
		sent := r.Requests + int64(rate*warmup.Seconds())
		fmt.Printf("%-7s %7.0f req/s  client CPU %5.1f us/request  p50 %6.0f us  p99 %6.0f us\n", shape, r.Throughput(),
			float64(cpu)/1e3/float64(sent), float64(r.Latency.ValueAtQuantile(50))/1e3, float64(r.Latency.ValueAtQuantile(99))/1e3)
	}
}
