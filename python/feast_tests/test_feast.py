"""Feast's SDK against a real tally node: `feast apply` on the repo `tally
feast-repo` generates, then FeatureStore.get_online_features through Feast's
remote online store returns what tally's own get-features returns for the same
keys (every feature, every row, unknown entities and missing data included),
and events pushed with Feast's push API (the SDK's FeatureStore.push and the
feature server's POST /push) are visible to the next lookup."""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import Any

import pandas as pd
import pytest
import requests

SERVICE = "fraud_detection"
CTX = ("amt", "lat", "long")


def now_ms() -> int:
    return int(time.time() * 1000)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ingest(url: str, events: list[dict[str, Any]]) -> None:
    body = {"workspace_name": "default", "records": {"transactions": [{"record": e} for e in events]}}
    r = requests.post(url + "/api/v1/ingest", json=body, timeout=10)
    assert r.status_code == 200, r.text


def event(user: str, merchant: str, country: str, amt: float, ago_ms: int) -> dict[str, Any]:
    return {"user_id": user, "merchant": merchant, "category": "grocery_pos", "amt": amt, "country": country,
            "lat": 48.85, "long": 2.35, "is_fraud": 0, "timestamp": now_ms() - ago_ms}


def tally_vector(url: str, row: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """tally's own get-features answer for row: full name -> (value, status)."""
    body = {"params": {"feature_service_name": SERVICE,
                       "join_key_map": {k: row[k] for k in ("user_id", "merchant", "country")},
                       "request_context_map": {k: row[k] for k in CTX}}}
    r = requests.post(url + "/api/v1/feature-service/get-features", json=body, timeout=10)
    assert r.status_code == 200, r.text
    j = r.json()
    return {m["name"]: (v, m["status"]) for v, m in zip(j["result"]["features"], j["metadata"]["features"])}


def same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return bool(a == b)


def seed(url: str) -> tuple[str, str, str]:
    """A user with events and a profile, one with events only; a merchant and a
    country with events. Timestamps a few seconds back: the 1-minute windows
    hold them through the test."""
    u1, u2, m, c = uid("u1"), uid("u2"), uid("m"), uid("C")
    ingest(url, [event(u1, m, c, 10.0, 5000), event(u1, uid("m"), c, 30.5, 4000), event(u2, m, c, 7.25, 3000)])
    r = requests.post(url + "/api/v1/tables/user_profile", data=f"user_id,home_lat,home_long\n{u1},48.85,2.35\n",
                      headers={"Content-Type": "text/csv"}, timeout=10)
    assert r.status_code == 200, r.text
    return u1, u2, m + "|" + c


def compare(url: str, feast: dict[str, list[Any]], rows: list[dict[str, Any]]) -> int:
    """Every feature of every row: Feast's answer equals tally's. Returns the
    number of values compared."""
    n = 0
    for i, row in enumerate(rows):
        want = tally_vector(url, row)
        for name, (value, _) in want.items():
            col = name.replace(".", "__", 1)
            assert col in feast, f"Feast's answer lacks {col}: {sorted(feast)}"
            assert same(feast[col][i], value), f"row {i} {name}: Feast SDK {feast[col][i]!r}, tally {value!r}"
            n += 1
    return n


def test_single_row_feature_service(server, store) -> None:  # type: ignore[no-untyped-def]
    u1, _, mc = seed(server.url)
    m, c = mc.split("|")
    row = {"user_id": u1, "merchant": m, "country": c, "amt": 80.0, "lat": 51.5, "long": -0.12}
    resp = store.get_online_features(features=store.get_feature_service(SERVICE), entity_rows=[row],
                                     full_feature_names=True).to_dict()
    assert resp["user_id"] == [u1]
    assert compare(server.url, resp, [row]) == 18
    assert resp["user_transaction_counts__amt_count_1m"] == [2]
    assert resp["user_profile__home_lat"] == [48.85]
    assert resp["transaction_request__amt_to_user_mean_1d"][0] == pytest.approx(80.0 / 20.25)


def test_many_rows_unknown_entities_and_missing_data(server, store) -> None:  # type: ignore[no-untyped-def]
    from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

    u1, u2, mc = seed(server.url)
    m, c = mc.split("|")
    ghost = uid("ghost")
    rows = [
        {"user_id": u1, "merchant": m, "country": c, "amt": 12.0, "lat": 40.0, "long": -3.7},
        {"user_id": u2, "merchant": m, "country": c, "amt": 1.0, "lat": 0.0, "long": 0.0},
        {"user_id": ghost, "merchant": uid("m"), "country": uid("C"), "amt": 5.0, "lat": 1.0, "long": 1.0},
    ]
    refs = [name.replace(".", ":", 1) for name in tally_vector(server.url, rows[0])]
    resp = store.get_online_features(features=refs, entity_rows=rows, full_feature_names=True)
    d = resp.to_dict()
    assert d["user_id"] == [u1, u2, ghost]
    assert compare(server.url, d, rows) == 3 * 18
    names = list(resp.proto.metadata.feature_names.val)
    status = {n: list(r.statuses) for n, r in zip(names, resp.proto.results)}
    # The unknown user: counts are 0 and present, means are null, no profile row.
    assert d["user_transaction_counts__amt_count_1h"][2] == 0
    assert status["user_transaction_counts__amt_count_1h"][2] == FieldStatus.PRESENT
    assert d["user_transaction_amounts__amt_mean_1h"][2] is None
    assert status["user_transaction_amounts__amt_mean_1h"][2] == FieldStatus.NULL_VALUE
    # u2 has events but no profile: NOT_FOUND there, and the distance needs it.
    assert status["user_profile__home_lat"][1:] == [FieldStatus.NOT_FOUND, FieldStatus.NOT_FOUND]
    assert status["user_profile__home_lat"][0] == FieldStatus.PRESENT
    assert d["transaction_request__distance_from_home_km"][1] is None


def test_push_is_visible_to_the_next_lookup(server, store) -> None:  # type: ignore[no-untyped-def]
    from feast.data_source import PushMode

    user = uid("p")

    def count() -> list[Any]:
        d = store.get_online_features(features=["user_transaction_counts:amt_count_1m", "user_transaction_amounts:amt_sum_1h"],
                                      entity_rows=[{"user_id": user}]).to_dict()
        return [d["amt_count_1m"][0], d["amt_sum_1h"][0]]

    assert count() == [0, 0]
    ts = pd.Timestamp.now(tz="UTC").floor("ms") - pd.Timedelta(seconds=3)
    df = pd.DataFrame({"user_id": [user, user], "merchant": ["m1", "m2"], "country": ["FR", "FR"], "category": ["a", "b"],
                       "amt": [2.5, 4.0], "lat": [1.0, 1.0], "long": [2.0, 2.0], "is_fraud": [0, 1], "timestamp": [ts, ts]})
    store.push("transactions", df, to=PushMode.ONLINE)
    assert count() == [2, 6.5]
    body = {"push_source_name": "transactions", "to": "online",
            "df": {"user_id": [user], "merchant": ["m3"], "country": ["FR"], "category": ["c"], "amt": [1.5],
                   "lat": [1.0], "long": [2.0], "is_fraud": [0], "timestamp": [ts.isoformat()]}}
    r = requests.post(server.url + "/push", json=body, timeout=10)
    assert r.status_code == 200, r.text
    assert count() == [3, 8]
    # A refused push changes nothing and says why.
    body["df"]["amt"] = ["ten"]
    r = requests.post(server.url + "/push", json=body, timeout=10)
    assert r.status_code == 400 and "amt" in r.text
    assert count() == [3, 8]


def test_push_missing_values(server, store) -> None:  # type: ignore[no-untyped-def]
    """pandas marks a missing float, and a missing value in an int column
    (which pandas makes float), NaN. Feast stores it as a null value
    (feast/type_map.py: pd.isnull -> an empty Value); tally takes it as a
    missing value, which its aggregations ignore: through the SDK's
    FeatureStore.push, and through /push with the frame as Python's json
    writes it (NaN, and 0.0 in the int column)."""
    from feast.data_source import PushMode

    def stats(user: str) -> list[Any]:
        d = store.get_online_features(features=["user_transaction_counts:amt_count_1m", "user_transaction_amounts:amt_sum_1h"],
                                      entity_rows=[{"user_id": user}]).to_dict()
        return [d["amt_count_1m"][0], d["amt_sum_1h"][0]]

    ts = pd.Timestamp.now(tz="UTC").floor("ms") - pd.Timedelta(seconds=3)
    sdk, http = uid("nan"), uid("nan")

    def frame(user: str) -> pd.DataFrame:
        return pd.DataFrame({"user_id": [user] * 3, "merchant": ["m1", "m2", "m3"], "country": ["FR"] * 3,
                             "category": ["a", "b", "c"], "amt": [2.5, float("nan"), 4.0], "lat": [1.0, float("nan"), 1.0],
                             "long": [2.0, 2.0, 2.0], "is_fraud": [0, None, 1], "timestamp": [ts] * 3})

    df = frame(sdk)
    assert df["is_fraud"].dtype == "float64"  # pandas' int column with a missing value
    store.push("transactions", df, to=PushMode.ONLINE)
    assert stats(sdk) == [2, 6.5]
    body = {"push_source_name": "transactions", "to": "online",
            "df": frame(http).assign(timestamp=ts.isoformat()).to_dict(orient="list")}
    text = json.dumps(body)
    assert "NaN" in text and "0.0" in text
    r = requests.post(server.url + "/push", data=text, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 200, r.text
    assert stats(http) == [2, 6.5]


def test_request_data_nan_is_missing(server, store) -> None:  # type: ignore[no-untyped-def]
    """A client posting request data as Python's json writes a pandas frame
    sends NaN for a missing float. Feast 0.67's feature server reads it as
    null (feast/utils.py converts entities columns with type_map, where
    pd.isnull makes an empty Value); tally answers POST
    /get-online-features with what it answers for null. A NaN join key is
    refused, naming its column and row."""
    u1, _, mc = seed(server.url)
    m, c = mc.split("|")
    frame = pd.DataFrame({"user_id": [u1, u1], "merchant": [m, m], "country": [c, c],
                          "amt": [80.0, float("nan")], "lat": [51.5, 51.5], "long": [-0.12, -0.12]})

    def post(entities: dict[str, list[Any]]) -> requests.Response:
        text = json.dumps({"feature_service": SERVICE, "entities": entities, "full_feature_names": True})
        return requests.post(server.url + "/get-online-features", data=text,
                             headers={"Content-Type": "application/json"}, timeout=10)

    entities = frame.to_dict(orient="list")
    r = post(entities)
    assert r.status_code == 200, r.text
    with_null = post({**entities, "amt": [80.0, None]})
    assert with_null.status_code == 200, with_null.text
    got = r.json()

    def answer(j: dict[str, Any]) -> list[Any]:  # event_timestamps are the read time
        return [j["metadata"], [(res["values"], res["statuses"]) for res in j["results"]]]

    assert answer(got) == answer(with_null.json())
    col = got["metadata"]["feature_names"].index("transaction_request__amt_to_user_mean_1d")
    assert got["results"][col]["statuses"] == ["PRESENT", "NULL_VALUE"]
    r = post({**entities, "user_id": [u1, float("nan")]})
    assert r.status_code == 400 and "entities.user_id[1]: NaN" in r.text, r.text


def test_errors_are_feasts(server, store) -> None:  # type: ignore[no-untyped-def]
    from feast.errors import FeatureViewNotFoundException, RequestDataNotFoundInEntityRowsException

    with pytest.raises(FeatureViewNotFoundException, match="no_such_view"):
        store.get_online_features(features=["no_such_view:x"], entity_rows=[{"user_id": "u"}])
    with pytest.raises(RequestDataNotFoundInEntityRowsException, match="amt"):
        store.get_online_features(features=["transaction_request:amt_to_user_mean_1d"], entity_rows=[{"user_id": "u"}])


def test_on_demand_view_computes_what_tally_computes(server, store) -> None:  # type: ignore[no-untyped-def]
    """The generated on-demand view's Python (what Feast runs offline) gives
    tally's request-time features from the same inputs."""
    u1, u2, mc = seed(server.url)
    m, c = mc.split("|")
    odfv = store.get_on_demand_feature_view("transaction_request")
    udf = odfv.feature_transformation.udf
    rows = [{"user_id": u1, "merchant": m, "country": c, "amt": 80.0, "lat": 51.5, "long": -0.12},
            {"user_id": u2, "merchant": m, "country": c, "amt": 3.0, "lat": 10.0, "long": 10.0}]
    vecs = [tally_vector(server.url, r) for r in rows]
    inputs = {k: [r[k] for r in rows] for k in CTX}
    for feat in ("home_lat", "home_long"):
        inputs[feat] = [v["user_profile." + feat][0] for v in vecs]
    inputs["amt_mean_1d"] = [v["user_transaction_amounts.amt_mean_1d"][0] for v in vecs]
    out = udf(inputs)
    for i, v in enumerate(vecs):
        for feat in ("distance_from_home_km", "amt_to_user_mean_1d"):
            want = v["transaction_request." + feat][0]
            assert same(out[feat][i], want) or math.isclose(out[feat][i], want, rel_tol=1e-9), (i, feat, out[feat][i], want)
