package client

import (
	"encoding/json"
	"fmt"
)

// DecodeFeatures reads body, the answer of get-features or predict as the
// node wrote it (LookupJSON's bytes, or an in-process node's), into the
// same Features that GetFeatures and Predict return. It refuses an answer
// whose values and metadata do not line up, unless the metadata was left
// out entirely.
func DecodeFeatures(body []byte) (*Features, error) {
	f := &Features{}
	if err := json.Unmarshal(body, f); err != nil {
		return nil, fmt.Errorf("decode a lookup answer: %w", err)
	}
	if n := len(f.Metadata.Features); n != 0 && n != len(f.Result.Features) {
		return nil, fmt.Errorf("decode a lookup answer: %d values but %d metadata entries", len(f.Result.Features), n)
	}
	return f, nil
}

// DecodeBatchFeatures reads body, the answer of get-features-batch as the
// node wrote it, into the BatchFeatures that GetFeaturesBatch returns.
func DecodeBatchFeatures(body []byte) (*BatchFeatures, error) {
	f := &BatchFeatures{}
	if err := json.Unmarshal(body, f); err != nil {
		return nil, fmt.Errorf("decode a batch lookup answer: %w", err)
	}
	return f, nil
}
