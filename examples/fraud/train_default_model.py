"""Trains the default repo's fraud model and exports it to ONNX.

Input: a CSV from `go run ./examples/fraud/gendata` (the fraud_detection vector
of each synthetic transaction, as tally served it before the transaction, and
its is_fraud label). Output: features/defaultrepo/fraud_model.onnx, a small
scikit-learn RandomForest (missing features stay NaN, as tally sends them),
exported with skl2onnx without ZipMap. It is committed and embedded in the
binary so that `tally demo` scores transactions on a fresh machine.

Usage: .venv/bin/python examples/fraud/train_default_model.py train.csv OUT.onnx
"""
import sys

import numpy as np
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split


def main(src, out):
    with open(src) as f:
        header = f.readline().strip().split(",")
    data = np.genfromtxt(src, delimiter=",", skip_header=1, dtype=np.float64, missing_values="", filling_values=np.nan)
    assert header[-1] == "is_fraud", header
    y = data[:, -1].astype(np.int64)
    x = data[:, :-1].astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    clf = RandomForestClassifier(n_estimators=30, max_depth=8, random_state=0, n_jobs=1)
    clf.fit(x_train, y_train)
    auc = roc_auc_score(y_test, clf.predict_proba(x_test)[:, 1])
    print(f"fraud model: {x.shape[1]} features, {len(y)} rows, {int(y.sum())} fraud, test ROC AUC {auc:.3f}")
    onx = to_onnx(clf, initial_types=[("features", FloatTensorType([None, x.shape[1]]))],
                  options={id(clf): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    with open(out, "wb") as f:
        f.write(onx.SerializeToString())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
