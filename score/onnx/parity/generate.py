"""Trains models, exports them to ONNX and records onnxruntime's outputs.

The Go parity test (score/onnx/parity_test.go) reads what this writes:

  OUT/manifest.json          one entry per model: file names and output kinds
  OUT/<model>.onnx           the exported model
  OUT/<model>.expected.json  onnxruntime's labels / probabilities / values
                             (and "batch" when it scored that many rows
                             per call, not all at once)
  OUT/<rows>.csv             input rows (float32 shortest repr, "nan" = missing)
  OUT/<rows>.strings.csv     string inputs of the same rows, for models with any

Numeric graph inputs take the rows' columns in input order; string inputs
take the strings file's columns in input order.

Rows mix random draws, NaNs, and values placed exactly on (and one float32
ulp either side of) the split thresholds read from the exported trees.

Usage: .venv/bin/python score/onnx/parity/generate.py [OUT]
"""

import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SEED = 7
NFEAT = 30


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def tree_thresholds(model):
    """(feature, threshold) pairs of every tree node in the model. Features
    a Gather or ArrayFeatureExtractor with constant indices picked are
    mapped back to the input's columns."""
    pairs = []
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    picked = {}
    for node in model.graph.node:
        if node.op_type in ("Gather", "ArrayFeatureExtractor") and node.input[1] in inits:
            picked[node.output[0]] = [int(i) for i in np.asarray(inits[node.input[1]]).reshape(-1)]
    for node in model.graph.node:
        attrs = {a.name: a for a in node.attribute}
        cols = picked.get(node.input[0]) if node.input else None
        remap = (lambda f: cols[f]) if cols else (lambda f: f)
        if node.op_type in ("TreeEnsembleClassifier", "TreeEnsembleRegressor"):
            feats = [remap(f) for f in attrs["nodes_featureids"].ints]
            if "nodes_values" in attrs:
                vals = list(attrs["nodes_values"].floats)
            else:
                vals = list(numpy_helper.to_array(attrs["nodes_values_as_tensor"].t))
            modes = [m.decode() for m in attrs["nodes_modes"].strings]
            pairs += [(f, v) for f, v, m in zip(feats, vals, modes) if m != "LEAF"]
        elif node.op_type == "TreeEnsemble":
            feats = list(attrs["nodes_featureids"].ints)
            vals = list(numpy_helper.to_array(attrs["nodes_splits"].t))
            pairs += list(zip(feats, vals))
    return pairs


def make_rows(rng, base, model, n_random=1500, n_nan=500, n_thr=1000, n_ext=0, extra=(), trees=True):
    """Random rows from base, rows with NaNs, rows on split thresholds (those
    of the trees and the (feature, value) pairs in extra), and n_ext rows with
    extreme values (huge, tiny, signed zeros)."""
    nf = base.shape[1]
    idx = rng.integers(0, base.shape[0], size=n_random + n_nan + n_thr + n_ext)
    rows = base[idx].astype(np.float32).copy()
    # NaN block: 1 to 5 missing features per row.
    for r in range(n_random, n_random + n_nan):
        k = rng.integers(1, min(6, nf + 1))
        rows[r, rng.choice(nf, size=k, replace=False)] = np.nan
    extremes = np.array([1e30, -1e30, 3e38, -3e38, 1e-38, -0.0, 0.0, 1e6, -1e6], dtype=np.float32)
    for r in range(n_random + n_nan + n_thr, rows.shape[0]):
        k = rng.integers(1, min(4, nf + 1))
        rows[r, rng.choice(nf, size=k, replace=False)] = extremes[rng.integers(0, len(extremes), size=k)]
    rows_thr = rows[:n_random + n_nan + n_thr]
    pairs = (tree_thresholds(model) if trees else []) + list(extra)
    if pairs:
        for r in range(n_random + n_nan, rows_thr.shape[0]):
            for _ in range(8):
                f, v = pairs[rng.integers(0, len(pairs))]
                v = np.float32(v)
                shift = rng.integers(0, 3)
                if shift == 1:
                    v = np.nextafter(v, np.float32(np.inf), dtype=np.float32)
                elif shift == 2:
                    v = np.nextafter(v, np.float32(-np.inf), dtype=np.float32)
                rows_thr[r, f] = v
    return rows


