"""The HTTP client of a tally node."""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]
import requests

from . import _convert, _spark
from .errors import AuthenticationError, ConnectionError, NotFoundError, PermissionDeniedError, TallyError, error_for_status

__all__ = ["Client", "FeatureVector", "Prediction", "IngestResult"]

__version__ = "0.1.0"

#: Records per ingest request. The node refuses more than limits.max_records
#: (100,000) or limits.max_body_bytes (32 MiB) in one request.
INGEST_CHUNK_RECORDS = 50_000
#: A named write's chunk (``request_id``) is sent again up to WRITE_RETRIES
#: more times after a lost answer, after WRITE_BACKOFF_S, then 4x longer each time.
WRITE_RETRIES = 3
WRITE_BACKOFF_S = 0.1
#: A read (get_online_features, predict, a get_features_batch chunk,
#: feature_services) is sent again up to LOOKUP_RETRIES more times after a
#: connection error or a 503 (a read changes nothing), after
#: LOOKUP_BACKOFF_S, then 4x longer each time.
LOOKUP_RETRIES = 3
LOOKUP_BACKOFF_S = 0.05
#: Body bytes per ingest or table request, well under the node's 32 MiB.
CHUNK_BYTES = 16 << 20
#: Rows per get-features-batch request: the node's limits.max_batch.
BATCH_ROWS = 1000
#: Rows per table upload request, under limits.max_table_rows (1,000,000).
TABLE_CHUNK_ROWS = 500_000
#: The node's default limits.max_body_bytes: the largest historical spine.
MAX_BODY_BYTES = 32 << 20

ROW_COLUMN = "__tally_row"
PARQUET = "application/vnd.apache.parquet"

Timestamp = datetime | pd.Timestamp | np.datetime64 | int

_T = TypeVar("_T")


@dataclass(frozen=True)
class FeatureVector:
    """One feature vector, as get-features answered it.

    Attributes:
        features: feature name -> value, in the service's order; ``None`` where
            the feature is missing (see ``statuses``).
        statuses: feature name -> ``"PRESENT"`` or ``"MISSING_DATA"``.
        as_of: the time the features were read at (UTC).
        server_time: the node's clock when it answered (UTC).
    """

    features: dict[str, Any]
    statuses: dict[str, str]
    as_of: pd.Timestamp
    server_time: pd.Timestamp

    def to_series(self) -> pd.Series:
        """Returns the features as a Series indexed by feature name (dtype
        object, so integers stay integers and missing values are ``None``)."""
        return pd.Series(self.features, dtype=object, name="features")


@dataclass(frozen=True)
class Prediction:
    """The features and the service model's score, as predict answered them.

    Attributes:
        features, statuses, as_of, server_time: as in :class:`FeatureVector`.
        label: the predicted class (int or str) of a classifier, else ``None``.
        probabilities: class -> probability (class names are strings, e.g.
            ``{"0": 0.97, "1": 0.03}``); empty for a regressor.
        value: a regressor's output, else ``None``.
        status: ``"PRESENT"``, or ``"UNAVAILABLE"`` when the model could not
            score and the service's ``on_error`` is ``features``.
        error: why the model could not score, when ``status`` is ``UNAVAILABLE``.
    """

    features: dict[str, Any]
    statuses: dict[str, str]
    label: int | str | None
    probabilities: dict[str, float]
    value: float | None
    status: str
    error: str | None
    as_of: pd.Timestamp
    server_time: pd.Timestamp


@dataclass(frozen=True)
class IngestResult:
    """What an ingest did, summed over its chunks.

    Attributes:
        accepted: records validated (and applied, unless ``dry_run``).
        too_late: (event, feature view) placements skipped because the event is
            older than the view can still count (see the README's Semantics).
        dry_run: the records were only validated.
    """

    accepted: int
    too_late: int
    dry_run: bool


@dataclass
class _Service:
    name: str
    join_keys: list[str]
    request_context: list[str]
    features: list[str]
    data_types: dict[str, str] = field(default_factory=dict)


