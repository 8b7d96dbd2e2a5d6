package node

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// strictJSON reports whether each non-blank line of b (the whole of b,
// unless lines) is JSON as encoding/json reads it, and UTF-8 (which
// encoding/json does not check). An accepted body must be; fastjson alone
// also takes escapes RFC 8259 does not define ("\q", "\u12"), raw control
// characters in strings, numbers such as 01 or nan, and bytes such as 0xff
// in strings.
func strictJSON(b []byte, lines bool) bool {
	if !lines {
		return json.Valid(b) && utf8.Valid(b) && !unpairedSurrogate(b)
	}
	for _, l := range bytes.Split(b, []byte{'\n'}) {
		if len(bytes.TrimSpace(l)) > 0 && (!json.Valid(l) || !utf8.Valid(l) || unpairedSurrogate(l)) {
			return false
		}
	}
	return true
}

// unpairedSurrogate reports whether b, JSON text as encoding/json reads
// it, holds a \u escape of a UTF-16 surrogate that is not half of a pair
// (high then low), which encoding/json takes (reading U+FFFD) and fastjson
// alone read as the escape's text or U+FFFD, dropping what followed.
func unpairedSurrogate(b []byte) bool {
	esc := func(i int) rune { // the \u escape at b[i:], or -1
		if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
			return -1
		}
		u, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 16)
		if err != nil {
			return -1
		}
		return rune(u)
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		switch u := esc(i); {
		case utf16.IsSurrogate(u) && u < 0xdc00:
			if lo := esc(i + 6); lo < 0xdc00 || lo > 0xdfff {
				return true
			}
			i += 11
		case utf16.IsSurrogate(u):
			return true
		default:
			i++ // the escaped byte
		}
	}
	return false
}

func fuzzNode(f *testing.F) *Node {
	n, _ := newTestNode(f, DefaultConfig())
	return n
}

