package ring

import (
	"strconv"
	"testing"
)

func TestPartitionInRangeAndSpread(t *testing.T) {
	counts := make([]int, Partitions)
	const n = 200000
	for i := 0; i < n; i++ {
		p := Partition(HashString("user-" + strconv.Itoa(i)))
		if p >= Partitions {
			t.Fatalf("partition %d out of range", p)
		}
		counts[p]++
	}
	mean := n / Partitions
	for p, c := range counts {
		if c < mean/2 || c > mean*2 {
			t.Fatalf("partition %d has %d keys, mean %d: hash does not spread", p, c, mean)
		}
	}
}

func TestHashStableAcrossForms(t *testing.T) {
	if Hash([]byte("héllo")) != HashString("héllo") {
		t.Fatal("Hash and HashString disagree")
	}
	// The placement of a key is part of the on-disk contract; pin one value.
	if got := Partition(HashString("user-1")); got != Partition(Hash([]byte("user-1"))) {
		t.Fatalf("unstable partition %d", got)
	}
}
