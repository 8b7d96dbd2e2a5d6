package node

import "github.com/tally-ml/tally/store"

// The state's names a caller of node meets (see package store).
type (
	// Log is the write-ahead log a node commits through (store.Log).
	Log = store.Log
	// Committer is the seam every change goes through (store.Committer).
	Committer = store.Committer
	// StateMachine is what a Committer applies to (store.StateMachine).
	StateMachine = store.StateMachine
	// Recovery says what a restart restored (store.Recovery).
	Recovery = store.Recovery
	// DirLock is a data dir's exclusive lock (store.DirLock).
	DirLock = store.DirLock
)

var (
	// ErrLogFailed: the change was not acknowledged (store.ErrLogFailed).
	ErrLogFailed = store.ErrLogFailed
	// ErrLostRecords: the log was cut behind a snapshot (store.ErrLostRecords).
	ErrLostRecords = store.ErrLostRecords
	// ErrSchemaChanged: the repo changed since the data dir was written
	// (store.ErrSchemaChanged).
	ErrSchemaChanged = store.ErrSchemaChanged
	// ErrDataDirInUse: another process holds the data dir
	// (store.ErrDataDirInUse).
	ErrDataDirInUse = store.ErrDataDirInUse
)

// LockDataDir takes the data dir's lock (store.LockDataDir).
func LockDataDir(dir string) (*DirLock, error) { return store.LockDataDir(dir) }

// IsLostRecord reports whether rec is a filler of an index whose change
// only a snapshot holds (store.IsLostRecord).
func IsLostRecord(rec []byte) bool { return store.IsLostRecord(rec) }
