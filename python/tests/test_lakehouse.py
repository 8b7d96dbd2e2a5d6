"""Spark and Delta Lake: PySpark DataFrames through the SDK, and `tally export
--format delta` read back by Spark (delta-spark) and delta-rs (deltalake).

One local SparkSession serves every test (starting one takes ~10 s). The
tests skip without pyspark, delta-spark or deltalake (scripts/spark-setup.sh
installs them), unless TALLY_REQUIRE_SPARK=1 (as `make python` sets).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT, Server
from support import event, now_ms

import tally
import tally._spark
import tally.client

SVC = "fraud_detection"


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        msg = f"{module} is not installed: run scripts/spark-setup.sh"
        if os.environ.get("TALLY_REQUIRE_SPARK") == "1":
            pytest.fail(msg + " (TALLY_REQUIRE_SPARK=1)")
        pytest.skip(msg)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    _require("pyspark")
    _require("delta")
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    b = (
        SparkSession.builder.master("local[2]")
        .appName("tally-tests")
        .config("spark.jars.ivy", str(REPO_ROOT / ".venv" / "ivy2"))
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
    )
    s = configure_spark_with_delta_pip(b).getOrCreate()
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


@pytest.fixture
def local_tz() -> Iterator[None]:
    """The Python process in a zone far from UTC, where PySpark's naive
    datetimes differ from UTC by hours."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.fixture
def fresh_server(tally_binary: Path, tmp_path: Path) -> Iterator[Server]:
    s = Server(tally_binary, tmp_path)
    yield s
    s.stop()


def _events(t0: pd.Timestamp, n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = []
    for i in range(n):
        ts = t0 + pd.Timedelta(seconds=int(i * 37 + rng.integers(0, 30)))
        rows.append(event(f"u{i % 6}", ts, float(rng.integers(1, 500)), merchant=f"m{i % 4}", country="FR" if i % 3 else "DE"))
    df = pd.DataFrame(rows)
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df


def _spine(t0: pd.Timestamp, n: int = 40) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "user_id": [f"u{i % 7}" for i in range(n)],  # u6 never seen
            "merchant": [f"m{i % 4}" for i in range(n)],
            "country": ["FR" if i % 2 else "DE" for i in range(n)],
            "timestamp": [t0 + pd.Timedelta(seconds=int(i * 150)) for i in range(n)],
            "amt": [float(10 + i) for i in range(n)],
            "lat": 48.0,
            "long": 2.0,
            "label": [i % 2 for i in range(n)],
        }
    )