def write_rows(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(",".join("nan" if np.isnan(v) else repr(float(v)) for v in row))
            f.write("\n")


def run(path, rows, strs=None, batch=None):
    """onnxruntime's outputs for rows (and string columns strs), as plain
    lists; with batch, from calls of that many rows at a time (the order
    MLAS sums in can depend on how many rows a call has)."""
    if batch:
        parts = [run(path, rows[i:i + batch], None if strs is None else strs[i:i + batch])
                 for i in range(0, rows.shape[0], batch)]
        return {k: (parts[0][k] if k == "classes" else [v for p in parts for v in p[k]]) for k in parts[0]}
    sess = session(path)
    feed, col, scol = {}, 0, 0
    np_types = {"tensor(double)": np.float64, "tensor(float)": np.float32, "tensor(int64)": np.int64}
    for inp in sess.get_inputs():
        w = int(np.prod(inp.shape[1:])) if len(inp.shape) > 1 else 1
        shape = (rows.shape[0],) + tuple(inp.shape[1:])
        if inp.type == "tensor(string)":
            feed[inp.name] = strs[:, scol:scol + w].reshape(shape)
            scol += w
        else:
            feed[inp.name] = rows[:, col:col + w].astype(np_types[inp.type]).reshape(shape)
            col += w
    assert col == rows.shape[1], f"{path}: inputs take {col} columns, rows have {rows.shape[1]}"
    outs = sess.run(None, feed)
    res = {}
    for meta, val in zip(sess.get_outputs(), outs):
        if meta.type.startswith("seq(map"):
            keys = list(val[0].keys())
            res["classes"] = [str(k) for k in keys]
            res["probabilities"] = [[float(np.float32(d[k])) for k in keys] for d in val]
        elif meta.type == "tensor(string)" or meta.type == "tensor(int64)":
            res["labels"] = [str(v) for v in np.asarray(val).reshape(-1)]
        else:
            arr = np.asarray(val, dtype=np.float64)
            if arr.ndim == 2 and arr.shape[1] > 1 or "prob" in meta.name:
                res["probabilities"] = arr.reshape(arr.shape[0], -1).tolist()
            else:
                res["values"] = arr.reshape(-1).tolist()
    return res


def jsonable(x):
    """x with non-finite floats as the strings "NaN", "Inf", "-Inf" (JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return "NaN" if np.isnan(x) else ("Inf" if x > 0 else "-Inf")
    return x


class Writer:
    def __init__(self, out):
        self.out = out
        self.manifest = []
        self.rows = {}
        self.models = {}  # name -> (model, rows name)

    def add(self, name, model, rows_name, rows, strs=None, batch=None):
        path = os.path.join(self.out, name + ".onnx")
        if isinstance(model, str):
            os.replace(model, path)
            model = onnx.load(path)
        else:
            onnx.save(model, path)
        self.models[name] = (model, rows_name)
        if rows_name not in self.rows:
            write_rows(os.path.join(self.out, rows_name + ".csv"), rows)
            if strs is not None:
                with open(os.path.join(self.out, rows_name + ".strings.csv"), "w") as f:
                    for row in strs:
                        f.write(",".join(row) + "\n")
            self.rows[rows_name] = (rows, strs)
        rows, strs = self.rows[rows_name]  # models sharing a rows file score the same rows
        res = run(path, rows, strs, batch)
        res = jsonable(res)
        if batch:
            res["batch"] = batch
        res["model"] = name + ".onnx"
        res["rows"] = rows_name + ".csv"
        if strs is not None:
            res["strings"] = rows_name + ".strings.csv"
        with open(os.path.join(self.out, name + ".expected.json"), "w") as f:
            json.dump(res, f)
        entry = {"name": name, "model": name + ".onnx", "expected": name + ".expected.json",
                 "ops": sorted({f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in model.graph.node})}
        self.manifest.append(entry)
        print(f"{name}: {len(rows)} rows, ops {entry['ops']}", flush=True)

    def close(self):
        with open(os.path.join(self.out, "manifest.json"), "w") as f:
            json.dump({"models": self.manifest}, f, indent=1)


def sklearn_models(w, rng):
    from sklearn.datasets import make_classification, make_regression
    from sklearn.ensemble import (GradientBoostingClassifier, GradientBoostingRegressor,
                                  RandomForestClassifier, RandomForestRegressor)
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler
    from skl2onnx import to_onnx

    def conv(est, x, zipmap=True):
        opts = None if zipmap else {id(est): {"zipmap": False}}
        return to_onnx(est, x[:1].astype(np.float32), options=opts, target_opset={"": 17, "ai.onnx.ml": 3})

    xb, yb = make_classification(n_samples=3000, n_features=NFEAT, n_informative=12, random_state=SEED)
    xm, ym = make_classification(n_samples=3000, n_features=NFEAT, n_informative=12, n_classes=3,
                                 random_state=SEED + 1)
    ym_str = np.array(["low", "mid", "high"])[ym]
    xr, yr = make_regression(n_samples=3000, n_features=NFEAT, n_informative=15, noise=5.0,
                             random_state=SEED + 2)
    yr = yr * 1000.0  # large values: relative tolerance matters
    xb, xm, xr = (a.astype(np.float32) for a in (xb, xm, xr))

    models = [
        ("rf_bin", RandomForestClassifier(n_estimators=30, max_depth=10, random_state=SEED), xb, yb, "rows_bin"),
        ("rf_multi", RandomForestClassifier(n_estimators=30, max_depth=10, random_state=SEED), xm, ym_str, "rows_multi"),
        ("gb_bin", GradientBoostingClassifier(n_estimators=40, max_depth=4, random_state=SEED), xb, yb, "rows_bin"),
        ("gb_multi", GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=SEED), xm, ym, "rows_multi"),
        ("logreg_bin", LogisticRegression(max_iter=1000), xb, yb, "rows_bin"),
        ("logreg_multi", LogisticRegression(max_iter=1000), xm, ym_str, "rows_multi"),
        ("scaler_logreg", make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), xm, ym, "rows_multi"),
    ]
    for name, est, x, y, rows_name in models:
        est.fit(x, y)
        rows = None
        for zipmap in (True, False):
            m = conv(est, x, zipmap)
            if rows is None:
                rows = make_rows(rng, x, m)
            suffix = "" if zipmap else "_nozipmap"
            w.add(name + suffix, m, "rows_" + name, rows)

    regs = [
        ("rf_reg", RandomForestRegressor(n_estimators=30, max_depth=10, random_state=SEED)),
        ("gb_reg", GradientBoostingRegressor(n_estimators=50, max_depth=4, random_state=SEED)),
        ("normalizer_linreg", make_pipeline(Normalizer(), LinearRegression())),
    ]
    for name, est in regs:
        est.fit(xr, yr)
        m = to_onnx(est, xr[:1], target_opset={"": 17, "ai.onnx.ml": 3})
        w.add(name, m, "rows_reg_" + name, make_rows(rng, xr, m))

    # The benchmark model: 100 trees, depth 8, 30 features.
    rf = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=SEED).fit(xb, yb)
    m = conv(rf, xb, zipmap=False)
    w.add("rf100_d8", m, "rows_rf100_d8", make_rows(rng, xb, m))


def boosted_models(w, rng):
    import lightgbm
    import xgboost
    from onnxmltools import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType
    from sklearn.datasets import make_classification

    xb, yb = make_classification(n_samples=3000, n_features=NFEAT, n_informative=12, random_state=SEED + 3)
    xm, ym = make_classification(n_samples=3000, n_features=NFEAT, n_informative=12, n_classes=3,
                                 random_state=SEED + 4)
    xb, xm = xb.astype(np.float32), xm.astype(np.float32)
    # Training data with holes so that the boosters learn default directions.
    holes = rng.random(xb.shape) < 0.05
    xb_h = xb.copy()
    xb_h[holes] = np.nan
    xm_h = xm.copy()
    xm_h[rng.random(xm.shape) < 0.05] = np.nan
    types = [("input", FloatTensorType([None, NFEAT]))]

    for name, est, x, y in [
        ("xgb_bin", xgboost.XGBClassifier(n_estimators=40, max_depth=5, random_state=SEED, n_jobs=1), xb_h, yb),
        ("xgb_multi", xgboost.XGBClassifier(n_estimators=30, max_depth=4, random_state=SEED, n_jobs=1), xm_h, ym),
        ("lgbm_bin", lightgbm.LGBMClassifier(n_estimators=40, num_leaves=31, random_state=SEED, n_jobs=1, verbose=-1), xb_h, yb),
        ("lgbm_multi", lightgbm.LGBMClassifier(n_estimators=30, num_leaves=15, random_state=SEED, n_jobs=1, verbose=-1), xm_h, ym),
    ]:
        est.fit(x, y)
        for zipmap in (True, False):
            if name.startswith("xgb"):
                m = convert_xgboost(est, initial_types=types, target_opset=15)
                if not zipmap:
                    continue  # onnxmltools' xgboost converter has no zipmap option
            else:
                m = convert_lightgbm(est, initial_types=types, target_opset=15, zipmap=zipmap)
            suffix = "" if zipmap else "_nozipmap"
            w.add(name + suffix, m, "rows_" + name + suffix, make_rows(rng, x, m))


def conv_default(est, x, **kw):
    """skl2onnx with its defaults (latest opsets, ZipMap on), or ai.onnx.ml 3
    where skl2onnx itself asks for it (IsolationForest)."""
    from skl2onnx import to_onnx
    try:
        return to_onnx(est, x[:1].astype(np.float32), **kw)
    except RuntimeError as e:
        if "target_opset={'ai.onnx.ml': 3}" not in str(e):
            raise
        return to_onnx(est, x[:1].astype(np.float32), target_opset={"": 21, "ai.onnx.ml": 3}, **kw)


def linear_models(w, rng):
    """Every scikit-learn linear classifier and regressor, with converter defaults."""
    from sklearn.datasets import make_classification, make_regression
    from sklearn.linear_model import (ElasticNet, Lasso, LogisticRegression, Perceptron, Ridge,
                                      RidgeClassifier, SGDClassifier, SGDRegressor)
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC, LinearSVR

    nf = 12
    xb, yb = make_classification(n_samples=2000, n_features=nf, n_informative=6, random_state=SEED + 10)
    xm, ym = make_classification(n_samples=2000, n_features=nf, n_informative=6, n_classes=3,
                                 random_state=SEED + 11)
    xr, yr = make_regression(n_samples=2000, n_features=nf, n_informative=6, noise=3.0, random_state=SEED + 12)
    xb, xm, xr = (a.astype(np.float32) for a in (xb, xm, xr))
    ym_str = np.array(["fraud", "ok", "review"])[ym]
    sc = lambda est: make_pipeline(StandardScaler(), est)
    clfs = [
        ("lin_sgd_hinge", sc(SGDClassifier(random_state=SEED))),
        ("lin_sgd_log", sc(SGDClassifier(loss="log_loss", random_state=SEED))),
        ("lin_sgd_modhuber", sc(SGDClassifier(loss="modified_huber", random_state=SEED))),
        ("lin_sgd_sqhinge", sc(SGDClassifier(loss="squared_hinge", random_state=SEED))),
        ("lin_perceptron", sc(Perceptron(random_state=SEED))),
        ("lin_ridgeclf", RidgeClassifier()),
        ("lin_svc", LinearSVC(random_state=SEED)),
        ("lin_logreg_l1", LogisticRegression(penalty="l1", solver="liblinear")),
    ]
    for name, est in clfs:
        for tag, x, y in (("bin", xb, yb), ("multi", xm, ym_str)):
            est.fit(x, y)
            m = conv_default(est, x)
            w.add(f"{name}_{tag}", m, f"rows_lin_{tag}", make_rows(rng, x, m, 1000, 300, 0, 200))
    regs = [
        ("lin_svr", sc(LinearSVR(random_state=SEED, max_iter=5000))),
        ("lin_lasso", Lasso(alpha=0.1)),
        ("lin_elasticnet", ElasticNet(alpha=0.1)),
        ("lin_ridge", Ridge()),
        ("lin_sgd_reg", sc(SGDRegressor(random_state=SEED))),
    ]
    for name, est in regs:
        est.fit(xr, yr)
        m = conv_default(est, xr)
        w.add(name, m, "rows_lin_reg", make_rows(rng, xr, m, 1000, 300, 0, 200))


def ensemble_models(w, rng):
    """IsolationForest, HistGradientBoosting, calibrated, one-vs-rest, voting, stacking."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.datasets import make_classification
    from sklearn.ensemble import (HistGradientBoostingClassifier, HistGradientBoostingRegressor,
                                  IsolationForest, RandomForestClassifier, StackingClassifier,
                                  VotingClassifier)
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    nf = 10
    xb, yb = make_classification(n_samples=2000, n_features=nf, n_informative=5, random_state=SEED + 20)
    xm, ym = make_classification(n_samples=2000, n_features=nf, n_informative=5, n_classes=3,
                                 random_state=SEED + 21)
    xb, xm = xb.astype(np.float32), xm.astype(np.float32)
    xb_h = xb.copy()
    xb_h[rng.random(xb.shape) < 0.05] = np.nan
    xm_h = xm.copy()
    xm_h[rng.random(xm.shape) < 0.05] = np.nan

    iso = IsolationForest(n_estimators=100, random_state=SEED).fit(xb)  # also a benchmark model
    m = conv_default(iso, xb)
    w.add("iso_forest", m, "rows_iso", make_rows(rng, xb, m, 1000, 300, 600, 200))

    for name, est, x, y in [
        ("hgb_bin", HistGradientBoostingClassifier(max_iter=30, random_state=SEED), xb_h, yb),
        ("hgb_multi", HistGradientBoostingClassifier(max_iter=20, random_state=SEED), xm_h, ym),
        ("hgb_reg", HistGradientBoostingRegressor(max_iter=30, random_state=SEED), xb_h, xb[:, 0] * 1000 + yb),
    ]:
        est.fit(x, y)
        m = conv_default(est, x)
        w.add(name, m, "rows_" + name, make_rows(rng, x, m, 1000, 300, 600, 200))

    sc = lambda est: make_pipeline(StandardScaler(), est)
    for name, est, x, y in [
        ("calib_svc_sigmoid", CalibratedClassifierCV(LinearSVC(random_state=SEED), cv=3), xb, yb),
        ("calib_svc_isotonic", CalibratedClassifierCV(LinearSVC(random_state=SEED), cv=3, method="isotonic"), xb, yb),
        ("calib_rf_multi", CalibratedClassifierCV(RandomForestClassifier(n_estimators=5, max_depth=4, random_state=SEED), cv=3), xm, ym),
        ("ovr_logreg", OneVsRestClassifier(LogisticRegression(max_iter=500)), xm, ym),
        ("ovr_logreg_bin", OneVsRestClassifier(LogisticRegression(max_iter=500)), xb, yb),
        ("voting_soft", VotingClassifier([("lr", sc(LogisticRegression(max_iter=500))),
                                          ("rf", RandomForestClassifier(n_estimators=5, max_depth=5, random_state=SEED))],
                                         voting="soft", flatten_transform=False), xm, ym),
        ("voting_hard", VotingClassifier([("lr", sc(LogisticRegression(max_iter=500))),
                                          ("rf", RandomForestClassifier(n_estimators=5, max_depth=5, random_state=SEED)),
                                          ("rf2", RandomForestClassifier(n_estimators=3, max_depth=3, random_state=SEED + 1))],
                                         voting="hard", flatten_transform=False), xb, yb),
        ("stacking", StackingClassifier([("lr", sc(LogisticRegression(max_iter=500))),
                                         ("rf", RandomForestClassifier(n_estimators=5, max_depth=5, random_state=SEED))],
                                        cv=3), xm, ym),
    ]:
        est.fit(x, y)
        m = conv_default(est, x)
        w.add(name, m, "rows_" + name, make_rows(rng, x, m, 1000, 300, 600, 200))


def pipeline_models(w, rng):
    """Preprocessing pipelines over one matrix input."""
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline
    from sklearn.preprocessing import (Binarizer, KBinsDiscretizer, MaxAbsScaler, MinMaxScaler,
                                       RobustScaler, StandardScaler)

    nf = 8
    x, y = make_classification(n_samples=2000, n_features=nf, n_informative=5, random_state=SEED + 30)
    x = x.astype(np.float32)
    xh = x.copy()
    xh[rng.random(x.shape) < 0.1] = np.nan
    lr = lambda: LogisticRegression(max_iter=500)
    kb = KBinsDiscretizer(n_bins=4, encode="onehot-dense", strategy="quantile")
    kbo = KBinsDiscretizer(n_bins=5, encode="ordinal", strategy="uniform")
    bz = Binarizer(threshold=0.25)
    for name, est, xx, extra in [
        ("pipe_imputer_std_lr", make_pipeline(SimpleImputer(), StandardScaler(), lr()), xh, ()),
        ("pipe_imputer_median_minmax_lr", make_pipeline(SimpleImputer(strategy="median"), MinMaxScaler(), lr()), xh, ()),
        ("pipe_imputer_const_robust_lr", make_pipeline(SimpleImputer(strategy="constant", fill_value=-1.0), RobustScaler(), lr()), xh, ()),
        ("pipe_imputer_maxabs_gb", make_pipeline(SimpleImputer(), MaxAbsScaler(), GradientBoostingClassifier(n_estimators=20, random_state=SEED)), xh, ()),
        ("pipe_binarizer_lr", make_pipeline(bz, lr()), x, [(f, 0.25) for f in range(nf)]),
        ("pipe_kbins_onehot_lr", make_pipeline(kb, lr()), x, "kb"),
        ("pipe_kbins_ordinal_lr", make_pipeline(kbo, lr()), x, "kbo"),
        ("pipe_coltrans_lr", make_pipeline(ColumnTransformer([("s", StandardScaler(), [0, 1, 2]),
                                                               ("m", MinMaxScaler(), [5, 6])],
                                                              remainder="passthrough"), lr()), x, ()),
        ("pipe_featunion_lr", make_pipeline(FeatureUnion([("s", StandardScaler()), ("m", MinMaxScaler())]), lr()), x, ()),
    ]:
        est.fit(xx, y)
        if extra in ("kb", "kbo"):
            k = kb if extra == "kb" else kbo
            extra = [(f, float(e)) for f in range(nf) for e in k.bin_edges_[f]]
        m = conv_default(est, xx)
        # onnxruntime's Binarizer fails on NaN (so does tally's): no holes for it.
        n_nan = 0 if "binarizer" in name else 300
        w.add(name, m, "rows_" + name, make_rows(rng, xx, m, 1000, n_nan, 600, 200, extra=extra))


def string_models(w, rng):
    """A numeric feature matrix beside a string column (the category), one
    ONNX input per column as skl2onnx makes them from a DataFrame."""
    import pandas as pd
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    n, nf = 2000, 4
    cats = np.array(["grocery", "travel", "electronics", "gaming", "jewelry", "fuel"])
    x = rng.normal(size=(n, nf)).astype(np.float32)
    cat = cats[rng.integers(0, len(cats), size=n)]
    y = ((x[:, 0] + (cat == "gaming") * 1.5 - (cat == "grocery") + rng.normal(size=n) * 0.5) > 0).astype(np.int64)
    num = [f"x{i}" for i in range(nf)]
    df = pd.DataFrame(x, columns=num)
    df["category"] = cat
    types = [(c, FloatTensorType([None, 1])) for c in num] + [("category", StringTensorType([None, 1]))]
    for name, enc, clf in [
        ("str_onehot_lr", OneHotEncoder(handle_unknown="ignore"), LogisticRegression(max_iter=500)),
        ("str_onehot_gb", OneHotEncoder(handle_unknown="ignore"), GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=SEED)),
        ("str_ordinal_gb", OrdinalEncoder(), GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=SEED)),
    ]:
        est = make_pipeline(ColumnTransformer([("num", make_pipeline(SimpleImputer(), StandardScaler()), num),
                                               ("cat", enc, ["category"])]), clf)
        est.fit(df, y)
        m = to_onnx(est, initial_types=types)
        # The trees split the encoded columns, not the inputs: no thresholds.
        rows = make_rows(rng, x, m, 1000, 300, 0, 100, trees=False)
        pick = cats if name == "str_ordinal_gb" else np.concatenate([cats, ["unknown", ""]])
        strs = pick[rng.integers(0, len(pick), size=(rows.shape[0], 1))]
        w.add(name, m, "rows_" + name, rows, strs)


