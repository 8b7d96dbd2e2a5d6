// Package cputime reads the process's CPU time, for benchmarks on a shared
// machine: another process's turn on a core is not counted, so CPU time per
// operation varies less than wall time does (report it as cpu-ns/op).
package cputime

import "syscall"

// Now is the process's user and system CPU time so far, in ns (0 if the
// kernel does not say).
func Now() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