// FuzzIngestJSON: any body is either accepted whole or refused without
// changing anything; the node never panics.
func FuzzIngestJSON(f *testing.F) {
	n := fuzzNode(f)
	f.Add(ingestBody(txn("u1", "m1", "FR", 10, t0-1)))
	f.Add([]byte(`{"records":{"transactions":[{"record":{"user_id":1,"timestamp":"2026-11-25T00:00:00Z"}}]}}`))
	f.Add([]byte(`{"dry_run":true,"records":{}}`))
	f.Add([]byte(`{"dryRun":"true","records":{"transactions":[{"record":{"user_id":"u","amt":01,"timestamp":1795564799000}}]}}`))
	f.Add([]byte(`{"dry_run":false,"dry_run":true,"records":{"transactions":[{"record":{"user_id":+1,"amt":.5,"amt":1.,"timestamp":-0}}]}}`))
	f.Add([]byte(`{"records":{"transactions":[{"record":{"user_id":"a","merchant":"b","country":"c","amt":1e308,"timestamp":1795564799000}}]}}`))
	f.Add([]byte(`{"records":{"transactions":[{"record":{"user_id":"a\q","merchant":"b\u12","country":"c\u00e9","amt":1,"timestamp":1795564799000}}]}}`))
	f.Add([]byte("{\"records\":{\"transactions\":[{\"record\":{\"user_id\":\"a\tb\",\"merchant\":\"m\",\"country\":\"FR\",\"amt\":1,\"timestamp\":1795564799000}}]}}"))
	f.Add([]byte("{\n\t\"records\": {\"transactions\": [{\"record\": {\"user_id\": \"u\",\r\n\t\"merchant\": \"m\x00\", \"country\": \"FR\", \"amt\": 1, \"timestamp\": 1795564799000}}]}\n}"))
	f.Add([]byte("{\"records\":{\"transactions\":[{\"record\":{\"user_id\":\"u\xff\",\"merchant\":\"m\xc3\xa9\",\"country\":\"FR\",\"amt\":1,\"timestamp\":1795564799000}}]}}"))
	f.Add([]byte(`{"records":{"transactions":[{"record":{"user_id":"u\ud800\u0041","merchant":"\ud83d\ude00","country":"\\udc00","amt":1,"timestamp":1795564799000}}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		before := n.AppliedIndex()
		res, err := n.IngestJSON(body)
		after := n.AppliedIndex()
		if err == nil && !strictJSON(body, false) {
			t.Fatalf("accepted a body that is not JSON: %q", body)
		}
		if err != nil && after != before {
			t.Fatalf("refused ingest (%v) changed the applied index %d -> %d", err, before, after)
		}
		if err == nil && !res.DryRun && res.Accepted > 0 && after == before {
			t.Fatalf("accepted %d records but applied nothing", res.Accepted)
		}
	})
}

// FuzzIngestNDJSON: the bulk path, same contract.
func FuzzIngestNDJSON(f *testing.F) {
	n := fuzzNode(f)
	f.Add([]byte(`{"user_id":"u","merchant":"m","country":"FR","amt":1,"timestamp":1795564799000}` + "\n"))
	f.Add([]byte("\n\n{}\n"))
	f.Add([]byte(`{"user_id":"u","merchant":"m","country":"FR","amt":inf,"is_fraud":01,"timestamp":1795564799000}` + "\n"))
	f.Add([]byte(`{"user_id":"u\\\q","merchant":"m\u004","country":"\u0046R","amt":1,"timestamp":1795564799000}` + "\n"))
	f.Add([]byte("{\"user_id\":\"u\t\",\"merchant\":\"m\",\"country\":\"FR\",\"amt\":1,\"timestamp\":1795564799000}\r\n{\"user_id\":\"u\",\"merchant\x1f\":\"m\",\"country\":\"FR\",\"amt\":1,\"timestamp\":1795564799000}\n"))
	f.Add([]byte("{\"user_id\":\"\xc3\xa9\",\"merchant\":\"m\",\"country\":\"FR\",\"amt\":1,\"timestamp\":1795564799000}\n{\"user_id\":\"u\xed\xa0\x80\",\"merchant\":\"m\",\"country\":\"FR\",\"amt\":1,\"timestamp\":1795564799000}\n"))
	f.Add([]byte(`{"user_id":"\uD83D\uDE00","merchant":"m","country":"FR","amt":1,"timestamp":1795564799000}` + "\n" + `{"user_id":"u\udc00","merchant\ud800":"m","country":"FR","amt":1,"timestamp":1795564799000}` + "\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		strict := strictJSON(body, true)
		before := n.AppliedIndex()
		_, err := n.IngestNDJSON("transactions", body, false)
		if err != nil && n.AppliedIndex() != before {
			t.Fatalf("refused bulk ingest changed state: %v", err)
		}
		if err == nil && !strict {
			t.Fatalf("bulk ingest accepted lines that are not JSON: %q", body)
		}
		// The import (backfill) path parses the same body with other time rules.
		before = n.AppliedIndex()
		_, err = n.ImportNDJSON("transactions", body, false)
		if err != nil && n.AppliedIndex() != before {
			t.Fatalf("refused import changed state: %v", err)
		}
		if err == nil && !strict {
			t.Fatalf("import accepted lines that are not JSON: %q", body)
		}
	})
}

// FuzzGetFeatures: any request body gets a response or a 4xx, never a panic.
func FuzzGetFeatures(f *testing.F) {
	n := fuzzNode(f)
	if _, err := n.IngestJSON(ingestBody(txn("u1", "m1", "FR", 10, t0-1))); err != nil {
		f.Fatal(err)
	}
	f.Add(lookupBody("u1", "m1", "FR", 1, 2, 3))
	f.Add([]byte(`{"params":{"feature_service_name":"fraud_detection","request_data":[{"join_key_map":{"user_id":1}}]}}`))
	f.Add([]byte(`{"params":{"feature_service_name":"fraud_detection","metadata_options":{"include_names":"no"},"join_key_map":{"user_id":01,"user_id":"a"},"request_context_map":{"amt":+1}}}`))
	f.Add([]byte(`{"params":{"featureServiceName":"fraud_detection","joinKeyMap":{"user_id":"a","merchant":"b","country":"c"},"requestContextMap":{"amt":null,"lat":1,"long":2},"metadataOptions":{"includeEffectiveTimes":true}}}`))
	f.Add([]byte(`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"u\q1","merchant":"\u6d31","country":"FR"},"request_context_map":{"amt":1,"lat":2,"long":3}}}`))
	f.Add([]byte("{\"params\":{\"feature_service_name\":\"fraud_detection\",\"join_key_map\":{\"user_id\":\"u\t1\",\"merchant\":\"m1\",\"country\":\"FR\"},\"request_context_map\":{\"amt\":1,\"lat\":2,\"long\":3}}}"))
	f.Add([]byte("{\"params\":{\"feature_service_name\":\"fraud_detection\",\"join_key_map\":{\"user_id\":\"u1\",\"merchant\":\"m1\",\"country\":\"FR\"},\"request_context_map\":{\"amt\":1,\"lat\":2,\"long\":3},\"extra\":\"\x00\",\"more\":01}}"))
	f.Add([]byte("{\n\t\"params\": {\"feature_service_name\": \"fraud_detection\",\r\n\t\"request_data\": [{\"join_key_map\": {\"user_id\": \"u1\", \"merchant\": \"m1\", \"country\": \"FR\"}, \"request_context_map\": {\"amt\": 1, \"lat\": 2, \"long\": 3}}]}\n}"))
	f.Add([]byte("{\"params\":{\"feature_service_name\":\"fraud_detection\",\"join_key_map\":{\"user_id\":\"u\xc0\xaf\",\"merchant\":\"m\xc3\xa9\",\"country\":\"FR\"},\"request_context_map\":{\"amt\":1,\"lat\":2,\"long\":3}}}"))
	f.Add([]byte(`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"u\ud800","merchant":"\ud83d\ude00","country":"FR\udfff"},"request_context_map":{"amt":1,"lat":2,"long":3}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		strict := strictJSON(body, false)
		_, err := n.GetFeatures(nil, body)
		if err != nil && (err.Status < 400 || err.Status >= 500) {
			t.Fatalf("bad request answered with status %d: %v", err.Status, err)
		}
		if err == nil && !strict {
			t.Fatalf("answered a body that is not JSON: %q", body)
		}
		_, err = n.GetFeaturesBatch(nil, body)
		if err != nil && (err.Status < 400 || err.Status >= 500) {
			t.Fatalf("bad batch request answered with status %d: %v", err.Status, err)
		}
		if err == nil && !strict {
			t.Fatalf("answered a batch body that is not JSON: %q", body)
		}
	})
}

