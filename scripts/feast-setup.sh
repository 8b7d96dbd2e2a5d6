#!/usr/bin/env bash
# Installs what the Feast compatibility suite (python/feast_tests) needs into
# .venv-bench: Feast 0.67 with its Redis store (scripts/bench-peers.sh feast,
# shared with the harness's Feast peer) and the pinned pytest of the SDK's
# suite (python/requirements-test.txt). Idempotent and cached: a second run
# only checks that both import.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-bench"
if (cd / && "$venv/bin/python" -c "import feast, pytest") 2>/dev/null; then
	exit 0
fi
"$root/scripts/bench-peers.sh" feast
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/python/requirements-test.txt"
