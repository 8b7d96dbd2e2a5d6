package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadConfigText(t *testing.T, text string) (Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tally.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return LoadConfig(p)
}

// A negative duration cannot work and is refused, naming the setting:
// max_future -5m refused every event not 5 minutes old, a negative
// sync_every became 100ms, snapshot_every turned snapshots off (even at
// shutdown), retention kept no archive.
func TestConfigRefusesNegativeDurations(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"max_future: -5m\n", "max_future"},
		{"durability: {fsync: interval, sync_every: -1s}\n", "sync_every"},
		{"durability: {snapshot_every: -10m}\n", "snapshot_every"},
		{"durability: {retention: -1h}\n", "retention"},
	} {
		if _, err := loadConfigText(t, tc.text); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error naming %s", tc.text, err, tc.want)
		}
	}
	for _, text := range []string{"max_future: 0s\n", "durability: {snapshot_every: 0s, retention: 0s}\n"} {
		if _, err := loadConfigText(t, text); err != nil {
			t.Errorf("%q: %v", text, err)
		}
	}
}

// A config file holds one YAML document: a second one was silently
// ignored. An empty file (or one of comments) is the defaults, not "EOF".
func TestConfigDocuments(t *testing.T) {
	if _, err := loadConfigText(t, "listen: 127.0.0.1:9000\n---\nlisten: 127.0.0.1:9001\n"); err == nil || !strings.Contains(err.Error(), "document") {
		t.Errorf("two documents: %v, want an error saying the file holds more than one document", err)
	}
	for _, text := range []string{"", "# nothing set yet\n"} {
		cfg, err := loadConfigText(t, text)
		if err != nil || cfg.Listen != DefaultConfig().Listen {
			t.Errorf("%q: %v (listen %s), want the defaults", text, err, cfg.Listen)
		}
	}
}

// go test -run '^$' -fuzz FuzzLoadConfig -fuzztime 20s ./node/
// Any file either loads into a config Validate accepts or is refused; never
// a panic.
func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte("listen: 0.0.0.0:8080\napi_keys:\n  - {name: model, key: \"a-long-random-secret\", scopes: [read]}\n" +
		"limits: {max_body_bytes: 33554432, read_timeout: 10s}\ndurability: {fsync: interval, sync_every: 100ms}\n"))
	f.Add([]byte("max_future: -5m\n"))
	f.Add([]byte("cluster: {node_id: a, peers: [a=127.0.0.1:7001], groups: 8}\n"))
	f.Add([]byte("listen: x\n---\nlisten: y\n"))
	f.Add([]byte("limits: {read_timeout: 10}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseConfig("tally.yaml", data)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("loaded a config Validate refuses: %v", err)
		}
	})
}
