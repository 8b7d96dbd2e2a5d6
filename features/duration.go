package features

import (
	"errors"
	"math"
	"strconv"
)

// MaxDuration is the longest duration ParseDuration accepts: 36500d
// (100 years).
const MaxDuration = 36500 * 86400000

var units = [...]struct {
	name string
	ms   int64
}{{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}}

// ParseDuration parses a window, interval or lateness such as "500ms", "30s",
// "5m", "1h", "365d" or "1h30m" into milliseconds: one or more <integer><unit>
// terms, units ms, s, m, h, d (a day is 24h). The result must be positive
// and at most MaxDuration, so sums of windows and lateness never overflow.
func ParseDuration(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty duration: write e.g. 30s, 5m, 1h or 1d")
	}
	var total int64
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == i {
			return 0, durationError(s, "expected a number at "+strconv.Quote(s[i:]))
		}
		n, err := strconv.ParseInt(s[i:j], 10, 64)
		if err != nil {
			return 0, durationError(s, "longer than 36500d")
		}
		k := j
		for k < len(s) && (s[k] < '0' || s[k] > '9') {
			k++
		}
		unit := s[j:k]
		var ms int64
		for _, u := range units {
			if u.name == unit {
				ms = u.ms
			}
		}
		if ms == 0 {
			if unit == "" {
				return 0, durationError(s, "missing unit after "+s[i:j])
			}
			return 0, durationError(s, "unknown unit "+strconv.Quote(unit))
		}
		if n > (MaxDuration-total)/ms {
			return 0, durationError(s, "longer than 36500d")
		}
		total += n * ms
		i = k
	}
	if total == 0 {
		return 0, durationError(s, "must be longer than zero")
	}
	return total, nil
}

func durationError(s, why string) error {
	return errors.New("bad duration " + strconv.Quote(s) + ": " + why + " (write <integer><unit> terms with units ms, s, m, h, d, e.g. 500ms, 5m, 1h30m, 365d)")
}

// FormatWindow formats ms as the shortest duration ParseDuration reads back:
// the largest unit that divides it (60000 -> "1m", 5400000 -> "90m"), or
// terms from days down when that is shorter (86401000 -> "1d1s"). 0 is "0s"; negatives get a "-".
func FormatWindow(ms int64) string {
	return string(appendWindow(nil, ms))
}

func appendWindow(b []byte, ms int64) []byte {
	if ms == 0 {
		return append(b, "0s"...)
	}
	if ms < 0 {
		b = append(b, '-')
		if ms == math.MinInt64 {
			return append(strconv.AppendUint(b, 1<<63, 10), "ms"...)
		}
		ms = -ms
	}
	var single []byte
	for _, u := range units {
		if ms%u.ms == 0 {
			single = append(strconv.AppendInt(b, ms/u.ms, 10), u.name...)
			break
		}
	}
	var mixed [64]byte
	m := mixed[:0]
	for r, i := ms, 0; r > 0; i++ {
		if u := units[i]; r >= u.ms {
			m = append(strconv.AppendInt(m, r/u.ms, 10), u.name...)
			r %= u.ms
		}
	}
	if len(m) < len(single)-len(b) {
		return append(b, m...)
	}
	return single
}