def categorical_boosters(w, rng):
    """LightGBM and XGBoost with a categorical feature, and CatBoost's own ONNX export."""
    import lightgbm
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType
    from sklearn.datasets import make_classification

    nf = 8
    x, y = make_classification(n_samples=2000, n_features=nf, n_informative=5, random_state=SEED + 40)
    x = x.astype(np.float32)
    x[:, 0] = rng.integers(0, 12, size=x.shape[0])  # a categorical code
    y = np.where(np.isin(x[:, 0], [1, 4, 7]), 1 - y, y)
    x[rng.random(x.shape) < 0.05] = np.nan
    types = [("input", FloatTensorType([None, nf]))]
    est = lightgbm.LGBMClassifier(n_estimators=30, num_leaves=15, random_state=SEED, n_jobs=1, verbose=-1,
                                  min_data_per_group=5, cat_smooth=1)
    est.fit(x, y, categorical_feature=[0])
    m = convert_lightgbm(est, initial_types=types, zipmap=False)
    extra = [(0, float(c)) for c in range(12)]
    w.add("lgbm_categorical", m, "rows_lgbm_categorical", make_rows(rng, x, m, 1000, 300, 600, 200, extra=extra))

    try:
        import xgboost
        from onnxmltools import convert_xgboost
        import pandas as pd
        df = pd.DataFrame(x, columns=[f"f{i}" for i in range(nf)])
        df["f0"] = df["f0"].astype("category")
        xg = xgboost.XGBClassifier(n_estimators=20, max_depth=4, random_state=SEED, n_jobs=1,
                                   tree_method="hist", enable_categorical=True)
        xg.fit(df, y)
        m = convert_xgboost(xg, initial_types=types)
        w.add("xgb_categorical", m, "rows_lgbm_categorical", make_rows(rng, x, m, 1000, 300, 600, 200, extra=extra))
    except Exception as e:  # the converter refuses categorical splits
        print(f"xgb_categorical: skipped, onnxmltools cannot convert it: {type(e).__name__}: {e}".splitlines()[0], flush=True)

    import catboost
    x2 = x.copy()
    for tag, est in [("bin", catboost.CatBoostClassifier(iterations=40, depth=4, random_seed=SEED, verbose=0, thread_count=1, allow_writing_files=False)),
                     ("reg", catboost.CatBoostRegressor(iterations=40, depth=4, random_seed=SEED, verbose=0, thread_count=1, allow_writing_files=False))]:
        target = y if tag == "bin" else x2[:, 1] * 100 + y
        target = np.nan_to_num(target)
        est.fit(x2, target)
        path = os.path.join(w.out, f"catboost_{tag}.tmp.onnx")
        est.save_model(path, format="onnx")
        m = onnx.load(path)
        w.add(f"catboost_{tag}", path, "rows_catboost_" + tag, make_rows(rng, x2, m, 1000, 300, 600, 200))



