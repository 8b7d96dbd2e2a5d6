#!/usr/bin/env bash
# Medians of Go benchmarks run in alternation: each round runs every test
# binary once (-test.count 1), in the order given, so that two builds see
# the same moments of a shared, noisy machine. Prints, per benchmark and
# binary, the median of METRIC over the rounds and every run's value.
#
#   scripts/bench-alternate.sh ROUNDS REGEX BENCHTIME METRIC BINARY...
#
# METRIC is a column's unit as `go test` prints it: ns/op, cpu-ns/op,
# events/s, ... Build the binaries with `go test -c -o FILE ./pkg/` in each
# build's worktree (git worktree add DIR REV). Environment variables pass
# through, e.g. GOMAXPROCS=1. Example (the README's windows ingest row):
#
#   GOMAXPROCS=1 scripts/bench-alternate.sh 4 'BenchmarkIngestBatch/user_group' 2000000x cpu-ns/op /tmp/old.test /tmp/new.test
set -euo pipefail
if [ $# -lt 5 ]; then
  echo "usage: $0 ROUNDS REGEX BENCHTIME METRIC BINARY..." >&2
  exit 2
fi
rounds=$1 re=$2 bt=$3 metric=$4
shift 4
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$rounds"); do
  for bin in "$@"; do
    "$bin" -test.run '^$' -test.bench "$re" -test.benchtime "$bt" -test.count 1 |
      awk -v b="$(basename "$bin")" -v m="$metric" '/^Benchmark/ {
        for (i = 2; i < NF; i++) if ($(i+1) == m) { print b, $1, $i; next }
      }' >> "$out"
  done
done
python3 - "$out" "$metric" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    binary, bench, value = line.split()
    runs[(bench, binary)].append(float(value))
if not runs:
    sys.exit(f"no benchmark printed {sys.argv[2]}")
for (bench, binary), v in sorted(runs.items()):
    print(f"{bench:55s} {binary:20s} median {statistics.median(v):12.1f} {sys.argv[2]}  runs {' '.join(f'{x:.0f}' for x in v)}")
PY
