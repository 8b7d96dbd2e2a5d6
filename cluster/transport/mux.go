package transport

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hashicorp/raft"
)

// Config is a Mux's identity and limits.
type Config struct {
	// ClusterID names the cluster; a peer whose id differs is refused.
	// 1..64 bytes.
	ClusterID string
	// Key is the shared cluster key, at least 16 bytes. Peers prove they
	// hold it (HMAC-SHA256 over both nonces); it never crosses the wire.
	Key []byte
	// Advertise is the "host:port" peers reach this node's cluster port at
	// (what raft reports as this node's address, e.g. in Leader()); empty
	// means the listener's address. Either must have a specific IP, not
	// 0.0.0.0 or ::.
	Advertise string
	// BindIP, if set, is the local IP outbound dials bind to (e.g.
	// "127.0.0.12"), so an in-test proxy can tell nodes apart.
	BindIP string
	// Logger receives refused handshakes (at most one line per second) and
	// accept errors; nil means slog.Default().
	Logger *slog.Logger
	// HandshakeTimeout bounds an inbound handshake from accept to the
	// last byte; 0 means 5s.
	HandshakeTimeout time.Duration
	// MaxHandshakes bounds inbound handshakes in progress; a connection
	// beyond it is closed at once and counted as refused. 0 means 64.
	MaxHandshakes int
	// Metrics receives tally_cluster_handshakes_refused_total{reason} and
	// tally_cluster_conns_accepted_total; nil means a private set.
	Metrics *metrics.Set
}

// Mux is one TCP listener (the node's cluster port) carrying the streams of
// many Raft groups. Each connection starts with a mutually authenticated
// handshake naming its group (doc.go) and is then handed, as a plain
// net.Conn, to that group's Layer. A Mux is safe for concurrent use.
type Mux struct {
	cfg Config
	ln  net.Listener
	adv net.Addr // what Layer.Addr reports
	sem chan struct{}

	mu     sync.Mutex
	layers map[string]*Layer
	closed bool

	wg      sync.WaitGroup
	done    chan struct{}
	refused atomic.Uint64

	lastLog    atomic.Int64 // unix nanos of the last refusal logged
	suppressed atomic.Uint64

	// dials holds, by peer address, the last handshake this node dialed
	// that reached the key check: passed, or failed on the key.
	dialsMu sync.Mutex
	dials   map[string]dialOutcome

	set      *metrics.Set
	accepted *metrics.Counter
}

// Refusal reasons, the values of the metric's reason label.
const (
	reasonMalformed = "malformed"
	reasonClusterID = "wrong_cluster_id"
	reasonKey       = "bad_key"
	reasonGroup     = "unknown_group"
	reasonTimeout   = "timeout"
	reasonBusy      = "busy"
	reasonPeerKey   = "peer_bad_key" // outbound: the peer failed to prove the key
)

// whyBadKey is the reason a node refuses a peer that failed to prove the
// key; a dialer recognizes its own key refused by it.
const whyBadKey = "bad cluster key: this node's differs"

// errPeerKey is a dialed peer that did not prove the cluster key.
var errPeerKey = errors.New("the peer did not prove the cluster key: it is not a node of this cluster")

// dialOutcome is the last handshake dialed to one peer address that
// reached the key check.
type dialOutcome struct {
	keyFailed bool
	at        time.Time
}