def more_models(w, rng):
    """Boosted regressors, and two string columns (category and country)
    into one-hot and ordinal encoders beside numbers. Generated last so that
    the rows of the models above stay as they were. (KBinsDiscretizer's
    default encode="onehot" is sparse: skl2onnx refuses to convert it.)"""
    import lightgbm
    import pandas as pd
    import xgboost
    from onnxmltools import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType as SkFloat, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import make_regression
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    nf = 10
    xr, yr = make_regression(n_samples=2000, n_features=nf, n_informative=6, noise=3.0, random_state=SEED + 50)
    xr = xr.astype(np.float32)
    yr = yr * 100.0
    xr_h = xr.copy()
    xr_h[rng.random(xr.shape) < 0.05] = np.nan
    types = [("input", FloatTensorType([None, nf]))]
    for name, est in [
        ("xgb_reg", xgboost.XGBRegressor(n_estimators=40, max_depth=5, random_state=SEED, n_jobs=1)),
        ("lgbm_reg", lightgbm.LGBMRegressor(n_estimators=40, num_leaves=31, random_state=SEED, n_jobs=1, verbose=-1)),
    ]:
        est.fit(xr_h, yr)
        m = convert_xgboost(est, initial_types=types) if name.startswith("xgb") else convert_lightgbm(est, initial_types=types)
        w.add(name, m, "rows_" + name, make_rows(rng, xr_h, m, 1000, 300, 600, 200))

    n, nf = 2000, 3
    cats = np.array(["grocery", "travel", "electronics", "gaming", "jewelry", "fuel"])
    countries = np.array(["FR", "US", "GB", "DE", "NG", "BR", "JP"])
    xs = rng.normal(size=(n, nf)).astype(np.float32)
    cat = cats[rng.integers(0, len(cats), size=n)]
    cty = countries[rng.integers(0, len(countries), size=n)]
    y = ((xs[:, 0] + (cat == "gaming") * 1.5 - (cty == "FR") + (cty == "NG") + rng.normal(size=n) * 0.5) > 0).astype(np.int64)
    num = [f"x{i}" for i in range(nf)]
    df = pd.DataFrame(xs, columns=num)
    df["category"], df["country"] = cat, cty
    stypes = [(c, SkFloat([None, 1])) for c in num] + [("category", StringTensorType([None, 1])), ("country", StringTensorType([None, 1]))]
    for name, clf in [
        ("str_two_cats_lr", LogisticRegression(max_iter=500)),
        ("str_two_cats_hgb", HistGradientBoostingClassifier(max_iter=20, random_state=SEED)),
    ]:
        est = make_pipeline(ColumnTransformer([("num", make_pipeline(SimpleImputer(), StandardScaler()), num),
                                               ("cat", OneHotEncoder(handle_unknown="ignore"), ["category"]),
                                               ("cty", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["country"])]),
                            clf)
        est.fit(df, y)
        m = to_onnx(est, initial_types=stypes)
        rows = make_rows(rng, xs, m, 1000, 300, 0, 100, trees=False)
        pc = np.concatenate([cats, ["unknown", ""]])
        pk = np.concatenate([countries, ["ZZ"]])
        strs = np.stack([pc[rng.integers(0, len(pc), size=rows.shape[0])],
                         pk[rng.integers(0, len(pk), size=rows.shape[0])]], axis=1)
        w.add(name, m, "rows_" + name, rows, strs)


def common_models(w, rng):
    """The other scikit-learn models a fraud team exports, with skl2onnx
    defaults: neural networks, extra trees, PCA and TruncatedSVD before a
    logistic regression, AdaBoost, SVC (RBF kernel, with and without
    probabilities; linear kernel). Generated after more_models so that the
    earlier models' rows stay as they were."""
    from sklearn.datasets import make_classification, make_regression
    from sklearn.decomposition import PCA, TruncatedSVD
    from sklearn.ensemble import AdaBoostClassifier, ExtraTreesClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    nf = 10
    xb, yb = make_classification(n_samples=1200, n_features=nf, n_informative=6, random_state=SEED + 60)
    xm, ym = make_classification(n_samples=1200, n_features=nf, n_informative=6, n_classes=3,
                                 random_state=SEED + 61)
    xr, yr = make_regression(n_samples=1200, n_features=nf, n_informative=6, noise=3.0, random_state=SEED + 62)
    xb, xm, xr = (a.astype(np.float32) for a in (xb, xm, xr))
    ym_str = np.array(["fraud", "ok", "review"])[ym]
    for name, est, x, y in [
        ("mlp_bin", MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=SEED), xb, yb),
        ("mlp_multi", MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=300, random_state=SEED), xm, ym_str),
        ("mlp_reg", MLPRegressor(hidden_layer_sizes=(16,), max_iter=500, random_state=SEED), xr, yr),
        ("et_bin", ExtraTreesClassifier(n_estimators=20, max_depth=8, random_state=SEED), xb, yb),
        ("et_multi", ExtraTreesClassifier(n_estimators=20, max_depth=8, random_state=SEED), xm, ym_str),
        ("pipe_pca_lr", make_pipeline(StandardScaler(), PCA(n_components=5), LogisticRegression(max_iter=500)), xb, yb),
        ("pipe_tsvd_lr", make_pipeline(TruncatedSVD(n_components=5, random_state=SEED), LogisticRegression(max_iter=500)), xm, ym),
        ("ada_bin", AdaBoostClassifier(n_estimators=30, random_state=SEED), xb, yb),
        ("ada_multi", AdaBoostClassifier(n_estimators=30, random_state=SEED), xm, ym),
        ("svc_rbf_prob_bin", SVC(probability=True, random_state=SEED), xb, yb),
        ("svc_rbf_bin", SVC(), xb, yb),
        ("svc_rbf_prob_multi", SVC(probability=True, random_state=SEED), xm, ym),
        ("svc_rbf_multi", SVC(), xm, ym_str),
        ("svc_linear_bin", SVC(kernel="linear"), xb, yb),
    ]:
        est.fit(x, y)
        m = conv_default(est, x)
        w.add(name, m, "rows_" + name, make_rows(rng, x, m, 1000, 300, 300, 200))


def wide_models(w, rng):
    """Models wide enough for onnxruntime's SGEMM to split a dot product
    into blocks (MLAS steps through K in panels of 128 to 1024): an MLP
    with two 256-wide hidden layers and logistic regressions over 1,500
    features. Few training rows and iterations: the weights only have to
    exist. Generated after common_models so that earlier rows stay as they
    were."""
    import warnings

    from sklearn.datasets import make_classification
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    xm, ym = make_classification(n_samples=1200, n_features=10, n_informative=6, n_classes=3,
                                 random_state=SEED + 70)
    xm = xm.astype(np.float32)
    nw = 1500
    xw, yw = make_classification(n_samples=300, n_features=nw, n_informative=40, random_state=SEED + 71)
    xwm, ywm = make_classification(n_samples=300, n_features=nw, n_informative=40, n_classes=3,
                                   random_state=SEED + 72)
    xw, xwm = xw.astype(np.float32), xwm.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, est, x, y, rows in [
            ("mlp_256x256", MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=20, random_state=SEED), xm, ym, (1000, 300, 300, 200)),
            ("lr_wide_bin", LogisticRegression(max_iter=50), xw, yw, (300, 60, 0, 40)),
            ("lr_wide_multi", LogisticRegression(max_iter=50), xwm, ywm, (300, 60, 0, 40)),
        ]:
            est.fit(x, y)
            m = conv_default(est, x)
            w.add(name, m, "rows_" + name, make_rows(rng, x, m, *rows, trees=False))

    # Raw scores, where the trained models' softmax hides the order: a
    # 300 x 300 MatMul and bias Add (onnxruntime fuses them into a Gemm,
    # packed B: blocks of 256 from the bias), a Gemm with alpha, and
    # LinearClassifiers (unpacked B: blocks of 1024 for 3 scores, 128 for
    # 300) with post_transform NONE.
    f32 = lambda a, name: numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)
    mk = helper.make_node
    for name, k, n in [("hand_wide_matmul_add", 300, 300), ("hand_wide_gemm", 600, 5),
                       ("hand_wide_linear_3", 1500, 3), ("hand_wide_linear_300", 300, 300)]:
        rows = rng.normal(size=(300, k)).astype(np.float32)
        wt = rng.normal(size=(k, n)).astype(np.float32)
        bias = rng.normal(size=n).astype(np.float32)
        x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, k])
        ops = [helper.make_opsetid("", 17)]
        if "linear" in name:
            nodes = [mk("LinearClassifier", ["X"], ["label", "scores"], domain="ai.onnx.ml",
                        coefficients=[float(v) for v in wt.T.reshape(-1)], intercepts=[float(v) for v in bias],
                        classlabels_ints=list(range(n)), post_transform="NONE")]
            outs = [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                    helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, n])]
            ops.append(helper.make_opsetid("ai.onnx.ml", 1))
            inits = []
        else:
            if "gemm" in name:
                nodes = [mk("Gemm", ["X", "W", "C"], ["Y"], alpha=0.3, beta=0.7)]
            else:
                nodes = [mk("MatMul", ["X", "W"], ["mm"]), mk("Add", ["mm", "C"], ["Y"])]
            outs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n])]
            inits = [f32(wt, "W"), f32(bias, "C")]
        g = helper.make_graph(nodes, "g", [x], outs, initializer=inits)
        w.add(name, helper.make_model(g, ir_version=9, opset_imports=ops), "rows_" + name, rows)


