package main

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
)

// TestStopRightAfterStart: a stop that comes as the server starts (a
// SIGTERM while `tally serve` starts, a Kafka source failing at once) ends
// the server and returns, whether or not the server has begun accepting.
func TestStopRightAfterStart(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 20 && time.Now().Before(deadline); i++ {
		cfg := node.DefaultConfig()
		cfg.DataDir, cfg.Listen = t.TempDir(), "127.0.0.1:0"
		r, err := start(cfg, repo, features.DefaultFS(), log)
		if err != nil {
			t.Fatal(err)
		}
		stopped := make(chan error, 1)
		go func() { stopped <- r.stop(log) }()
		select {
		case err := <-stopped:
			if err != nil {
				t.Fatalf("stop %d: %v", i+1, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("stop %d right after start still waits after 5s: the server kept serving", i+1)
		}
	}
}