// Listen opens the cluster port at addr ("host:port"; port 0 picks one) and
// starts accepting. It refuses a Config without a cluster id or with a key
// shorter than 16 bytes.
func Listen(addr string, cfg Config) (*Mux, error) {
	if cfg.ClusterID == "" || len(cfg.ClusterID) > maxIDLen {
		return nil, fmt.Errorf("cluster transport: cluster id %q: give 1 to %d bytes", cfg.ClusterID, maxIDLen)
	}
	if len(cfg.Key) < 16 {
		return nil, fmt.Errorf("cluster transport: cluster key of %d bytes: give at least 16 random bytes, the same on every node", len(cfg.Key))
	}
	if cfg.BindIP != "" && net.ParseIP(cfg.BindIP) == nil {
		return nil, fmt.Errorf("cluster transport: bind IP %q is not an IP address", cfg.BindIP)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 5 * time.Second
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = 64
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	cfg.Key = append([]byte(nil), cfg.Key...)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster transport: listen on %s: %w", addr, err)
	}
	adv := ln.Addr()
	if cfg.Advertise != "" {
		if adv, err = net.ResolveTCPAddr("tcp", cfg.Advertise); err != nil {
			ln.Close()
			return nil, fmt.Errorf("cluster transport: advertise address %q: %w", cfg.Advertise, err)
		}
	}
	if ip := adv.(*net.TCPAddr).IP; ip == nil || ip.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("cluster transport: peers cannot reach %s: listen on a specific IP or set the advertise address", adv)
	}
	m := &Mux{
		cfg: cfg, ln: ln, adv: adv, sem: make(chan struct{}, cfg.MaxHandshakes),
		layers: map[string]*Layer{}, done: make(chan struct{}), dials: map[string]dialOutcome{},
		set: cfg.Metrics, accepted: cfg.Metrics.GetOrCreateCounter("tally_cluster_conns_accepted_total"),
	}
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

// Addr is the listener's address.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Advertise is the address peers reach this node at: Config.Advertise, or the
// listener's address.
func (m *Mux) Advertise() net.Addr { return m.adv }

// Refused is the number of handshakes refused so far: inbound ones (malformed,
// wrong cluster id, bad key, unknown group, timed out, too many at once) and
// outbound ones whose peer failed to prove the key.
func (m *Mux) Refused() uint64 { return m.refused.Load() }

// Layer returns the stream layer of group, registering it if needed: from now
// on, inbound connections naming group are handed to its Accept. It may be
// called before or after connections arrive (until then they are refused,
// and raft retries). Closing the layer ends its Accept with an error and
// unregisters it; the Mux and other groups keep serving, and a later Layer
// call registers the group afresh. group is 1..64 bytes.
func (m *Mux) Layer(group string) *Layer {
	if group == "" || len(group) > maxIDLen {
		panic(fmt.Sprintf("cluster transport: group name %q: give 1 to %d bytes", group, maxIDLen))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.layers[group]; l != nil {
		return l
	}
	l := &Layer{m: m, group: group, conns: make(chan net.Conn), done: make(chan struct{})}
	if m.closed {
		l.closeOnce.Do(func() { close(l.done) })
		return l
	}
	m.layers[group] = l
	return l
}

// Transport is raft.NewNetworkTransport over Layer(group): maxPool pooled
// conns per peer, timeout for each RPC's I/O (0 = none) and for dials.
// Closing the transport closes the layer.
func (m *Mux) Transport(group string, maxPool int, timeout time.Duration, logOut io.Writer) *raft.NetworkTransport {
	return raft.NewNetworkTransport(m.Layer(group), maxPool, timeout, logOut)
}

// Close stops the listener and every layer, and waits for handshakes in
// progress to end. Connections already handed to layers stay open; their
// transports own them.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	layers := m.layers
	m.layers = map[string]*Layer{}
	m.mu.Unlock()
	close(m.done)
	err := m.ln.Close()
	for _, l := range layers {
		l.closeOnce.Do(func() { close(l.done) })
	}
	m.wg.Wait()
	return err
}

func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	var delay time.Duration
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || !errors.Is(err, net.ErrClosed) {
				// Out of file descriptors and the like: back off, keep serving.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				m.cfg.Logger.Warn("cluster transport: accept failed; retrying", "err", err, "in", delay)
				select {
				case <-time.After(delay):
					continue
				case <-m.done:
					return
				}
			}
			return
		}
		delay = 0
		select {
		case m.sem <- struct{}{}:
		default:
			m.refuse(reasonBusy, c.RemoteAddr(), "too many handshakes in progress")
			c.Close()
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			l := m.serve(c)
			<-m.sem // the slot bounds unauthenticated peers only
			if l != nil {
				m.handOff(l, c)
			}
		}()
	}
}

