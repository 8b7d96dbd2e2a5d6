#!/usr/bin/env bash
# Validates deploy/kubernetes/*.yaml against Kubernetes' own API schemas, strictly (unknown
# fields refused), offline: kubernetes-validate (PyPI, pinned below) ships the schemas in its
# wheel. Installed once into ~/.cache/tally/kubernetes-validate (its own venv: its jsonschema
# pins stay apart from .venv's); and the systemd unit through systemd-analyze verify. Run by
# `make test` (target deploy-check).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version=1.37.0
venv="${XDG_CACHE_HOME:-$HOME/.cache}/tally/kubernetes-validate"
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$version"; then
	python3 -m venv "$venv"
	"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$version"
fi
"$venv/bin/kubernetes-validate" --strict --kubernetes-version 1.37.0 "$root"/deploy/kubernetes/*.yaml

# deploy/systemd/tally.service through systemd's own parser (unknown keys or sections, bad
# values), the binary's path swapped for one that exists here; any complaint fails.
if command -v systemd-analyze >/dev/null; then
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' EXIT
	sed "s|^ExecStart=/usr/local/bin/tally |ExecStart=$(command -v true) |" "$root/deploy/systemd/tally.service" > "$tmp/tally.service"
	out="$(systemd-analyze verify "$tmp/tally.service" 2>&1)" || true
	if [ -n "$out" ]; then
		echo "deploy/systemd/tally.service: $out" >&2
		exit 1
	fi
	echo "INFO deploy/systemd/tally.service passed systemd-analyze verify"
else
	echo "WARN no systemd-analyze here: deploy/systemd/tally.service not checked by systemd" >&2
fi
