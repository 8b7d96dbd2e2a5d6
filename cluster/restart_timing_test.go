package cluster

import (
	"net"
	"testing"
	"time"
)

// BenchmarkRestart: how long Open takes for one node of a 3-node cluster
// (2 groups of 3 replicas) restarted over its data dir, with both peers
// up; with one peer down (its port refuses connections); and with one
// peer silent (its port accepts and never answers, as a peer whose host
// is unreachable behaves until the dial times out). The start checks
// that ask the peers wait for a silent one up to the hello's timeout.
func BenchmarkRestart(b *testing.B) {
	for _, peer := range []string{"up", "down", "silent"} {
		b.Run("peer-"+peer, func(b *testing.B) {
			w := newWipedCluster(b, 3, 2, 3)
			w.start(0, 1, 2)
			w.write(0, "a")
			if peer != "up" {
				w.stop(2)
			}
			if peer == "silent" {
				ln, err := net.Listen("tcp", w.cfgs[2].ClusterAddr)
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				go func() {
					for {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						defer c.Close()
					}
				}()
			}
			var total time.Duration
			for b.Loop() {
				w.stop(1)
				t0 := time.Now()
				w.start(1)
				total += time.Since(t0)
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/start")
		})
	}
}