// serve runs the accepting side of the handshake on c and returns the layer
// of the group c named, or refuses and closes c and returns nil.
func (m *Mux) serve(c net.Conn) *Layer {
	c.SetDeadline(time.Now().Add(m.cfg.HandshakeTimeout))
	stop := closeOnDone(c, m.done)
	defer stop()
	// The first answer starts with magic and version, later ones do not.
	header := append([]byte(magic), version)
	// A refusal is counted before the peer can see it, so nobody observes a
	// refused peer before the count.
	refuse := func(reason, why string) {
		m.refuse(reason, c.RemoteAddr(), why)
		c.Write(appendRefusal(header, why))
		closeAfterReason(c)
	}
	drop := func(reason, why string) {
		m.refuse(reason, c.RemoteAddr(), why)
		c.Close()
	}
	h, raw, err := readHello(c)
	if err != nil {
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			drop(reasonTimeout, "handshake not finished in "+m.cfg.HandshakeTimeout.String())
		case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed):
			drop(reasonMalformed, "closed during handshake")
		default:
			refuse(reasonMalformed, err.Error())
		}
		return nil
	}
	if h.clusterID != m.cfg.ClusterID {
		refuse(reasonClusterID, fmt.Sprintf("wrong cluster id %q: this node is in cluster %q", h.clusterID, m.cfg.ClusterID))
		return nil
	}
	sn := newNonce()
	msg := append(header, statusOK)
	msg = append(msg, sn[:]...)
	header = nil
	if _, err := c.Write(msg); err != nil {
		drop(reasonMalformed, "write challenge: "+err.Error())
		return nil
	}
	var got [macLen]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		drop(reasonTimeout, "no proof of the cluster key: "+err.Error())
		return nil
	}
	if !hmac.Equal(got[:], proof(m.cfg.Key, labelClient, raw, sn[:])) {
		refuse(reasonKey, whyBadKey)
		return nil
	}
	m.mu.Lock()
	l := m.layers[h.group]
	m.mu.Unlock()
	if l == nil {
		refuse(reasonGroup, fmt.Sprintf("group %q is not open on this node (yet)", h.group))
		return nil
	}
	msg = append(msg[:0], statusOK)
	msg = append(msg, proof(m.cfg.Key, labelServer, raw, sn[:])...)
	if _, err := c.Write(msg); err != nil {
		c.Close()
		return nil
	}
	c.SetDeadline(time.Time{})
	return l
}

// handOff gives an authenticated c to l's Accept, or closes it if l or the
// Mux closes first.
func (m *Mux) handOff(l *Layer, c net.Conn) {
	select {
	case l.conns <- c:
		m.accepted.Inc()
	case <-l.done:
		c.Close()
	case <-m.done:
		c.Close()
	}
}

// closeAfterReason closes c so that the reason just written arrives: closing
// a socket with unread input sends a reset, which can destroy the reason on
// its way. It shuts down writing, then drains at most 4 KiB for at most 100ms.
func closeAfterReason(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
		tc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		io.Copy(io.Discard, io.LimitReader(tc, 4096))
	}
	c.Close()
}

// closeOnDone closes c when done closes, until the returned stop is called, so a
// handshake does not outlive Close.
func closeOnDone(c net.Conn, done <-chan struct{}) (stop func()) {
	fin := make(chan struct{})
	var once sync.Once
	go func() {
		select {
		case <-done:
			c.Close()
		case <-fin:
		}
	}()
	return func() { once.Do(func() { close(fin) }) }
}

// refuse counts a refusal and logs it, at most one line per second.
func (m *Mux) refuse(reason string, from net.Addr, why string) {
	m.refused.Add(1)
	m.set.GetOrCreateCounter(`tally_cluster_handshakes_refused_total{reason="` + reason + `"}`).Inc()
	now := time.Now().UnixNano()
	last := m.lastLog.Load()
	if now-last < int64(time.Second) || !m.lastLog.CompareAndSwap(last, now) {
		m.suppressed.Add(1)
		return
	}
	m.cfg.Logger.Warn("cluster transport: handshake refused", "from", from.String(), "reason", why,
		"refusals_not_logged", m.suppressed.Swap(0))
}