def coverage_models(w, rng):
    """The rest of what scikit-learn users export: SVR (SVMRegressor, RBF
    and linear kernels, more support vectors than one SGEMM block holds),
    GaussianNB, k-nearest neighbours (skl2onnx's Scan of squared distances,
    TopK, ArrayFeatureExtractor), and MatMul by a one-dimensional constant.
    Generated last so that earlier rows stay as they were."""
    from sklearn.datasets import make_classification, make_regression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR, NuSVR

    nf = 10
    xb, yb = make_classification(n_samples=1200, n_features=nf, n_informative=6, random_state=SEED + 80)
    xm, ym = make_classification(n_samples=1200, n_features=nf, n_informative=6, n_classes=3,
                                 random_state=SEED + 81)
    xr, yr = make_regression(n_samples=1200, n_features=nf, n_informative=6, noise=3.0, random_state=SEED + 82)
    xb, xm, xr = (a.astype(np.float32) for a in (xb, xm, xr))
    ym_str = np.array(["fraud", "ok", "review"])[ym]
    for name, est, x, y in [
        ("svr_rbf", make_pipeline(StandardScaler(), SVR(C=10.0, epsilon=0.01)), xr, yr),
        ("svr_linear", SVR(kernel="linear", C=0.5), xr, yr),
        ("nusvr_rbf", NuSVR(nu=0.3), xr, yr / 100.0),
        ("gnb_bin", GaussianNB(), xb, yb),
        ("gnb_multi", GaussianNB(), xm, ym_str),
        ("knn_bin", KNeighborsClassifier(), xb, yb),
        ("knn_multi", make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=7)), xm, ym_str),
        ("knn_reg", KNeighborsRegressor(), xr, yr),
    ]:
        est.fit(x, y)
        m = conv_default(est, x)
        w.add(name, m, "rows_" + name, make_rows(rng, x, m, 1000, 300, 300, 200, trees=False))

    # MatMul by a vector: [N, k] x [k] -> [N].
    mk = helper.make_node
    for name, k in [("hand_matmul_vec_10", 10)]:
        rows = rng.normal(size=(500, k)).astype(np.float32)
        rows[rng.random(rows.shape) < 0.01] = np.nan
        wt = numpy_helper.from_array(rng.normal(size=k).astype(np.float32), "W")
        nodes = [mk("MatMul", ["X", "W"], ["Y"])]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, k])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None])], initializer=[wt])
        m = helper.make_model(g, ir_version=9, opset_imports=[helper.make_opsetid("", 17)])
        w.add(name, m, "rows_" + name, rows)


def neighbour_models(w, rng):
    """k-nearest neighbours beyond the defaults: distance weights (a
    Reciprocal of the TopK distances, weighted sums), the Manhattan metric
    (a Scan of Abs and ReduceSum), Minkowski with p=3 and 1.5 (Abs, Pow p,
    ReduceSum, then Pow 1/p), and a k large enough for the training rows
    that onnxruntime's TopK sorts instead of keeping a heap, on integer
    features so that distances tie; TopK alone about that switch.
    Generated last so that earlier rows stay as they were."""
    from sklearn.datasets import make_classification, make_regression
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    nf = 8
    xb, yb = make_classification(n_samples=600, n_features=nf, n_informative=5, random_state=SEED + 90)
    xm, ym = make_classification(n_samples=600, n_features=nf, n_informative=5, n_classes=3,
                                 random_state=SEED + 91)
    xr, yr = make_regression(n_samples=600, n_features=nf, n_informative=5, noise=3.0, random_state=SEED + 92)
    xb, xm, xr = (a.astype(np.float32) for a in (xb, xm, xr))
    ym_str = np.array(["fraud", "ok", "review"])[ym]
    # 60 training rows of small integers: for k = 25, log2(k)/log2(60) is
    # past onnxruntime's 0.725, so TopK takes nth_element and sort.
    xt = np.round(xm[:60] * 1.5).astype(np.float32)
    yt = ym[:60]
    for name, est, x, y in [
        ("knn_dist_bin", KNeighborsClassifier(weights="distance"), xb, yb),
        ("knn_dist_multi", make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=7, weights="distance")), xm, ym_str),
        ("knn_dist_reg", KNeighborsRegressor(weights="distance"), xr, yr),
        ("knn_manhattan_multi", KNeighborsClassifier(metric="manhattan"), xm, ym),
        ("knn_manhattan_reg", KNeighborsRegressor(metric="manhattan", weights="distance"), xr, yr),
        ("knn_minkowski3_bin", KNeighborsClassifier(p=3), xb, yb),
        ("knn_minkowski3_reg", KNeighborsRegressor(p=3), xr, yr),
        ("knn_minkowski15_reg", KNeighborsRegressor(p=1.5, weights="distance"), xr, yr),
        ("knn_ties_k25", KNeighborsClassifier(n_neighbors=25), xt, yt),
        ("knn_ties_k25_dist_manhattan", KNeighborsClassifier(n_neighbors=25, weights="distance", metric="manhattan"), xt, yt),
    ]:
        est.fit(x, y)
        m = conv_default(est, x)
        rows = make_rows(rng, x, m, 600, 200, 0, 100, trees=False)
        if name.startswith("knn_ties"):
            rows[:700] = np.round(rows[:700] * 1.5)
        w.add(name, m, "rows_" + name, rows)

    # TopK on both sides of onnxruntime's switch from a heap to
    # nth_element and sort (k >= 4 and log2(k)/log2(n) >= 0.725), sorted
    # and not, over rows of small integers (ties), signed zeros, infinities
    # and NaNs (some rows all NaN). Indices and values in one output.
    n, dim = 1500, 40
    rows = rng.integers(-4, 5, size=(n, dim)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.1] = np.nan
    rows[rng.random(rows.shape) < 0.03] = -0.0
    rows[rng.random(rows.shape) < 0.02] = np.inf
    rows[rng.random(rows.shape) < 0.02] = -np.inf
    rows[rng.random(n) < 0.05] = np.nan
    mk = helper.make_node
    nodes, cat, inits = [], [], []
    for j, (k, largest, srt) in enumerate([(20, 1, 1), (20, 0, 0), (30, 1, 0), (6, 0, 1), (6, 1, 0), (40, 0, 1), (4, 1, 1)]):
        inits.append(numpy_helper.from_array(np.array([k], dtype=np.int64), f"k{j}"))
        nodes += [mk("TopK", ["X", f"k{j}"], [f"v{j}", f"i{j}"], largest=largest, sorted=srt),
                  mk("Cast", [f"i{j}"], [f"f{j}"], to=TensorProto.FLOAT)]
        cat += [f"v{j}", f"f{j}"]
    # [N, 8] for the last: k = 4 of 8 is past the switch (2/3 is not).
    inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "s0"))
    inits.append(numpy_helper.from_array(np.array([8], dtype=np.int64), "s8"))
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1"))
    nodes.insert(0, mk("Slice", ["X", "s0", "s8", "ax1"], ["X8"]))
    nodes[-2].input[0] = "X8"
    nodes.append(mk("Concat", cat, ["values"], axis=1))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, dim])],
                          [helper.make_tensor_value_info("values", TensorProto.FLOAT, [None, None])], initializer=inits)
    m = helper.make_model(g, ir_version=9, opset_imports=[helper.make_opsetid("", 17)])
    w.add("hand_topk_large_k", m, "rows_hand_topk_large_k", rows)


