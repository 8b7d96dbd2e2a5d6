"""Trains a small fraud-like scikit-learn classifier, logs it to a local MLflow
file tracking store and records the model's outputs for rows the Go test sends.

Usage: train.py OUT_DIR

Writes OUT_DIR/mlflow.db (a SQLite tracking store; MLflow 3 keeps the plain
file store in maintenance mode), the model's artifacts under OUT_DIR/artifacts,
and OUT_DIR/expected.json:
  tracking_uri, model_uri (models:/...), model_path (the logged model's local
  artifact directory, servable without the tracking store), mlflow_version,
  columns, classes,
  rows (float32-exact values; null = missing), probabilities, labels.
"""

import json
import os
import sys

# No usage telemetry from a test (loopback only).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import numpy as np
import pandas as pd

import mlflow
import mlflow.sklearn
from mlflow.models import infer_signature
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

COLUMNS = [
    "amount",
    "amount_zscore_1h",
    "txn_count_1h",
    "txn_count_24h",
    "distinct_merchants_24h",
    "account_age_days",
    "is_foreign",
    "hour_of_day",
]


def features(rng, n):
    x = np.empty((n, len(COLUMNS)), dtype=np.float32)
    x[:, 0] = rng.lognormal(3.5, 1.2, n)
    x[:, 1] = rng.normal(0, 1.5, n)
    x[:, 2] = rng.poisson(2, n)
    x[:, 3] = x[:, 2] + rng.poisson(10, n)
    x[:, 4] = rng.integers(1, 12, n)
    x[:, 5] = rng.exponential(400, n)
    x[:, 6] = rng.random(n) < 0.1
    x[:, 7] = rng.integers(0, 24, n)
    return x


def local_path(uri):
    return uri[len("file://"):] if uri.startswith("file://") else uri


def main():
    out = os.path.abspath(sys.argv[1])
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)

    x = features(rng, 4000)
    logit = (
        0.9 * x[:, 1]
        + 0.35 * x[:, 2]
        - 0.004 * x[:, 5]
        + 1.5 * x[:, 6]
        + 0.002 * x[:, 0]
        - 2.0
    )
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    train = pd.DataFrame(x.astype(np.float64), columns=COLUMNS)

    model = make_pipeline(
        SimpleImputer(strategy="median"),
        StandardScaler(),
        LogisticRegression(max_iter=500),
    )
    model.fit(train, y)

    # Rows the Go test scores: float32-exact, with some missing values, which
    # the imputer fills (the client sends NaN as null).
    test = features(np.random.default_rng(11), 200).astype(np.float64)
    test[::17, 1] = np.nan
    test[5::23, 5] = np.nan
    frame = pd.DataFrame(test, columns=COLUMNS)
    proba = model.predict_proba(frame)

    tracking_uri = "sqlite:///" + os.path.join(out, "mlflow.db")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.create_experiment(
        "tally-score-mlflow", artifact_location="file://" + os.path.join(out, "artifacts")
    )
    mlflow.set_experiment("tally-score-mlflow")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(train, proba),
            pyfunc_predict_fn="predict_proba",
            input_example=train.head(2),
            # MLflow 3 saves with skops, which asks which types to trust.
            skops_trusted_types=["numpy.dtype"],
        )

    def cell(v):
        return None if np.isnan(v) else float(v)

    expected = {
        "tracking_uri": tracking_uri,
        "model_uri": info.model_uri,
        "model_path": local_path(mlflow.get_logged_model(info.model_id).artifact_location),
        "mlflow_version": mlflow.__version__,
        "columns": COLUMNS,
        "classes": [str(c) for c in model.classes_],
        "rows": [[cell(v) for v in row] for row in test],
        "probabilities": proba.tolist(),
        "labels": [int(c) for c in model.classes_[proba.argmax(axis=1)]],
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f)


if __name__ == "__main__":
    main()
