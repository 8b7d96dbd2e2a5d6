// Package systemtest holds whole-process tests: they start the real tally
// binary with package harness (free loopback ports, own data directories),
// talk to it through package client as any client would, and stop, kill or
// restart it.
package systemtest
