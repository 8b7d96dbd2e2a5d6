#!/usr/bin/env bash
# Regenerates cmd/tally/default.pgo, the CPU profile `go build` uses for
# profile-guided optimization of the tally binary (Go's -pgo=auto: hot
# calls inlined, interface calls devirtualized). The profile is the load
# harness's quick lookup, ingest and mixed scenarios (tally serving in
# process, WAL at fsync=always, its client beside it), without peers:
#
#   scripts/pgo-profile.sh
#
# About a minute. Commit the new profile with the numbers it changed (the
# README's Performance section, "profile-guided optimization").
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/tally" ./cmd/tally
"$tmp/tally" bench --quick --scenarios lookup,ingest,mixed --peers= --no-plots \
  --out "$tmp/report" --cpuprofile "$tmp/cpu.prof"
cp "$tmp/cpu.prof" cmd/tally/default.pgo
echo "wrote cmd/tally/default.pgo ($(wc -c < cmd/tally/default.pgo) bytes)"
