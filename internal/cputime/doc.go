// Package cputime reads the process's CPU time, for benchmarks on a shared
// machine: another process's turn on a core is not counted, so CPU time per
// operation varies less than wall time does (report it as cpu-ns/op).
package cputime
