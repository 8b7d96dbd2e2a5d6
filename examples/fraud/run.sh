#!/usr/bin/env bash
# The seed's real-time fraud flow, end to end, on a fresh machine: sets up the
# pinned Python toolchain and the tally SDK (.venv), builds tally, serves a
# copy of the default feature repo from a work directory, and runs flow.py
# against it (generate and backfill history, time-travel training data, train
# and track in MLflow, load the model into tally, score a live stream).
#
# Usage: examples/fraud/run.sh [--small] [--workdir DIR] [flow.py options]
#   --small        a quick run (under 90 s; CI)
#   --workdir DIR  where the binary, the served repo, its data and the MLflow
#                  store go (default examples/fraud/work). The served repo and
#                  its data are fresh each run; MLflow runs accumulate.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$here/work"
args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--workdir) work="$2"; shift 2 ;;
	--workdir=*) work="${1#*=}"; shift ;;
	-h|--help) sed -n '2,13s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) args+=("$1"); shift ;;
	esac
done
mkdir -p "$work"
work="$(cd "$work" && pwd)"
start=$SECONDS
# MLflow is only a local store here: no usage reporting.
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true

echo "== setup: Python (.venv: scikit-learn, MLflow, skl2onnx, the tally SDK)"
"$root/scripts/python-setup.sh"
python="$root/.venv/bin/python"

echo "== setup: build tally and serve a copy of the default feature repo"
(cd "$root" && "${GO:-go}" build -o "$work/tally" ./cmd/tally)
rm -rf "$work/repo" "$work/data"
mkdir -p "$work/repo"
cp "$root/features/defaultrepo/fraud.yaml" "$root/features/defaultrepo/fraud_model.onnx" "$work/repo/"
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$work/tally" serve --repo "$work/repo" --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/tally.log" 2>&1 &
pid=$!
stop() {
	kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
}
trap stop EXIT
url="http://127.0.0.1:$port"
"$python" - "$url" "$pid" <<'PY'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
while True:
    try:
        if urllib.request.urlopen(url + "/readyz", timeout=1).status == 200:
            break
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("tally exited at start-up: see tally.log")
    if time.monotonic() > deadline:
        sys.exit("tally is not ready after 30 s: see tally.log")
    time.sleep(0.1)
PY
echo "   tally serving on $url (log: $work/tally.log)"

status=0
"$python" "$here/flow.py" --url "$url" --workdir "$work" ${args[@]+"${args[@]}"} || status=$?
if [ "$status" -ne 0 ]; then
	echo "flow.py failed (exit $status); the end of tally's log:" >&2
	tail -n 20 "$work/tally.log" >&2
fi
echo "== total $((SECONDS - start)) s"
exit "$status"
