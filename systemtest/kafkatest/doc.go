// Package kafkatest runs a real Apache Kafka broker (scripts/kafka.sh: 3.9,
// KRaft, one process) for the tests of a package: Shared starts it once per
// test binary, Main stops it when the tests end. Without Java or Maven a
// test skips, unless TALLY_REQUIRE_KAFKA is set (make test sets it), when
// it fails.
package kafkatest