// FuzzUploadTable: any table upload, CSV or NDJSON, is stored whole or
// refused with a 400 and the table unchanged; the node never panics. What
// is stored is UTF-8 (and NDJSON strict JSON).
func FuzzUploadTable(f *testing.F) {
	n := fuzzNode(f)
	f.Add(true, []byte("user_id,home_lat,home_long\nu1,48.85,2.35\n"))
	f.Add(true, []byte("\ufeffuser_id, home_lat\n\"u,2\",1e3\nu3,\n"))
	f.Add(true, []byte("user_id,home_lat,home_lat\nu1,1,NaN\n"))
	f.Add(false, []byte(`{"user_id":"u1","home_lat":1,"home_long":2}`+"\n"+`{"user_id":7,"home_lat":null}`))
	f.Add(false, []byte(`{"user_id":"u1","home_lat":01,"home_lat":1}`))
	f.Add(false, []byte(`{"user_id":"u\q1","home_lat":1}`+"\n"+`{"user_id":"\u12","home_lat":null}`))
	f.Add(false, []byte("{\"user_id\":\"u\t1\",\"home_lat\":1}\n{\"user_id\x0b\":\"u2\",\"home_lat\":null}"))
	f.Add(false, []byte("{\"user_id\":\"u\xc3\xa9\",\"home_lat\":1}\n{\"user_id\":\"u\xf4\x90\x80\x80\",\"home_lat\":null}"))
	f.Add(false, []byte(`{"user_id":"u\ud83d\ude00","home_lat":1}`+"\n"+`{"user_id":"u\ud800\u0041","home_lat":null}`))
	f.Add(true, []byte("user_id,home_lat\nu\xc3\xa9,1\n\"u\n\xff\",2\n"))
	f.Add(true, []byte("user_id,home\xfe_lat\nu1,1\n"))
	f.Fuzz(func(t *testing.T, csv bool, body []byte) {
		format := NDJSON
		if csv {
			format = CSV
		}
		before := n.AppliedIndex()
		rows, aerr := n.UploadTable("user_profile", format, body, false)
		switch {
		case aerr != nil && (aerr.Status != 400 || n.AppliedIndex() != before):
			t.Fatalf("refused upload: status %d, applied index %d -> %d: %v", aerr.Status, before, n.AppliedIndex(), aerr)
		case aerr == nil && rows > 0 && n.AppliedIndex() == before:
			t.Fatalf("stored %d rows but applied nothing", rows)
		case aerr == nil && !csv && !strictJSON(body, true):
			t.Fatalf("stored NDJSON lines that are not JSON: %q", body)
		case aerr == nil && csv && !utf8.Valid(body):
			t.Fatalf("stored CSV that is not UTF-8: %q", body)
		}
	})
}
