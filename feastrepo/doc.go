// Package feastrepo writes a Feast feature repo (feature_store.yaml and one
// Python file) describing a tally feature repo, so that `feast apply` builds
// the registry Feast's SDK needs to read features from a tally node through
// Feast's remote online store, and to push events to it.
//
// Mapping: a tally entity is a Feast Entity (typed by its join key's source
// column); a source is a PushSource over a FileSource placeholder plus a
// feature view "<source>_events" whose rows are the events (what
// FeatureStore.push writes); a feature view or table view is a FeatureView
// over the placeholder (tally computes it; Feast never materializes it); a
// request view is an on-demand feature view in Python mode whose code
// computes what tally computes (features.ExprPython); a feature service is a
// FeatureService of view projections, grouped by view. What Feast cannot
// express is reported, not silently dropped.
package feastrepo
