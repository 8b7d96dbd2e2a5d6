package node

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"testing"
)

// TestAppendFloatMatchesStrconv checks appendFloat against strconv's 'g'
// shortest form over the edges of its layouts and random bit patterns.
func TestAppendFloatMatchesStrconv(t *testing.T) {
	vals := []float64{0, math.Copysign(0, -1), 1, -1, 0.5, 1e-4, 1.5e-4, 9.999e-5, 1e-5, 123456, 999999, 999999.5,
		1e6, -1e6, 1000001, 1234567.5, 62.09349999999999, 0.2832824691795438, -91.53408632156874, 1e21, 1e-300,
		5e-324, math.MaxFloat64, -math.SmallestNonzeroFloat64, 100, 120, 0.1, 0.01, 0.001, 0.0001, 12.5, 1e5, 1e-7}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200_000 {
		f := math.Float64frombits(r.Uint64())
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		vals = append(vals, f, float64(r.IntN(2_000_000)-1_000_000)/float64(int(1)<<r.IntN(20)), r.NormFloat64()*math.Pow(10, float64(r.IntN(14)-7)))
	}
	// Hundredths, the fast path's: every cent of [-1000, 1000], and random
	// ones up to 10^6, and values a hair off them.
	for c := -100_000; c <= 100_000; c++ {
		vals = append(vals, float64(c)/100)
	}
	for range 200_000 {
		f := float64(r.Int64N(200_000_000)-100_000_000) / 100
		vals = append(vals, f, math.Nextafter(f, math.Inf(1)), math.Nextafter(f, math.Inf(-1)), f/3)
	}
	for _, f := range vals {
		if got, want := string(appendFloat(nil, f)), strconv.FormatFloat(f, 'g', -1, 64); got != want {
			t.Fatalf("appendFloat(%b) = %s, want %s", math.Float64bits(f), got, want)
		}
	}
}

func FuzzAppendFloat(f *testing.F) {
	f.Add(uint64(0))
	f.Add(math.Float64bits(62.09349999999999))
	f.Add(math.Float64bits(1e-5))
	f.Add(math.Float64bits(1234.56))
	f.Add(math.Float64bits(-0.05))
	f.Fuzz(func(t *testing.T, bits uint64) {
		x := math.Float64frombits(bits)
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return
		}
		if got, want := string(appendFloat([]byte("x"), x)), "x"+strconv.FormatFloat(x, 'g', -1, 64); got != want {
			t.Fatalf("appendFloat(%b) = %s, want %s", bits, got, want)
		}
	})
}

// TestPow10TabMatchesStrconv compares the powers of ten computed at first
// use with the table Go's strconv was generated with, when the Go source is
// at hand.
func TestPow10TabMatchesStrconv(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(runtime.GOROOT(), "src", "internal", "strconv", "pow10tab.go"))
	if err != nil {
		t.Skipf("Go's strconv source: %v", err)
	}
	pow10Once.Do(initPow10)
	re := regexp.MustCompile(`\{(0x[0-9a-f]+), (0x[0-9a-f]+)\}, // 1e(-?\d+) `)
	n := 0
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		hi, _ := strconv.ParseUint(m[1], 0, 64)
		lo, _ := strconv.ParseUint(m[2], 0, 64)
		e, _ := strconv.Atoi(m[3])
		if got := pow10Tab[e-pow10Min]; got != (uint128{hi, lo}) {
			t.Fatalf("10^%d: %#x, want {%#x %#x}", e, got, hi, lo)
		}
		n++
	}
	if n != len(pow10Tab) {
		t.Fatalf("compared %d powers, want %d", n, len(pow10Tab))
	}
}

// BenchmarkAppendFloat times appendFloat on the kinds of value a lookup
// writes: hundredths (amounts, their sums and maxima) and others (means,
// deviations).
func BenchmarkAppendFloat(b *testing.B) {
	for _, c := range []struct {
		name string
		f    float64
	}{{"hundredths-1461.2", 1461.2}, {"hundredths-12.97", 12.97}, {"mean", 73.06000000000001}, {"stddev", 96.9788200588149}} {
		b.Run(c.name, func(b *testing.B) {
			dst := make([]byte, 0, 64)
			for i := 0; i < b.N; i++ {
				dst = appendFloat(dst[:0], c.f)
			}
		})
	}
}
