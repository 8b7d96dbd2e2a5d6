#!/usr/bin/env bash
# Validates deploy/kubernetes/*.yaml against Kubernetes' own API schemas, strictly (unknown
# fields refused), offline: kubernetes-validate (PyPI, pinned below) ships the schemas in its
# wheel. Installed once into ~/.cache/tally/kubernetes-validate (its own venv: its jsonschema
# pins stay apart from .venv's). Run by `make test` (target deploy-check).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version=1.37.0
venv="${XDG_CACHE_HOME:-$HOME/.cache}/tally/kubernetes-validate"
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$version"; then
	python3 -m venv "$venv"
	"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$version"
fi
"$venv/bin/kubernetes-validate" --strict --kubernetes-version 1.37.0 "$root"/deploy/kubernetes/*.yaml
