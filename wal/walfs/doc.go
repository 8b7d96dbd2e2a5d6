// Package walfs is the file-system seam of tally's durable files: the
// write-ahead log's segments and the node's snapshots go through an FS, so
// that tests can swap the disk.
//
// OS is the real one. Mem is an in-memory FS that knows what is durable and
// builds what a power loss would leave (unsynced sectors and unsynced
// directory operations survive at random), and freezes after a chosen
// number of mutations: the crash simulation of the log's tests and the
// whole node's (node.TestPowerLossWholeNode).
package walfs
