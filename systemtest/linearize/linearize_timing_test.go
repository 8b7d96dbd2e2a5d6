package linearize

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// BenchmarkCheck checks a history like the cluster test's: 4 clients, 8 keys,
// 500 operations each (a third reads), each taking effect at a random moment
// within its 0-2ms interval so that operations overlap as over a network,
// every 20th Add of unknown outcome (half of those never applied), against a
// correct store. It shows what history length Check handles in its timeout.
//
//	go test -run '^$' -bench Check ./systemtest/linearize
func BenchmarkCheck(b *testing.B) {
	r := NewRecorder()
	var mu sync.Mutex
	counts := map[string]int64{}
	var wg sync.WaitGroup
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				key := fmt.Sprintf("k%d", (c*7+i)%8)
				if i%3 == 0 {
					h := r.BeginRead(c, key)
					time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
					mu.Lock()
					n := counts[key]
					mu.Unlock()
					time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
					r.Count(h, n)
					continue
				}
				h := r.BeginAdd(c, key, 1)
				time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
				if i%40 != 1 {
					mu.Lock()
					counts[key]++
					mu.Unlock()
				}
				time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
				if i%20 == 1 {
					r.Unknown(h)
				} else {
					r.Ack(h)
				}
			}
		}(c)
	}
	wg.Wait()
	b.ReportMetric(float64(r.Len()), "ops/history")
	for b.Loop() {
		if ok, err := r.Check(time.Minute); !ok {
			b.Fatal(err)
		}
	}
}
