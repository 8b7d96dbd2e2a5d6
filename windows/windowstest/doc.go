// Package windowstest holds a brute-force reference of the windows engine's
// semantics, for tests: it keeps every accepted event and recomputes each
// aggregation from its definition on every read. It is slow by design.
package windowstest
