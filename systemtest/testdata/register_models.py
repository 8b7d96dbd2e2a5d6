"""Registers three versions of model "fraud" in an MLflow tracking server, one
per layout tally reads (score/registry): used by systemtest/registry_test.go.

  version 1: the default repo's RandomForest, logged with mlflow.onnx.log_model
             (an MLmodel with an onnx flavor beside model.onnx)
  version 2: a one-leaf decision tree whose p(fraud) is 0.25 for every row,
             logged as a bare .onnx artifact, its directory registered as the
             version's source (MlflowClient.create_model_version)
  version 3: a broken model: a "model.onnx" that is not ONNX
  version 4: a model with no ONNX file: a logistic regression logged with
             mlflow.sklearn.log_model (an MLmodel with a sklearn flavor only)

Usage: register_models.py TRACKING_URI DEFAULT_MODEL.onnx
Prints the versions as JSON.
"""
import json
import os
import sys
import tempfile

import numpy as np
import onnx
import mlflow
import mlflow.onnx
import mlflow.sklearn
from mlflow import MlflowClient
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier


def main():
    uri, default_model = sys.argv[1], sys.argv[2]
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    name = "fraud"
    first = onnx.load(default_model)
    n_inputs = first.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    versions = {}
    with mlflow.start_run():
        # pip_requirements given: inferring them runs a subprocess that takes long.
        info = mlflow.onnx.log_model(first, name="model", registered_model_name=name, pip_requirements=["onnx", "onnxruntime"])
        versions["1"] = info.registered_model_version

    # A tree that never splits: one leaf, p(fraud) = 16/64 for every row,
    # missing features (NaN) included.
    rng = np.random.default_rng(7)
    x = rng.normal(size=(64, n_inputs)).astype(np.float32)
    y = (np.arange(64) % 4 == 0).astype(np.int64)
    tree = DecisionTreeClassifier(min_samples_split=1000).fit(x, y)
    second = to_onnx(tree, x[:1], options={id(tree): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    tmp = tempfile.mkdtemp()
    with mlflow.start_run() as run:
        d = os.path.join(tmp, "constant")
        os.makedirs(d)
        with open(os.path.join(d, "constant.onnx"), "wb") as f:
            f.write(second.SerializeToString())
        mlflow.log_artifacts(d, artifact_path="constant")
        versions["2"] = client.create_model_version(name, f"{run.info.artifact_uri}/constant", run.info.run_id).version
    with mlflow.start_run() as run:
        d = os.path.join(tmp, "broken")
        os.makedirs(d)
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(b"this is not an ONNX model\n")
        mlflow.log_artifacts(d, artifact_path="broken")
        versions["3"] = client.create_model_version(name, f"{run.info.artifact_uri}/broken", run.info.run_id).version
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(LogisticRegression().fit(x, y), name="sk", registered_model_name=name, pip_requirements=["scikit-learn"])
        versions["4"] = info.registered_model_version
    client.set_registered_model_alias(name, "champion", versions["1"])
    print(json.dumps({k: str(v) for k, v in versions.items()}))


if __name__ == "__main__":
    main()
