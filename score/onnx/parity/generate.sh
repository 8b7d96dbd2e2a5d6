#!/usr/bin/env bash
# Sets up the pinned Python toolchain (setup.sh) and regenerates the parity
# models and onnxruntime's expected outputs into OUT
# (default score/onnx/testdata/generated). Takes about a minute.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
"$here/setup.sh"
out="${1:-$here/../testdata/generated}"
"$root/.venv/bin/python" "$here/generate.py" "$out"
