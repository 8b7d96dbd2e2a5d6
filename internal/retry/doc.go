// Package retry paces the retry loops of the Kafka source and the cluster:
// a delay that doubles after each wait, up to a cap, cut short when the
// loop's context ends.
package retry
