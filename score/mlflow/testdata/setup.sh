#!/usr/bin/env bash
# Installs the pinned MLflow for the score/mlflow real-endpoint test into the
# repo's .venv, on top of the score/onnx pins (numpy, scikit-learn), which it
# creates first. Idempotent: a second run only compares the pins.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
"$root/score/onnx/parity/setup.sh"
venv="$root/.venv"
stamp="$venv/.score-mlflow-requirements"
pins="$(cat "$here/requirements.txt" "$root/score/onnx/parity/requirements.txt")"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pins" ] && [ -x "$venv/bin/mlflow" ]; then
	exit 0
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
printf '%s' "$pins" > "$stamp"
