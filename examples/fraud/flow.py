"""The seed's real-time fraud flow (Tecton + Databricks + MLflow) against one
tally node, in four steps:

1. Stream features: the feature repo (fraud.yaml) is already served; generate
   labelled synthetic transactions and backfill them as history.
2. Train with MLflow: point-in-time training data by time travel
   (get_historical_features), a scikit-learn RandomForest, tracked in MLflow.
3. Serve the model: export it to ONNX and drop it into the feature repo; tally
   reloads it and scores in process (the seed's MLflow serving endpoint).
4. Real-time predictions: stream new transactions; score each before it is
   ingested, as a payment system would.

Run it with run.sh, which builds and starts the node. The last lines are
`RESULT key=value`, for tests.

With --spark (run.sh --spark) the flow is the seed's notebook on Spark: the
history is ingested and the spine joined as PySpark DataFrames, the training
set lands in a Delta table, and the model is registered in an MLflow Model
Registry (the tracking server run.sh starts) and served by tally from there:
moving the alias `champion` to the new version swaps it in.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tally import Client

import generate

SERVICE = "fraud_detection"
MINUTE = 60_000

# Sizes: (users, transactions a second, hours of history, seconds of live stream)
SIZES = {"default": (20_000, 20.0, 4.0, 60), "small": (4_000, 6.0, 1.5, 20)}
T0 = time.monotonic()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="the tally node")
    ap.add_argument("--workdir", required=True, type=Path, help="holds repo/ (the served feature repo) and mlflow/")
    ap.add_argument("--small", action="store_true", help="a quick run (CI)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--users", type=int)
    ap.add_argument("--rate", type=float, help="transactions a second, in history and live")
    ap.add_argument("--hours", type=float, help="hours of history to backfill")
    ap.add_argument("--live-seconds", type=float, help="seconds of live stream")
    ap.add_argument("--threshold", type=float, default=0.3, help="p(fraud) at which a transaction is flagged")
    ap.add_argument("--spark", action="store_true",
                    help="PySpark DataFrames, a Delta training table and the MLflow Model Registry (MLFLOW_TRACKING_URI)")
    args = ap.parse_args()
    users, rate, hours, live_s = SIZES["small" if args.small else "default"]
    users, rate = args.users or users, args.rate or rate
    hours, live_s = args.hours or hours, args.live_seconds or live_s

    client = Client(args.url)
    world = generate.make_world(users, args.seed)
    args.session = spark_session(args.workdir) if args.spark else None

    header("Step 1 of 4: stream features", "seed: performant stream processing pipelines in Tecton")
    features = step_features(client)
    history = step_backfill(client, world, args.seed, rate, hours, args.session)

    header("Step 2 of 4: train a model with time-travelled features, tracked in MLflow",
           "seed: training a model with features from Tecton using Databricks and MLflow")
    training = step_training_data(client, history, args)
    model = step_train(args, training, features)

    header("Step 3 of 4: serve the model", "seed: creating a model serving endpoint in Databricks using MLflow")
    step_serve(args, client, model, history)

    header("Step 4 of 4: real-time predictions", "seed: real-time predictions with the serving endpoint and real-time features from Tecton")
    step_live(args, client, world, rate, live_s)
    print(f"\ndone in {time.monotonic() - T0:.0f} s")


def header(title, seed):
    print(f"\n{'=' * 78}\n{title}   [at {time.monotonic() - T0:.0f} s]\n  ({seed})\n{'=' * 78}", flush=True)


def result(key, value):
    print(f"RESULT {key}={value}", flush=True)


# Step 1.

def step_features(client):
    svc = next(s for s in client.feature_services() if s["name"] == SERVICE)
    print(f"1a. The features are defined in fraud.yaml and served by tally. Feature service {SERVICE}:")
    print(f"    join keys {', '.join(svc['joinKeys'])}; request context {', '.join(svc['requestContext'])}")
    for f in svc["features"]:
        print(f"    {f['name']:<52} {f['dataType']['type']}")
    return [f["name"] for f in svc["features"]]


def step_backfill(client, world, seed, rate, hours, spark=None):
    now = now_ms()
    end = now - MINUTE  # up to a minute ago
    start = end - int(hours * 3_600_000)
    t = time.monotonic()
    history = generate.transactions(world, start, end, rate, fraud_share=0.01, seed=seed)
    n_fraud = int(history.is_fraud.sum())
    print(f"\n1b. Generated {len(history):,} labelled transactions of {world.users.shape[0]:,} card holders over the last "
          f"{hours:g} h ({n_fraud:,} fraud, {n_fraud / len(history):.2%}) in {time.monotonic() - t:.1f} s:")
    shown = history.tail(5).copy()
    shown["timestamp"] = pd.to_datetime(shown["timestamp"], unit="ms").dt.strftime("%H:%M:%S.%f").str[:-3]
    print(indent(shown.to_string(index=False)))
    t = time.monotonic()
    # The profile is valid from the start of history, so every historical row sees it.
    rows = client.upload_table("user_profile", world.profile(), as_of=start)
    if spark is not None:
        events = spark.createDataFrame(history)
        res = client.ingest("transactions", events, backfill=True)
        print(f"    (a Spark DataFrame of {events.rdd.getNumPartitions()} partitions, streamed through the driver)")
    else:
        res = client.ingest("transactions", history, backfill=True)
    took = time.monotonic() - t
    print(f"    uploaded user_profile ({rows:,} rows, valid from {iso(start)}) and backfilled {res.accepted:,} "
          f"transactions in {took:.1f} s ({res.accepted / took:,.0f}/s; {res.too_late} too late)")
    result("history_rows", len(history))
    return history


# Step 2.

def step_training_data(client, history, args):
    spine = history[["user_id", "merchant", "country", "timestamp", "amt", "lat", "long", "is_fraud"]]
    t = time.monotonic()
    if args.session is not None:
        # The seed's notebook: a Spark spine in, a Spark DataFrame out, saved to the lakehouse as Delta.
        sdf = args.session.createDataFrame(spine.assign(row=np.arange(len(spine))))
        training_sdf = client.get_historical_features(SERVICE, sdf, timestamp_key="timestamp",
                                                      spark_output_dir=str(args.workdir / "historical"))
        table = args.workdir / "training.delta"
        training_sdf.write.format("delta").mode("overwrite").save(str(table))
        training = (args.session.read.format("delta").load(str(table)).toPandas()
                    .sort_values("row").set_index(spine.index).drop(columns="row"))
        print(f"    (Spark: the training set is a Spark DataFrame, saved as the Delta table {table})")
        result("delta_rows", len(training))
    else:
        training = client.get_historical_features(SERVICE, spine, timestamp_key="timestamp")
    took = time.monotonic() - t
    print(f"2a. Training data by time travel: get_historical_features({SERVICE!r}, spine) on {len(spine):,} labelled "
          f"transactions in {took:.1f} s.")
    print("    Each row has the features a lookup at the start of that transaction's millisecond would have seen")
    print("    (the transaction itself not counted). A burst, as its rows saw it:")
    cols = ["user_id", "timestamp", "amt", "is_fraud", "user_transaction_counts.amt_count_1m",
            "user_distinct_merchants.merchant_distinct_count_1h", "transaction_request.distance_from_home_km",
            "transaction_request.amt_to_user_mean_1d"]
    peak = training["user_transaction_counts.amt_count_1m"].fillna(0).astype(float).idxmax()
    rows = training[cols][training.user_id == training.at[peak, "user_id"]]
    at = rows.index.get_loc(peak)
    rows = rows.iloc[max(0, at - 4):at + 2].copy()
    rows.columns = ["user_id", "timestamp", "amt", "is_fraud", "count_1m", "merchants_1h", "km_from_home", "amt/mean_1d"]
    rows["timestamp"] = pd.to_datetime(rows["timestamp"], unit="ms").dt.strftime("%H:%M:%S.%f").str[:-3]
    print(indent(rows.to_string(index=False, float_format=lambda x: f"{x:.2f}")))
    result("training_rows", len(training))
    return training


def step_train(args, training, features):
    import mlflow
    import mlflow.sklearn
    import sklearn
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score

    # Missing features stay NaN, as tally sends them to the model:
    # scikit-learn's RandomForest (>= 1.4) learns where missing values go.
    x = training[features].astype("float64").to_numpy(dtype=np.float32, na_value=np.nan)
    y = training["is_fraud"].to_numpy()
    # Hold out the last quarter of time: the model is judged on transactions
    # after the ones it learned from, as it will be in production.
    cut = int(len(y) * 0.75)
    x_train, x_test, y_train, y_test = x[:cut], x[cut:], y[:cut], y[cut:]
    params = dict(n_estimators=100, max_depth=10, min_samples_leaf=5, max_samples=0.3)
    store = args.workdir / "mlflow"
    store.mkdir(parents=True, exist_ok=True)
    experiment = "tally-fraud"
    if args.spark:  # the tracking server run.sh started, with its model registry
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        if mlflow.get_experiment_by_name(experiment) is None:
            mlflow.create_experiment(experiment)
    else:
        mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
        if mlflow.get_experiment_by_name(experiment) is None:
            mlflow.create_experiment(experiment, artifact_location=(store / "artifacts").as_uri())
    mlflow.set_experiment(experiment)

    t = time.monotonic()
    clf = RandomForestClassifier(**params, n_jobs=2, random_state=args.seed)
    clf.fit(x_train, y_train)
    fit_s = time.monotonic() - t
    p = clf.predict_proba(x_test)[:, 1]
    flagged = p >= args.threshold
    metrics = {
        "roc_auc": roc_auc_score(y_test, p),
        "average_precision": average_precision_score(y_test, p),
        "precision": precision_score(y_test, flagged, zero_division=0),
        "recall": recall_score(y_test, flagged, zero_division=0),
    }
    onnx_path = args.workdir / "fraud_model.onnx"
    onx = to_onnx(clf, initial_types=[("features", FloatTensorType([None, len(features)]))],
                  options={id(clf): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    onnx_path.write_bytes(onx.SerializeToString())

    with mlflow.start_run(run_name="random-forest") as run:
        mlflow.log_params(params)
        mlflow.log_params({"feature_service": SERVICE, "n_features": len(features), "threshold": args.threshold,
                           "training_rows": len(y_train), "test_rows": len(y_test), "seed": args.seed})
        mlflow.log_metrics(metrics)
        mlflow.sklearn.log_model(clf, name="random-forest-model", input_example=x_test[:3],
                                 pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
                                 skops_trusted_types=["sklearn.tree._tree.Tree"])
        mlflow.log_artifact(str(onnx_path), artifact_path="onnx")
        if args.spark:
            import mlflow.onnx

            info = mlflow.onnx.log_model(onx, name="onnx-model", registered_model_name=REGISTERED_MODEL,
                                         pip_requirements=["onnxruntime"])
            args.model_version = str(info.registered_model_version)
    print(f"2b. Trained a RandomForestClassifier({', '.join(f'{k}={v}' for k, v in params.items())}) on "
          f"{len(y_train):,} rows ({int(y_train.sum())} fraud) in {fit_s:.1f} s.")
    print(f"    Held out the last 25% of time ({len(y_test):,} rows, {int(y_test.sum())} fraud): ROC AUC {metrics['roc_auc']:.3f}, "
          f"average precision {metrics['average_precision']:.3f}, at p >= {args.threshold}: precision "
          f"{metrics['precision']:.2f}, recall {metrics['recall']:.2f}")
    top = sorted(zip(features, clf.feature_importances_), key=lambda f: -f[1])[:5]
    print("    Most important features: " + ", ".join(f"{n} ({v:.2f})" for n, v in top))
    print(f"    MLflow run {run.info.run_id} in experiment {experiment!r}: params, metrics, the scikit-learn model, "
          f"and the ONNX export ({onnx_path.stat().st_size // 1024} KiB) as an artifact")
    print(f"    (look at it: .venv/bin/mlflow ui --backend-store-uri sqlite:///{store / 'mlflow.db'})")
    result("heldout_auc", f"{metrics['roc_auc']:.4f}")
    result("mlflow_run_id", run.info.run_id)
    if args.spark:
        print(f"    Registered the ONNX model as models:/{REGISTERED_MODEL}/{args.model_version}")
        result("model_version", args.model_version)
    result("mlflow_tracking_uri", mlflow.get_tracking_uri())
    return clf


# Step 3.

def step_serve(args, client, clf, history):
    """Swaps the served model for the trained one and waits until tally
    scores with it: a probe request's probability matches what scikit-learn
    computes on the same features."""
    def sklearn_p(pred):
        row = np.array([[np.nan if v is None else v for v in pred.features.values()]], dtype=np.float32)
        return float(clf.predict_proba(row)[0, 1])

    # The probe: of recent transactions, the one where the served (default)
    # model and the new one disagree most, so the swap is unmistakable.
    candidates = pd.concat([history[history.is_fraud == 1].tail(10), history[history.is_fraud == 0].tail(10)])
    probes = []
    for _, tx in candidates.iterrows():
        pred = client.predict(SERVICE, join_keys(tx), request_context(tx))
        probes.append((abs(fraud_p(pred) - sklearn_p(pred)), tx, fraud_p(pred)))
    _, probe, p_before = max(probes, key=lambda x: x[0])

    if args.spark:
        from mlflow import MlflowClient

        MlflowClient().set_registered_model_alias(REGISTERED_MODEL, "champion", args.model_version)
        print(f"Moved the alias models:/{REGISTERED_MODEL}@champion to version {args.model_version}: tally serves that alias")
        print("from the registry, polls it (every second here) and swaps the new version in without dropping requests.")
    else:
        repo_model = args.workdir / "repo" / "fraud_model.onnx"
        tmp = repo_model.with_suffix(".onnx.tmp")
        tmp.write_bytes((args.workdir / "fraud_model.onnx").read_bytes())
        os.replace(tmp, repo_model)  # atomic: tally never reads half a file
        print(f"Wrote the ONNX model over {repo_model}: the seed registers the model and enables an MLflow")
        print("serving endpoint; tally watches its feature repo's model files (every second) and scores in process.")
    t = time.monotonic()
    deadline = t + 30
    while True:
        pred = client.predict(SERVICE, join_keys(probe), request_context(probe))
        p_now, p_want = fraud_p(pred), sklearn_p(pred)
        if abs(p_now - p_want) < 1e-4:
            break
        if time.monotonic() > deadline:
            sys.exit(f"tally did not load the new model within 30 s: p(fraud) {p_now:.4f}, scikit-learn says {p_want:.4f}; see tally.log")
        time.sleep(0.2)
    took = time.monotonic() - t
    print(f"tally reloaded the model after {took:.1f} s: the probe transaction ({probe.user_id}, ${probe.amt:,.2f}) "
          f"scored p(fraud) {p_before:.3f} with the default model, now {p_now:.3f} (scikit-learn on the same "
          f"features: {p_want:.3f})")
    if args.spark:
        svc = next(s for s in client.feature_services() if s["name"] == SERVICE)
        print(f"GET /api/v1/feature-services: model {svc['model']['source']} serving version {svc['model']['version']}")
        result("serving_version", svc["model"]["version"])
    result("model_reloaded", "true")
    result("reload_seconds", f"{took:.1f}")


# Step 4.

def step_live(args, client, world, rate, live_s):
    from sklearn.metrics import roc_auc_score

    live = generate.transactions(world, 0, int(live_s * 1000), rate, fraud_share=0.01, seed=args.seed + 1,
                                 min_episodes=4, max_episode_ms=int(live_s * 1000 * 0.5))
    every = max(1, len(live) // 25)
    print(f"Streaming {len(live):,} new transactions over {live_s:g} s ({int(live.is_fraud.sum())} fraud, "
          f"unknown to the model). Each is scored BEFORE it is ingested, as a payment system would;")
    print(f"shown: every {every}th, and every flagged (p >= {args.threshold}) or actually fraudulent one.")
    print(f"{'time':>6}  {'user_id':<12} {'merchant':<14} {'ctry':<4} {'amount':>9} {'km home':>8} "
          f"{'tx 1m':>5}  {'p(fraud)':>8}")
    scores, latencies, served, stamps = [], [], [], []
    acked = 0
    t0 = time.monotonic()
    for i, tx in enumerate(live.itertuples(index=False)):
        wait = t0 + tx.timestamp / 1000 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        # The payment arrives: stamped in a millisecond after the previous
        # one was ingested, and scored as of that stamp, so that its training
        # row later (a lookup at the start of its millisecond) is exactly
        # what was scored now.
        while now_ms() <= acked:
            time.sleep(0.0002)
        record = tx._asdict()
        record["timestamp"] = now_ms()
        t = time.perf_counter()
        pred = client.predict(SERVICE, join_keys(tx), request_context(tx), as_of=record["timestamp"])
        latencies.append(time.perf_counter() - t)
        p = fraud_p(pred)
        scores.append(p)
        served.append(pred.features)
        stamps.append(record["timestamp"])
        client.ingest("transactions", [record])
        acked = now_ms()
        if i % every == 0 or p >= args.threshold or tx.is_fraud:
            km = pred.features.get("transaction_request.distance_from_home_km")
            count = pred.features.get("user_transaction_counts.amt_count_1m")
            flag = ("FLAGGED" if p >= args.threshold else "") + ("  (was fraud)" if tx.is_fraud else "")
            print(f"{time.monotonic() - t0:5.1f}s  {tx.user_id:<12} {tx.merchant:<14} {tx.country:<4} "
                  f"{tx.amt:>9,.2f} {'' if km is None else f'{km:,.0f}':>8} {count:>5}  {p:8.3f}  {flag}", flush=True)
    elapsed = time.monotonic() - t0
    y, s = live.is_fraud.to_numpy(), np.array(scores)
    flagged = s >= args.threshold
    lat = np.array(latencies) * 1000
    auc = roc_auc_score(y, s)
    tp = int((flagged & (y == 1)).sum())
    print(f"\nScored {len(live):,} live transactions in {elapsed:.1f} s ({len(live) / elapsed:.0f}/s): "
          f"live ROC AUC {auc:.3f}; flagged {int(flagged.sum())}, of which {tp} fraud; caught {tp} of {int(y.sum())} fraud.")
    print(f"Predict latency as the client saw it (features + model, HTTP over loopback): "
          f"p50 {np.percentile(lat, 50):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms, max {lat.max():.1f} ms (#{int(lat.argmax())}).")
    skew_check(client, live.assign(timestamp=stamps), pd.DataFrame(served))
    result("live_rows", len(live))
    result("live_auc", f"{auc:.4f}")
    result("predict_p50_ms", f"{np.percentile(lat, 50):.3f}")
    result("predict_p99_ms", f"{np.percentile(lat, 99):.3f}")


def skew_check(client, live, served):
    """Training/serving skew: time travel to each streamed transaction must
    give the features predict served for it."""
    spine = live[["user_id", "merchant", "country", "timestamp", "amt", "lat", "long"]]
    t = time.monotonic()
    offline = client.get_historical_features(SERVICE, spine, timestamp_key="timestamp")
    took = time.monotonic() - t
    same = np.ones(len(live), dtype=bool)
    differ = []
    for name in served.columns:
        a = served[name].astype("float64").to_numpy()
        b = offline[name].astype("float64").to_numpy(na_value=np.nan)
        ok = np.isclose(a, b, rtol=1e-9, atol=1e-9) | (np.isnan(a) & np.isnan(b))
        same &= ok
        if not ok.all():
            differ.append(f"{name} ({int((~ok).sum())} rows)")
    print(f"Training/serving skew: get_historical_features on the streamed transactions ({took:.1f} s) gives the "
          f"very features predict served for {int(same.sum())} of {len(live)}" + (": differ " + ", ".join(differ) if differ else "."))
    result("skew_rows_same", f"{int(same.sum())}/{len(live)}")


# Helpers.

REGISTERED_MODEL = "fraud_detector"


def spark_session(workdir):
    """A local SparkSession with Delta Lake (jars cached by scripts/spark-setup.sh)."""
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    root = Path(__file__).resolve().parents[2]
    b = (SparkSession.builder.master("local[2]").appName("tally-fraud-example")
         .config("spark.jars.ivy", str(root / ".venv" / "ivy2"))
         .config("spark.ui.enabled", "false")
         .config("spark.sql.shuffle.partitions", "2")
         .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
         .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"))
    s = configure_spark_with_delta_pip(b).getOrCreate()
    s.sparkContext.setLogLevel("ERROR")
    return s


def join_keys(tx):
    return {"user_id": tx.user_id, "merchant": tx.merchant, "country": tx.country}


def request_context(tx):
    return {"amt": float(tx.amt), "lat": float(tx.lat), "long": float(tx.long)}


def fraud_p(pred):
    if pred.status != "PRESENT":
        sys.exit(f"tally could not score: {pred.status} {pred.error}")
    return pred.probabilities["1"]


def now_ms():
    return int(time.time() * 1000)


def iso(ms):
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M:%S UTC")


def indent(text, by="    "):
    return "\n".join(by + line for line in text.splitlines())


if __name__ == "__main__":
    main()