def _to_spark(spark: Any, df: pd.DataFrame) -> Any:
    """df as a Spark DataFrame with `timestamp` a TimestampType column."""
    from pyspark.sql import functions as F

    d = df.copy()
    d["timestamp"] = d["timestamp"].map(lambda t: int(t.value // 1_000_000))
    sdf = spark.createDataFrame(d)
    return sdf.withColumn("timestamp", F.timestamp_millis(F.col("timestamp")))


def _same(a: pd.Series, b: pd.Series) -> bool:
    return all((pd.isna(x) and pd.isna(y)) or x == y or (isinstance(x, float) and abs(x - y) <= 1e-12 * max(1.0, abs(x))) for x, y in zip(a, b))


def test_spark_ingest_and_spine_equal_the_pandas_path(
    spark: Any, fresh_client: tally.Client, local_tz: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks: several ingest and historical requests stream through.
    monkeypatch.setattr(tally.client, "INGEST_CHUNK_RECORDS", 25)
    monkeypatch.setattr(tally._spark, "SPINE_CHUNK_ROWS", 9)
    from pyspark.sql import types as T

    t0 = (now_ms() - pd.Timedelta(days=2)).floor("s")
    events = _events(t0)
    res = fresh_client.ingest("transactions", _to_spark(spark, events), backfill=True)
    assert res.accepted == len(events)

    spine = _spine(t0)
    want = fresh_client.get_historical_features(SVC, spine)
    sdf = _to_spark(spark, spine)
    got_sdf = fresh_client.get_historical_features(SVC, sdf)
    assert type(got_sdf).__name__ == "DataFrame" and type(got_sdf).__module__.startswith("pyspark.sql")
    fields = {f.name: f.dataType for f in got_sdf.schema.fields}
    assert fields["user_transaction_counts.amt_count_1m"] == T.LongType()
    assert fields["user_transaction_amounts.amt_mean_1h"] == T.DoubleType()
    assert fields["timestamp"] == T.TimestampType() and fields["label"] == T.LongType()
    assert got_sdf.columns == [*spine.columns, *[c for c in want.columns if c not in spine.columns]]

    got = got_sdf.toPandas().sort_values("id").reset_index(drop=True)
    assert len(got) == len(spine)
    assert list(got["label"]) == list(spine["label"])
    feats = [c for c in want.columns if c not in spine.columns]
    assert feats
    for c in feats:
        assert _same(got[c], want[c]), f"{c}: spark {list(got[c])} != pandas {list(want[c])}"
    # Something was counted, and the unseen user was not.
    assert want["user_transaction_counts.amt_count_1h"].max() > 0
    assert (want[spine["user_id"] == "u6"]["user_transaction_counts.amt_count_1h"] == 0).all()


def test_spark_spine_before_1973(spark: Any, fresh_client: tally.Client, local_tz: None) -> None:
    # A Spark timestamp says its unit: the node reads it as given, where
    # integer milliseconds that small are refused as epoch seconds.
    t = pd.Timestamp("1971-06-01T12:00:00Z")
    assert fresh_client.ingest("transactions", [event("u1", t, 10.0)], backfill=True).accepted == 1
    spine = _spine(t, 2).assign(user_id="u1", merchant="m1", country="FR", timestamp=[t, t + pd.Timedelta(milliseconds=1)])
    got = fresh_client.get_historical_features(SVC, _to_spark(spark, spine)).toPandas().sort_values("id")
    assert got["user_transaction_counts.amt_count_1m"].tolist() == [0, 1]


def test_spark_bad_event_is_refused_with_its_index(spark: Any, fresh_client: tally.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tally.client, "INGEST_CHUNK_RECORDS", 10)
    t0 = (now_ms() - pd.Timedelta(days=2)).floor("s")
    events = _events(t0, 30)
    events["user_id"] = events["user_id"].astype(object)
    events.loc[23, "user_id"] = None  # a record without its join key
    with pytest.raises(tally.TallyError) as e:
        fresh_client.ingest("transactions", _to_spark(spark, events), backfill=True)
    assert e.value.accepted_before == 20
    assert any(r.get("index") == 23 for r in e.value.records), e.value.records


def _epoch_ms(s: pd.Series) -> list[int]:
    """A time column as epoch ms: datetimes (naive = UTC) converted; integers,
    or their text (a CSV spine's column passes through as text), as they are."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return [int(v) for v in (pd.to_datetime(s, utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)]
    return [int(v) for v in s]


def _export(binary: Path, server: Server, spine: Path, out: Path, *extra: str) -> str:
    r = subprocess.run(
        [str(binary), "export", "--service", SVC, "--spine", str(spine), "--out", str(out), "--data-dir", str(server.log_path.parent / "data"), "--quiet", *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_delta_export_read_by_spark_and_delta_rs(spark: Any, tally_binary: Path, fresh_server: Server, tmp_path: Path) -> None:
    deltalake = _require("deltalake")
    t0 = (now_ms() - pd.Timedelta(days=2)).floor("s")
    with tally.Client(fresh_server.url) as c:
        assert c.ingest("transactions", _events(t0), backfill=True).accepted == 120
    spine = _spine(t0)
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    s2 = spine.copy()
    s2["id"] += 1000
    for path, df in ((first, spine), (second, s2)):
        d = df.copy()
        d["timestamp"] = d["timestamp"].map(lambda t: int(t.value // 1_000_000))
        d.to_csv(path, index=False)
    table = tmp_path / "training"
    assert "committed version 0" in _export(tally_binary, fresh_server, first, table, "--format", "delta")
    assert "committed version 1" in _export(tally_binary, fresh_server, second, table, "--format", "delta")
    parts = []
    for i, path in enumerate((first, second)):
        out = tmp_path / f"part{i}.parquet"
        _export(tally_binary, fresh_server, path, out)
        parts.append(pd.read_parquet(out))
    want = pd.concat(parts).sort_values("id").reset_index(drop=True)

    dt = deltalake.DeltaTable(str(table))
    assert dt.version() == 1
    rs = dt.to_pandas().sort_values("id").reset_index(drop=True)
    sp = spark.read.format("delta").load(str(table)).toPandas().sort_values("id").reset_index(drop=True)
    assert spark.sql(f"DESCRIBE HISTORY delta.`{table}`").count() == 2
    for name, got in (("delta-rs", rs), ("spark", sp)):
        assert list(got.columns) == list(want.columns), name
        assert len(got) == len(want) == 2 * len(spine), name
        for c in want.columns:
            g, w = got[c], want[c]
            if c == "timestamp":
                assert _epoch_ms(g) == _epoch_ms(w), f"{name}: {c}"
                continue
            assert _same(g, w), f"{name}: column {c}: {list(g)[:5]} != {list(w)[:5]}"