class Client:
    """A client of one tally node.

    It keeps one HTTP session (connections are reused), so make one Client and
    share it; it is safe to use from one thread at a time per ``requests``'
    rules. Use it as a context manager, or call :meth:`close`.

    Args:
        url: the node's base URL.
        api_key: sent as ``Authorization: Bearer <key>`` when set.
        timeout: seconds for each HTTP request (connect and read).
        workspace: the workspace the node must serve. Lookups send it as
            ``workspace_name``; writes check it once before the first one.

    Every method raises :class:`tally.TallyError` (a subclass by status) when the
    node refuses a request, and :class:`tally.ConnectionError` when it cannot be
    reached. Reads (get_online_features, predict, get_features_batch,
    feature_services) are sent again after a connection error or a 503, up
    to ``LOOKUP_RETRIES`` more times; writes only with a ``request_id`` (see
    :meth:`ingest`). A 429 (:class:`tally.TooManyRequestsError`) is not
    sent again: the node is busy or this address holds too many connections.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        workspace: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.workspace = workspace
        self._session = requests.Session()
        self._session.headers["User-Agent"] = f"tally-client/{__version__}"
        if api_key:
            self._session.headers["Authorization"] = f"Bearer {api_key}"
        self._services: dict[str, _Service] = {}
        self._workspace_checked = False
        self._join_keys: set[str] | None = None

    def close(self) -> None:
        """Closes the session's connections."""
        self._session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # Reads.

    def health(self) -> bool:
        """Reports whether the node is ready to serve (``GET /readyz``); False
        while it recovers or when it cannot be reached."""
        try:
            r = self._session.get(self.url + "/readyz", timeout=self.timeout)
        except requests.RequestException:
            return False
        return r.status_code == 200

    def feature_services(self) -> list[dict[str, Any]]:
        """Lists the node's feature services: each a dict with ``name``,
        ``joinKeys``, ``requestContext`` and ``features`` (``name``,
        ``dataType``). Sent again after a connection error or a 503, as a
        lookup is."""
        body = _retried(lambda: self._request("GET", "/api/v1/feature-services"), LOOKUP_RETRIES, LOOKUP_BACKOFF_S).json()
        services: list[dict[str, Any]] = body.get("featureServices") or []
        self._services = {}
        for s in services:
            feats = s.get("features") or []
            self._services[s["name"]] = _Service(
                name=s["name"],
                join_keys=list(s.get("joinKeys") or []),
                request_context=list(s.get("requestContext") or []),
                features=[f["name"] for f in feats],
                data_types={f["name"]: f.get("dataType", {}).get("type", "") for f in feats},
            )
        return services

    def get_online_features(
        self,
        service: str,
        join_keys: Mapping[str, str | int],
        request_context: Mapping[str, float | int | bool | str | None] | None = None,
        *,
        as_of: Timestamp | None = None,
    ) -> FeatureVector:
        """Looks up one feature vector.

        Args:
            service: the feature service.
            join_keys: every join key of the service; integers are exact (the
                node reads an integer key as its decimal text).
            request_context: the service's request-time inputs (None or NaN:
                missing; a string for a string request field, which feeds a
                model's string input).
            as_of: read at this time instead of now (naive = UTC; the node allows
                back to the sources' lateness, 5 minutes by default).
        """
        body = self._lookup("/api/v1/feature-service/get-features", service, join_keys, request_context, as_of)
        feats, statuses, as_of_ts, server_time = _vector(body)
        return FeatureVector(features=feats, statuses=statuses, as_of=as_of_ts, server_time=server_time)

    def predict(
        self,
        service: str,
        join_keys: Mapping[str, str | int],
        request_context: Mapping[str, float | int | bool | str | None] | None = None,
        *,
        as_of: Timestamp | None = None,
    ) -> Prediction:
        """Looks up one feature vector and scores it with the service's model
        (arguments as :meth:`get_online_features`). A service without a model
        raises :class:`tally.BadRequestError` (``NO_MODEL``)."""
        body = self._lookup("/api/v1/feature-service/predict", service, join_keys, request_context, as_of)
        feats, statuses, as_of_ts, server_time = _vector(body)
        result = body["result"]
        pred = result.get("prediction") or {}
        probs = {str(k): float(v) for k, v in (pred.get("probabilities") or {}).items()}
        raw_value = pred.get("value")
        return Prediction(
            features=feats,
            statuses=statuses,
            label=pred.get("label"),
            probabilities=probs,
            value=None if raw_value is None else float(raw_value),
            status=str(result.get("predictionStatus", "")),
            error=result.get("predictionError"),
            as_of=as_of_ts,
            server_time=server_time,
        )

    def get_features_batch(
        self,
        service: str,
        rows: pd.DataFrame | Sequence[Mapping[str, Any]],
        *,
        join_keys: Sequence[str] | None = None,
        request_context: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Looks up one feature vector per row, read now.

        Args:
            service: the feature service.
            rows: a DataFrame, or mappings, holding the join keys and request
                context of each row (other columns are ignored).
            join_keys: the columns that are join keys (default: the service's).
            request_context: the request-context columns (default: the service's).

        Returns:
            A DataFrame with one row per input row, in order (a DataFrame's index
            is kept), and one column per feature named as the node names it;
            ``int64`` features as nullable ``Int64``, missing values as NA/NaN.
            Requests go in chunks of 1,000 rows (the node's max batch).
        """
        svc = self._service(service)
        keys = list(join_keys) if join_keys is not None else svc.join_keys
        ctx = list(request_context) if request_context is not None else svc.request_context
        if isinstance(rows, pd.DataFrame):
            missing = [c for c in keys + ctx if c not in rows.columns]
            if missing:
                raise ValueError(f"rows lack column(s) {missing}: service {service} needs join keys {keys} and request context {ctx}")
            index: pd.Index = rows.index
            key_cols = {k: _convert.column_values(rows[k], key=True, key_as_text=False) for k in keys}
            ctx_cols = {c: _convert.column_values(rows[c]) for c in ctx}
            n = len(rows)
            items = [
                {
                    "join_key_map": {k: key_cols[k][i] for k in keys},
                    **({"request_context_map": {c: ctx_cols[c][i] for c in ctx}} if ctx else {}),
                }
                for i in range(n)
            ]
        else:
            n = len(rows)
            index = pd.RangeIndex(n)
            items = []
            for row in rows:
                item: dict[str, Any] = {"join_key_map": _key_map(row, keys)}
                if ctx:
                    item["request_context_map"] = {c: _convert.value(row[c]) for c in ctx if c in row}
                items.append(item)
        names: list[str] = list(svc.features)
        columns: list[list[Any]] = [[] for _ in names]
        for start in range(0, n, BATCH_ROWS):
            params: dict[str, Any] = {
                "feature_service_name": service,
                "request_data": items[start : start + BATCH_ROWS],
                "metadata_options": {"include_data_types": False, "include_serving_status": False},
            }
            self._add_workspace(params)
            try:
                body = self._read_json("/api/v1/feature-service/get-features-batch", {"params": params})
            except TallyError as e:
                if start:
                    e.message += f" (request_data indexes count from row {start}, the start of that chunk)"
                    e.args = (e.message,)
                raise
            got = [f["name"] for f in body["metadata"]["features"]]
            if got != names:
                self._services.pop(service, None)
                raise TallyError(
                    f"service {service} answered features {got}, not the {names} it listed: its repo changed; retry",
                    status=200,
                    code="SERVICE_CHANGED",
                )
            for r in body["result"]:
                for j, v in enumerate(r["features"]):
                    columns[j].append(v)
        return _frame(names, columns, svc.data_types, index)

    def get_historical_features(
        self,
        service: str,
        spine: pd.DataFrame | Any,
        *,
        timestamp_key: str = "timestamp",
        timeout: float = 3600.0,
        spark_output_dir: str | None = None,
    ) -> pd.DataFrame | Any:
        """Point-in-time features for training: each spine row gets the features
        a lookup at the start of its timestamp's millisecond would have returned
        (only events the node had by then; no leakage).

        Args:
            service: the feature service.
            spine: one row per example, with the service's join keys, the
                timestamp column and the request-context columns. Timestamps may
                be datetime64 (naive = UTC), tz-aware, epoch-millisecond integers
                or RFC 3339 text. Datetimes and text go as a Parquet timestamp,
                read as given; integers go as they are, and the node refuses
                those below 1e11 (before 1973-03-03) as epoch seconds
                (``BadRequestError`` naming the row by its index label:
                multiply by 1000, or give an earlier time as a datetime). An
                object column holds numbers or datetimes and text, not both
                (``ValueError`` naming the first row of the other kind).
            timestamp_key: the spine's timestamp column.
            timeout: seconds to wait for the answer: the node replays its whole
                event archive before the first row (about 30 s per 10M events
                on 2 cores), so this is longer than the client's own timeout.

        Returns:
            A copy of ``spine`` (every column, its dtypes, index and row order)
            with one column per feature appended, named as the node names it.

        Only the needed columns are sent, as Parquet; a spine over the node's
        32 MiB body limit is refused here: use ``tally export`` for bigger sets.

        A PySpark DataFrame spine gives a PySpark DataFrame: the spine's
        columns (their Spark types) and the features. Its rows stream through
        the driver (``toLocalIterator``) in chunks of 200,000, one request each
        (each replays the node's archive), and each chunk's answer is appended
        as Parquet to ``spark_output_dir``, which the result reads (default: a
        temporary directory removed when Python exits, which only local mode's
        executors can read: on a cluster pass a shared path). Row order is not
        kept (a Spark DataFrame has none); carry an id column to join back.
        """
        spark = _spark.is_spark_frame(spine)
        if not spark and not isinstance(spine, pd.DataFrame):
            raise TypeError(f"spine must be a pandas or PySpark DataFrame, got {type(spine).__name__}")
        svc = self._service(service)
        cols = [str(c) for c in spine.columns]
        need = [*svc.join_keys, timestamp_key, *svc.request_context]
        missing = [c for c in need if c not in cols]
        if missing:
            raise ValueError(
                f"spine lacks column(s) {missing}: service {service} needs its join keys {svc.join_keys}, "
                f"the timestamp column {timestamp_key!r} (timestamp_key=) and its request context {svc.request_context}"
            )
        if len(set(cols)) != len(cols):
            raise ValueError(f"spine has duplicate column names: {cols}")
        clash = [c for c in cols if c == ROW_COLUMN or c in svc.features]
        if clash:
            raise ValueError(f"spine column(s) {clash} clash with the features or the row column the client adds; rename them")
        if spark:
            return _spark.historical(
                self,
                service,
                spine,
                timestamp_key=timestamp_key,
                timeout=timeout,
                output_dir=spark_output_dir,
                chunk_rows=_spark.SPINE_CHUNK_ROWS,
                join=lambda chunk: self.get_historical_features(service, chunk, timestamp_key=timestamp_key, timeout=timeout),
            )
        if len(spine) == 0:
            empty = _frame(svc.features, [[] for _ in svc.features], svc.data_types, spine.index)
            return _join(spine, empty)
        table = _spine_table(spine, svc, timestamp_key)
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        payload = buf.getvalue().to_pybytes()
        if len(payload) > MAX_BODY_BYTES:
            raise ValueError(
                f"the spine is {len(payload) / (1 << 20):.1f} MiB as Parquet, more than the node's "
                f"{MAX_BODY_BYTES >> 20} MiB request limit: split it, or use `tally export` for large training sets"
            )
        try:
            r = self._request(
                "POST",
                "/api/v1/feature-service/historical-features",
                params={"service": service, "timestamp_key": timestamp_key},
                data=payload,
                headers={"Content-Type": PARQUET, "Accept": PARQUET},
                timeout=timeout,
            )
        except TallyError as e:
            if e.code == "INVALID_SPINE":
                _name_spine_row(e, spine.index)
            raise
        try:
            result = pq.read_table(pa.BufferReader(r.content))
        except (pa.ArrowException, OSError) as e:
            raise TallyError(
                f"historical features: the response is not complete Parquet ({e}); the node may have failed mid-stream: see its log",
                status=r.status_code,
                code="INCOMPLETE_RESPONSE",
            ) from e
        if ROW_COLUMN not in result.column_names:
            raise TallyError(f"historical features: the response lacks the {ROW_COLUMN} column", status=r.status_code, code="BAD_RESPONSE")
        row_ids = result.column(ROW_COLUMN).to_numpy()
        if len(row_ids) != len(spine) or not np.array_equal(np.sort(row_ids), np.arange(len(spine))):
            raise TallyError(
                f"historical features: the response has {len(row_ids)} rows, not one for each of the spine's {len(spine)}",
                status=r.status_code,
                code="BAD_RESPONSE",
            )
        order = np.argsort(row_ids, kind="stable")
        sent = set(table.column_names)
        feature_names = [c for c in result.column_names if c not in sent]
        feats = result.select(feature_names).take(pa.array(order))
        frame = feats.to_pandas(types_mapper=_arrow_types.get)
        frame.index = spine.index
        return _join(spine, frame)

    # Writes.

    def ingest(
        self,
        source: str,
        data: pd.DataFrame | Sequence[Mapping[str, Any]] | Any,
        *,
        backfill: bool = False,
        dry_run: bool = False,
        request_id: str | None = None,
    ) -> IngestResult:
        """Sends events of one source.

        Args:
            source: the source (e.g. ``transactions``).
            data: one event per row; its fields are the source's columns and
                timestamp (see the README for how values are converted).
            backfill: import past events (``POST /api/v1/import``): they become
                visible to historical features at their own event time. A live
                ingest (the default) becomes visible when the node receives it.
            dry_run: validate only.
            request_id: names this write, so that it is applied once: each
                chunk is sent with ``Idempotency-Key: <request_id>/<chunk>``,
                and a chunk whose answer was lost (a connection error, a
                timeout, a 503) is sent again, up to ``WRITE_RETRIES`` more
                times; the node skips a chunk it applied before. Calling
                ``ingest`` again with the same ``request_id`` and the same data
                (e.g. after an error) applies only the chunks not applied yet.
                The node remembers the last 262,144 named requests (minutes at
                a high rate, not days). Use a new id for every distinct write
                (the node binds an id to the chunk it came with: the same id
                with other data is applied as the other write it is).

        Records go in chunks of at most 50,000; each chunk is all or nothing. When
        a chunk is refused, the raised error's ``accepted_before`` says how many
        records earlier chunks applied (they stay applied), and its ``records``
        indexes count from the start of ``data``. A chunk retried under its id
        whose first attempt was applied only in part (a cluster write that
        failed in one replica group), and whose records are now too late for
        the rest, raises :class:`tally.PartlyAppliedError`.

        ``data`` may be a PySpark DataFrame: its rows stream through the driver
        (``toLocalIterator``, one partition at a time) in chunks of 50,000,
        never collected whole; TimestampType columns are sent as the instants
        they are (whatever the session's time zone).
        """
        if _spark.is_spark_frame(data):
            total = IngestResult(accepted=0, too_late=0, dry_run=dry_run)
            start = 0
            for k, chunk in enumerate(_spark.record_chunks(data, INGEST_CHUNK_RECORDS)):
                rid = None if request_id is None else f"{request_id}/p{k}"
                try:
                    res = self.ingest(source, chunk, backfill=backfill, dry_run=dry_run, request_id=rid)
                except TallyError as e:
                    e.accepted_before += total.accepted
                    for rec in e.records:
                        if isinstance(rec.get("index"), int):
                            rec["index"] += start
                    raise
                total = IngestResult(accepted=total.accepted + res.accepted, too_late=total.too_late + res.too_late, dry_run=dry_run)
                start += len(chunk)
            return total
        keys = self._join_key_names()
        self._check_workspace()
        cols, rows = _convert.records(data, keys)
        if not rows:
            return IngestResult(accepted=0, too_late=0, dry_run=dry_run)
        path = "/api/v1/import" if backfill else "/api/v1/ingest/bulk"
        params = {"source": source}
        if dry_run:
            params["dry_run"] = "true"
        accepted = too_late = 0
        start = 0
        for i, (body, count) in enumerate(_ndjson_chunks(cols, rows)):
            try:
                r = self._write(path, params, body, "application/x-ndjson", request_id, i)
            except TallyError as e:
                e.accepted_before = accepted
                for rec in e.records:
                    if isinstance(rec.get("index"), int):
                        rec["index"] += start
                raise
            res = r.json()
            accepted += int(res.get("accepted", 0))
            too_late += int(res.get("tooLate", 0))
            start += count
        return IngestResult(accepted=accepted, too_late=too_late, dry_run=dry_run)

    def upload_table(
        self,
        table: str,
        data: pd.DataFrame | Sequence[Mapping[str, Any]],
        *,
        replace: bool = False,
        allow_empty: bool = False,
        as_of: Timestamp | None = None,
        request_id: str | None = None,
    ) -> int:
        """Uploads rows of a table view (its join key column and value columns),
        upserting by key, or replacing the whole table when ``replace``.

        A ``replace`` with no rows is refused (:class:`tally.BadRequestError`,
        ``EMPTY_REPLACE``), so that an empty export does not empty a table by
        mistake, unless ``allow_empty`` says to empty it. ``as_of`` is when the
        rows become valid for historical features (default: now). Uploads over
        500,000 rows go in chunks: with ``replace`` the first chunk replaces the
        table and the rest are upserted, so a reader may see the table
        part-loaded meanwhile. Returns the number of rows stored. ``request_id``
        names the upload as for ``ingest``: each chunk is applied once, and
        retried when its answer was lost.
        """
        keys = self._join_key_names()
        self._check_workspace()
        cols, rows = _convert.records(data, keys)
        params: dict[str, Any] = {}
        if as_of is not None:
            params["as_of"] = str(_convert.epoch_ms(as_of))
        # No rows go as an empty NDJSON body: a CSV needs a header, and a list
        # of no mappings names no columns to write one with.
        bodies, content_type = (_csv_chunks(cols, rows), "text/csv") if rows else (iter([b""]), "application/x-ndjson")
        stored = 0
        for i, body in enumerate(bodies):
            p = dict(params)
            if replace and i == 0:
                p["mode"] = "replace"
                if allow_empty:
                    p["allow_empty"] = "true"
            r = self._write("/api/v1/tables/" + table, p, body, content_type, request_id, i)
            stored += int(r.json().get("rows", 0))
        return stored

    # Plumbing.

    def _write(
        self, path: str, params: Mapping[str, str], body: bytes, content_type: str, request_id: str | None, chunk: int
    ) -> requests.Response:
        """POSTs one chunk of a write. Without a request id it is sent once (its
        outcome is unknown after a connection error); with one, it is sent with
        its Idempotency-Key and again after a connection error or a 503, since
        the node applies a key once."""
        headers = {"Content-Type": content_type}
        if request_id is None:
            return self._request("POST", path, params=params, data=body, headers=headers)
        headers["Idempotency-Key"] = f"{request_id}/{chunk}"
        return _retried(lambda: self._request("POST", path, params=params, data=body, headers=headers), WRITE_RETRIES, WRITE_BACKOFF_S)

    def _read_json(self, path: str, body: Any) -> Any:
        """POSTs a lookup, sent again after a connection error or a 503 (see
        LOOKUP_RETRIES): a read changes nothing on the node."""
        return _retried(lambda: self._post_json(path, body), LOOKUP_RETRIES, LOOKUP_BACKOFF_S)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        try:
            r = self._session.request(
                method, self.url + path, params=params, data=data, headers=headers, timeout=timeout or self.timeout
            )
        except requests.RequestException as e:
            raise ConnectionError(f"{method} {self.url}{path}: {e}", code="CONNECTION") from e
        if r.status_code >= 400:
            raise _error(r)
        return r

    def _post_json(self, path: str, body: Any) -> Any:
        data = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
        return self._request("POST", path, data=data, headers={"Content-Type": "application/json"}).json()

    def _lookup(
        self,
        path: str,
        service: str,
        join_keys: Mapping[str, str | int],
        request_context: Mapping[str, float | int | bool | str | None] | None,
        as_of: Timestamp | None,
    ) -> Any:
        params: dict[str, Any] = {
            "feature_service_name": service,
            "join_key_map": _key_map(join_keys, list(join_keys)),
            "metadata_options": {"include_effective_times": True},
        }
        if request_context is not None:
            params["request_context_map"] = {k: _convert.value(v) for k, v in request_context.items()}
        if as_of is not None:
            params["as_of"] = _convert.epoch_ms(as_of)
        self._add_workspace(params)
        return self._read_json(path, {"params": params})

    def _add_workspace(self, params: dict[str, Any]) -> None:
        if self.workspace is not None:
            params["workspace_name"] = self.workspace

    def _service(self, name: str) -> _Service:
        if name not in self._services:
            self.feature_services()
        svc = self._services.get(name)
        if svc is None:
            raise NotFoundError(
                f"unknown feature service {name!r}: this node serves {', '.join(self._services) or 'none'}",
                status=404,
                code="UNKNOWN_FEATURE_SERVICE",
            )
        return svc

    def _join_key_names(self) -> set[str]:
        """The join keys of every service: integer values in these columns are
        sent as decimal text, the form the node keys entities by (its ingest
        refuses a JSON number for a text key column). A key without the read
        scope cannot list the services: its integers go as JSON numbers."""
        if self._join_keys is None:
            try:
                if not self._services:
                    self.feature_services()
                self._join_keys = {k for s in self._services.values() for k in s.join_keys}
            except (AuthenticationError, PermissionDeniedError):
                self._join_keys = set()
        return self._join_keys

    def _check_workspace(self) -> None:
        """Checks once that the node serves self.workspace, with an empty dry
        run (bulk ingest and table uploads do not name a workspace)."""
        if self.workspace is None or self._workspace_checked:
            return
        self._post_json("/api/v1/ingest", {"workspace_name": self.workspace, "dry_run": True, "records": {}})
        self._workspace_checked = True


_arrow_types: dict[pa.DataType, Any] = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


def _error(r: requests.Response) -> TallyError:
    body: Any
    try:
        body = r.json()
    except ValueError:
        body = r.text
    code, message, recs = f"HTTP_{r.status_code}", (r.text or r.reason or "").strip()[:500], None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = str(err.get("code") or code)
        message = str(err.get("message") or message)
        if isinstance(err.get("records"), list):
            recs = [dict(x) for x in err["records"] if isinstance(x, dict)]
    return error_for_status(r.status_code, code, message, body, recs)


def _key_map(row: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in keys:
        if k in row:
            try:
                out[k] = _convert.key_value(row[k], as_text=False)
            except TypeError as e:
                raise TypeError(f"join key {k!r}: {e}") from e
    return out


def _ts(s: str | None) -> pd.Timestamp:
    return pd.Timestamp(s) if s else pd.Timestamp("NaT")


def _vector(body: Any) -> tuple[dict[str, Any], dict[str, str], pd.Timestamp, pd.Timestamp]:
    values = body["result"]["features"]
    meta = body["metadata"]["features"]
    feats = {m["name"]: _typed(v, m.get("dataType")) for m, v in zip(meta, values)}
    statuses = {m["name"]: m.get("status", "") for m in meta}
    server_time = _ts(body["metadata"].get("serverTime"))
    as_of = _ts(meta[0].get("effectiveTime")) if meta else server_time
    return feats, statuses, as_of, server_time


def _typed(v: Any, data_type: Any) -> Any:
    """Returns v with float64 features as floats (JSON writes 2.0 as 2)."""
    if isinstance(v, int) and not isinstance(v, bool) and isinstance(data_type, dict) and data_type.get("type") == "float64":
        return float(v)
    return v


def _frame(names: list[str], columns: list[list[Any]], types: Mapping[str, str], index: pd.Index) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for name, col in zip(names, columns):
        t = types.get(name, "")
        if t == "int64":
            data[name] = pd.array(col, dtype="Int64")
        elif t == "float64":
            data[name] = np.array([np.nan if v is None else v for v in col], dtype="float64")
        elif t == "bool":
            data[name] = pd.array(col, dtype="boolean")
        else:
            arr = np.empty(len(col), dtype=object)
            arr[:] = col
            data[name] = arr
    return pd.DataFrame(data, index=index, columns=names)


def _join(spine: pd.DataFrame, feats: pd.DataFrame) -> pd.DataFrame:
    """Appends feats' columns to a copy of spine, by position."""
    out = spine.copy()
    for name in feats.columns:
        out[name] = feats[name].array
    return out


def _name_spine_row(e: TallyError, index: pd.Index) -> None:
    """Rewrites the node's "row N" (the spine's rows sent in order, counted
    from 1) in e's message as the row's index label."""

    def label(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if not 1 <= n <= len(index):
            return m.group(0)
        return f"spine row {index[n - 1]!r} ({n} of {len(index)})"

    msg = re.sub(r"^(?:spine: )?row (\d+)\b", label, e.message, count=1)
    if msg != e.message:
        e.message = msg
        e.args = (msg,)


def _spine_table(spine: pd.DataFrame, svc: _Service, timestamp_key: str) -> pa.Table:
    arrays: dict[str, pa.Array] = {}
    for k in svc.join_keys:
        arrays[k] = pa.array(_convert.column_values(spine[k], key=True), type=pa.string())
    try:
        ts = _convert.epoch_ms_series(spine[timestamp_key])
    except (TypeError, ValueError) as e:
        raise ValueError(f"spine column {timestamp_key!r}: {e}") from e
    for pos, t in enumerate(ts):
        if t is None:
            raise ValueError(f"spine row {spine.index[pos]!r}: timestamp {timestamp_key!r} is missing")
    try:
        integers = _convert.integer_times(spine[timestamp_key])
    except ValueError as e:
        raise ValueError(f"spine column {timestamp_key!r}: {e}") from e
    arrays[timestamp_key] = pa.array(ts, type=pa.int64() if integers else pa.timestamp("ms", tz="UTC"))
    for c in svc.request_context:
        typ = pa.bool_() if pd.api.types.is_bool_dtype(spine[c].dtype) else pa.float64()
        try:
            arrays[c] = pa.array(_convert.column_values(spine[c]), type=typ)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as e:
            raise ValueError(f"spine column {c!r} (request context) must hold numbers: {e}") from e
    arrays[ROW_COLUMN] = pa.array(np.arange(len(spine), dtype=np.int64))
    return pa.table(arrays)


def _ndjson_chunks(cols: list[str], rows: list[list[Any]]) -> Any:
    """Yields (NDJSON body, record count) chunks within the per-request limits."""
    lines: list[bytes] = []
    size = 0
    for row in rows:
        rec = {c: v for c, v in zip(cols, row) if not _convert.is_absent(v)}
        line = json.dumps(rec, allow_nan=False, separators=(",", ":")).encode()
        if lines and (len(lines) >= INGEST_CHUNK_RECORDS or size + len(line) + 1 > CHUNK_BYTES):
            yield b"\n".join(lines) + b"\n", len(lines)
            lines, size = [], 0
        lines.append(line)
        size += len(line) + 1
    if lines:
        yield b"\n".join(lines) + b"\n", len(lines)


def _csv_field(v: Any) -> str:
    if v is None or _convert.is_absent(v):
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list):
        raise TypeError(f"a table value cannot be a list: {v!r}")
    return str(v)


def _retried(send: Callable[[], _T], retries: int, backoff_s: float) -> _T:
    """Returns send(), called again after a connection error or a 503, up to
    retries more times, waiting backoff_s, then 4x longer each time."""
    delay = backoff_s
    for attempt in range(retries + 1):
        try:
            return send()
        except TallyError as e:
            if attempt == retries or not (isinstance(e, ConnectionError) or e.status == 503):
                raise
        time.sleep(delay)
        delay *= 4
    raise AssertionError("unreachable")


def _csv_chunks(cols: list[str], rows: list[list[Any]]) -> Any:
    """Yields CSV bodies (each with the header) within the per-request limits."""
    out = _Lines()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(cols)
    header = out.take()
    out.parts, out.size = [header], len(header)
    n = 0
    for row in rows:
        if n and (n >= TABLE_CHUNK_ROWS or out.size > CHUNK_BYTES):
            yield out.take()
            out.parts, out.size = [header], len(header)
            n = 0
        w.writerow([_csv_field(v) for v in row])
        n += 1
    yield out.take()


class _Lines:
    """A text sink for csv.writer that keeps UTF-8 bytes and counts them."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, s: str) -> int:
        b = s.encode()
        self.parts.append(b)
        self.size += len(b)
        return len(s)

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts, self.size = [], 0
        return data
