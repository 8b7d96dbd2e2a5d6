package faultproxy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections from its listen address to one target,
// applying the fault rules of each connection's source IP. Safe for
// concurrent use.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	rules   map[string]rule
	changed chan struct{} // closed and replaced at every rule change
	conns   map[*pconn]struct{}
	closed  bool

	wg sync.WaitGroup
}

type rule struct {
	blackhole, refuse bool
	delay, jitter     time.Duration
	drop              float64
}

// merge is the stronger of each field of r and o.
func (r rule) merge(o rule) rule {
	return rule{
		blackhole: r.blackhole || o.blackhole,
		refuse:    r.refuse || o.refuse,
		delay:     max(r.delay, o.delay),
		jitter:    max(r.jitter, o.jitter),
		drop:      max(r.drop, o.drop),
	}
}

// New listens on listen (e.g. "127.0.0.1:0") and forwards every accepted
// connection to target, passing bytes until a rule says otherwise.
func New(listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen on %s: %w", listen, err)
	}
	p := &Proxy{ln: ln, target: target, rules: map[string]rule{}, changed: make(chan struct{}), conns: map[*pconn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address to dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Blackhole stops every byte (and close) between fromIP ("" = everyone) and
// the target, on existing and new connections, until Heal.
func (p *Proxy) Blackhole(fromIP string) { p.set(fromIP, func(r *rule) { r.blackhole = true }) }

// Refuse resets fromIP's existing connections now and new ones at accept,
// until Heal.
func (p *Proxy) Refuse(fromIP string) {
	p.set(fromIP, func(r *rule) { r.refuse = true })
	p.mu.Lock()
	var victims []*pconn
	for c := range p.conns {
		if fromIP == "" || c.ip == fromIP {
			victims = append(victims, c)
		}
	}
	p.mu.Unlock()
	for _, c := range victims {
		c.kill(true)
	}
}

// Delay delivers each chunk from or to fromIP d plus a uniform [0, jitter]
// after it was read, keeping order.
func (p *Proxy) Delay(fromIP string, d, jitter time.Duration) {
	p.set(fromIP, func(r *rule) { r.delay, r.jitter = d, jitter })
}

// DropRate resets a connection of fromIP with probability rate (0..1) before
// each chunk it would deliver.
func (p *Proxy) DropRate(fromIP string, rate float64) {
	p.set(fromIP, func(r *rule) { r.drop = rate })
}

// Heal removes fromIP's rule; Heal("") removes every rule. Stalled bytes flow
// again.
func (p *Proxy) Heal(fromIP string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if fromIP == "" {
		clear(p.rules)
	} else {
		delete(p.rules, fromIP)
	}
	p.notify()
}

func (p *Proxy) set(ip string, f func(*rule)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rules[ip]
	f(&r)
	p.rules[ip] = r
	p.notify()
}

// notify wakes every waiter on a rule change. p.mu must be held.
func (p *Proxy) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// rule is the rule in force for ip, and a channel closed at the next change.
func (p *Proxy) rule(ip string) (rule, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rules[""].merge(p.rules[ip]), p.changed
}

// Close stops accepting, resets every connection and waits for the proxy's
// goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	conns := p.conns
	p.conns = map[*pconn]struct{}{}
	p.mu.Unlock()
	err := p.ln.Close()
	for c := range conns {
		c.kill(true)
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		ip := client.RemoteAddr().(*net.TCPAddr).IP.String()
		if r, _ := p.rule(ip); r.refuse {
			reset(client)
			continue
		}
		p.wg.Add(1)
		go p.forward(client, ip)
	}
}

// forward dials the target for client and runs both directions.
func (p *Proxy) forward(client net.Conn, ip string) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		reset(client)
		return
	}
	c := &pconn{ip: ip, client: client, server: server, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.kill(true)
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	var wg sync.WaitGroup
	var halves sync.WaitGroup
	halves.Add(2)
	for _, d := range [][2]net.Conn{{client, server}, {server, client}} {
		ch := make(chan chunk, 64)
		wg.Add(2)
		go func() { defer wg.Done(); c.read(d[0], ch) }()
		go func() { defer wg.Done(); defer halves.Done(); p.write(c, d[1], ch) }()
	}
	halves.Wait() // both directions delivered their end, or the conn was killed
	c.kill(false)
	wg.Wait()
}

// chunk is bytes read from one side (or its end, eof) and when.
type chunk struct {
	b   []byte
	at  time.Time
	eof bool
}

// pconn is one proxied connection.
type pconn struct {
	ip             string
	client, server net.Conn
	done           chan struct{}
	once           sync.Once
}

// kill closes both sides once; rst resets them instead of a clean close.
func (c *pconn) kill(rst bool) {
	c.once.Do(func() {
		close(c.done)
		if rst {
			reset(c.client)
			reset(c.server)
			return
		}
		c.client.Close()
		c.server.Close()
	})
}

func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func (c *pconn) read(src net.Conn, ch chan<- chunk) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			select {
			case ch <- chunk{b: append([]byte(nil), buf[:n]...), at: time.Now()}:
			case <-c.done:
				return
			}
		}
		if err != nil {
			select {
			case ch <- chunk{eof: true, at: time.Now()}:
			case <-c.done:
			}
			return
		}
	}
}

// write delivers ch's chunks to dst under the rules in force at delivery.
func (p *Proxy) write(c *pconn, dst net.Conn, ch <-chan chunk) {
	var last time.Time // delivery time of the previous chunk: order is kept
	for {
		var k chunk
		select {
		case k = <-ch:
		case <-c.done:
			return
		}
		r, ok := p.pass(c)
		if !ok {
			return
		}
		if r.delay > 0 || r.jitter > 0 {
			at := k.at.Add(r.delay)
			if r.jitter > 0 {
				at = at.Add(rand.N(r.jitter + 1))
			}
			if at.Before(last) {
				at = last
			}
			last = at
			if wait := time.Until(at); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-c.done:
					t.Stop()
					return
				}
			}
			if r, ok = p.pass(c); !ok { // a blackhole may have begun meanwhile
				return
			}
		}
		if r.drop > 0 && rand.Float64() < r.drop {
			c.kill(true)
			return
		}
		if k.eof {
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
		if _, err := dst.Write(k.b); err != nil {
			c.kill(true)
			return
		}
	}
}

// pass waits while c is blackholed and returns the rule in force; false if
// c was killed (or is refused now, which kills it).
func (p *Proxy) pass(c *pconn) (rule, bool) {
	for {
		r, changed := p.rule(c.ip)
		if r.refuse {
			c.kill(true)
			return r, false
		}
		if !r.blackhole {
			return r, true
		}
		select {
		case <-changed:
		case <-c.done:
			return r, false
		}
	}
}
