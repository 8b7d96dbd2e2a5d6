"""Trains models, exports them to ONNX and records onnxruntime's outputs.

The Go parity test (score/onnx/parity_test.go) reads what this writes:

  OUT/manifest.json          one entry per model: file names and output kinds
  OUT/<model>.onnx           the exported model
  OUT/<model>.expected.json  onnxruntime's labels / probabilities / values
  OUT/<rows>.csv             input rows (float32 shortest repr, "nan" = missing)

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
    """(feature, threshold) pairs of every tree node in the model."""
    pairs = []
    for node in model.graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type in ("TreeEnsembleClassifier", "TreeEnsembleRegressor"):
            feats = list(attrs["nodes_featureids"].ints)
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


def make_rows(rng, base, model, n_random=1500, n_nan=500, n_thr=1000):
    """Random rows from base, rows with NaNs, rows on split thresholds."""
    nf = base.shape[1]
    idx = rng.integers(0, base.shape[0], size=n_random + n_nan + n_thr)
    rows = base[idx].astype(np.float32).copy()
    # NaN block: 1 to 5 missing features per row.
    for r in range(n_random, n_random + n_nan):
        k = rng.integers(1, 6)
        rows[r, rng.choice(nf, size=k, replace=False)] = np.nan
    pairs = tree_thresholds(model)
    if pairs:
        for r in range(n_random + n_nan, rows.shape[0]):
            for _ in range(8):
                f, v = pairs[rng.integers(0, len(pairs))]
                v = np.float32(v)
                shift = rng.integers(0, 3)
                if shift == 1:
                    v = np.nextafter(v, np.float32(np.inf), dtype=np.float32)
                elif shift == 2:
                    v = np.nextafter(v, np.float32(-np.inf), dtype=np.float32)
                rows[r, f] = v
    return rows


def write_rows(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(",".join("nan" if np.isnan(v) else repr(float(v)) for v in row))
            f.write("\n")


def run(path, rows):
    """onnxruntime's outputs for rows, as plain lists."""
    sess = session(path)
    inp = sess.get_inputs()[0]
    x = rows.astype(np.float64 if inp.type == "tensor(double)" else np.float32)
    outs = sess.run(None, {inp.name: x})
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

    def add(self, name, model, rows_name, rows, tol=None):
        path = os.path.join(self.out, name + ".onnx")
        onnx.save(model, path)
        if rows_name not in self.rows:
            write_rows(os.path.join(self.out, rows_name + ".csv"), rows)
            self.rows[rows_name] = rows
        res = run(path, rows)
        res = jsonable(res)
        res["model"] = name + ".onnx"
        res["rows"] = rows_name + ".csv"
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


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                               "..", "testdata", "generated")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(SEED)
    w = Writer(out)
    handbuilt_models(w, rng)
    graph_models(w, rng)
    sklearn_models(w, rng)
    boosted_models(w, rng)
    w.close()
    print(f"wrote {len(w.manifest)} models to {out}")


if __name__ == "__main__":
    main()
