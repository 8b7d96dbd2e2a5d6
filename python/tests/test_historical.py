"""Backfill (import), table validity times and point-in-time historical features.

Each test has a server of its own (fresh_client): the node replays its log in
order, so history must be imported in time order before live events.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import pandas as pd
import pytest
from support import event, now_ms

import tally

SVC = "fraud_detection"
CNT_1M = "user_transaction_counts.amt_count_1m"
CNT_5M = "user_transaction_counts.amt_count_5m"
CNT_1H = "user_transaction_counts.amt_count_1h"
SUM_1D = "user_transaction_amounts.amt_sum_1d"
MEAN_1H = "user_transaction_amounts.amt_mean_1h"
HOME_LAT = "user_profile.home_lat"
RATIO = "transaction_request.amt_to_user_mean_1d"
MS = pd.Timedelta(milliseconds=1)


@pytest.fixture
def t0() -> pd.Timestamp:
    """A past instant (UTC) well beyond online reach, on a whole second."""
    return (now_ms() - pd.Timedelta(days=3)).floor("s")


def _spine(user: object, times: list[pd.Timestamp], **cols: object) -> pd.DataFrame:
    n = len(times)
    return pd.DataFrame(
        {
            "label": np.arange(n, dtype=np.int8) % 2,
            "user_id": [user] * n,
            "merchant": "m1",
            "country": "FR",
            "timestamp": times,
            "amt": 100.0,
            "lat": 0.0,
            "long": 0.0,
            **cols,
        }
    )


def test_point_in_time_no_leakage(fresh_client: tally.Client, uid: str, t0: pd.Timestamp) -> None:
    res = fresh_client.ingest("transactions", [event(uid, t0, 10.0), event(uid, t0 + pd.Timedelta(seconds=30), 20.0)], backfill=True)
    assert res.accepted == 2

    times = [
        t0 + pd.Timedelta(hours=2),  # 0: beyond 1h, within 1d
        t0,  # 1: exactly the first event's millisecond: not yet counted
        t0 - MS,  # 2: before everything
        t0 + MS,  # 3: one millisecond later: counted
        t0 + pd.Timedelta(seconds=30) + MS,  # 4: both
        t0 + pd.Timedelta(seconds=61),  # 5: the first left the 1m window
    ]
    spine = _spine(uid, times)
    spine["timestamp"] = spine["timestamp"].dt.tz_localize(None)  # naive = UTC
    spine.index = pd.Index([50, 40, 40, 20, 10, 0], name="example")  # duplicates too
    spine_before = spine.copy()

    out = fresh_client.get_historical_features(SVC, spine)

    pd.testing.assert_frame_equal(spine, spine_before)  # the caller's frame is untouched
    features = [f["name"] for f in fresh_client.feature_services()[0]["features"]]
    assert list(out.columns) == list(spine.columns) + features
    assert out.index.equals(spine.index)
    pd.testing.assert_frame_equal(out[spine.columns], spine)  # order, dtypes and values of the spine
    assert out[CNT_1M].dtype == "Int64"
    assert out[CNT_1M].tolist() == [0, 0, 0, 1, 2, 1]
    assert out[CNT_5M].tolist() == [0, 0, 0, 1, 2, 2]
    assert out[SUM_1D].tolist() == [30.0, 0.0, 0.0, 10.0, 30.0, 30.0]
    assert out[MEAN_1H].isna().tolist() == [True, True, True, False, False, False]
    assert out[MEAN_1H].iloc[4] == 15.0
    assert out[RATIO].iloc[3] == 100.0 / 10.0  # request-time features from the spine's context


def test_timestamp_forms_and_int64_keys(fresh_client: tally.Client, t0: pd.Timestamp) -> None:
    big = 2**53 + 1 + uuid.uuid4().int % 1_000_000 * 2
    fresh_client.ingest("transactions", pd.DataFrame([event(big, t0, 5.0), event(big - 1, t0, 7.0)]), backfill=True)
    after = t0 + MS
    forms = {
        "naive": pd.Series([after.tz_localize(None)] * 2),
        "utc": pd.Series([after] * 2),
        "plus2": pd.Series([after.tz_convert("Etc/GMT-2")] * 2),
        "epoch_ms": pd.Series([after.value // 1_000_000] * 2, dtype="int64"),
        "text": pd.Series([after.tz_convert("Etc/GMT-2").isoformat()] * 2),
    }
    for name, ts in forms.items():
        spine = pd.DataFrame({"user_id": np.array([big, big - 1], dtype=np.int64), "merchant": "m1", "country": "FR", "when": ts, "amt": 1, "lat": 0, "long": 0})
        out = fresh_client.get_historical_features(SVC, spine, timestamp_key="when")
        assert out["user_id"].dtype == np.int64
        assert out[CNT_1M].tolist() == [1, 1], name
        assert out[SUM_1D].tolist() == [5.0, 7.0], name
        before = spine.assign(when=[t0.value // 1_000_000] * 2)
        assert fresh_client.get_historical_features(SVC, before, timestamp_key="when")[CNT_1M].tolist() == [0, 0], name


def test_live_ingest_is_visible_from_when_it_arrived(fresh_client: tally.Client, uid: str) -> None:
    ts = now_ms() - pd.Timedelta(seconds=30)
    fresh_client.ingest("transactions", [event(uid, ts, 3.0)])
    arrived = now_ms() + MS
    while now_ms() <= arrived:
        time.sleep(0.005)
    spine = _spine(uid, [ts + MS, arrived + pd.Timedelta(milliseconds=1)])
    # The event's own time is 30 s earlier, but the node had it only on arrival.
    assert fresh_client.get_historical_features(SVC, spine)[CNT_1M].tolist() == [0, 1]


def test_table_rows_valid_from_as_of(fresh_client: tally.Client, uid: str, t0: pd.Timestamp) -> None:
    assert fresh_client.upload_table("user_profile", [{"user_id": uid, "home_lat": 10.0, "home_long": 1.0}], as_of=t0) == 1
    later = (t0 + pd.Timedelta(hours=1)).to_pydatetime()
    fresh_client.upload_table("user_profile", pd.DataFrame({"user_id": [uid], "home_lat": [20.0], "home_long": [1.0]}), as_of=later)
    spine = _spine(uid, [t0 - pd.Timedelta(seconds=1), t0 + pd.Timedelta(minutes=30), t0 + pd.Timedelta(hours=2)])
    out = fresh_client.get_historical_features(SVC, spine)
    assert out[HOME_LAT].isna().tolist() == [True, False, False]
    assert out[HOME_LAT].tolist()[1:] == [10.0, 20.0]
    # Online, the newest upload is in force.
    assert fresh_client.get_online_features(SVC, {"user_id": uid, "merchant": "m1", "country": "FR"}, {"amt": 1, "lat": 0, "long": 0}).features[HOME_LAT] == 20.0


def test_spine_validation(fresh_client: tally.Client, uid: str, t0: pd.Timestamp) -> None:
    spine = _spine(uid, [t0])
    with pytest.raises(ValueError, match="'timestamp'"):
        fresh_client.get_historical_features(SVC, spine.drop(columns=["timestamp"]))
    with pytest.raises(ValueError, match="event_time"):
        fresh_client.get_historical_features(SVC, spine, timestamp_key="event_time")
    with pytest.raises(ValueError, match="merchant"):
        fresh_client.get_historical_features(SVC, spine.drop(columns=["merchant"]))
    with pytest.raises(ValueError, match="lat"):
        fresh_client.get_historical_features(SVC, spine.drop(columns=["lat"]))
    with pytest.raises(ValueError, match="clash"):
        fresh_client.get_historical_features(SVC, spine.assign(**{CNT_1M: 1}))
    with pytest.raises(ValueError, match="missing"):
        fresh_client.get_historical_features(SVC, spine.assign(timestamp=[pd.NaT]))
    with pytest.raises(tally.NotFoundError):
        fresh_client.get_historical_features("no_such_service", spine)

    empty = fresh_client.get_historical_features(SVC, spine.iloc[:0])
    assert len(empty) == 0 and CNT_1M in empty.columns and empty[CNT_1M].dtype == "Int64"


def test_request_context_must_be_numbers(fresh_client: tally.Client, uid: str, t0: pd.Timestamp) -> None:
    spine = _spine(uid, [t0]).assign(amt=["lots"])
    with pytest.raises(ValueError, match="amt"):
        fresh_client.get_historical_features(SVC, spine)


def test_import_refusal(fresh_client: tally.Client, uid: str, t0: pd.Timestamp) -> None:
    with pytest.raises(tally.BadRequestError) as e:
        fresh_client.ingest("transactions", [event(uid, t0), {**event(uid, t0), "amt": "x"}], backfill=True)
    assert [r["index"] for r in e.value.records] == [1]
    assert fresh_client.get_historical_features(SVC, _spine(uid, [t0 + MS]))[CNT_1M].tolist() == [0]
    res = fresh_client.ingest("transactions", [event(uid, t0)], backfill=True, dry_run=True)
    assert res.dry_run and res.accepted == 1
    assert fresh_client.get_historical_features(SVC, _spine(uid, [t0 + MS]))[CNT_1M].tolist() == [0]


def test_datetimes_before_1973_are_read_as_given(fresh_client: tally.Client, uid: str) -> None:
    # The node refuses integer spine times before 1973-03-03 as epoch seconds
    # read as milliseconds; a datetime or RFC 3339 text says its unit, so the
    # client sends it as one.
    t = pd.Timestamp("1971-06-01T12:00:00Z")
    assert fresh_client.ingest("transactions", [event(uid, t, 10.0)], backfill=True).accepted == 1
    times = [t, t + MS]  # at the event's millisecond: not counted; a millisecond later: counted
    forms = {
        "naive": pd.Series(times).dt.tz_localize(None),
        "naive_us": pd.Series(times).dt.tz_localize(None).astype("datetime64[us]"),
        "utc": pd.Series(times),
        "plus2": pd.Series(times).dt.tz_convert("Etc/GMT-2"),
        "text": pd.Series([x.tz_convert("Etc/GMT-2").isoformat() for x in times]),
        "objects": pd.Series([x.to_pydatetime() for x in times], dtype=object),
    }
    for name, ts in forms.items():
        out = fresh_client.get_historical_features(SVC, _spine(uid, list(times)).assign(timestamp=ts))
        assert out[CNT_1M].tolist() == [0, 1], name
        assert out[SUM_1D].tolist() == [0.0, 10.0], name
        pd.testing.assert_series_equal(out["timestamp"], ts, check_names=False)  # the caller's column, untouched


def test_integer_times_stay_epoch_milliseconds(fresh_client: tally.Client, uid: str, t0: pd.Timestamp) -> None:
    fresh_client.ingest("transactions", [event(uid, t0, 10.0)], backfill=True)
    ms = [t0.value // 1_000_000, t0.value // 1_000_000 + 1]
    out = fresh_client.get_historical_features(SVC, _spine(uid, [t0, t0]).assign(timestamp=pd.Series(ms, dtype="int64")))
    assert out[CNT_1M].tolist() == [0, 1]
    for dtype in ("int64", "Int64", "object"):
        seconds = pd.Series([ms[1], ms[1] // 1000], dtype=dtype)
        with pytest.raises(tally.BadRequestError, match=r'spine row 1 \(2 of 2\), column "timestamp".*epoch seconds\? multiply by 1000') as e:
            fresh_client.get_historical_features(SVC, _spine(uid, [t0, t0]).assign(timestamp=seconds))
        assert e.value.code == "INVALID_SPINE", dtype


def test_spine_errors_name_the_index_label(fresh_client: tally.Client, uid: str, t0: pd.Timestamp) -> None:
    # The node names a bad spine row by its place, counted from 1; a
    # DataFrame's rows have labels of their own, which the error names.
    ms = t0.value // 1_000_000
    spine = _spine(uid, [t0, t0, t0]).assign(timestamp=pd.Series([ms, ms, ms // 1000], dtype="int64"))
    spine.index = pd.Index(["a", "b", "c"])
    with pytest.raises(tally.BadRequestError, match=r"spine row 'c' \(3 of 3\), column \"timestamp\".*multiply by 1000") as e:
        fresh_client.get_historical_features(SVC, spine)
    assert e.value.code == "INVALID_SPINE"


def test_spine_times_mixing_numbers_and_datetimes_are_refused(fresh_client: tally.Client, uid: str, t0: pd.Timestamp) -> None:
    # One column goes as one type: integers (epoch milliseconds, which the
    # node checks for epoch seconds) or a timestamp. A datetime among
    # numbers went as an integer, so a 1971 datetime was refused as epoch
    # seconds; a number among datetimes cannot say its unit.
    ms = t0.value // 1_000_000
    old = pd.Timestamp("1971-06-01T12:00:00Z")
    for values, bad in (([ms, old.to_pydatetime(), ms], 11), ([old, ms, ms], 11), ([old, old.isoformat(), float(ms)], 12)):
        spine = _spine(uid, [t0, t0, t0]).assign(timestamp=pd.Series(values, dtype=object))
        spine.index = pd.Index([10, 11, 12])
        with pytest.raises(ValueError, match=rf"spine column 'timestamp'.*row {bad}.*numbers.*datetimes") as e:
            fresh_client.get_historical_features(SVC, spine)
        assert not isinstance(e.value, tally.TallyError)
