package transport

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzHandshake feeds arbitrary bytes to the handshake parsers and to the
// accepting side of a real Mux: nothing panics, a parsed hello re-encodes to
// the same bytes, the streaming reader never reads past helloMax, and every
// such peer is refused (a forged handshake cannot get in) and counted once.
func FuzzHandshake(f *testing.F) {
	valid := appendHello(nil, &hello{clusterID: "fuzz", group: "g1", nonce: newNonce()})
	f.Add(valid)
	f.Add(append(append([]byte{}, valid...), make([]byte, macLen)...))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{'T', 'L', 'Y', 'C', version, 0})
	f.Add([]byte{'T', 'L', 'Y', 'C', version, 255})
	f.Add([]byte{statusRefuse, 5, 'a', 'b'})
	f.Add(appendRefusal(nil, "bad cluster key"))

	cfg := testConfig("")
	cfg.ClusterID = "fuzz"
	cfg.HandshakeTimeout = time.Second
	m, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		f.Fatal(err)
	}
	defer m.Close()
	m.Layer("g1")

	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := parseHello(b); err == nil {
			if got := appendHello(nil, h); !bytes.Equal(got, b) {
				t.Fatalf("hello %x re-encodes to %x", b, got)
			}
		}
		r := bytes.NewReader(b)
		if h, raw, err := readHello(r); err == nil {
			if len(raw) > helloMax || !bytes.Equal(raw, b[:len(raw)]) || int(r.Size())-r.Len() != len(raw) {
				t.Fatalf("readHello read %d bytes, raw %x of input %x", int(r.Size())-r.Len(), raw, b)
			}
			if h2, err := parseHello(raw); err != nil || *h2 != *h {
				t.Fatalf("readHello %+v, parseHello %+v, %v", h, h2, err)
			}
		} else if int(r.Size())-r.Len() > helloMax {
			t.Fatalf("readHello read %d bytes before failing", int(r.Size())-r.Len())
		}
		if err := readStatus(bytes.NewReader(b)); err != nil {
			if re, ok := err.(*RefusedError); ok && len(re.Reason) > maxReasonLen {
				t.Fatalf("reason of %d bytes", len(re.Reason))
			}
		}

		before := m.Refused()
		server, client := net.Pipe()
		done := make(chan struct{})
		go func() {
			if l := m.serve(server); l != nil {
				t.Errorf("a forged handshake got in")
			}
			close(done)
		}()
		go io.Copy(io.Discard, client)
		client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		client.Write(b)
		client.Close()
		<-done
		if got := m.Refused() - before; got != 1 {
			t.Fatalf("input %x: %d refusals, want 1", b, got)
		}
	})
}
