// Package loopback hands out 127.0.0.1 ports for processes a test or a
// benchmark starts itself (tally nodes, Kafka, Redis), which bind them a
// moment later.
//
// Asking the kernel for port 0 and closing the listener returns a port from
// the ephemeral range, which the kernel also gives to outgoing connections:
// with many connections open (a load test beside a cluster) one of them can
// take the port before the process binds it ("address already in use").
// Ports below the ephemeral range are never given out by the kernel, so
// FreeAddr draws from there, at random, skipping ports it already handed
// out in this process and checking each is free now.
package loopback