// dial connects to addr and runs the dialing side of the handshake for
// group, all within timeout (0 = the handshake timeout).
func (m *Mux) dial(group, addr string, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = m.cfg.HandshakeTimeout
	}
	d := net.Dialer{Timeout: timeout}
	if m.cfg.BindIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(m.cfg.BindIP)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster transport: dial %s for group %s: %w", addr, group, err)
	}
	err = m.clientHandshake(c, group, timeout)
	var re *RefusedError
	keyFailed := errors.Is(err, errPeerKey) || errors.As(err, &re) && re.Reason == whyBadKey
	if err == nil || keyFailed {
		m.dialsMu.Lock()
		m.dials[addr] = dialOutcome{keyFailed: keyFailed, at: time.Now()}
		m.dialsMu.Unlock()
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster transport: handshake with %s for group %s: %w", addr, group, err)
	}
	return c, nil
}

// KeyRefusedBy returns the peer addresses whose last handshake this node
// dialed in the past window failed on the cluster key (the peer refused
// this node's proof, or did not prove its own), sorted, if no handshake
// it dialed in that window passed the key check; else nil. A peer that
// could not be reached says nothing either way. Non-empty, the nodes this
// one dials do not share its key.
func (m *Mux) KeyRefusedBy(window time.Duration) []string {
	since := time.Now().Add(-window)
	m.dialsMu.Lock()
	defer m.dialsMu.Unlock()
	var addrs []string
	for addr, d := range m.dials {
		if d.at.Before(since) {
			continue
		}
		if !d.keyFailed {
			return nil
		}
		addrs = append(addrs, addr)
	}
	slices.Sort(addrs)
	return addrs
}

func (m *Mux) clientHandshake(c net.Conn, group string, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	stop := closeOnDone(c, m.done)
	defer stop()
	h := &hello{clusterID: m.cfg.ClusterID, group: group, nonce: newNonce()}
	raw := appendHello(make([]byte, 0, helloMax), h)
	if _, err := c.Write(raw); err != nil {
		return err
	}
	var head [len(magic) + 1]byte
	if _, err := io.ReadFull(c, head[:]); err != nil {
		return err
	}
	if string(head[:len(magic)]) != magic || head[len(magic)] != version {
		return fmt.Errorf("the peer is not a tally %d cluster port", version)
	}
	if err := readStatus(c); err != nil {
		return err
	}
	var sn [nonceLen]byte
	if _, err := io.ReadFull(c, sn[:]); err != nil {
		return err
	}
	if _, err := c.Write(proof(m.cfg.Key, labelClient, raw, sn[:])); err != nil {
		return err
	}
	if err := readStatus(c); err != nil {
		return err
	}
	var got [macLen]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		return err
	}
	if !hmac.Equal(got[:], proof(m.cfg.Key, labelServer, raw, sn[:])) {
		m.refuse(reasonPeerKey, c.RemoteAddr(), "the peer did not prove the cluster key")
		return errPeerKey
	}
	return c.SetDeadline(time.Time{})
}

// Layer is one group's raft.StreamLayer on a Mux.
type Layer struct {
	m         *Mux
	group     string
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

var _ raft.StreamLayer = (*Layer)(nil)

// ErrLayerClosed is returned by Accept after the layer or its Mux closed.
var ErrLayerClosed = fmt.Errorf("cluster transport: group layer closed: %w", net.ErrClosed)

// Accept waits for the next authenticated connection naming this group.
func (l *Layer) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, ErrLayerClosed
	}
}

// Close unregisters the group and ends Accept; the Mux keeps serving.
func (l *Layer) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	l.m.mu.Lock()
	if l.m.layers[l.group] == l {
		delete(l.m.layers, l.group)
	}
	l.m.mu.Unlock()
	return nil
}

// Addr is the Mux's advertised address (raft's LocalAddr for this group).
func (l *Layer) Addr() net.Addr { return l.m.adv }

// Dial connects to the cluster port at address and authenticates, naming
// this group; timeout bounds the dial and the handshake.
func (l *Layer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return l.m.dial(l.group, string(address), timeout)
}
