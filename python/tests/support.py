"""Helpers shared by the tests: records and keys of the default fraud repo."""

from __future__ import annotations

from typing import Any

import pandas as pd


def now_ms() -> pd.Timestamp:
    """The current time, UTC, floored to the millisecond (the node's precision)."""
    return pd.Timestamp.now(tz="UTC").floor("ms")


def event(user: Any, ts: Any, amt: float = 10.0, merchant: str = "m1", country: str = "FR", **extra: Any) -> dict[str, Any]:
    """A `transactions` record."""
    rec: dict[str, Any] = {
        "user_id": user,
        "merchant": merchant,
        "category": "grocery_pos",
        "amt": amt,
        "country": country,
        "lat": 48.85,
        "long": 2.35,
        "is_fraud": 0,
        "timestamp": ts,
    }
    rec.update(extra)
    return rec


def keys(user: Any, merchant: str = "m1", country: str = "FR") -> dict[str, Any]:
    """The fraud_detection join keys."""
    return {"user_id": user, "merchant": merchant, "country": country}


CTX = {"amt": 80.0, "lat": 51.5, "long": -0.12}
