// Package systemtest holds whole-process tests: they build the real tally
// binary, start it on a free loopback port, talk to it over HTTP as a client
// would, and stop (or kill) it.
package systemtest
