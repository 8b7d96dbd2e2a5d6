// Package load drives a request function at a fixed rate (open loop) or as
// fast as a fixed number of workers can go (closed loop), and records
// latencies in HDR histograms.
//
// Open loop, no coordinated omission: request i is due at start + i/rate,
// whatever happened to the requests before it, and its latency is measured
// from that due time, not from when it was actually sent. A server that
// stalls therefore shows the stall in every request that was due during it,
// as a user would see it. The rate is kept by a fixed pool of workers (one
// request in flight each); when all are busy, due requests wait for a worker
// and that wait is part of their latency. Requests still unsent at the hard
// stop are counted as errors with the latency they had accumulated.
//
// Timing: the Go runtime rounds a sleep shorter than 1 ms up to 1 ms when
// the process is otherwise idle, and spinning to be exact would take a core
// from the server on a small machine. So a worker sleeps until about 1 ms
// before a request is due and then sends it: a request may go out up to
// 1 ms early (its latency is then measured from when it was sent, so early
// sending never flatters a figure), or late by the sleep's overshoot (which
// counts against the figure). Result.SendLag says how late requests were
// sent. Measure a no-op server the same way to see how much of a figure is
// the client (bench does).
//
// Everything is bounded: a run stops at its request count, at its duration
// plus a grace period, or when its context ends, whichever is first.
package load
