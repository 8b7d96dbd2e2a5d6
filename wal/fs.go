package wal

import "github.com/tally-ml/tally/wal/walfs"

// FS is the file system the log lives on (walfs.FS). OS is the real one;
// tests inject faults (torn writes, full disks, failing fsyncs) through
// their own, such as walfs.Mem.
type FS = walfs.FS

// File is an open segment (walfs.File).
type File = walfs.File

// OS is the operating system's file system.
var OS FS = walfs.OS
