// Command schedtrace reads a Go execution trace (runtime/trace; `tally
// bench --trace DIR` writes one for each lookup system's open-loop step at
// half the no-op server's maximum) and reports what delayed its goroutines:
//
//   - scheduling latency: from a goroutine becoming runnable to its running,
//     as percentiles and counts above 1, 2, 3 and 4 ms;
//   - long run slices: a goroutine seen running without a break (no block,
//     syscall, preemption or yield the runtime records) for at least
//     --long, grouped by where the slice ended;
//   - syscalls, and how many came back without their P: the runtime handed
//     it to another thread while the syscall was in the kernel.
//
// Request handlers and client loops run for microseconds between syscalls,
// so a long slice of theirs is time the kernel took their thread off the
// CPU while it held a Go P: every goroutine queued on that P waited with it.
//
//	go run ./bench/schedtrace results/X/tally-half-noop.trace
//
// It measures the harness's tail (README: what bounds the lookup ratios);
// it is not part of tally.
package main
