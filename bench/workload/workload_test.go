package workload

import (
	"encoding/json"
	"testing"
)

func TestSeededAndSkewed(t *testing.T) {
	a, b := New(DefaultConfig()), New(DefaultConfig())
	counts := map[string]int{}
	fraud := 0
	for i := 0; i < 50_000; i++ {
		x, y := a.Next(int64(i)), b.Next(int64(i))
		if x != y {
			t.Fatalf("same seed diverged at %d: %+v vs %+v", i, x, y)
		}
		counts[x.UserID]++
		fraud += x.IsFraud
	}
	top := 0
	for _, c := range counts {
		top = max(top, c)
	}
	if top < 50_000/100 {
		t.Fatalf("busiest user has %d of 50000 transactions: activity is not skewed", top)
	}
	if fraud == 0 || fraud > 50_000/10 {
		t.Fatalf("%d fraud transactions in 50000: bursts missing or overwhelming", fraud)
	}
}

func TestAppendJSONIsValid(t *testing.T) {
	g := New(DefaultConfig())
	for i := 0; i < 1000; i++ {
		tx := g.Next(1_700_000_000_000 + int64(i))
		var m map[string]any
		if err := json.Unmarshal(tx.AppendJSON(nil), &m); err != nil {
			t.Fatalf("invalid JSON %s: %v", tx.AppendJSON(nil), err)
		}
		if m["user_id"] != tx.UserID || m["amt"].(float64) != tx.Amt {
			t.Fatalf("round trip lost data: %v vs %+v", m, tx)
		}
	}
}
