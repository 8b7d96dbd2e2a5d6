package transport

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// Wire format of the handshake; see doc.go for the exchange.
const (
	magic        = "TLYC"
	version      = 1
	nonceLen     = 32
	macLen       = sha256.Size
	maxIDLen     = 64 // cluster id and group name, bytes
	maxReasonLen = 200

	statusOK     = 0
	statusRefuse = 1

	// helloMax is the largest hello: magic, version, id, group, nonce.
	helloMax = len(magic) + 1 + 1 + maxIDLen + 1 + maxIDLen + nonceLen
)

// Labels keep the two proofs apart, so neither side's proof can be reflected
// back as the other's.
var (
	labelClient = []byte("tally-cluster/v1 client")
	labelServer = []byte("tally-cluster/v1 server")
)

// hello is the dialer's first message.
type hello struct {
	clusterID string
	group     string
	nonce     [nonceLen]byte
}

// errMalformed is a handshake that is not tally's (or a corrupt one).
var errMalformed = errors.New("not a tally cluster handshake")

// appendHello encodes h.
func appendHello(b []byte, h *hello) []byte {
	b = append(b, magic...)
	b = append(b, version)
	b = append(b, byte(len(h.clusterID)))
	b = append(b, h.clusterID...)
	b = append(b, byte(len(h.group)))
	b = append(b, h.group...)
	return append(b, h.nonce[:]...)
}

// readHello reads and decodes a hello from r, reading exactly its bytes and at
// most helloMax. It also returns the raw bytes (the transcript's start).
func readHello(r io.Reader) (*hello, []byte, error) {
	buf := make([]byte, 0, helloMax)
	head := buf[:len(magic)+2]
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, nil, err
	}
	if string(head[:len(magic)]) != magic {
		return nil, nil, errMalformed
	}
	if head[len(magic)] != version {
		return nil, nil, fmt.Errorf("handshake version %d, this node speaks %d: run the same tally version on every node", head[len(magic)], version)
	}
	idLen := int(head[len(magic)+1])
	if idLen == 0 || idLen > maxIDLen {
		return nil, nil, errMalformed
	}
	buf = buf[:len(head)+idLen+1]
	if _, err := io.ReadFull(r, buf[len(head):]); err != nil {
		return nil, nil, err
	}
	groupLen := int(buf[len(buf)-1])
	if groupLen == 0 || groupLen > maxIDLen {
		return nil, nil, errMalformed
	}
	n := len(buf)
	buf = buf[:n+groupLen+nonceLen]
	if _, err := io.ReadFull(r, buf[n:]); err != nil {
		return nil, nil, err
	}
	h, err := parseHello(buf)
	return h, buf, err
}

// parseHello decodes one whole hello; trailing bytes are an error.
func parseHello(b []byte) (*hello, error) {
	if len(b) < len(magic)+2 || string(b[:len(magic)]) != magic {
		return nil, errMalformed
	}
	if b[len(magic)] != version {
		return nil, fmt.Errorf("handshake version %d, this node speaks %d: run the same tally version on every node", b[len(magic)], version)
	}
	b = b[len(magic)+1:]
	id, b, ok := lenPrefixed(b)
	if !ok {
		return nil, errMalformed
	}
	group, b, ok := lenPrefixed(b)
	if !ok || len(b) != nonceLen {
		return nil, errMalformed
	}
	h := &hello{clusterID: string(id), group: string(group)}
	copy(h.nonce[:], b)
	return h, nil
}

// lenPrefixed splits a 1-byte-length-prefixed name of 1..maxIDLen bytes off b.
func lenPrefixed(b []byte) (name, rest []byte, ok bool) {
	if len(b) < 1 {
		return nil, nil, false
	}
	n := int(b[0])
	if n == 0 || n > maxIDLen || len(b) < 1+n {
		return nil, nil, false
	}
	return b[1 : 1+n], b[1+n:], true
}

// proof is HMAC-SHA256(key, label || hello || server nonce).
func proof(key, label, helloRaw, serverNonce []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(label)
	m.Write(helloRaw)
	m.Write(serverNonce)
	return m.Sum(nil)
}

func newNonce() (n [nonceLen]byte) {
	if _, err := rand.Read(n[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}

// appendRefusal encodes a refusal with a one-line reason.
func appendRefusal(b []byte, reason string) []byte {
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	b = append(b, statusRefuse, byte(len(reason)))
	return append(b, reason...)
}

// readStatus reads a status byte; a refusal's reason becomes the error.
func readStatus(r io.Reader) error {
	var st [2]byte
	if _, err := io.ReadFull(r, st[:1]); err != nil {
		return err
	}
	switch st[0] {
	case statusOK:
		return nil
	case statusRefuse:
		if _, err := io.ReadFull(r, st[1:2]); err != nil {
			return err
		}
		reason := make([]byte, min(int(st[1]), maxReasonLen))
		if _, err := io.ReadFull(r, reason); err != nil {
			return err
		}
		return &RefusedError{Reason: string(reason)}
	}
	return errMalformed
}

// RefusedError is a peer's refusal of a handshake, with the reason it sent.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "refused by peer: " + e.Reason }
