package node

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tally-ml/tally/store"
)

// Config is a node's settings. The zero value is not usable; start from
// DefaultConfig and override.
type Config struct {
	Listen    string `yaml:"listen"`    // client address, default 127.0.0.1:8080
	DataDir   string `yaml:"data_dir"`  // default ./tally-data
	Workspace string `yaml:"workspace"` // the one workspace this node serves; "default"
	// Insecure allows listening beyond loopback with no API keys configured.
	Insecure bool     `yaml:"insecure"`
	APIKeys  []APIKey `yaml:"api_keys"`
	Limits   Limits   `yaml:"limits"`
	// MaxFuture is how far ahead of the node's clock an event timestamp may
	// be; later ones are refused as bad input.
	MaxFuture time.Duration `yaml:"max_future"`
	// Durability: the write-ahead log and snapshots in DataDir.
	Durability store.Durability `yaml:"durability"`
	// AcceptSchemaChange lets a start apply repo changes that drop or
	// rebuild stored state (see checkSchema); --accept-schema-change.
	AcceptSchemaChange bool `yaml:"-"`
	// Cluster, when its node_id is set, starts the node as part of a
	// cluster (README "Cluster"); the --node-id and --cluster-* flags
	// override it field by field.
	Cluster ClusterConfig `yaml:"cluster"`
}

// ClusterConfig is the cluster block of the config file.
type ClusterConfig struct {
	NodeID    string   `yaml:"node_id"`
	Addr      string   `yaml:"addr"`      // the cluster port's listen address
	Advertise string   `yaml:"advertise"` // what peers dial; default addr
	BindIP    string   `yaml:"bind_ip"`
	Peers     []string `yaml:"peers"` // id=host:port of every initial node
	ID        string   `yaml:"cluster_id"`
	KeyFile   string   `yaml:"key_file"` // the cluster key; or TALLY_CLUSTER_KEY
	Groups    int      `yaml:"groups"`
	Replicas  int      `yaml:"replicas"`
}

// APIKey grants Scopes to whoever presents Key. Key may be written as the
// plain secret or as "sha256:<hex>" so that config files need not hold it.
type APIKey struct {
	Name   string   `yaml:"name"`
	Key    string   `yaml:"key"`
	Scopes []string `yaml:"scopes"` // ingest, read, admin
}

