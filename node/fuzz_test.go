package node

import (
	"testing"
)

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
	f.Fuzz(func(t *testing.T, body []byte) {
		before := n.AppliedIndex()
		res, err := n.IngestJSON(body)
		after := n.AppliedIndex()
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
	f.Fuzz(func(t *testing.T, body []byte) {
		before := n.AppliedIndex()
		if _, err := n.IngestNDJSON("transactions", body, false); err != nil && n.AppliedIndex() != before {
			t.Fatalf("refused bulk ingest changed state: %v", err)
		}
		// The import (backfill) path parses the same body with other time rules.
		before = n.AppliedIndex()
		if _, err := n.ImportNDJSON("transactions", body, false); err != nil && n.AppliedIndex() != before {
			t.Fatalf("refused import changed state: %v", err)
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
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := n.GetFeatures(nil, body); err != nil && (err.Status < 400 || err.Status >= 500) {
			t.Fatalf("bad request answered with status %d: %v", err.Status, err)
		}
		if _, err := n.GetFeaturesBatch(nil, body); err != nil && (err.Status < 400 || err.Status >= 500) {
			t.Fatalf("bad batch request answered with status %d: %v", err.Status, err)
		}
	})
}

// FuzzDecodeRecord: a corrupt log record is an error, never a panic or a
// huge allocation.
func FuzzDecodeRecord(f *testing.F) {
	n := fuzzNode(f)
	w := n.getIngestWork()
	b := w.batches[0]
	if _, err := n.IngestJSON(ingestBody(txn("u1", "m1", "FR", 10, t0-1))); err != nil {
		f.Fatal(err)
	}
	var rec []byte
	sp := n.sources[0]
	b.reset(0, len(sp.src.Columns))
	e := b.grow(t0)
	b.setStr(e, sp.colIndex["user_id"], []byte("u"))
	b.setStr(e, sp.colIndex["merchant"], []byte("m"))
	b.setStr(e, sp.colIndex["country"], []byte("c"))
	b.setNum(e, sp.colIndex["amt"], 3)
	rec = appendEventsRecord(rec, sp, b)
	f.Add(rec)
	f.Add(appendTableRecord(nil, n.tables[0], []tableRow{{key: "u", nums: []float64{1, 2}, strs: []string{"", ""}, null: []bool{false, true}}}, true))
	f.Add(appendEventsRecord(appendAt(nil, t0, false), sp, b))
	f.Add(appendEventsRecord(appendAt(nil, 0, true), sp, b))
	f.Fuzz(func(t *testing.T, rec []byte) {
		if inner, _, _, err := unwrapAt(rec); err == nil && len(inner) < len(rec) {
			rec = inner
		}
		var out eventBatch
		if sp, err := n.decodeEventsRecord(rec, &out); err == nil && !lacksKeyColumn(sp, &out) {
			// A record that decodes must encode back to an equivalent batch
			// (but for one written before a view's key column existed: its
			// events decode with the key null, and the view skips them,
			// which a record holding the column as null does not allow).
			again := appendEventsRecord(nil, n.sources[out.source], &out)
			var out2 eventBatch
			if _, err := n.decodeEventsRecord(again, &out2); err != nil || out2.len() != out.len() {
				t.Fatalf("re-encoded record does not decode: %v", err)
			}
		}
		n.decodeTableRecord(rec)
	})
}

// lacksKeyColumn reports whether b, decoded from a record, lacks a key
// column of a view over sp (decoding refuses a null key in a column the
// record has, so a null key means the record did not have the column).
func lacksKeyColumn(sp *sourcePlan, b *eventBatch) bool {
	for _, t := range sp.targets {
		for e := 0; e < b.len(); e++ {
			if b.null[e*b.ncols+t.keyCol] {
				return true
			}
		}
	}
	return false
}
