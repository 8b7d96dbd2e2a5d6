package node

import (
	"fmt"
	"testing"
)

// BenchmarkFeastOnlineFeatures is BenchmarkGetFeatures' lookup through
// Feast's API: the same keys and populated node, the fraud_detection
// service's 18 features (full names), one entity row.
func BenchmarkFeastOnlineFeatures(b *testing.B) {
	n, _ := newTestNode(b, DefaultConfig())
	const users = 100_000
	g := populate(b, n, users, 20)
	bodies := make([][]byte, 4096)
	for i := range bodies {
		tx := g.Next(t0)
		bodies[i] = fmt.Appendf(nil, `{"feature_service":"fraud_detection","full_feature_names":true,"entities":{"user_id":[%q],"merchant":[%q],"country":[%q],"amt":[%v],"lat":[%v],"long":[%v]}}`,
			tx.UserID, tx.Merchant, tx.Country, tx.Amt, tx.Lat, tx.Long)
	}
	dst := make([]byte, 0, 8192)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := n.FeastOnlineFeatures(dst[:0], bodies[i%len(bodies)])
		if err != nil {
			b.Fatal(err.Message)
		}
		dst = out
	}
}
