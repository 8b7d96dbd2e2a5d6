#!/usr/bin/env bash
# Installs the peers that `tally bench` measures beside tally:
#   redis     redis-server from Debian's packages (the harness starts its own
#             instance on a free loopback port with persistence off)
#   feast     Feast's Python feature server with its Redis online store, in
#             the venv .venv-bench at the repo root (gitignored)
# Usage: scripts/bench-peers.sh [redis] [feast]   (default: both)
# Each peer is installed independently: a failure is reported and the others
# still install. The harness reports a peer it cannot run as "not run: ...".
set -u
cd "$(dirname "$0")/.."
peers=("$@")
[ ${#peers[@]} -eq 0 ] && peers=(redis feast)
venv=.venv-bench
status=0
for p in "${peers[@]}"; do
  case "$p" in
  redis)
    if command -v redis-server >/dev/null; then
      echo "bench-peers: redis-server already installed: $(redis-server --version)"
      continue
    fi
    echo "bench-peers: installing redis-server (Debian package)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }; then
      echo "bench-peers: redis-server could not be installed" >&2; status=1
    else
      # The package's own service is not used: the harness starts its instance.
      (command -v systemctl >/dev/null && systemctl stop redis-server 2>/dev/null) || true
      echo "bench-peers: $(redis-server --version)"
    fi
    ;;
  feast)
    echo "bench-peers: installing feast[redis] into $venv"
    if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv" || { echo "bench-peers: cannot create $venv" >&2; status=1; continue; }; fi
    "$venv/bin/pip" install -q --upgrade pip >/dev/null
    if ! "$venv/bin/pip" install -q 'feast[redis]==0.67.0'; then
      echo "bench-peers: feast could not be installed" >&2; status=1
    else
      echo "bench-peers: feast $("$venv/bin/feast" version 2>/dev/null | tail -1)"
    fi
    ;;
  *) echo "bench-peers: unknown peer $p (use redis, feast)" >&2; status=2 ;;
  esac
done
exit $status
