// Command noopserver runs the load harness's no-op server (bench.StartNoop)
// as a process of its own, the baseline scripts/cpu-per-request.sh measures
// tally serve against:
//
//	go run ./bench/noopserver 127.0.0.1:18081 2036
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/tally-ml/tally/bench"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: noopserver ADDR RESPONSE_BYTES")
		os.Exit(2)
	}
	size, err := strconv.Atoi(os.Args[2])
	if err != nil || size < 2 {
		fmt.Fprintln(os.Stderr, "RESPONSE_BYTES: give a size of at least 2")
		os.Exit(2)
	}
	s, err := bench.StartNoop(os.Args[1], size)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "noopserver on", os.Args[1])
	if err := s.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
