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

// TestImportCountsDeferredEventsAndTakesIntegerKeys: an import says how many
// of its events the log's clock had already passed (they count historically
// only from then), and integer join keys are their decimal text at ingest as
// at lookup.
func TestImportCountsDeferredEventsAndTakesIntegerKeys(t *testing.T) {
	n, clk := newTestNode(t, DefaultConfig())
	now := clk.now()
	ev := func(user string, ts int64) string {
		return fmt.Sprintf(`{"user_id":%s,"merchant":"m","category":"c","amt":1,"country":"FR","lat":1,"long":2,"is_fraud":0,"timestamp":%d}`+"\n", user, ts)
	}
	res, err := n.ImportNDJSON("transactions", []byte(ev(`"a"`, now-60_000)+ev(`"a"`, now-30_000)), false)
	if err != nil || res.Deferred != 0 || res.Accepted != 2 {
		t.Fatalf("in-order import: %+v %v", res, err)
	}
	res, err = n.ImportNDJSON("transactions", []byte(ev(`"b"`, now-45_000)+ev(`"b"`, now-20_000)), false)
	if err != nil || res.Deferred != 1 {
		t.Fatalf("import behind the log's clock: %+v %v, want 1 deferred", res, err)
	}
	if _, err := n.IngestNDJSON("transactions", []byte(ev(`9007199254740993`, now-1)), false); err != nil {
		t.Fatalf("integer join key refused: %v", err)
	}
	out, aerr := n.GetFeatures(nil, []byte(`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"9007199254740993","merchant":"m","country":"FR"},"request_context_map":{"amt":1,"lat":1,"long":2}}}`))
	if aerr != nil || !strings.HasPrefix(string(out), `{"result":{"features":[1,1,1,`) {
		t.Fatalf("lookup by the integer key's text: %s %v", out, aerr)
	}
}
