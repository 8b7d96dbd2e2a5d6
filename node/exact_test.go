package node

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// TestNumbersAreExactlyTheDecimalsSent: an amount and a request value
// written with an exponent (where fastjson's own parse is an ulp off) are
// stored and used as the float64 nearest their decimal text.
func TestNumbersAreExactlyTheDecimalsSent(t *testing.T) {
	n, clk := newTestNode(t, DefaultConfig())
	now := clk.now()
	const amt = "4.77744228926317e+07"
	want, _ := strconv.ParseFloat(amt, 64)
	body := fmt.Sprintf(`{"user_id":"u","merchant":"m","category":"c","amt":%s,"country":"FR","lat":1,"long":2,"is_fraud":0,"timestamp":%d}`, amt, now-10)
	if _, err := n.IngestNDJSON("transactions", []byte(body), false); err != nil {
		t.Fatal(err)
	}
	out, aerr := n.GetFeatures(nil, []byte(`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"u","merchant":"m","country":"FR"},"request_context_map":{"amt":`+amt+`,"lat":1,"long":2}}}`))
	if aerr != nil {
		t.Fatal(aerr)
	}
	s := string(out)
	// The sum over 1h is the one amount; the ratio to the mean is exactly 1.
	if !strings.Contains(s, ","+strconv.FormatFloat(want, 'g', -1, 64)+",") {
		t.Fatalf("the stored amount is not %v: %s", want, s)
	}
	if !strings.Contains(s, ",1]") {
		t.Fatalf("amt / mean(amt) is not exactly 1: %s", s)
	}
}
