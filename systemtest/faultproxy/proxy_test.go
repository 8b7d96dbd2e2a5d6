package faultproxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// echoServer echoes every connection until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func newProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := New("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// dialFrom connects to addr from the loopback IP ip.
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// quiet is how long a test waits to see that nothing arrives. Only the
// absence of bytes is judged by it; a correct proxy never fails on it.
const quiet = 300 * time.Millisecond

// echo writes msg and reads it back within 10s.
func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	readBack(t, c, msg)
}

func readBack(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("read back %q, %v; want %q", got, err, msg)
	}
}

// stalled asserts nothing comes back on c for a while and c is not closed.
func stalled(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(quiet))
	n, err := c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes, %v; want a stall (no bytes, no close)", n, err)
	}
}

// broken asserts c is closed or reset (not merely stalled).
func broken(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("connection stalled; want it closed or reset")
	}
}

const ipA, ipB = "127.0.0.11", "127.0.0.12"

func TestPasses(t *testing.T) {
	p := newProxy(t)
	c := dialFrom(t, ipA, p.Addr())
	echo(t, c, "hello")
	big := bytes.Repeat([]byte("0123456789"), 100_000)
	go c.Write(big)
	got := make([]byte, len(big))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("1 MB echo: %v", err)
	}
	// A half-close reaches the server, whose close comes back.
	c.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after half-close read %q, %v; want EOF", rest, err)
	}
}

func TestBlackhole(t *testing.T) {
	p := newProxy(t)
	a, b := dialFrom(t, ipA, p.Addr()), dialFrom(t, ipB, p.Addr())
	echo(t, a, "a0")
	echo(t, b, "b0")

	p.Blackhole(ipA)
	a.Write([]byte("a1"))
	echo(t, b, "b1") // other sources pass
	stalled(t, a)
	late := dialFrom(t, ipA, p.Addr()) // new conns are accepted, then stall
	late.Write([]byte("l1"))
	stalled(t, late)

	p.Heal(ipA) // held bytes flow again, in both directions
	readBack(t, a, "a1")
	readBack(t, late, "l1")
	echo(t, a, "a2")

	p.Blackhole("") // everyone
	b.Write([]byte("b2"))
	stalled(t, b)
	p.Heal("")
	readBack(t, b, "b2")
}

func TestRefuse(t *testing.T) {
	p := newProxy(t)
	a, b := dialFrom(t, ipA, p.Addr()), dialFrom(t, ipB, p.Addr())
	echo(t, a, "a0")
	p.Refuse(ipA)
	broken(t, a)
	// A new conn is reset right after accept: the dial itself may already
	// see the reset.
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ipA)}}
	if c, err := d.Dial("tcp", p.Addr()); err == nil {
		broken(t, c)
		c.Close()
	}
	echo(t, b, "b0")
	p.Heal(ipA)
	echo(t, dialFrom(t, ipA, p.Addr()), "a1")
}

// A round trip crosses the proxy twice, so it takes at least 2d; chunks keep
// their order under jitter.
func TestDelay(t *testing.T) {
	const d = 100 * time.Millisecond
	p := newProxy(t)
	a, b := dialFrom(t, ipA, p.Addr()), dialFrom(t, ipB, p.Addr())
	p.Delay(ipA, d, 50*time.Millisecond)
	for i := 0; i < 3; i++ {
		start := time.Now()
		echo(t, a, fmt.Sprintf("m%d", i))
		if rt := time.Since(start); rt < 2*d {
			t.Fatalf("round trip %v under a %v delay each way", rt, d)
		}
	}
	// Many small writes, each its own chunk with its own jitter, in order.
	var want bytes.Buffer
	for i := 0; i < 100; i++ {
		msg := fmt.Sprintf("<%d>", i)
		want.WriteString(msg)
		a.Write([]byte(msg))
		time.Sleep(time.Millisecond)
	}
	readBack(t, a, want.String())
	// b is not delayed by a's rule; it talks while a's bytes are in flight.
	a.Write([]byte("slow"))
	echo(t, b, "fast")
	readBack(t, a, "slow")
	p.Heal(ipA)
	echo(t, a, "healed")
}

func TestDropRate(t *testing.T) {
	p := newProxy(t)
	p.DropRate(ipA, 1)
	a := dialFrom(t, ipA, p.Addr())
	a.Write([]byte("x"))
	broken(t, a)
	echo(t, dialFrom(t, ipB, p.Addr()), "b")

	p.DropRate(ipA, 0.5)
	dropped := 0
	const conns = 40
	for i := 0; i < conns; i++ {
		c := dialFrom(t, ipA, p.Addr())
		c.Write([]byte("x"))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 1)
		if _, err := io.ReadFull(c, buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("a dropped conn stalled instead of closing")
			}
			dropped++
		}
		c.Close()
	}
	// Each conn crosses two chunks (there and back): P(pass) = 1/4.
	if dropped == 0 || dropped == conns {
		t.Fatalf("%d of %d conns dropped at rate 0.5", dropped, conns)
	}
	p.Heal(ipA)
	echo(t, dialFrom(t, ipA, p.Addr()), "healed")
}

func TestClose(t *testing.T) {
	p := newProxy(t)
	a := dialFrom(t, ipA, p.Addr())
	echo(t, a, "a")
	p.Blackhole(ipA)
	stalledConn := dialFrom(t, ipA, p.Addr())
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	broken(t, a)
	broken(t, stalledConn)
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("dial after Close succeeded")
	}
}

func TestNetPartition(t *testing.T) {
	targets := []string{echoServer(t), echoServer(t), echoServer(t)}
	n, err := NewNet(targets)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	talk := func(i, j int) bool {
		c := dialFrom(t, n.IPs[i], n.Proxies[j].Addr())
		defer c.Close()
		c.Write([]byte("p"))
		c.SetReadDeadline(time.Now().Add(quiet))
		_, err := io.ReadFull(c, make([]byte, 1))
		return err == nil
	}
	check := func(what string, want [3][3]bool) {
		t.Helper()
		for i := 0; i < 3; i++ {
			for j := 0; j < 3; j++ {
				if i != j && talk(i, j) != want[i][j] {
					t.Errorf("%s: node %d -> node %d passes = %v, want %v", what, i, j, !want[i][j], want[i][j])
				}
			}
		}
	}
	all := [3][3]bool{{true, true, true}, {true, true, true}, {true, true, true}}
	check("healthy", all)
	n.Partition([]int{0, 1}, []int{2})
	check("{0,1} | {2}", [3][3]bool{{true, true, false}, {true, true, false}, {false, false, true}})
	n.Partition([]int{0, 1}) // 2 in no side: alone
	check("{0,1} | 2 alone", [3][3]bool{{true, true, false}, {true, true, false}, {false, false, true}})
	n.Heal()
	check("healed", all)
	n.Isolate(1)
	check("1 isolated", [3][3]bool{{true, false, true}, {false, true, false}, {true, false, true}})
	n.Heal()
	check("healed again", all)
}
