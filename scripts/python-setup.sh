#!/usr/bin/env bash
# Installs the Python SDK (python/, editable) and its pinned test runner into
# the repo's .venv, on top of the MLflow/score pins (numpy, scikit-learn,
# mlflow), which it installs first. Idempotent: a second run only compares
# the stamp of the SDK's pins and packaging files.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/score/mlflow/testdata/setup.sh"
venv="$root/.venv"
stamp="$venv/.python-sdk"
want="$(cat "$root/python/requirements-test.txt" "$root/python/pyproject.toml")"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
	(cd / && "$venv/bin/python" -c "import tally, pytest") 2>/dev/null; then
	exit 0
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/python/requirements-test.txt"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root/python"
printf '%s' "$want" > "$stamp"
