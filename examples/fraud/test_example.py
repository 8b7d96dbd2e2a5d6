"""Runs the fraud example end to end (`run.sh --small`: build tally, serve the
default repo, backfill, train, track in MLflow, reload the model, score a live
stream) in a temporary work directory and checks what it reports and what it
left in the MLflow store. Takes about a minute once .venv is set up.
"""
import os
import re
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 600  # generous: the first run also installs the Python toolchain


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("fraud-example")
    try:
        proc = subprocess.run([str(HERE / "run.sh"), "--small", "--workdir", str(work)],
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"run.sh --small did not finish in {TIMEOUT_S} s; its output:\n{e.stdout}\n{e.stderr}")
    out = proc.stdout
    assert proc.returncode == 0, f"run.sh --small failed ({proc.returncode}):\n{out[-4000:]}\n{proc.stderr[-4000:]}"
    results = dict(re.findall(r"^RESULT (\w+)=(\S+)$", out, re.M))
    return out, results, work


def test_steps_in_order(run):
    out, _, _ = run
    headers = [out.find(f"Step {i} of 4") for i in range(1, 5)]
    assert all(h >= 0 for h in headers) and headers == sorted(headers), headers


def test_training_data(run):
    _, r, _ = run
    # The small run backfills about 34,000 transactions; every one is a training row.
    assert int(r["history_rows"]) > 20_000
    assert int(r["training_rows"]) == int(r["history_rows"])


def test_heldout_auc(run):
    _, r, _ = run
    # The generator's fraud is learnable from the features: seeded runs get ~0.99.
    assert float(r["heldout_auc"]) > 0.9


def test_model_reloaded(run):
    _, r, _ = run
    assert r["model_reloaded"] == "true"
    assert float(r["reload_seconds"]) < 30


def test_live_scoring(run):
    _, r, _ = run
    assert int(r["live_rows"]) > 50
    assert float(r["live_auc"]) > 0.8
    assert 0 < float(r["predict_p50_ms"]) <= float(r["predict_p99_ms"])
    same, total = map(int, r["skew_rows_same"].split("/"))
    assert same == total, "time travel disagrees with what predict served"


def test_mlflow_run(run):
    _, r, work = run
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    uri = r["mlflow_tracking_uri"]
    assert str(work) in uri
    client = mlflow.MlflowClient(tracking_uri=uri)
    mrun = client.get_run(r["mlflow_run_id"])
    assert mrun.info.status == "FINISHED"
    p = mrun.data.params
    assert p["feature_service"] == "fraud_detection"
    assert int(p["n_estimators"]) > 0 and int(p["max_depth"]) > 0
    m = mrun.data.metrics
    assert m["roc_auc"] == pytest.approx(float(r["heldout_auc"]), abs=1e-4)
    assert 0 <= m["precision"] <= 1 and 0 <= m["recall"] <= 1
    models = client.search_logged_models(experiment_ids=[mrun.info.experiment_id])
    assert any(lm.source_run_id == mrun.info.run_id and lm.name == "random-forest-model" for lm in models), models
    onnx = [f.path for f in client.list_artifacts(mrun.info.run_id, "onnx")]
    assert onnx == ["onnx/fraud_model.onnx"], onnx
