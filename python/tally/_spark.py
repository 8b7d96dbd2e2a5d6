"""PySpark DataFrames in and out of the client, without importing pyspark
unless one is given.

Rows stream through the driver in bounded chunks (``toLocalIterator``), never
collected whole: ingest sends each chunk as it comes; historical features join
each chunk of the spine and append the answer to a Parquet directory, which
the returned DataFrame reads.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from . import _convert

#: Spine rows per historical-features request from a Spark spine: well under
#: the node's 32 MiB body limit for a spine of keys, a timestamp and a few
#: numbers. Each request replays the node's archive once.
SPINE_CHUNK_ROWS = 200_000


def is_spark_frame(obj: Any) -> bool:
    """True for a pyspark.sql DataFrame (classic or Spark Connect)."""
    t = type(obj)
    return t.__name__ == "DataFrame" and t.__module__.startswith("pyspark.sql") and hasattr(obj, "toLocalIterator")


def _timestamp_columns(sdf: Any) -> tuple[set[str], set[str]]:
    from pyspark.sql import types as T

    ts: set[str] = set()
    ntz: set[str] = set()
    for f in sdf.schema.fields:
        if isinstance(f.dataType, T.TimestampType):
            ts.add(f.name)
        elif type(f.dataType).__name__ == "TimestampNTZType":
            ntz.add(f.name)
    return ts, ntz


def _epoch_ms_converter(sdf: Any) -> Any:
    """Returns f(column, value) giving epoch ms for timestamp columns (exact:
    Spark's own conversion of the Python value it made), the value otherwise.

    PySpark hands TimestampType values to Python as naive local datetimes;
    read as UTC they would shift by the local offset. TimestampNTZ values are
    wall-clock times, read as UTC as the pandas path reads naive times.
    """
    from pyspark.sql import types as T

    ts, ntz = _timestamp_columns(sdf)
    ts_type = T.TimestampType()
    ntz_type = T.TimestampNTZType() if ntz else None

    def conv(col: str, v: Any) -> Any:
        if v is None:
            return None
        if col in ts:
            return ts_type.toInternal(v) // 1000
        if col in ntz:
            return ntz_type.toInternal(v) // 1000  # type: ignore[union-attr]
        return v

    return conv


def record_chunks(sdf: Any, chunk_rows: int) -> Iterator[list[dict[str, Any]]]:
    """Yields the rows of sdf as lists of at most chunk_rows dicts (timestamps
    as epoch ms), streaming partition by partition."""
    conv = _epoch_ms_converter(sdf)
    cols = sdf.columns
    chunk: list[dict[str, Any]] = []
    for row in sdf.toLocalIterator():
        chunk.append({c: conv(c, v) for c, v in zip(cols, row)})
        if len(chunk) >= chunk_rows:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _spark_type(data_type: dict[str, Any]) -> Any:
    """The Spark type of a feature's dataType as /api/v1/feature-services
    gives it ({"type": "int64"}, {"type": "array", "elementType": {...}})."""
    from pyspark.sql import types as T

    t = data_type.get("type", "")
    if t == "array":
        return T.ArrayType(_spark_type(data_type.get("elementType") or {}))
    return {"int64": T.LongType(), "float64": T.DoubleType(), "bool": T.BooleanType()}.get(t, T.StringType())


def _python(v: Any) -> Any:
    """A pandas/numpy cell as the plain Python value Spark takes."""
    import pandas as pd

    if v is None or v is pd.NA:
        return None
    if isinstance(v, float) and v != v:
        return None
    if hasattr(v, "item") and not isinstance(v, (list, tuple)):
        try:
            return v.item()
        except (AttributeError, ValueError):
            return v
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


_temp_dirs: list[str] = []


def _remove_temp_dirs() -> None:
    for d in _temp_dirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_remove_temp_dirs)


def historical(
    client: Any,
    service: str,
    spine: Any,
    *,
    timestamp_key: str,
    timeout: float,
    output_dir: str | None,
    chunk_rows: int,
    join: Any,
) -> Any:
    """Historical features of a Spark spine, as a Spark DataFrame: the spine's
    columns (their Spark types) and one column per feature.

    The caller has checked the spine's columns. join(pandas_spine) -> the
    pandas path's answer (the chunk with the features appended), applied to
    each chunk of the needed columns; the chunk's answer is written to output_dir as Parquet
    (appending), and the result reads output_dir.
    """
    import pandas as pd
    from pyspark.sql import types as T

    svc = client._service(service)
    types: dict[str, Any] = {}
    for s in client.feature_services():
        if s["name"] == service:
            types = {f["name"]: f.get("dataType") or {} for f in s.get("features") or []}
    spark = spine.sparkSession
    out_schema = T.StructType(
        list(spine.schema.fields) + [T.StructField(f, _spark_type(types.get(f, {})), True) for f in svc.features]
    )
    if output_dir is None:
        output_dir = tempfile.mkdtemp(prefix="tally-historical-")
        _temp_dirs.append(output_dir)
        shutil.rmtree(output_dir)  # Spark creates it
    need = [*svc.join_keys, timestamp_key, *svc.request_context]
    conv = _epoch_ms_converter(spine)
    # A Spark timestamp says its unit: it goes on as a datetime, which the
    # node reads as given (integers before 1973 it refuses as epoch seconds).
    ts, ntz = _timestamp_columns(spine)
    pos = need.index(timestamp_key) if timestamp_key in ts | ntz else -1
    wrote = False
    batch: list[Any] = []

    def flush(rows: list[Any]) -> None:
        nonlocal wrote
        records = [[conv(c, r[c]) for c in need] for r in rows]
        sent = pd.DataFrame.from_records(records, columns=need)
        if pos >= 0:
            sent[timestamp_key] = _convert.utc_datetimes([rec[pos] for rec in records])
        feats = join(sent)
        values = [[_python(v) for v in feats[f].tolist()] for f in svc.features]
        out_rows = [tuple(r) + tuple(col[i] for col in values) for i, r in enumerate(rows)]
        spark.createDataFrame(out_rows, schema=out_schema, verifySchema=False).write.mode("append").parquet(output_dir)
        wrote = True

    for row in spine.toLocalIterator():
        batch.append(row)
        if len(batch) >= chunk_rows:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    if not wrote:
        return spark.createDataFrame([], schema=out_schema)
    return spark.read.schema(out_schema).parquet(output_dir)