// Limits bound what one client can make the node do.
type Limits struct {
	MaxBodyBytes    int           `yaml:"max_body_bytes"`    // any request body
	MaxHeaderBytes  int           `yaml:"max_header_bytes"`  // request line + headers
	MaxRecords      int           `yaml:"max_records"`       // records in one ingest request
	MaxBatch        int           `yaml:"max_batch"`         // rows in one get-features-batch
	MaxKeys         int           `yaml:"max_keys"`          // entries in a join_key_map or request_context_map
	MaxTableRows    int           `yaml:"max_table_rows"`    // rows in one table upload
	ReadTimeout     time.Duration `yaml:"read_timeout"`      // whole request, headers and body
	WriteTimeout    time.Duration `yaml:"write_timeout"`     //
	IdleTimeout     time.Duration `yaml:"idle_timeout"`      // keep-alive
	MaxRequestsConn int           `yaml:"max_requests_conn"` // 0 = unlimited
	// MaxConns bounds open client connections: more are accepted and closed
	// at once with 503. 0 (the default) takes half the open-file limit, at
	// most 10,000; a number that leaves fewer than 128 descriptors to the
	// log and snapshots is refused at start.
	MaxConns int `yaml:"max_conns"`
	// MaxConnsPerIP bounds one client address's connections (more are
	// closed at once with 429), so that one host cannot take all MaxConns;
	// default 1024, 0 = no bound.
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`

	// What one value, or one historical-features request, may make the node
	// hold in memory.
	//
	// MaxKeyBytes bounds a join key on every write path (ingest, bulk,
	// import, table uploads): a key lives in every view over its source
	// until its entity expires, several times over. Default 1 KiB: ids,
	// emails and composite keys are far shorter.
	MaxKeyBytes int `yaml:"max_key_bytes"`
	// MaxValueBytes bounds a string value on the same paths. Default 64 KiB:
	// room for any category or free text a feature counts or keeps, not for
	// documents.
	MaxValueBytes int `yaml:"max_value_bytes"`
	// MaxSpineRows bounds the rows of a spine sent to historical features
	// over HTTP, which the node holds in memory with the join (~100 bytes a
	// row plus its text). Default 1,000,000; `tally export` reads bigger
	// spines from files beside the node.
	MaxSpineRows int `yaml:"max_spine_rows"`
	// MaxSpineBytes bounds a spine's decoded size (8 bytes a cell plus its
	// text), so a small compressed Parquet spine cannot expand to
	// gigabytes. Default 256 MiB.
	MaxSpineBytes int64 `yaml:"max_spine_bytes"`
	// StallTimeout is how long a streamed answer (historical features) may
	// wait on a client that stops reading before the node cuts it and frees
	// the join for others. Default 30s.
	StallTimeout time.Duration `yaml:"stall_timeout"`
}

// DefaultConfig returns the settings `tally serve` uses with no flags.
func DefaultConfig() Config {
	return Config{
		Listen:    "127.0.0.1:8080",
		DataDir:   "./tally-data",
		Workspace: "default",
		MaxFuture: 5 * time.Minute,
		Durability: store.Durability{
			Fsync:         "always",
			SyncEvery:     100 * time.Millisecond,
			SegmentSize:   64 << 20,
			SnapshotEvery: 10 * time.Minute,
			Retention:     7 * 24 * time.Hour,

			// A restart replays at most about this many events after the
			// newest snapshot (README "Durability").
			SnapshotEveryEvents: 2_000_000,
		},
		Limits: Limits{
			MaxBodyBytes:   32 << 20,
			MaxHeaderBytes: 8 << 10,
			MaxRecords:     100_000,
			MaxBatch:       1000,
			MaxKeys:        64,
			MaxTableRows:   1_000_000,
			ReadTimeout:    10 * time.Second,
			WriteTimeout:   10 * time.Second,
			IdleTimeout:    60 * time.Second,
			MaxConnsPerIP:  1024,
			MaxKeyBytes:    1 << 10,
			MaxValueBytes:  64 << 10,
			MaxSpineRows:   1_000_000,
			MaxSpineBytes:  256 << 20,
			StallTimeout:   30 * time.Second,
		},
	}
}

// LoadConfig reads a YAML config file over DefaultConfig.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return DefaultConfig(), fmt.Errorf("read config: %w", err)
	}
	return parseConfig(path, data)
}

// parseConfig reads data, the config file at path, over DefaultConfig.
func parseConfig(path string, data []byte) (Config, error) {
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	switch err := dec.Decode(&cfg); {
	case err == io.EOF: // empty, or only comments: the defaults
	case err != nil:
		return cfg, fmt.Errorf("config %s: %w", path, err)
	default:
		for { // a second document would be ignored: refuse it
			var more yaml.Node
			err := dec.Decode(&more)
			if err == io.EOF {
				break
			}
			if err != nil || len(more.Content) > 0 && more.Content[0].Tag != "!!null" {
				return cfg, fmt.Errorf("config %s: more than one YAML document (a --- line): put every setting in one", path)
			}
		}
	}
	return cfg, cfg.Validate()
}

// Scope is a permission an API key carries.
type Scope uint8

// Scopes. Admin implies the others.
const (
	ScopeIngest Scope = 1 << iota
	ScopeRead
	ScopeAdmin
)

func parseScope(s string) (Scope, error) {
	switch s {
	case "ingest":
		return ScopeIngest, nil
	case "read":
		return ScopeRead, nil
	case "admin":
		return ScopeAdmin, nil
	}
	return 0, fmt.Errorf("unknown scope %q: use ingest, read or admin", s)
}

// Validate checks the config and says what to change.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen %q: %w (want host:port, e.g. 127.0.0.1:8080)", c.Listen, err)
	}
	for i, k := range c.APIKeys {
		if err := checkKey(k.Key); err != nil {
			return fmt.Errorf("api_keys[%d] (%s): %w", i, k.Name, err)
		}
		if len(k.Scopes) == 0 {
			return fmt.Errorf("api_keys[%d] (%s): no scopes; give one or more of ingest, read, admin", i, k.Name)
		}
		for _, s := range k.Scopes {
			if _, err := parseScope(s); err != nil {
				return fmt.Errorf("api_keys[%d] (%s): %w", i, k.Name, err)
			}
		}
	}
	if len(c.APIKeys) == 0 && !c.Insecure && !isLoopback(c.Listen) {
		return fmt.Errorf("listen %s: no api_keys are configured, so tally only listens on loopback; configure api_keys, or pass --insecure to serve %s without authentication", c.Listen, c.Listen)
	}
	switch c.Durability.Fsync {
	case "always", "interval", "never":
	default:
		return fmt.Errorf("durability.fsync %q: use always, interval or never", c.Durability.Fsync)
	}
	if c.MaxFuture < 0 {
		return fmt.Errorf("max_future %s: use 0 or more (how far ahead of the node's clock an event may be)", c.MaxFuture)
	}
	if d := c.Durability; d.SyncEvery < 0 || d.SnapshotEvery < 0 || d.Retention < 0 {
		return fmt.Errorf("durability: sync_every %s, snapshot_every %s, retention %s: use 0 or more (snapshot_every 0: no snapshots; retention 0: no archive beyond the snapshots)", d.SyncEvery, d.SnapshotEvery, d.Retention)
	}
	if c.Durability.SnapshotEveryEvents < 0 {
		return fmt.Errorf("durability.snapshot_every_events %d: use 0 (snapshots by time only) or a number of events", c.Durability.SnapshotEveryEvents)
	}
	if c.Durability.SegmentSize < 1<<16 {
		return fmt.Errorf("durability.segment_size %d: use at least 65536 bytes", c.Durability.SegmentSize)
	}
	l := c.Limits
	if l.MaxBodyBytes <= 0 || l.MaxHeaderBytes <= 0 || l.MaxRecords <= 0 || l.MaxBatch <= 0 || l.MaxKeys <= 0 || l.MaxTableRows <= 0 {
		return fmt.Errorf("limits: every limit must be positive")
	}
	if l.MaxConns < 0 || l.MaxConnsPerIP < 0 || l.MaxRequestsConn < 0 {
		return fmt.Errorf("limits: max_conns, max_conns_per_ip and max_requests_conn must be 0 or more")
	}
	if l.ReadTimeout <= 0 || l.WriteTimeout <= 0 || l.IdleTimeout <= 0 {
		return fmt.Errorf("limits: read, write and idle timeouts must be positive (they are what stops slow clients)")
	}
	if l.MaxKeyBytes <= 0 || l.MaxValueBytes <= 0 || l.MaxSpineRows <= 0 || l.MaxSpineBytes <= 0 || l.StallTimeout <= 0 {
		return fmt.Errorf("limits: max_key_bytes, max_value_bytes, max_spine_rows, max_spine_bytes and stall_timeout must be positive")
	}
	return nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// MinKeyBytes is the shortest plain API key a config may hold.
const MinKeyBytes = 16

// emptyDigest is the SHA-256 of the empty string: what hashing an unset
// variable gives.
var emptyDigest = sha256.Sum256(nil)

// checkKey refuses a configured key no client should be able to present:
// empty, shorter than MinKeyBytes, surrounded by spaces (presented keys are
// trimmed of spaces and tabs, so it could never match), or the digest of
// the empty string.
func checkKey(k string) error {
	if strings.HasPrefix(k, "sha256:") {
		_, err := keyDigest(k)
		return err
	}
	switch {
	case k == "":
		return errors.New("key is empty (an unset variable?); use at least 16 random characters")
	case strings.TrimSpace(k) != k:
		return errors.New("key begins or ends with white space; remove it")
	case len(k) < MinKeyBytes:
		return fmt.Errorf("key is %d bytes; use at least %d random characters", len(k), MinKeyBytes)
	}
	return nil
}

// keyDigest is what the node keeps of a key: its SHA-256, so that comparing
// is constant-time over fixed-size values whatever the presented length.
func keyDigest(k string) ([32]byte, error) {
	if hexd, ok := strings.CutPrefix(k, "sha256:"); ok {
		var d [32]byte
		raw, err := hex.DecodeString(hexd)
		if err != nil || len(raw) != 32 {
			return d, fmt.Errorf("sha256 key digest must be 64 hex characters")
		}
		copy(d[:], raw)
		if d == emptyDigest {
			return d, errors.New("sha256 key digest is the SHA-256 of the empty string (was the key variable unset?); hash a key of at least 16 random characters")
		}
		return d, nil
	}
	return sha256.Sum256([]byte(k)), nil
}
