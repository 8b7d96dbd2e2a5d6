"""Online lookups, predict and the value conversions they rely on."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from conftest import Server
from support import CTX, event, keys, now_ms

import tally

SVC = "fraud_detection"
CNT_1M = "user_transaction_counts.amt_count_1m"
CNT_1H = "user_transaction_counts.amt_count_1h"
SUM_1H = "user_transaction_amounts.amt_sum_1h"
MEAN_1H = "user_transaction_amounts.amt_mean_1h"
MAX_1H = "user_transaction_amounts.amt_max_1h"
STD_1D = "user_transaction_amounts.amt_stddev_1d"
DISTINCT_1H = "user_distinct_merchants.merchant_distinct_count_1h"
HOME_LAT = "user_profile.home_lat"
DISTANCE = "transaction_request.distance_from_home_km"
RATIO = "transaction_request.amt_to_user_mean_1d"


def test_health_and_feature_services(client: tally.Client) -> None:
    assert client.health()
    services = {s["name"]: s for s in client.feature_services()}
    fd = services[SVC]
    assert fd["joinKeys"] == ["user_id", "merchant", "country"]
    assert fd["requestContext"] == ["amt", "lat", "long"]
    assert [f["name"] for f in fd["features"]][:2] == [CNT_1M, "user_transaction_counts.amt_count_5m"]


def test_values_after_ingest(client: tally.Client, uid: str) -> None:
    t = now_ms() - pd.Timedelta(seconds=10)
    res = client.ingest("transactions", [event(uid, t, 10.0, "ma"), event(uid, t + pd.Timedelta(milliseconds=5), 30.5, "mb")])
    assert (res.accepted, res.too_late, res.dry_run) == (2, 0, False)

    v = client.get_online_features(SVC, keys(uid), CTX)
    f = v.features
    assert f[CNT_1M] == 2 and f[CNT_1H] == 2
    assert isinstance(f[CNT_1M], int)
    assert f[SUM_1H] == 40.5
    assert f[MEAN_1H] == 20.25
    assert f[MAX_1H] == 30.5
    assert f[STD_1D] == 10.25  # population: |30.5 - 10| / 2
    assert f[DISTINCT_1H] == 2
    assert f[RATIO] == 80.0 / 20.25
    assert v.statuses[CNT_1M] == "PRESENT"
    assert f[HOME_LAT] is None and v.statuses[HOME_LAT] == "MISSING_DATA"
    assert v.server_time.tzinfo is not None
    assert abs(v.server_time - pd.Timestamp.now(tz="UTC")) < pd.Timedelta(seconds=30)
    assert v.as_of == v.server_time

    s = v.to_series()
    assert list(s.index) == list(f)
    assert s[CNT_1M] == 2 and s[HOME_LAT] is None


def test_unseen_entity_reports_missing_not_zero(client: tally.Client, uid: str) -> None:
    v = client.get_online_features(SVC, keys(uid, "m-unseen-" + uid, "ZZ"), {"amt": 1.0, "lat": None, "long": float("nan")})
    assert v.features[CNT_1M] == 0 and v.statuses[CNT_1M] == "PRESENT"
    assert v.features[MEAN_1H] is None and v.statuses[MEAN_1H] == "MISSING_DATA"
    assert v.features[DISTANCE] is None
    assert isinstance(v.features[SUM_1H], float)  # JSON says 0; the feature is float64


def test_int64_keys_are_exact(client: tally.Client) -> None:
    big = 2**53 + 1 + uuid.uuid4().int % 1_000_000 * 2  # odd: float64 cannot hold it
    assert float(big) != big
    t = now_ms() - pd.Timedelta(seconds=5)
    df = pd.DataFrame(
        {
            "user_id": np.array([big, big, big - 1], dtype=np.int64),
            "merchant": "m1",
            "category": "c",
            "amt": [1.0, np.nan, 4.0],  # NaN -> null: a missing amount
            "country": "FR",
            "lat": 0.0,
            "long": 0.0,
            "is_fraud": pd.array([0, None, 1], dtype="Int64"),
            "timestamp": [t, t, t],
        }
    )
    assert client.ingest("transactions", df).accepted == 3

    def count(key: object) -> object:
        return client.get_online_features(SVC, keys(key), CTX).features[CNT_1H]

    # count(amt) counts non-null amounts, as SQL does.
    assert count(big) == 1
    assert count(np.int64(big)) == 1
    assert count(str(big)) == 1  # the node reads integer keys as their decimal text
    assert count(big - 1) == 1
    assert count(big + 1) == 0
    assert client.get_online_features(SVC, keys(big), CTX).features[SUM_1H] == 1.0

    batch = client.get_features_batch(
        SVC,
        pd.DataFrame({"user_id": pd.array([big - 1, big, big + 1], dtype="Int64"), "merchant": "m1", "country": "FR", "amt": 1.0, "lat": 0.0, "long": 0.0}),
    )
    assert batch[CNT_1H].tolist() == [1, 1, 0]


def test_float_key_column_that_lost_precision_is_refused(client: tally.Client) -> None:
    df = pd.DataFrame({"user_id": [float(2**60), np.nan], "merchant": "m1", "country": "FR", "amt": 1.0, "lat": 0.0, "long": 0.0})
    with pytest.raises(TypeError, match="Int64"):
        client.get_features_batch(SVC, df)


def test_tz_aware_and_naive_timestamps_are_the_same_instant(client: tally.Client) -> None:
    t = now_ms() - pd.Timedelta(seconds=20)
    plus2 = timezone(timedelta(hours=2))
    aware = t.to_pydatetime().astimezone(plus2)  # e.g. 10:00+02:00 for 08:00Z
    assert aware.utcoffset() == timedelta(hours=2)
    naive_utc = t.tz_localize(None)
    users = {name: f"tz-{name}-{uuid.uuid4().hex[:8]}" for name in ("aware", "naive", "text", "ms")}
    client.ingest("transactions", [event(users["aware"], aware)])
    client.ingest("transactions", pd.DataFrame([event(users["naive"], naive_utc)]))  # datetime64[ns], naive = UTC
    client.ingest("transactions", [event(users["text"], aware.isoformat())])
    client.ingest("transactions", [event(users["ms"], int(t.value // 1_000_000))])
    frame = pd.DataFrame([event(users["aware"], aware)])
    assert str(frame["timestamp"].dtype).startswith("datetime64[ns, UTC+02:00]")

    before = t - pd.Timedelta(milliseconds=1)
    for user in users.values():
        # Windows hold events with t - W < ts <= t: the event counts from its own millisecond on.
        assert client.get_online_features(SVC, keys(user), CTX, as_of=aware).features[CNT_1M] == 1, user
        assert client.get_online_features(SVC, keys(user), CTX, as_of=t.value // 1_000_000).features[CNT_1M] == 1, user
        assert client.get_online_features(SVC, keys(user), CTX, as_of=before.tz_convert(plus2)).features[CNT_1M] == 0, user
        assert client.get_online_features(SVC, keys(user), CTX, as_of=before.tz_localize(None).to_pydatetime()).features[CNT_1M] == 0, user
    v = client.get_online_features(SVC, keys(users["aware"]), CTX, as_of=aware)
    assert v.as_of == t


def test_batch_keeps_order_and_index_across_chunks(client: tally.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    users = [f"b-{tag}-{i}" for i in range(3)]
    t = now_ms() - pd.Timedelta(seconds=5)
    # user i has i events, with amounts 1..i
    client.ingest("transactions", [event(users[i], t, float(a)) for i in range(3) for a in range(1, i + 1)])
    n = 2500  # three requests of at most 1000 rows
    rng = np.random.default_rng(7)
    which = rng.integers(0, 3, n)
    amts = rng.uniform(1, 100, n)
    amts[::7] = np.nan
    rows = pd.DataFrame(
        {
            "label": rng.integers(0, 2, n),
            "user_id": [users[i] for i in which],
            "merchant": "m1",
            "country": "FR",
            "amt": amts,
            "lat": 0.0,
            "long": 0.0,
        },
        index=pd.Index([f"r{n - i}" for i in range(n)], name="row"),
    )
    out = client.get_features_batch(SVC, rows)
    assert out.index.equals(rows.index)
    assert len(out) == n
    assert out[CNT_1M].dtype == "Int64"
    assert out[CNT_1M].tolist() == which.tolist()
    assert out[SUM_1H].tolist() == [float(i * (i + 1) // 2) for i in which]
    ratio = out[RATIO].to_numpy()
    for i in range(n):
        mean = (which[i] + 1) / 2
        if which[i] == 0 or math.isnan(amts[i]):
            assert math.isnan(ratio[i]), i
        else:
            assert ratio[i] == pytest.approx(amts[i] / mean), i

    # Mappings in, a RangeIndex out.
    out2 = client.get_features_batch(SVC, [{**keys(users[2]), **CTX}, {**keys(users[1]), **CTX}])
    assert list(out2.index) == [0, 1]
    assert out2[CNT_1M].tolist() == [2, 1]


def test_batch_missing_column(client: tally.Client) -> None:
    with pytest.raises(ValueError, match="amt"):
        client.get_features_batch(SVC, pd.DataFrame({"user_id": ["x"], "merchant": ["m"], "country": ["FR"], "lat": [0.0], "long": [0.0]}))


def test_predict(client: tally.Client, uid: str) -> None:
    t = now_ms() - pd.Timedelta(seconds=5)
    client.ingest("transactions", [event(uid, t, 12.5), event(uid, t, 900.0, "m2")])
    p = client.predict(SVC, keys(uid), CTX)
    assert p.status == "PRESENT" and p.error is None
    assert set(p.probabilities) == {"0", "1"}
    assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert str(p.label) == max(p.probabilities, key=lambda k: p.probabilities[k])
    assert p.value is None
    assert p.features[CNT_1M] == 2
    v = client.get_online_features(SVC, keys(uid), CTX)
    assert p.features == v.features


def test_partly_applied_error_says_which_part_was_applied() -> None:
    # The answer a cluster gives the retry of an ingest one replica group
    # applied its share of, and another did not, its records now too late.
    r = requests.Response()
    r.status_code = 409
    r._content = (
        b'{"error":{"code":"PARTLY_APPLIED","message":"1 of 1 records refused, and request \\"k/0\\" was partly applied before",'
        b'"groups":[{"group":0,"records":1,"share":"applied"},{"group":1,"records":1,"share":"not applied"}],'
        b'"records":[{"source":"transactions","index":0,"reason":"too old"}],"refused":1,"total":1}}'
    )
    e = tally.client._error(r)
    assert isinstance(e, tally.PartlyAppliedError) and not isinstance(e, tally.BadRequestError)
    assert e.status == 409 and e.code == "PARTLY_APPLIED" and "partly applied" in e.message
    assert [g["share"] for g in e.groups] == ["applied", "not applied"] and e.sources == []
    assert e.records == [{"source": "transactions", "index": 0, "reason": "too old"}]


def test_error_classes_by_status(tally_binary: Path, tmp_path: Path, client: tally.Client, uid: str) -> None:
    """409, 413 and 415 have their own subclasses of TallyError."""

    def error(status: int, code: str) -> tally.TallyError:
        r = requests.Response()
        r.status_code = status
        r._content = b'{"error":{"code":"' + code.encode() + b'","message":"m"}}'
        return tally.client._error(r)

    for status, code, cls in [
        (409, "ARCHIVE_INCOMPLETE", tally.ConflictError),
        (409, "PARTLY_APPLIED", tally.PartlyAppliedError),
        (413, "BODY_TOO_LARGE", tally.TooLargeError),
        (413, "TOO_LARGE", tally.TooLargeError),
        (413, "SPINE_TOO_LARGE", tally.TooLargeError),
        (415, "UNSUPPORTED_MEDIA_TYPE", tally.UnsupportedMediaTypeError),
        (429, "EXPORT_BUSY", tally.TooManyRequestsError),
    ]:
        e = error(status, code)
        assert type(e) is cls and isinstance(e, tally.TallyError) and e.status == status and e.code == code
    assert isinstance(error(409, "PARTLY_APPLIED"), tally.ConflictError)

    # From real nodes: a compressed body, and a body over max_body_bytes.
    with tally.Client(client.url, timeout=10) as gz:
        gz._session.headers["Content-Encoding"] = "gzip"
        with pytest.raises(tally.UnsupportedMediaTypeError) as um:
            gz.ingest("transactions", [event(uid, now_ms())])
        assert um.value.status == 415 and um.value.code == "UNSUPPORTED_MEDIA_TYPE"
    small = Server(tally_binary, tmp_path, "limits: {max_body_bytes: 65536}\ndurability: {fsync: never}\n")
    try:
        with tally.Client(small.url, timeout=10) as c:
            with pytest.raises(tally.TooLargeError) as tl:
                c.ingest("transactions", [event(uid, now_ms()) for _ in range(5000)])
            assert tl.value.status == 413 and tl.value.code == "BODY_TOO_LARGE"
            assert c.get_online_features(SVC, keys(uid), CTX).features[CNT_1M] == 0
    finally:
        small.stop()


class _StandIn:
    """A stand-in node on loopback: answers each request with the next of
    answers, an (HTTP status, JSON body) or None to hang up without answering."""

    def __init__(self, answers: list[tuple[int, dict[str, Any]] | None]) -> None:
        self.answers = list(answers)
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.paths.append(self.path)
                answer = outer.answers.pop(0) if outer.answers else (500, {"error": {"code": "NO_MORE", "message": "no more answers"}})
                if answer is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, body = answer
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


_UNAVAILABLE = (503, {"error": {"code": "UNAVAILABLE", "message": "group 1 has no leader"}})
_VECTOR = (
    200,
    {
        "result": {"features": [3]},
        "metadata": {
            "features": [{"name": CNT_1M, "dataType": {"type": "int64"}, "status": "PRESENT", "effectiveTime": "2026-11-25T10:00:00Z"}],
            "serverTime": "2026-11-25T10:00:00Z",
        },
    },
)


def test_lookups_retried_on_connection_errors_and_503(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lookup is sent again after a hang-up or a 503, up to LOOKUP_RETRIES
    more times; a refusal, or a write without a request_id, is sent once."""
    monkeypatch.setattr(tally.client, "LOOKUP_BACKOFF_S", 0.001)
    path = "/api/v1/feature-service/get-features"
    stand = _StandIn([None, _UNAVAILABLE, _VECTOR, None, _UNAVAILABLE, None, _UNAVAILABLE, (400, {"error": {"code": "MISSING_JOIN_KEY", "message": "m"}})])
    try:
        with tally.Client(stand.url, timeout=5) as c:
            assert c.get_online_features(SVC, keys("u"), CTX).features[CNT_1M] == 3
            assert stand.paths == [path] * 3
            stand.paths.clear()
            with pytest.raises(tally.ServerError) as e:  # 1 + LOOKUP_RETRIES, all failed
                c.predict(SVC, keys("u"), CTX)
            assert e.value.code == "UNAVAILABLE" and len(stand.paths) == 4
            stand.paths.clear()
            with pytest.raises(tally.BadRequestError):
                c.get_online_features(SVC, keys("u"), CTX)
            assert len(stand.paths) == 1
            stand.paths.clear()
            stand.answers = [_UNAVAILABLE, _VECTOR]
            with pytest.raises(tally.ServerError):
                c._write("/api/v1/ingest", {}, b"{}", "application/json", None, 0)
            assert len(stand.paths) == 1
    finally:
        stand.close()


