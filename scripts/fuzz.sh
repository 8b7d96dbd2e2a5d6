#!/usr/bin/env bash
# Runs every Go fuzz target in the module for FUZZTIME each (default 10s).
# Targets are discovered, so a new Fuzz function is fuzzed without editing this.
#
# Go 1.26's fuzz coordinator can fail a target with a bare "context deadline exceeded" when
# -fuzztime runs out while a worker is mid-call (golang/go#75804: the deadline of the parent
# context is seen before the workers' child context is cancelled). It found nothing: no input
# is written. Go 1.27 fixes it, so the fuzzing runs on the approved go1.27.3 toolchain (the go
# command fetches it from the module proxy, about 76 MB once); the module itself stays on 1.26.
# A failure that writes a failing input, or says anything but that one line, still fails.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}
export GOTOOLCHAIN=${FUZZ_GOTOOLCHAIN:-go1.27.3}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
n=0
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "fuzz $pkg $target for $FUZZTIME"
    if ! go test -run "^$" -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 2s -parallel 2 "$pkg" >"$log" 2>&1; then
      # The race's signature: the FAIL line followed only by the deadline, and no input written.
      if ! grep -q 'Failing input written' "$log" &&
         [ "$(grep -A1 -- "^--- FAIL: ${target} " "$log" | tail -n 1 | tr -d '[:space:]')" = "contextdeadlineexceeded" ] &&
         [ "$(grep -c -- '^--- FAIL' "$log")" = 1 ]; then
        echo "  warning: $target stopped with Go's fuzz-deadline race (golang/go#75804), no failing input; replaying its corpus"
        go test -count=1 -run "^${target}\$" "$pkg" >"$log" 2>&1 || { cat "$log"; exit 1; }
      else
        cat "$log"
        exit 1
      fi
    fi
    tail -n 1 "$log"
    n=$((n+1))
  done
done
echo "fuzzed $n targets"
