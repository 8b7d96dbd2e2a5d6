// Package delta appends tabular rows to a Delta Lake table on the local file
// system: one Parquet data file per append and one commit in the table's
// _delta_log, which Spark (delta-spark) and delta-rs read as they read any
// Delta table.
//
// No maintained Go library writes Delta data files and commits together
// without bringing cloud SDKs along (csimplestring/delta-go writes the log
// only, with Azure/GCS/S3 dependencies), and an append-only writer needs a
// small part of the protocol, so it is implemented here, following the
// Delta transaction log protocol (PROTOCOL.md of delta-io/delta):
//
//   - A table is a directory of Parquet files and _delta_log/, holding one
//     JSON file per commit, named by its version zero-padded to 20 digits
//     (00000000000000000000.json), one action per line.
//   - Version 0 holds commitInfo, protocol {minReaderVersion 1,
//     minWriterVersion 2} (no table features), metaData (a random table id,
//     format parquet, the schema as a Spark StructType in schemaString, no
//     partition columns) and the add action of the first data file.
//   - Each later append holds commitInfo and one add action
//     (dataChange true, stats {"numRecords": n}); it is a blind append.
//   - Column names: none holds any of " ,;{}()\n\t=" and no two differ
//     only in case (Delta without column mapping forbids them: Spark
//     refuses to create the first and to read the second); CheckNames
//     refuses them before anything is written.
//   - Types: string -> string, float64 -> double, int64 -> long, bool ->
//     boolean, timestamp -> timestamp (Parquet TIMESTAMP(MILLIS, UTC)),
//     lists -> array of double or string; every column nullable.
//
// # Commits and concurrent writers
//
// Append writes the data file first (part-<uuid>.zstd.parquet, a name no
// other writer uses) and commits last, with optimistic concurrency: it reads
// the newest version N, then creates version N+1 exclusively (O_CREATE|
// O_EXCL, after writing and syncing it under a temporary name, then link(2),
// which fails if the name exists). When another writer took N+1 first, it
// reads that commit: an append (only add actions, no metaData or protocol)
// cannot conflict with a blind append, so it retries at N+2, up to 100
// times; a commit that changed the schema or the protocol is an error. A
// table whose schema differs from the rows' is refused before anything is
// written; schemas are compared as JSON values, so metaData that Spark or
// delta-rs rewrote (SET TBLPROPERTIES: same columns, its own key order)
// is the same schema. Until the commit, readers do not see the data file; a failed or
// discarded append removes it. A new table's _delta_log is made by its
// first commit, and a first append that fails or is discarded also removes
// the directories it made (each only when empty: another writer's data
// file keeps its directory), so it leaves no table behind: an empty
// _delta_log is a directory Spark and delta-rs refuse as "not a Delta
// table". Checkpoints are not written: readers replay
// the JSON log (fine for the tens of appends a training set gets; Spark and
// delta-rs may add checkpoints of their own).
//
// Local file systems only: create-exclusive is what makes the commit safe;
// on object stores (S3) use a Delta writer with a commit coordinator.
package delta