def test_feature_services_retried_like_a_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """feature_services is a read: sent again after a hang-up or a 503, up
    to LOOKUP_RETRIES more times; a 429 is a TooManyRequestsError, sent once."""
    monkeypatch.setattr(tally.client, "LOOKUP_BACKOFF_S", 0.001)
    listing = (200, {"featureServices": [{"name": SVC, "joinKeys": ["user_id"], "requestContext": [], "features": []}]})
    stand = _StandIn([None, _UNAVAILABLE, listing, _UNAVAILABLE, _UNAVAILABLE, _UNAVAILABLE, _UNAVAILABLE])
    try:
        with tally.Client(stand.url, timeout=5) as c:
            assert [s["name"] for s in c.feature_services()] == [SVC]
            assert stand.paths == ["/api/v1/feature-services"] * 3
            stand.paths.clear()
            with pytest.raises(tally.ServerError):  # 1 + LOOKUP_RETRIES, all failed
                c.feature_services()
            assert len(stand.paths) == 4
            stand.paths.clear()
            stand.answers = [(429, {"error": {"code": "EXPORT_BUSY", "message": "a join is already running"}}), listing]
            with pytest.raises(tally.TooManyRequestsError) as e:
                c.get_online_features(SVC, keys("u"), CTX)
            assert e.value.status == 429 and e.value.code == "EXPORT_BUSY" and len(stand.paths) == 1
    finally:
        stand.close()


