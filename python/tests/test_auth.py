"""API keys: 401 without a known key, 403 without the scope."""

from __future__ import annotations

import pytest
from conftest import ADMIN_KEY, INGEST_KEY, READ_KEY, Server
from support import CTX, event, keys, now_ms

import tally

SVC = "fraud_detection"


def test_no_key_or_unknown_key_is_401(auth_server: Server) -> None:
    for key in (None, "not-a-configured-key-at-all"):
        with tally.Client(auth_server.url, api_key=key) as c:
            with pytest.raises(tally.AuthenticationError) as e:
                c.get_online_features(SVC, keys("a"), CTX)
            assert e.value.status == 401 and e.value.code == "UNAUTHENTICATED"
            with pytest.raises(tally.AuthenticationError):
                c.feature_services()
            assert c.health()  # /readyz needs no key


def test_scopes(auth_server: Server) -> None:
    t = now_ms()
    with tally.Client(auth_server.url, api_key=READ_KEY) as reader, tally.Client(auth_server.url, api_key=INGEST_KEY) as producer:
        with pytest.raises(tally.PermissionDeniedError) as e:
            reader.ingest("transactions", [event("auth-u1", t)])
        assert e.value.status == 403 and e.value.code == "PERMISSION_DENIED"
        with pytest.raises(tally.PermissionDeniedError):
            reader.upload_table("user_profile", [{"user_id": "auth-u1", "home_lat": 1.0, "home_long": 2.0}])

        # The producer cannot list the services (read scope), so it cannot tell
        # which columns are join keys: its ingest still works with text keys.
        with pytest.raises(tally.PermissionDeniedError):
            producer.feature_services()
        assert producer.ingest("transactions", [event("auth-u1", t), event("auth-u1", t)]).accepted == 2
        assert producer.upload_table("user_profile", [{"user_id": "auth-u1", "home_lat": 1.0, "home_long": 2.0}]) == 1
        with tally.Client(auth_server.url, api_key=ADMIN_KEY) as admin:
            assert admin.ingest("transactions", [event(2**53 + 1, t)]).accepted == 1  # admin: read scope too
            assert admin.get_online_features(SVC, keys(2**53 + 1), CTX).features["user_transaction_counts.amt_count_1m"] == 1

        v = reader.get_online_features(SVC, keys("auth-u1"), CTX)
        assert v.features["user_transaction_counts.amt_count_1m"] == 2
        assert v.features["user_profile.home_lat"] == 1.0
        with pytest.raises(tally.PermissionDeniedError):
            producer.get_online_features(SVC, keys("auth-u1"), CTX)