def imputer_models(w, rng):
    """Imputer on a rank-3 tensor [N, 2, 3]: onnxruntime takes the
    per-column values when there are dims[1] of them (here 2, cycling over
    the flattened row), and otherwise only the first (3 values, as many as
    the last axis, or 4); float and int64. Generated last so that earlier
    rows stay as they were."""
    n = 1000
    rows = rng.integers(-2, 3, size=(n, 6)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.2] = np.nan
    mk = helper.make_node
    ml = "ai.onnx.ml"
    inits = [numpy_helper.from_array(np.array([-1, 2, 3], dtype=np.int64), "s3"),
             numpy_helper.from_array(np.array([-1, 6], dtype=np.int64), "s2")]
    nodes = [mk("Reshape", ["X", "s3"], ["x3"]),
             mk("Imputer", ["x3"], ["a"], domain=ml, imputed_value_floats=[10.0, 20.0], replaced_value_float=float("nan")),
             mk("Imputer", ["x3"], ["b"], domain=ml, imputed_value_floats=[10.0, 20.0, 30.0], replaced_value_float=float("nan")),
             mk("Imputer", ["x3"], ["c"], domain=ml, imputed_value_floats=[1.0, 2.0, 3.0, 4.0], replaced_value_float=0.0),
             mk("Imputer", ["x3"], ["d"], domain=ml, imputed_value_floats=[7.0], replaced_value_float=1.0),
             mk("Cast", ["b"], ["bi"], to=TensorProto.INT64),
             mk("Imputer", ["bi"], ["e"], domain=ml, imputed_value_int64s=[-5, -6], replaced_value_int64=2),
             mk("Imputer", ["bi"], ["f"], domain=ml, imputed_value_int64s=[-5, -6, -7], replaced_value_int64=-1),
             mk("Cast", ["e"], ["ef"], to=TensorProto.FLOAT),
             mk("Cast", ["f"], ["ff"], to=TensorProto.FLOAT)]
    cat = []
    for v in ["a", "b", "c", "d", "ef", "ff"]:
        nodes.append(mk("Reshape", [v, "s2"], [v + "2"]))
        cat.append(v + "2")
    nodes.append(mk("Concat", cat, ["values"], axis=1))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 6])],
                          [helper.make_tensor_value_info("values", TensorProto.FLOAT, [None, 36])], initializer=inits)
    m = helper.make_model(g, ir_version=9, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ml, 3)])
    w.add("hand_imputer_rank3", m, "rows_hand_imputer_rank3", rows)


def gemv_models(w, rng):
    """MatMul by a one-dimensional constant, which onnxruntime does not
    pack: MLAS runs its M=1 kernels, whose order depends on the rows in
    the call (one, or blocks of four, two and one), so each model is also
    scored one row per call. 503 rows leave a block of two and one; K = 7
    fits in the kernels' remainders, K = 300 spans their loops; [N, 3, 300]
    makes M three times the rows. Generated last so that earlier rows stay
    as they were."""
    mk = helper.make_node
    for name, k, outer in [("hand_matmul_vec_300", 300, 1), ("hand_matmul_vec_7", 7, 1),
                           ("hand_matmul_vec_3x300", 300, 3)]:
        rows = rng.normal(size=(503, k * outer)).astype(np.float32)
        rows[rng.random(rows.shape) < 0.002] = np.nan
        wt = numpy_helper.from_array(rng.normal(size=k).astype(np.float32), "W")
        inits = [wt]
        if outer == 1:
            nodes = [mk("MatMul", ["X", "W"], ["Y"])]
            out = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None])
        else:
            inits.append(numpy_helper.from_array(np.array([-1, outer, k], dtype=np.int64), "s"))
            nodes = [mk("Reshape", ["X", "s"], ["x3"]), mk("MatMul", ["x3", "W"], ["Y"])]
            out = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, outer])
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, k * outer])],
                              [out], initializer=inits)
        m = helper.make_model(g, ir_version=9, opset_imports=[helper.make_opsetid("", 17)])
        w.add(name, m, "rows_" + name, rows)
        w.add(name + "_batch1", m, "rows_" + name, rows, batch=1)


def one_row_models(w):
    """Models whose float32 GEMM onnxruntime runs differently for a call of
    one row (MLAS's M = 1 kernel: eight lanes, reduced by blocks of
    scores), scored again one row per call on the same rows: the linear
    models (unpacked coefficients), SVR with RBF and linear kernels, a
    linear-kernel SVC. Generated last."""
    for name in ["hand_wide_linear_3", "hand_wide_linear_300", "lin_ridge", "lin_svc_multi", "svr_rbf",
                 "svr_linear", "svc_linear_bin"]:
        model, rows_name = w.models[name]
        w.add(name + "_batch1", model, rows_name, None, batch=1)


def random_tree(rng, depth, nfeat, modes, leaf_cb, top=True):
    """A random binary tree as nested dicts (the root is never a leaf)."""
    if depth == 0 or (not top and rng.random() < 0.15):
        return {"leaf": leaf_cb()}
    mode = modes[rng.integers(0, len(modes))]
    node = {"mode": mode, "feat": int(rng.integers(0, nfeat)),
            "missing": int(rng.random() < 0.4)}
    if mode == "BRANCH_MEMBER":
        node["set"] = sorted({float(v) for v in rng.integers(0, 6, size=rng.integers(1, 4))})
    elif mode in ("BRANCH_EQ", "BRANCH_NEQ"):
        node["thr"] = float(rng.integers(0, 6))
    else:
        node["thr"] = float(np.float32(rng.integers(0, 6) + 0.5 * rng.integers(0, 2)))
    node["t"] = random_tree(rng, depth - 1, nfeat, modes, leaf_cb, False)
    node["f"] = random_tree(rng, depth - 1, nfeat, modes, leaf_cb, False)
    return node


def v3_attrs(trees, classifier):
    """TreeEnsemble{Classifier,Regressor} (ai.onnx.ml 3) node attributes."""
    a = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes",
                         "nodes_values", "nodes_truenodeids", "nodes_falsenodeids",
                         "nodes_missing_value_tracks_true", "t_ids", "t_nodeids", "t_treeids", "t_weights")}
    for tid, tree in enumerate(trees):
        counter = [0]

        def emit(node):
            nid = counter[0]
            counter[0] += 1
            pos = len(a["nodes_nodeids"])
            a["nodes_treeids"].append(tid)
            a["nodes_nodeids"].append(nid)
            if "leaf" in node:
                for cls, wt in node["leaf"]:
                    a["t_ids"].append(cls)
                    a["t_nodeids"].append(nid)
                    a["t_treeids"].append(tid)
                    a["t_weights"].append(wt)
                for k, v in (("nodes_featureids", 0), ("nodes_modes", "LEAF"), ("nodes_values", 0.0),
                             ("nodes_truenodeids", 0), ("nodes_falsenodeids", 0),
                             ("nodes_missing_value_tracks_true", 0)):
                    a[k].append(v)
                return nid
            a["nodes_featureids"].append(node["feat"])
            a["nodes_modes"].append(node["mode"])
            a["nodes_values"].append(node["thr"])
            a["nodes_missing_value_tracks_true"].append(node["missing"])
            a["nodes_truenodeids"].append(0)
            a["nodes_falsenodeids"].append(0)
            a["nodes_truenodeids"][pos] = emit(node["t"])
            a["nodes_falsenodeids"][pos] = emit(node["f"])
            return nid

        emit(tree)
    p = "class_" if classifier else "target_"
    out = {k: v for k, v in a.items() if not k.startswith("t_")}
    out[p + "ids"] = a["t_ids"]
    out[p + "nodeids"] = a["t_nodeids"]
    out[p + "treeids"] = a["t_treeids"]
    out[p + "weights"] = a["t_weights"]
    return out


def v5_attrs(trees):
    """TreeEnsemble (ai.onnx.ml 5) attributes: interior nodes and leaves in separate arrays."""
    nodes = {k: [] for k in ("featureids", "modes", "splits", "true", "trueleaf", "false", "falseleaf",
                             "missing")}
    leaves = {"targetids": [], "weights": []}
    members = []
    roots = []
    code = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4,
            "BRANCH_NEQ": 5, "BRANCH_MEMBER": 6}

    def emit(node):
        """Returns (index, is_leaf)."""
        if "leaf" in node:
            (tgt, wt), = node["leaf"]
            leaves["targetids"].append(tgt)
            leaves["weights"].append(wt)
            return len(leaves["weights"]) - 1, True
        i = len(nodes["modes"])
        for k in nodes:
            nodes[k].append(0)
        nodes["featureids"][i] = node["feat"]
        nodes["modes"][i] = code[node["mode"]]
        nodes["missing"][i] = node["missing"]
        if node["mode"] == "BRANCH_MEMBER":
            members.extend(node["set"] + [float("nan")])
            nodes["splits"][i] = float("nan")
        else:
            nodes["splits"][i] = node["thr"]
        nodes["true"][i], t_leaf = emit(node["t"])
        nodes["false"][i], f_leaf = emit(node["f"])
        nodes["trueleaf"][i], nodes["falseleaf"][i] = int(t_leaf), int(f_leaf)
        return i, False

    for tree in trees:
        idx, leaf = emit(tree)
        assert not leaf
        roots.append(idx)
    return nodes, leaves, members, roots


