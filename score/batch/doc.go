// Package batch coalesces concurrent Score calls into batches for any
// score.Scorer.
//
// New(s, Options) starts a *Batcher, which implements score.Scorer; Close
// stops it. Callers call Score as they would on s; their rows travel to s
// in batches of up to MaxRows rows, and each caller gets its own rows'
// predictions back in its own out.
//
// # When a batch goes
//
// One dispatcher goroutine takes calls off the queue, oldest first, whole
// (a call is never split; one larger than MaxRows goes alone), and hands the
// batch to one of MaxInFlight workers. A batch goes when a worker is free
// and:
//
//   - it is full (MaxRows rows queued), or
//   - its oldest call has waited MaxWait (remote endpoints: wait to fill), or
//   - Options.Local is set and no batch is in flight: a local model scores
//     at once when idle and coalesces only while it is busy. When nothing is
//     queued or in flight, a Local call is scored in the caller's own
//     goroutine, without a hand-off or a copy, and it is then the wrapped
//     Scorer's job to honour ctx.
//
// # Back-pressure and deadlines
//
// QueueRows bounds the rows waiting for a batch. A call that does not fit
// fails at once with an error wrapping score.ErrOverloaded (Stats.Shed); a
// call into an empty queue is always accepted. What a shed request gets is
// the caller's policy.
//
// A caller whose ctx ends gets an error wrapping score.ErrUnavailable and
// ctx.Err() at once. If its batch has not been formed, its rows are dropped
// from the queue; if the batch is in flight, the batch goes on for the
// other callers and this caller's out is never written. A batch's ctx has
// the latest deadline among its callers (none if one has none), so that no
// caller's time is cut short by another's.
//
// # Errors
//
// Shape errors (rows or out too short for n) fail the call with
// score.ErrBadInput before it is queued. An error from the wrapped Scorer
// goes to every caller in the batch, except score.ErrBadInput from a batch
// of several calls: each call is then scored alone, so that one caller's
// bad rows fail only that caller (Stats.Split).
//
// Close stops accepting calls (later ones get ErrClosed, which wraps
// score.ErrUnavailable), sends everything queued without waiting for MaxWait,
// and returns when every batch has been scored.
//
// # Cost
//
// In steady state a call allocates nothing: calls and batch buffers are
// pooled. A batch whose callers have deadlines allocates its own deadline
// context. Results are copied from the batch's buffer into each caller's
// out (Probabilities into the caller's backing array when it has room).
package batch
