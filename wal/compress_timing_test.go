package wal

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// benchSegment is the plain bytes of a 16 MiB segment of ingest-like
// records (100 JSON transactions each), or of the file named by
// TALLY_WAL_BENCH_SEGMENT (a real node's plain segment).
func benchSegment(b *testing.B) []byte {
	if p := os.Getenv("TALLY_WAL_BENCH_SEGMENT"); p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		return data
	}
	rng := rand.New(rand.NewPCG(1, 2))
	seg := segmentHeader(1)
	var rec strings.Builder
	for i := uint64(1); len(seg) < 16<<20; i++ {
		rec.Reset()
		for k := range 100 {
			fmt.Fprintf(&rec, `{"user_id":"u%d","merchant":"m%d","category":"c%d","amt":%.2f,"lat":%.4f,"long":%.4f,"timestamp":%d}`,
				rng.IntN(100000), rng.IntN(5000), rng.IntN(20), rng.Float64()*500, 40+rng.Float64()*10, rng.Float64()*10, 1700000000000+int64(i)*100+int64(k))
		}
		at := len(seg)
		seg = appendFrame(seg, i, []byte(rec.String()))
		setCommit(seg, at)
	}
	return seg
}

// BenchmarkCompressedSegment: a segment compressed as one zstd stream (the
// format before chunks, chunk=stream) and in chunks of 64 KiB to 1 MiB:
// the compression ratio (plain/compressed), and the speed, in plain bytes,
// of compressing it, of reading it as Replay does (the streaming decoder
// under segmentReader), and of decompressing it whole as Get's index does.
func BenchmarkCompressedSegment(b *testing.B) {
	plain := benchSegment(b)
	for _, chunk := range []int{0, 64 << 10, 256 << 10, 1 << 20} {
		name := "chunk=stream"
		if chunk > 0 {
			name = fmt.Sprintf("chunk=%dKiB", chunk>>10)
		}
		compress := func() []byte {
			var out bytes.Buffer
			if chunk == 0 {
				enc, err := zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
				if err != nil {
					b.Fatal(err)
				}
				enc.Write(plain)
				enc.Close()
				return out.Bytes()
			}
			defer func(c int) { zstdChunk = c }(zstdChunk)
			zstdChunk = chunk
			if err := writeChunks(&out, bytes.NewReader(plain)); err != nil {
				b.Fatal(err)
			}
			return out.Bytes()
		}
		z := compress()
		b.Run(name+"/compress", func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			for b.Loop() {
				compress()
			}
			b.ReportMetric(float64(len(plain))/float64(len(z)), "ratio")
		})
		b.Run(name+"/replay", func(b *testing.B) {
			mfs := newMemFS()
			mfs.MkdirAll("/d", 0o755)
			mfs.WriteFile("/d/"+segmentName(1)+".zst", z)
			s := segmentInfo{first: 1, name: segmentName(1) + ".zst", compressed: true}
			b.SetBytes(int64(len(plain)))
			b.ReportAllocs()
			for b.Loop() {
				sr, err := openSegmentReader(mfs, "/d", s)
				if err != nil {
					b.Fatal(err)
				}
				for {
					if _, err := sr.frame(); err != nil {
						if err != errEnd {
							b.Fatal(err)
						}
						break
					}
				}
				sr.close()
			}
		})
		b.Run(name+"/whole", func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			data := make([]byte, len(plain))
			for b.Loop() {
				dec, err := zstd.NewReader(bytes.NewReader(z), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<31))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(dec, data); err != nil {
					b.Fatal(err)
				}
				dec.Close()
			}
		})
	}
}