def test_connections_over_the_per_address_limit(tally_binary: Path, tmp_path: Path) -> None:
    """A connection over limits.max_conns_per_ip is answered 429: a
    TooManyRequestsError."""
    s = Server(tally_binary, tmp_path, "limits: {max_conns_per_ip: 1}\ndurability: {fsync: never}\n")
    # The held connection is served first (a keep-alive request answered
    # 200), so that it is the one counted: the readiness probe's connection
    # may not be reaped yet when it connects, and then it is the one refused.
    deadline = time.monotonic() + 10
    while True:
        held = socket.create_connection(("127.0.0.1", s.port))
        held.sendall(b"GET /healthz HTTP/1.1\r\nHost: tally\r\n\r\n")
        if held.recv(4096).startswith(b"HTTP/1.1 200"):
            break
        held.close()
        assert time.monotonic() < deadline, "no connection was served within 10 s"
        time.sleep(0.05)
    try:
        with tally.Client(s.url, timeout=10) as c:
            with pytest.raises(tally.TooManyRequestsError) as e:
                c.get_online_features(SVC, keys("u"), CTX)
            assert e.value.status == 429 and e.value.code == "TOO_MANY_CONNECTIONS"
    finally:
        held.close()
        s.stop()


def test_ingest_refusal_lists_records_and_applies_nothing(client: tally.Client, uid: str) -> None:
    t = now_ms() - pd.Timedelta(seconds=5)
    bad = [
        event(uid, t),
        event(uid, t, amt="lots"),  # type: ignore[arg-type]
        event(uid, t),
        {**event(uid, t), "user_id": None},
        event(uid, t - pd.Timedelta(days=400)),
    ]
    with pytest.raises(tally.BadRequestError) as ei:
        client.ingest("transactions", bad)
    e = ei.value
    assert e.status == 400 and e.code == "INVALID_RECORDS"
    assert [r["index"] for r in e.records] == [1, 3, 4]
    assert all(r["source"] == "transactions" for r in e.records)
    assert "amt" in e.records[0]["reason"] and "user_id" in e.records[1]["reason"]
    assert isinstance(e.body, dict) and e.body["error"]["code"] == "INVALID_RECORDS"
    assert e.accepted_before == 0
    assert client.get_online_features(SVC, keys(uid), CTX).features[CNT_1M] == 0

    with pytest.raises(tally.NotFoundError) as nf:
        client.ingest("no_such_source", [event(uid, t)])
    assert nf.value.code == "UNKNOWN_SOURCE"