def handbuilt_models(w, rng):
    """Models sklearn never emits: every branch mode, missing tracks, all post transforms."""
    nf = 6
    base = rng.integers(0, 6, size=(2000, nf)).astype(np.float32)
    base[rng.random(base.shape) < 0.1] = np.nan
    base[rng.random(base.shape) < 0.1] += np.float32(0.5)
    rows = base
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, nf])
    v3_modes = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]

    def wt():
        return float(np.float32(rng.normal()))

    # Regressors: each aggregate and each post transform.
    for agg, post, ntarg in [("SUM", "NONE", 1), ("AVERAGE", "NONE", 1), ("MIN", "NONE", 1), ("MAX", "NONE", 1),
                             ("SUM", "PROBIT", 1), ("SUM", "NONE", 3), ("SUM", "SOFTMAX", 3),
                             ("SUM", "SOFTMAX_ZERO", 3), ("AVERAGE", "LOGISTIC", 3), ("MAX", "NONE", 3)]:
        def leaf():
            if post == "PROBIT":
                return [(0, float(np.float32(rng.uniform(0.01, 0.09))))]
            return [(t, wt()) for t in range(ntarg) if ntarg == 1 or rng.random() < 0.7] or [(0, wt())]
        trees = [random_tree(rng, 5, nf, v3_modes, leaf) for _ in range(8)]
        a = v3_attrs(trees, classifier=False)
        bv = [float(np.float32(rng.normal())) for _ in range(ntarg)]
        node = helper.make_node("TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=ntarg,
                                aggregate_function=agg, post_transform=post,
                                base_values=bv if post != "PROBIT" else [0.1], **a)
        y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, ntarg])
        g = helper.make_graph([node], "g", [x], [y])
        m = helper.make_model(g, ir_version=9, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
        w.add(f"hand_reg_{agg.lower()}_{post.lower()}_{ntarg}", m, "rows_hand", rows)

    # Classifiers: binary single-weight, binary both weights, multi-class; string and int labels.
    for tag, ncls, single, post, labels in [
        ("bin1_logistic", 2, True, "LOGISTIC", [0, 1]),
        ("bin1_none", 2, True, "NONE", [10, 20]),
        ("bin1_prob_none", 2, "prob", "NONE", [0, 1]),
        ("bin2_none", 2, False, "NONE", ["no", "yes"]),
        ("multi_softmax", 4, False, "SOFTMAX", ["a", "b", "c", "d"]),
        ("multi_softmax_zero", 4, False, "SOFTMAX_ZERO", [3, 5, 7, 9]),
        ("multi_logistic", 3, False, "LOGISTIC", [0, 1, 2]),
    ]:
        def leaf():
            if single == "prob":
                return [(1, float(np.float32(rng.uniform(0, 1) / 8)))]
            if single:
                return [(0, wt())]
            return [(c, wt()) for c in range(ncls) if rng.random() < 0.8] or [(0, wt())]
        trees = [random_tree(rng, 5, nf, v3_modes, leaf) for _ in range(8)]
        a = v3_attrs(trees, classifier=True)
        kw = {"classlabels_strings": labels} if isinstance(labels[0], str) else {"classlabels_int64s": labels}
        if tag.startswith("bin1_logistic"):
            kw["base_values"] = [0.25]
        node = helper.make_node("TreeEnsembleClassifier", ["X"], ["label", "probabilities"], domain="ai.onnx.ml",
                                post_transform=post, **kw, **a)
        lt = TensorProto.STRING if isinstance(labels[0], str) else TensorProto.INT64
        outs = [helper.make_tensor_value_info("label", lt, [None]),
                helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, ncls])]
        g = helper.make_graph([node], "g", [x], outs)
        m = helper.make_model(g, ir_version=9, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
        w.add("hand_clf_" + tag, m, "rows_hand", rows)

    # Opset 5 TreeEnsemble with set membership, float and double.
    v5_modes = v3_modes + ["BRANCH_MEMBER", "BRANCH_MEMBER"]
    for agg_code, post_code, ntarg, dtype in [(1, 0, 1, np.float32), (0, 0, 2, np.float32), (3, 0, 2, np.float32),
                                              (1, 0, 2, np.float64), (1, 1, 3, np.float32), (1, 2, 3, np.float32)]:
        trees = [random_tree(rng, 5, nf, v5_modes, lambda: [(int(rng.integers(0, ntarg)), wt())])
                 for _ in range(8)]
        nodes, leaves, members, roots = v5_attrs(trees)
        tt = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
        node = helper.make_node(
            "TreeEnsemble", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=ntarg, aggregate_function=agg_code,
            post_transform=post_code, tree_roots=roots,
            nodes_featureids=nodes["featureids"],
            nodes_modes=numpy_helper.from_array(np.array(nodes["modes"], dtype=np.uint8)),
            nodes_splits=numpy_helper.from_array(np.array(nodes["splits"], dtype=dtype)),
            nodes_truenodeids=nodes["true"], nodes_trueleafs=nodes["trueleaf"],
            nodes_falsenodeids=nodes["false"], nodes_falseleafs=nodes["falseleaf"],
            nodes_missing_value_tracks_true=nodes["missing"],
            membership_values=numpy_helper.from_array(np.array(members, dtype=dtype)),
            leaf_targetids=leaves["targetids"],
            leaf_weights=numpy_helper.from_array(np.array(leaves["weights"], dtype=dtype)))
        xin = helper.make_tensor_value_info("X", tt, [None, nf])
        y = helper.make_tensor_value_info("Y", tt, [None, ntarg])
        g = helper.make_graph([node], "g", [xin], [y])
        m = helper.make_model(g, ir_version=9, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", 5)])
        dt = "f64" if dtype == np.float64 else "f32"
        w.add(f"hand_v5_agg{agg_code}_post{post_code}_{ntarg}_{dt}", m, "rows_hand", rows)


def graph_models(w, rng):
    """The elementwise and shape operators a converter puts around the ML ones."""
    nf = 6
    rows = rng.normal(size=(2000, nf)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.05] = np.nan
    f32 = lambda a: numpy_helper.from_array(np.asarray(a, dtype=np.float32))
    inits = [
        numpy_helper.from_array(np.asarray(rng.normal(size=nf), dtype=np.float32), "c_add"),
        numpy_helper.from_array(np.asarray([1.5], dtype=np.float32), "c_mul"),
        numpy_helper.from_array(np.asarray(rng.normal(size=(1, nf)), dtype=np.float32), "c_sub"),
        numpy_helper.from_array(np.asarray(rng.uniform(0.5, 2, size=nf), dtype=np.float32), "c_div"),
        numpy_helper.from_array(np.asarray([-1, 2 * nf], dtype=np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("Add", ["X", "c_add"], ["a"]),
        helper.make_node("Mul", ["c_mul", "a"], ["b"]),
        helper.make_node("Sub", ["b", "c_sub"], ["c"]),
        helper.make_node("Div", ["c", "c_div"], ["d"]),
        helper.make_node("Sigmoid", ["d"], ["s"]),
        helper.make_node("Softmax", ["d"], ["sm"], axis=1),
        helper.make_node("Concat", ["s", "sm"], ["cat"], axis=1),
        helper.make_node("Reshape", ["cat", "shape"], ["r"]),
        helper.make_node("Flatten", ["r"], ["fl"], axis=1),
        helper.make_node("Identity", ["X"], ["xd"]),
        helper.make_node("FeatureVectorizer", ["fl", "xd"], ["fv"], domain="ai.onnx.ml",
                         inputdimensions=[2 * nf, nf]),
        helper.make_node("Identity", ["fv"], ["fvi"]),
        helper.make_node("LinearClassifier", ["fvi"], ["lab", "scores"], domain="ai.onnx.ml",
                         coefficients=[float(v) for v in rng.normal(size=4 * 3 * nf)],
                         intercepts=[float(v) for v in rng.normal(size=4)],
                         classlabels_ints=[2, 4, 6, 8], post_transform="NONE"),
        helper.make_node("Softmax", ["scores"], ["probabilities"]),
        helper.make_node("ArgMax", ["probabilities"], ["am"], axis=1, keepdims=1),
        helper.make_node("Cast", ["am"], ["label"], to=TensorProto.INT64),
    ]
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, nf])
    outs = [helper.make_tensor_value_info("label", TensorProto.INT64, [None, 1]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 4])]
    g = helper.make_graph(nodes, "g", [x], outs, initializer=inits)
    m = helper.make_model(g, ir_version=9, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    w.add("hand_graph_ops", m, "rows_graph", rows)


def general_graph_models(w, rng):
    """Hand-built graphs over the general operators converters emit less
    often: broadcasting, reductions, Gemm, Slice with steps, Gather,
    Squeeze/Unsqueeze, Where, Clip, variadic Max/Min/Sum/Mean, logic; an
    int64 and a string input through CategoryMapper, LabelEncoder and
    OneHotEncoder; double MatMul."""
    nf = 6
    rows = rng.normal(size=(2000, nf)).astype(np.float32) * 2
    rows[rng.random(rows.shape) < 0.05] = np.nan
    rows[rng.random(rows.shape) < 0.02] = 0.0
    T = numpy_helper.from_array
    f32 = lambda a, name: T(np.asarray(a, dtype=np.float32), name)
    i64 = lambda a, name: T(np.asarray(a, dtype=np.int64), name)
    mk = helper.make_node
    inits = [
        f32(rng.normal(size=(4, nf)), "W"), f32(rng.normal(size=4), "C"),
        i64([1], "ax1"), i64([3], "s3"), i64([-5], "e5"), i64([-1], "m1"), i64([5, 0, 2], "gidx"),
        f32([-1.0], "lo"), f32([1.0], "hi"), f32([1.5], "p15"), f32([0.0], "zero"), f32([1.0], "one"),
        f32(rng.normal(size=(1, 4)), "row4"), i64([0], "ax0s"), i64([-1, 3], "shp"),
    ]
    nodes = [
        mk("Gemm", ["X", "W", "C"], ["g"], transB=1, alpha=0.5, beta=2.0),
        mk("Unsqueeze", ["g", "ax1"], ["u"]),
        mk("ReduceMax", ["u"], ["rm"], axes=[2], keepdims=0),
        mk("Squeeze", ["u", "ax1"], ["sq"]),
        mk("Slice", ["sq", "s3", "e5", "ax1", "m1"], ["rev"]),
        mk("ReduceLogSumExp", ["sq"], ["lse"], axes=[1], keepdims=1),
        mk("ReduceMean", ["sq"], ["mean"], axes=[1]),
        mk("ReduceSum", ["sq", "ax1"], ["rsum"], keepdims=1),
        mk("ReduceMin", ["rev"], ["rmin"], axes=[-1]),
        mk("Sub", ["sq", "lse"], ["ls"]),
        mk("Abs", ["ls"], ["ab"]),
        mk("Sqrt", ["ab"], ["sr"]),
        mk("Pow", ["sr", "p15"], ["pw"]),
        mk("Clip", ["sq", "lo", "hi"], ["cl"]),
        mk("Greater", ["sq", "zero"], ["gt"]),
        mk("Neg", ["sq"], ["ng"]),
        mk("Where", ["gt", "sq", "ng"], ["wh"]),
        mk("Max", ["wh", "cl", "row4"], ["mx"]),
        mk("Min", ["wh", "cl", "rev"], ["mn"]),
        mk("Sum", ["mx", "mn", "rm"], ["sm"]),
        mk("Mean", ["mx", "mn"], ["me"]),
        mk("Gather", ["X", "gidx"], ["ga"], axis=1),
        mk("Exp", ["ga"], ["ex"]),
        mk("Add", ["ab", "one"], ["ab1"]),
        mk("Log", ["ab1"], ["lg"]),
        mk("Less", ["ga", "one"], ["lt"]),
        mk("Greater", ["ga", "zero"], ["gz"]),
        mk("And", ["lt", "gz"], ["and"]),
        mk("Not", ["and"], ["nand"]),
        mk("Or", ["nand", "lt"], ["or"]),
        mk("Cast", ["or"], ["orf"], to=TensorProto.FLOAT),
        mk("Softmax", ["sq"], ["smx"], axis=-1),
        mk("Sigmoid", ["rsum"], ["sg"]),
        mk("Div", ["mean", "hi"], ["dv"]),
        mk("Concat", ["rm", "rev", "lse", "mean", "rsum", "rmin", "pw", "sm", "me", "ex", "lg", "orf", "smx", "sg", "dv"],
           ["values"], axis=1),
        mk("ArgMax", ["sq"], ["am"], axis=1, keepdims=0),
        mk("ArgMin", ["rev"], ["an"], axis=-1, keepdims=1),
        mk("Reshape", ["an", "m1"], ["anr"]),
        mk("Add", ["am", "anr"], ["label"]),
    ]
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, nf])
    outs = [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("values", TensorProto.FLOAT, [None, None])]
    g = helper.make_graph(nodes, "g", [x], outs, initializer=inits)
    m = helper.make_model(g, ir_version=9, opset_imports=[helper.make_opsetid("", 17)])
    w.add("hand_general_ops", m, "rows_general", rows)

    # An int64 code and a string category.
    n = 2000
    codes = rng.integers(-1, 8, size=(n, 1)).astype(np.float32)
    cats = np.array(["grocery", "travel", "gaming", "fuel", "other", ""])
    strs = cats[rng.integers(0, len(cats), size=(n, 1))]
    nodes = [
        mk("CategoryMapper", ["cat"], ["cid"], domain="ai.onnx.ml",
           cats_strings=["grocery", "travel", "gaming"], cats_int64s=[3, 1, 2], default_int64=-7),
        mk("LabelEncoder", ["cat"], ["cw"], domain="ai.onnx.ml",
           keys_strings=["gaming", "fuel"], values_floats=[2.5, -1.0], default_float=0.25),
        mk("LabelEncoder", ["code"], ["cname"], domain="ai.onnx.ml",
           keys_int64s=[0, 1, 2, 3, 4], values_strings=["a", "b", "c", "a", "e"], default_string="none"),
        mk("CategoryMapper", ["cname"], ["cback"], domain="ai.onnx.ml",
           cats_strings=["a", "b", "c"], cats_int64s=[10, 20, 30], default_int64=-1),
        mk("OneHotEncoder", ["code"], ["oh"], domain="ai.onnx.ml", cats_int64s=[0, 2, 4, 6], zeros=1),
        mk("OneHotEncoder", ["cat"], ["ohs"], domain="ai.onnx.ml", cats_strings=["travel", "fuel", "zzz"], zeros=1),
        mk("Reshape", ["oh", "shp0"], ["oh2"]),
        mk("Reshape", ["ohs", "shp0"], ["ohs2"]),
        mk("Equal", ["cat", "gam"], ["isg"]),
        mk("Cast", ["isg"], ["isgf"], to=TensorProto.FLOAT),
        mk("Cast", ["cid"], ["cidf"], to=TensorProto.FLOAT),
        mk("Cast", ["cback"], ["cbf"], to=TensorProto.FLOAT),
        mk("Mul", ["code", "two"], ["code2"]),
        mk("Cast", ["code2"], ["code2f"], to=TensorProto.FLOAT),
        mk("Concat", ["cidf", "cw", "cbf", "oh2", "ohs2", "isgf", "code2f"], ["values"], axis=1),
        mk("Identity", ["cname"], ["label"]),
    ]
    ins = [helper.make_tensor_value_info("code", TensorProto.INT64, [None, 1]),
           helper.make_tensor_value_info("cat", TensorProto.STRING, [None, 1])]
    outs = [helper.make_tensor_value_info("label", TensorProto.STRING, [None, 1]),
            helper.make_tensor_value_info("values", TensorProto.FLOAT, [None, None])]
    inits = [i64([-1, 4], "shp0"), T(np.array(["gaming"], dtype=object), "gam"), i64([2], "two")]
    inits[0] = i64([0, -1], "shp0")
    g = helper.make_graph(nodes, "g", ins, outs, initializer=inits)
    m = helper.make_model(g, ir_version=9, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid("ai.onnx.ml", 2)])
    w.add("hand_string_int_ops", m, "rows_string_int", codes, strs)

    # LabelEncoder with tensor keys and values (ai.onnx.ml 4).
    nodes = [
        mk("LabelEncoder", ["code"], ["lv"], domain="ai.onnx.ml",
           keys_tensor=i64([0, 2, 5], "k"), values_tensor=f32([0.5, -2.0, 7.25], "v"),
           default_tensor=f32([9.0], "d")),
        mk("LabelEncoder", ["cat"], ["li"], domain="ai.onnx.ml",
           keys_tensor=T(np.array(["travel", "fuel"], dtype=object), "k"), values_tensor=i64([3, 4], "v"),
           default_tensor=i64([-5], "d")),
        mk("Cast", ["li"], ["lif"], to=TensorProto.FLOAT),
        mk("Concat", ["lv", "lif"], ["values"], axis=1),
    ]
    g = helper.make_graph(nodes, "g", ins, [helper.make_tensor_value_info("values", TensorProto.FLOAT, [None, 2])])
    m = helper.make_model(g, ir_version=9, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid("ai.onnx.ml", 4)])
    w.add("hand_labelencoder_v4", m, "rows_string_int", codes, strs)

    # Double precision: MatMul, Div, Cast down to float.
    rows64 = rng.normal(size=(1500, 5)).astype(np.float32)
    nodes = [
        mk("MatMul", ["X", "M"], ["mm"]),
        mk("Div", ["mm", "d"], ["dv"]),
        mk("Cast", ["dv"], ["values"], to=TensorProto.FLOAT),
    ]
    inits = [T(rng.normal(size=(5, 3)).astype(np.float64), "M"), T(np.asarray([3.0], dtype=np.float64), "d")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, 5])],
                          [helper.make_tensor_value_info("values", TensorProto.FLOAT, [None, 3])], initializer=inits)
    m = helper.make_model(g, ir_version=9, opset_imports=[helper.make_opsetid("", 17)])
    w.add("hand_double_matmul", m, "rows_double", rows64)



def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                               "..", "testdata", "generated")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(SEED)
    w = Writer(out)
    handbuilt_models(w, rng)
    graph_models(w, rng)
    general_graph_models(w, rng)
    sklearn_models(w, rng)
    boosted_models(w, rng)
    linear_models(w, rng)
    ensemble_models(w, rng)
    pipeline_models(w, rng)
    string_models(w, rng)
    categorical_boosters(w, rng)
    more_models(w, rng)
    common_models(w, rng)
    wide_models(w, rng)
    coverage_models(w, rng)
    neighbour_models(w, rng)
    imputer_models(w, rng)
    gemv_models(w, rng)
    one_row_models(w)
    w.close()
    print(f"wrote {len(w.manifest)} models to {out}")


if __name__ == "__main__":
    main()
