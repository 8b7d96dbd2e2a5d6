// Package inprocess starts a tally node inside the calling process for the
// load-test harness: node.New and node.NewServer with the embedded default
// feature repo (the code `tally serve` runs) on a free 127.0.0.1 port, with
// limits raised for the harness's large bulk bodies. Package bench reaches
// it only over HTTP, at the address Start returns, as any client would;
// keeping the node in the measuring process keeps the figures comparable
// with earlier runs.
package inprocess
