package kafkasource

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRefusedRecord: only errors that concern the record itself, as
// franz-go reports them (wrapped with the batch's size), make a stand-in;
// an outage, a missing topic or a missing authorization holds the batch.
func TestRefusedRecord(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("%w (uncompressed_bytes=4877, compressed_bytes=4404)", kerr.MessageTooLarge),
		fmt.Errorf("%w (uncompressed_bytes=2000000)", kerr.MessageTooLarge), // the client's own limit
		kerr.RecordListTooLarge, kerr.InvalidRecord, kerr.CorruptMessage,
	} {
		if !refusedRecord(err) {
			t.Errorf("%v: not a refused record", err)
		}
	}
	for _, err := range []error{
		kerr.UnknownTopicOrPartition, kerr.UnknownTopicID, kerr.NotLeaderForPartition, kerr.RequestTimedOut,
		kerr.TopicAuthorizationFailed, kerr.ClusterAuthorizationFailed, kerr.PolicyViolation,
		context.DeadlineExceeded, errors.New("dial tcp 127.0.0.1:1: connect: connection refused"),
	} {
		if refusedRecord(err) {
			t.Errorf("%v: taken for a refused record (its batch would no longer be held)", err)
		}
	}
}

// TestStandIn: a stand-in keeps tally's headers and a short key, drops the
// value (empty, not null) and the record's own headers, and says why.
func TestStandIn(t *testing.T) {
	d := &kgo.Record{Key: []byte("k"), Value: make([]byte, 5000), Headers: []kgo.RecordHeader{
		{Key: "own", Value: make([]byte, 3000)},
		{Key: "tally-reason", Value: []byte("not_json")}, {Key: "tally-error", Value: []byte("not valid JSON")},
		{Key: "tally-topic", Value: []byte("t")}, {Key: "tally-partition", Value: []byte("3")}, {Key: "tally-offset", Value: []byte("42")},
	}}
	s := standIn(d, kerr.MessageTooLarge)
	if s.Value == nil || len(s.Value) != 0 || string(s.Key) != "k" {
		t.Errorf("stand-in key %q value %v, want key k and an empty, non-null value", s.Key, s.Value)
	}
	var got []string
	for _, h := range s.Headers {
		got = append(got, h.Key+"="+string(h.Value))
	}
	want := fmt.Sprint([]string{"tally-reason=not_json", "tally-error=not valid JSON", "tally-topic=t", "tally-partition=3", "tally-offset=42",
		"tally-value-bytes=5000", "tally-dead-letter-error=" + kerr.MessageTooLarge.Error()})
	if fmt.Sprint(got) != want {
		t.Errorf("stand-in headers %v, want %v", got, want)
	}
	if d.Headers[0].Key != "own" || len(d.Headers) != 6 {
		t.Errorf("standIn changed the dead letter's headers: %v", d.Headers)
	}
	d.Key = make([]byte, standInKeyMax+1)
	if s := standIn(d, kerr.MessageTooLarge); s.Key != nil {
		t.Errorf("a stand-in kept a %d-byte key", len(s.Key))
	}
}
