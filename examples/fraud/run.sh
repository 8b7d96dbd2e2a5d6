#!/usr/bin/env bash
# The seed's real-time fraud flow, end to end, on a fresh machine: sets up the
# pinned Python toolchain and the tally SDK (.venv), builds tally, serves a
# copy of the default feature repo from a work directory, and runs flow.py
# against it (generate and backfill history, time-travel training data, train
# and track in MLflow, load the model into tally, score a live stream).
#
# Usage: examples/fraud/run.sh [--small] [--spark] [--workdir DIR] [flow.py options]
#   --small        a quick run (under 90 s; CI)
#   --spark        the Spark variant: PySpark DataFrames in and out, the training
#                  set in a Delta table, and the model served from an MLflow
#                  Model Registry (a local `mlflow server`) by alias
#                  (scripts/spark-setup.sh first; `make example-spark`)
#   --workdir DIR  where the binary, the served repo, its data and the MLflow
#                  store go (default examples/fraud/work). The served repo and
#                  its data are fresh each run; MLflow runs accumulate.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$here/work"
args=()
spark=0
while [ $# -gt 0 ]; do
	case "$1" in
	--spark) spark=1; args+=("$1"); shift ;;
	--workdir) work="$2"; shift 2 ;;
	--workdir=*) work="${1#*=}"; shift ;;
	-h|--help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
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
free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
stop() {
	for p in ${pids[@]+"${pids[@]}"}; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
	done
}
trap stop EXIT
# wait_ready URL PID NAME SECONDS: polls URL until it answers 200.
wait_ready() {
	"$python" - "$1" "$2" "$3" "$4" <<'PY'
import os, sys, time, urllib.request
url, pid, name, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
deadline = time.monotonic() + limit
while True:
    try:
        if urllib.request.urlopen(url, timeout=1).status == 200:
            break
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"{name} exited at start-up: see {name}.log")
    if time.monotonic() > deadline:
        sys.exit(f"{name} is not ready after {limit} s: see {name}.log")
    time.sleep(0.1)
PY
}

if [ "$spark" = 1 ]; then
	echo "== setup: PySpark, delta-spark (scripts/spark-setup.sh) and an MLflow tracking server with a model registry"
	"$root/scripts/spark-setup.sh"
	rm -rf "$work/mlflow-server" "$work/historical" "$work/training.delta"
	mkdir -p "$work/mlflow-server"
	mport="$(free_port)"
	"$root/.venv/bin/mlflow" server --host 127.0.0.1 --port "$mport" --workers 1 \
		--backend-store-uri "sqlite:///$work/mlflow-server/mlflow.db" \
		--artifacts-destination "$work/mlflow-server/artifacts" >"$work/mlflow.log" 2>&1 &
	pids+=($!)
	export MLFLOW_TRACKING_URI="http://127.0.0.1:$mport"
	wait_ready "$MLFLOW_TRACKING_URI/health" "$!" mlflow 300
	# tally starts on a registered model: the default one, as version 1 of fraud_detector@champion.
	"$python" - "$root/features/defaultrepo/fraud_model.onnx" <<'PY'
import sys
import mlflow, mlflow.onnx, onnx
with mlflow.start_run(run_name="default-model"):
    info = mlflow.onnx.log_model(onnx.load(sys.argv[1]), name="onnx-model", registered_model_name="fraud_detector",
                                 pip_requirements=["onnxruntime"])
mlflow.MlflowClient().set_registered_model_alias("fraud_detector", "champion", info.registered_model_version)
PY
	echo "   MLflow tracking server and registry on $MLFLOW_TRACKING_URI (log: $work/mlflow.log): models:/fraud_detector@champion is version 1"
fi

echo "== setup: build tally and serve a copy of the default feature repo"
(cd "$root" && "${GO:-go}" build -o "$work/tally" ./cmd/tally)
rm -rf "$work/repo" "$work/data"
mkdir -p "$work/repo"
cp "$root/features/defaultrepo/fraud.yaml" "$root/features/defaultrepo/fraud_model.onnx" "$work/repo/"
if [ "$spark" = 1 ]; then
	# Serve the registered model by its alias, polled every second.
	sed -i 's|^\( *\)onnx: fraud_model.onnx$|\1onnx: models:/fraud_detector@champion\n\1poll: 1s|' "$work/repo/fraud.yaml"
	grep -q 'models:/fraud_detector@champion' "$work/repo/fraud.yaml"
	rm "$work/repo/fraud_model.onnx"
fi
port="$(free_port)"
"$work/tally" serve --repo "$work/repo" --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/tally.log" 2>&1 &
pids+=($!)
url="http://127.0.0.1:$port"
wait_ready "$url/readyz" "$!" tally 120
echo "   tally serving on $url (log: $work/tally.log)"

status=0
"$python" "$here/flow.py" --url "$url" --workdir "$work" ${args[@]+"${args[@]}"} || status=$?
if [ "$status" -ne 0 ]; then
	echo "flow.py failed (exit $status); the end of tally's log:" >&2
	tail -n 20 "$work/tally.log" >&2
fi
echo "== total $((SECONDS - start)) s"
exit "$status"
