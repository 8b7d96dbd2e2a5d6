#!/usr/bin/env bash
# Runs every Go fuzz target in the module for FUZZTIME each (default 10s).
# Targets are discovered, so a new Fuzz function is fuzzed without editing this.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}
n=0
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "fuzz $pkg $target for $FUZZTIME"
    go test -run "^$" -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 2s -parallel 2 "$pkg" >/tmp/tally-fuzz.log 2>&1 || { cat /tmp/tally-fuzz.log; exit 1; }
    tail -n 1 /tmp/tally-fuzz.log
    n=$((n+1))
  done
done
echo "fuzzed $n targets"
