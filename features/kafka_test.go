package features

import (
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

const kafkaRepo = `sources:
  - name: tx
    schema: {user_id: string, amt: float}
    kafka:
      brokers: [127.0.0.1:9092, "k2:9093"]
      topic: transactions
      start: latest
      timestamp: record
      fields: {amt: payment.amount, user_id: uid}
      dead_letter_topic: transactions_rejected
      max_lag: 5000
      sasl: {mechanism: scram-sha-512, username: tally, password_env: KAFKA_PASSWORD}
      tls: {ca_file: ca.pem}
`

func TestKafkaSource(t *testing.T) {
	r, err := Load(fstest.MapFS{"r.yaml": {Data: []byte(kafkaRepo)}})
	if err != nil {
		t.Fatal(err)
	}
	want := &Kafka{Brokers: []string{"127.0.0.1:9092", "k2:9093"}, Topic: "transactions", Group: "tally-tx", Format: "json", Start: "latest",
		RecordTime: true, Fields: map[string]string{"amt": "payment.amount", "user_id": "uid"}, DeadLetterTopic: "transactions_rejected", MaxLag: 5000,
		SASL: &KafkaSASL{Mechanism: "SCRAM-SHA-512", Username: "tally", PasswordEnv: "KAFKA_PASSWORD"}, TLS: &KafkaTLS{CAFile: "ca.pem"}}
	if got := r.Sources[0].Kafka; !reflect.DeepEqual(got, want) {
		t.Fatalf("kafka block read as\n%+v\nwant\n%+v", got, want)
	}
	checkRoundTrip(t, r)
}

func TestKafkaSourceErrors(t *testing.T) {
	head := "sources:\n  - name: tx\n    schema: {user_id: string, amt: float}\n    kafka:\n"
	for _, tc := range []struct{ name, block, want string }{
		{"no topic", "      brokers: [a:1]\n", `missing field "topic"`},
		{"no brokers", "      topic: t\n", `missing field "brokers"`},
		{"broker without port", "      topic: t\n      brokers: [a]\n", `brokers: expected host:port`},
		{"format", "      topic: t\n      brokers: [a:1]\n      format: avro\n", `format "avro" is not supported: use json`},
		{"start", "      topic: t\n      brokers: [a:1]\n      start: beginning\n", `start "beginning": use earliest`},
		{"timestamp", "      topic: t\n      brokers: [a:1]\n      timestamp: ts\n", `timestamp "ts": use field`},
		{"unknown field mapped", "      topic: t\n      brokers: [a:1]\n      fields: {amount: a}\n", `fields: "amount" is not a field of the source (did you mean "amt"?)`},
		{"dead letter loop", "      topic: t\n      brokers: [a:1]\n      dead_letter_topic: t\n", `dead_letter_topic is the topic itself`},
		{"sasl mechanism", "      topic: t\n      brokers: [a:1]\n      sasl: {mechanism: gssapi, username: u, password_env: P}\n", `mechanism "GSSAPI": use PLAIN`},
		{"sasl password in repo", "      topic: t\n      brokers: [a:1]\n      sasl: {mechanism: plain, username: u, password: p}\n", `unknown field "password"`},
		{"half a client cert", "      topic: t\n      brokers: [a:1]\n      tls: {cert_file: c.pem}\n", `cert_file and key_file go together`},
		{"unknown key", "      topic: t\n      brokers: [a:1]\n      partitions: 3\n", `unknown field "partitions"`},
	} {
		_, err := Load(fstest.MapFS{"r.yaml": {Data: []byte(head + tc.block)}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// A source field mapped twice under kafka.fields is an error: the second
// mapping silently replaced the first.
func TestKafkaFieldMappedTwice(t *testing.T) {
	block := "sources:\n  - name: tx\n    schema: {user_id: string, amt: float}\n    kafka:\n      topic: t\n      brokers: [a:1]\n" +
		"      fields:\n        amt: payment.amount\n        amt: amount\n"
	_, err := Load(fstest.MapFS{"r.yaml": {Data: []byte(block)}})
	if err == nil || !strings.Contains(err.Error(), `"amt" is mapped twice`) || !strings.Contains(err.Error(), "r.yaml:9:9:") {
		t.Fatalf("got %v, want an error at the second amt (9:9) saying amt is mapped twice", err)
	}
}

// Two sources consuming one topic in one consumer group are refused: in a
// cluster their members would share the group, which spreads the topic's
// partitions over both sources, so each would miss the others' share. And
// a source's dead-letter topic may not be a topic another source consumes
// (rejected records would be read again, and two such sources would pass
// a record back and forth for ever).
func TestKafkaSourcesShareGroupAndTopic(t *testing.T) {
	src := func(name, block string) string {
		return "  - name: " + name + "\n    schema: {user_id: string, amt: float}\n    kafka:\n      brokers: [a:1]\n" + block
	}
	for _, tc := range []struct{ name, a, b, want string }{
		{"same group and topic", "      topic: t\n      group: g\n", "      topic: t\n      group: g\n", `source "b" kafka: topic "t" in group "g" is consumed by source "a" too`},
		{"dead letter is another's topic", "      topic: t\n      dead_letter_topic: u\n", "      topic: u\n", `source "b" kafka: topic "u" is the dead_letter_topic of source "a"`},
		{"topic is another's dead letter", "      topic: u\n", "      topic: t\n      dead_letter_topic: u\n", `source "b" kafka: dead_letter_topic "u" is consumed by source "a"`},
	} {
		_, err := Load(fstest.MapFS{"r.yaml": {Data: []byte("sources:\n" + src("a", tc.a) + src("b", tc.b))}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	// Distinct groups (the default, tally-<source>) on one topic are fine.
	if _, err := Load(fstest.MapFS{"r.yaml": {Data: []byte("sources:\n" + src("a", "      topic: t\n") + src("b", "      topic: t\n"))}}); err != nil {
		t.Fatalf("two sources on one topic in their own groups: %v", err)
	}
}