def test_ingest_chunks_and_accepted_before(client: tally.Client, uid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tally.client, "INGEST_CHUNK_RECORDS", 3)
    t = now_ms() - pd.Timedelta(seconds=5)
    good = [event(uid, t, float(i)) for i in range(7)]
    assert client.ingest("transactions", good).accepted == 7
    assert client.get_online_features(SVC, keys(uid), CTX).features[CNT_1M] == 7

    with pytest.raises(tally.BadRequestError) as ei:
        client.ingest("transactions", [*good[:7], {**event(uid, t), "amt": "x"}])
    e = ei.value
    assert e.accepted_before == 6  # chunks [0:3] and [3:6] applied; [6:8] refused whole
    assert [r["index"] for r in e.records] == [7]
    assert "6 records" in str(e)
    assert client.get_online_features(SVC, keys(uid), CTX).features[CNT_1M] == 13

    monkeypatch.setattr(tally.client, "INGEST_CHUNK_RECORDS", 1000)
    monkeypatch.setattr(tally.client, "CHUNK_BYTES", 700)  # about three records a request
    assert client.ingest("transactions", good).accepted == 7
    assert client.get_online_features(SVC, keys(uid), CTX).features[CNT_1M] == 20


def test_request_id_applies_each_chunk_once(client: tally.Client, uid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tally.client, "INGEST_CHUNK_RECORDS", 3)
    monkeypatch.setattr(tally.client, "WRITE_BACKOFF_S", 0.01)
    t = now_ms() - pd.Timedelta(seconds=5)
    good = [event(uid, t, float(i)) for i in range(7)]
    rid = "load-" + uid
    assert client.ingest("transactions", good, request_id=rid).accepted == 7
    # The whole call again, as after an error: every chunk is skipped.
    assert client.ingest("transactions", good, request_id=rid).accepted == 7
    assert client.get_online_features(SVC, keys(uid), CTX).features[CNT_1M] == 7

    # The answer to the second chunk is lost after the node applied it: the
    # client sends it again, and the node applies it once.
    real = client._session.request
    calls = {"n": 0}

    def lose_second_answer(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        r = real(*args, **kwargs)
        if calls["n"] == 2:
            raise requests.ConnectionError("connection reset after the request was sent")
        return r

    monkeypatch.setattr(client._session, "request", lose_second_answer)
    assert client.ingest("transactions", good, request_id=rid + "-b").accepted == 7
    assert calls["n"] == 4  # three chunks, the second twice
    assert client.get_online_features(SVC, keys(uid), CTX).features[CNT_1M] == 14

    # Without an id the lost answer is the caller's to resolve: nothing is resent.
    calls["n"] = 0
    with pytest.raises(tally.ConnectionError):
        client.ingest("transactions", good)
    assert calls["n"] == 2
    assert client.get_online_features(SVC, keys(uid), CTX).features[CNT_1M] == 20

    # A table upload likewise: its retry is skipped (home_lat stays the
    # later upload's), while the id sent again with other rows is another
    # upload, applied (the node binds an id to the request it came with).
    monkeypatch.setattr(client._session, "request", real)
    first = [{"user_id": uid, "home_lat": 1.0, "home_long": 2.0}]
    assert client.upload_table("user_profile", first, request_id=rid + "-t") == 1
    assert client.upload_table("user_profile", [{"user_id": uid, "home_lat": 5.0, "home_long": 6.0}], request_id=rid + "-t2") == 1
    assert client.upload_table("user_profile", first, request_id=rid + "-t") == 1
    assert client.get_online_features(SVC, keys(uid), CTX).features[HOME_LAT] == 5.0
    assert client.upload_table("user_profile", [{"user_id": uid, "home_lat": 9.0, "home_long": 6.0}], request_id=rid + "-t") == 1
    assert client.get_online_features(SVC, keys(uid), CTX).features[HOME_LAT] == 9.0


def test_dry_run_validates_only(client: tally.Client, uid: str) -> None:
    res = client.ingest("transactions", [event(uid, now_ms())], dry_run=True)
    assert (res.accepted, res.dry_run) == (1, True)
    assert client.get_online_features(SVC, keys(uid), CTX).features[CNT_1M] == 0


def test_numpy_scalars_serialize(client: tally.Client, uid: str) -> None:
    t = np.datetime64((now_ms() - pd.Timedelta(seconds=3)).tz_localize(None).to_datetime64(), "ms")
    rec = event(uid, t, np.float64(2.5), lat=np.float32(1.5), is_fraud=np.int64(1))
    assert client.ingest("transactions", [rec]).accepted == 1
    v = client.get_online_features(SVC, keys(uid), {"amt": np.float64(5.0), "lat": np.int64(1), "long": np.float32(2.0)})
    assert v.features[SUM_1H] == 2.5 and v.features[RATIO] == 2.0
    assert client.ingest("transactions", []).accepted == 0


def test_float_int_column_with_nan_ingests(client: tally.Client, uid: str) -> None:
    # pandas turns an int column with a missing value into float64; the node's
    # int column still reads 1.0 (sent as 1) and NaN (sent as null).
    df = pd.DataFrame([event(uid, now_ms() - pd.Timedelta(seconds=2), is_fraud=1), event(uid, now_ms(), is_fraud=None)])
    assert df["is_fraud"].dtype == "float64"
    assert client.ingest("transactions", df).accepted == 2


def test_lookup_errors(client: tally.Client) -> None:
    with pytest.raises(tally.NotFoundError) as nf:
        client.get_online_features("no_such_service", keys("x"), CTX)
    assert nf.value.code == "UNKNOWN_FEATURE_SERVICE" and nf.value.status == 404
    with pytest.raises(tally.NotFoundError):
        client.predict("no_such_service", keys("x"), CTX)
    with pytest.raises(tally.NotFoundError):
        client.get_features_batch("no_such_service", [keys("x")])
    with pytest.raises(tally.BadRequestError) as br:
        client.get_online_features(SVC, {"user_id": "x"}, CTX)
    assert br.value.code == "MISSING_JOIN_KEY"
    with pytest.raises(tally.BadRequestError, match="older than the allowed lateness"):
        client.get_online_features(SVC, keys("x"), CTX, as_of=now_ms() - pd.Timedelta(hours=1))


def test_workspace(server: object, client: tally.Client, uid: str) -> None:
    with tally.Client(client.url, workspace="elsewhere") as other:
        with pytest.raises(tally.NotFoundError) as e:
            other.get_online_features(SVC, keys(uid), CTX)
        assert e.value.code == "UNKNOWN_WORKSPACE"
        with pytest.raises(tally.NotFoundError):
            other.ingest("transactions", [event(uid, now_ms())])
    assert client.get_online_features(SVC, keys(uid), CTX).features[CNT_1M] == 0
    with tally.Client(client.url, workspace="default") as same:
        assert same.ingest("transactions", [event(uid, now_ms())]).accepted == 1
        assert same.get_online_features(SVC, keys(uid), CTX).features[CNT_1M] == 1


def test_connection_refused() -> None:
    from conftest import _free_port

    c = tally.Client(f"http://127.0.0.1:{_free_port()}", timeout=2)
    with pytest.raises(tally.ConnectionError) as e:
        c.feature_services()
    assert e.value.status is None
    assert isinstance(e.value, ConnectionError)  # the built-in too
    with pytest.raises(tally.ConnectionError):
        c.ingest("transactions", [event("x", now_ms())])
    assert c.health() is False


def test_upload_table(client: tally.Client, uid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    big = 2**53 + 3
    n = client.upload_table("user_profile", pd.DataFrame({"user_id": [uid, str(big)], "home_lat": [48.85, np.nan], "home_long": [2.35, 1.0]}))
    assert n == 2
    v = client.get_online_features(SVC, keys(uid), {"amt": 1.0, "lat": 48.85, "long": 2.35})
    assert v.features[HOME_LAT] == 48.85 and v.features[DISTANCE] == 0.0
    v = client.get_online_features(SVC, keys(big), CTX)
    assert v.features[HOME_LAT] is None and v.features["user_profile.home_long"] == 1.0

    other = uid + "-b"
    assert client.upload_table("user_profile", [{"user_id": other, "home_lat": 1, "home_long": 2}], replace=True) == 1
    assert client.get_online_features(SVC, keys(uid), CTX).features[HOME_LAT] is None
    assert client.get_online_features(SVC, keys(other), CTX).features[HOME_LAT] == 1.0

    # In chunks, replace replaces with the first and upserts the rest.
    monkeypatch.setattr(tally.client, "TABLE_CHUNK_ROWS", 2)
    rows = [{"user_id": f"{uid}-{i}", "home_lat": float(i), "home_long": 0.0} for i in range(5)]
    assert client.upload_table("user_profile", rows, replace=True) == 5
    assert client.get_online_features(SVC, keys(other), CTX).features[HOME_LAT] is None
    assert [client.get_online_features(SVC, keys(r["user_id"]), CTX).features[HOME_LAT] for r in rows] == [0.0, 1.0, 2.0, 3.0, 4.0]

    with pytest.raises(tally.BadRequestError) as e:
        client.upload_table("user_profile", [{"user_id": uid, "home_lat": "north"}])
    assert e.value.code == "INVALID_TABLE_ROWS"
    with pytest.raises(tally.NotFoundError):
        client.upload_table("no_such_table", [{"user_id": uid}])


def test_upload_table_allow_empty(fresh_client: tally.Client, uid: str) -> None:
    """A replace with no rows is refused and the table kept, unless
    allow_empty says to empty it."""
    c = fresh_client
    assert c.upload_table("user_profile", [{"user_id": uid, "home_lat": 1.5, "home_long": 2.0}]) == 1
    for empty in ([], pd.DataFrame({"user_id": pd.Series([], dtype=str), "home_lat": pd.Series([], dtype=float)})):
        with pytest.raises(tally.BadRequestError) as e:
            c.upload_table("user_profile", empty, replace=True)
        assert e.value.code == "EMPTY_REPLACE"
        assert c.get_online_features(SVC, keys(uid), CTX).features[HOME_LAT] == 1.5
    assert c.upload_table("user_profile", [], replace=True, allow_empty=True) == 0
    assert c.get_online_features(SVC, keys(uid), CTX).features[HOME_LAT] is None
