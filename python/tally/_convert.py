"""Conversions between pandas/numpy/Python values and what the node reads.

The rules (stated in the package README):

- Timestamps are sent as integer epoch milliseconds. Naive datetimes
  (``datetime``, ``pd.Timestamp``, ``datetime64`` columns) are taken as UTC;
  tz-aware ones are converted to UTC; integers are epoch milliseconds already;
  text is parsed as RFC 3339 / ISO 8601. Sub-millisecond parts are floored.
  A spine's times go as a Parquet timestamp in milliseconds, except integers,
  which go as int64 (see ``integer_times``).
- Integers stay integers: a value is never routed through ``float``. An
  integer column with missing values should use pandas' nullable ``Int64``
  dtype; a ``float64`` column holding integer keys is accepted only while its
  values are integral and within 2**53 (beyond that they are already inexact).
- NaN, ``None``, ``pd.NA`` and ``NaT`` become JSON ``null``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

_MAX_EXACT_FLOAT_INT = 2**53
_EPOCH = pd.Timestamp(0, tz="UTC")
_ONE_MS = pd.Timedelta(milliseconds=1)
_UNIT_DIVISOR = {"ns": 1_000_000, "us": 1_000, "ms": 1}

Scalar = str | int | float | bool | None


def is_missing(v: Any) -> bool:
    """Reports whether v is None, NaN, pd.NA or NaT."""
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, (float, np.floating)):
        return math.isnan(float(v))
    if isinstance(v, np.datetime64):
        return bool(np.isnat(v))
    return False


def epoch_ms(value: Any) -> int:
    """Returns value as integer epoch milliseconds (naive = UTC)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"a timestamp cannot be a bool ({value!r})")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if not f.is_integer():
            raise TypeError(f"a numeric timestamp must be integer epoch milliseconds, got {value!r}")
        return int(f)
    if isinstance(value, (str, datetime, date, np.datetime64)):
        ts = pd.Timestamp(value)
    else:
        raise TypeError(
            f"cannot read {value!r} ({type(value).__name__}) as a timestamp: "
            "use datetime, pd.Timestamp, np.datetime64, RFC 3339 text or epoch milliseconds"
        )
    if pd.isna(ts):
        raise ValueError("timestamp is missing (NaT)")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int((ts - _EPOCH) // _ONE_MS)


def epoch_ms_series(s: pd.Series) -> list[int | None]:
    """Converts a column of timestamps to epoch milliseconds (None where missing)."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(s.dtype):
        vals = s.to_numpy()
        unit = np.datetime_data(vals.dtype)[0]
        i8 = vals.view("i8")
        ms = i8 * 1000 if unit == "s" else i8 // _UNIT_DIVISOR[unit]
        nat = np.isnat(vals)
        return [None if bad else int(x) for x, bad in zip(ms.tolist(), nat.tolist())]
    if pd.api.types.is_integer_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return [None if is_missing(x) else int(x) for x in s.to_numpy(dtype=object).tolist()]
    return [None if is_missing(v) else epoch_ms(v) for v in s.to_numpy(dtype=object).tolist()]


def integer_times(s: pd.Series) -> bool:
    """Reports whether a column of timestamps holds integers (epoch
    milliseconds as given) rather than datetimes or text, which say their
    unit. A spine sends the one as int64, which the node checks for epoch
    seconds (integers before 1973-03-03), the other as a Parquet timestamp,
    read as given. An object column holds one kind or the other: one that
    mixes numbers with datetimes or text raises ValueError naming the first
    row (by its index label) whose kind differs from the rows before it."""
    dt = s.dtype
    if isinstance(dt, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dt):
        return False
    if pd.api.types.is_bool_dtype(dt):
        return False
    if pd.api.types.is_numeric_dtype(dt):
        return True
    first: tuple[Any, Any, bool] | None = None  # (label, value, is a number) of the first non-missing row
    for label, v in zip(s.index, s.to_numpy(dtype=object).tolist()):
        if is_missing(v) or isinstance(v, (bool, np.bool_)):
            continue
        number = isinstance(v, (int, float, np.integer, np.floating))
        if first is None:
            first = (label, v, number)
        elif number != first[2]:
            kind = {True: "a number", False: "a datetime or text"}
            raise ValueError(
                f"row {label!r} holds {v!r} ({kind[number]}), but row {first[0]!r} holds {first[1]!r} ({kind[first[2]]}): "
                "a column of times holds numbers (epoch milliseconds) or datetimes and text, not both; "
                "convert one kind to the other (pd.to_datetime(numbers, unit='ms', utc=True) makes datetimes of the numbers)"
            )
    return first is not None and first[2]


def utc_datetimes(ms: Sequence[int | None]) -> pd.Series:
    """Returns epoch milliseconds as a datetime64[ms, UTC] column (NaT where
    None), exactly, in years 1 to 9999 too (datetime64[ns] holds 1677-2262)."""
    nat = np.iinfo(np.int64).min
    i8 = np.array([nat if v is None else v for v in ms], dtype=np.int64)
    return pd.Series(i8.view("datetime64[ms]")).dt.tz_localize("UTC")


def key_value(v: Any, *, as_text: bool) -> str | int | None:
    """Returns a join key value: text as is, integers exactly (as decimal text
    when as_text, which is how the node stores integer keys)."""
    if is_missing(v):
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"a join key must be a string or an integer, got {v!r}")
    if isinstance(v, (int, np.integer)):
        i = int(v)
        return str(i) if as_text else i
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if f.is_integer() and abs(f) <= _MAX_EXACT_FLOAT_INT:
            i = int(f)
            return str(i) if as_text else i
        raise TypeError(
            f"join key {v!r} is a float that is not an exact integer: "
            "keep integer keys in an int64 or nullable Int64 column, not float64"
        )
    raise TypeError(f"a join key must be a string or an integer, got {v!r} ({type(v).__name__})")


def value(v: Any) -> Any:
    """Returns v as a JSON-encodable Python value (numpy scalars unwrapped,
    timestamps as epoch milliseconds, missing values as None)."""
    if is_missing(v):
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return _number(float(v))
    if isinstance(v, str):
        return v
    if isinstance(v, (datetime, date, np.datetime64)):
        return epoch_ms(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        return [value(x) for x in v]
    raise TypeError(f"cannot send {v!r} ({type(v).__name__}): use str, int, float, bool, a timestamp or None")


def _number(f: float) -> float | int:
    """Returns a finite float, as an int when it is integral: an integer
    column that pandas made float64 (it had a NaN) then still reads as
    integers, and a float column reads 2 as 2.0. The int is the float's exact
    value, so nothing is lost."""
    if math.isinf(f):
        raise ValueError(f"{f!r} is not a finite number")
    if f.is_integer() and abs(f) < 2**63:
        return int(f)
    return f


def column_values(s: pd.Series, *, key: bool = False, key_as_text: bool = True) -> list[Any]:
    """Converts a whole column, exactly: ints never pass through float."""
    name = s.name
    try:
        if key:
            return [key_value(v, as_text=key_as_text) for v in s.to_numpy(dtype=object).tolist()]
        dt = s.dtype
        if isinstance(dt, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dt):
            return list(epoch_ms_series(s))
        if pd.api.types.is_bool_dtype(dt) or pd.api.types.is_integer_dtype(dt):
            # numpy and nullable (Int64, boolean) columns: tolist() gives Python
            # ints and bools, exactly.
            return [None if is_missing(x) else x for x in s.to_numpy(dtype=object).tolist()]
        if pd.api.types.is_float_dtype(dt):
            out: list[Any] = []
            for f in s.to_numpy(dtype="float64", na_value=np.nan).tolist():
                out.append(None if math.isnan(f) else _number(f))
            return out
        return [value(v) for v in s.to_numpy(dtype=object).tolist()]
    except (TypeError, ValueError) as e:
        raise type(e)(f"column {name!r}: {e}") from e


def records(data: pd.DataFrame | Sequence[Mapping[str, Any]], keys: set[str]) -> tuple[list[str], list[list[Any]]]:
    """Returns (column names, rows) of data with every value converted; the
    columns in keys are join keys, sent as text."""
    if isinstance(data, pd.DataFrame):
        cols = [str(c) for c in data.columns]
        if len(set(cols)) != len(cols):
            raise ValueError(f"duplicate column names in {cols}")
        values = [column_values(data.iloc[:, i], key=c in keys) for i, c in enumerate(cols)]
        return cols, [list(r) for r in zip(*values)] if values else [[] for _ in range(len(data))]
    cols = []
    seen: set[str] = set()
    for rec in data:
        for k in rec:
            if k not in seen:
                seen.add(k)
                cols.append(k)
    rows = []
    for i, rec in enumerate(data):
        row = []
        for c in cols:
            v = rec.get(c, _ABSENT)
            try:
                row.append(_ABSENT if v is _ABSENT else key_value(v, as_text=True) if c in keys else value(v))
            except (TypeError, ValueError) as e:
                raise type(e)(f"row {i}, field {c!r}: {e}") from e
        rows.append(row)
    return cols, rows


class _Absent:
    """A field a mapping row does not have (left out of the record, not null)."""

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


def is_absent(v: Any) -> bool:
    """Reports whether v marks a field missing from a mapping row."""
    return v is _ABSENT
