"""Exceptions raised by :class:`tally.Client`.

Every error the client raises for a failed request is a :class:`TallyError`.
The node answers errors as ``{"error": {"code", "message", ...}}``; the
subclass says whose fault it was by HTTP status, ``code`` is stable for
programs and ``message`` says what to change.
"""

from __future__ import annotations

import builtins
from typing import Any

__all__ = [
    "TallyError",
    "BadRequestError",
    "ConflictError",
    "PartlyAppliedError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "TooLargeError",
    "UnsupportedMediaTypeError",
    "TooManyRequestsError",
    "ServerError",
    "ConnectionError",
]


class TallyError(Exception):
    """A request to the node failed.

    Attributes:
        status: the HTTP status, or ``None`` when no answer came.
        code: the node's error code (``INVALID_RECORDS``, ``UNKNOWN_FEATURE_SERVICE``, ...).
        message: the node's explanation, meant for people.
        body: the parsed JSON error body (or the raw text when it was not JSON).
        records: for a refused ingest, the refused records as
            ``{"source", "index", "reason"}`` dicts (at most 100; ``index`` is
            the position in the data passed to :meth:`Client.ingest`).
        accepted_before: for an ingest split into chunks, how many records
            earlier chunks had already applied when this one failed (each chunk is
            all or nothing; earlier chunks stay applied).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        body: Any = None,
        records: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.body = body
        self.records: list[dict[str, Any]] = records if records is not None else []
        self.accepted_before = 0

    def __str__(self) -> str:
        parts = []
        if self.status is not None:
            parts.append(str(self.status))
        if self.code:
            parts.append(self.code)
        head = " ".join(parts)
        text = f"{head}: {self.message}" if head else self.message
        if self.accepted_before:
            text += f" (earlier chunks had applied {self.accepted_before} records)"
        return text


class BadRequestError(TallyError):
    """400: the request was wrong; nothing was applied."""


class ConflictError(TallyError):
    """409: the request conflicts with what the node holds:
    ``ARCHIVE_INCOMPLETE`` (retention removed the start of the archive a
    historical join needs) or ``PARTLY_APPLIED`` (:class:`PartlyAppliedError`)."""


class PartlyAppliedError(ConflictError):
    """409 ``PARTLY_APPLIED``: the retry (same ``request_id``) of an ingest
    part of which was applied before (in a cluster, some replica groups
    applied their share and another's write failed; on a single node, a crash
    kept only part of it) was refused, its records now being too late for
    the rest (``records`` says why). Do not send them again under a new
    ``request_id``: the part applied would be counted twice.

    Attributes:
        groups: in a cluster, each replica group owning a key of the request
            as ``{"group", "records", "share"}`` (``share``: ``applied``,
            ``not applied``, ``partly applied`` or ``unknown``, then with an
            ``error``).
        sources: on a single node, ``{"source", "records", "share"}`` for
            each source of the request.
    """

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        err = self.body.get("error") if isinstance(self.body, dict) else None
        err = err if isinstance(err, dict) else {}
        self.groups: list[dict[str, Any]] = [dict(g) for g in err.get("groups") or [] if isinstance(g, dict)]
        self.sources: list[dict[str, Any]] = [dict(g) for g in err.get("sources") or [] if isinstance(g, dict)]


class AuthenticationError(TallyError):
    """401: no API key, or one the node does not know."""


class PermissionDeniedError(TallyError):
    """403: the API key lacks the scope (ingest, read, admin) the endpoint needs."""


class NotFoundError(TallyError):
    """404: an unknown feature service, source, table, workspace or endpoint."""


class TooLargeError(TallyError):
    """413: the request is too large for the node, and nothing of it was
    applied: ``BODY_TOO_LARGE`` (over ``limits.max_body_bytes``), ``TOO_LARGE``
    (a change whose log record would pass the log's record limit) or
    ``SPINE_TOO_LARGE`` (a historical spine over ``limits.max_spine_rows`` or
    ``max_spine_bytes``). Send it in smaller parts."""


class UnsupportedMediaTypeError(TallyError):
    """415 ``UNSUPPORTED_MEDIA_TYPE``: a body sent with a ``Content-Encoding``
    other than identity, or a spine in a format the node does not read;
    nothing was read."""


class TooManyRequestsError(TallyError):
    """429: the node refuses this now, not the request itself:
    ``EXPORT_BUSY`` (a historical-features join is already running; one runs
    at a time) or ``TOO_MANY_CONNECTIONS`` (this address holds
    ``limits.max_conns_per_ip`` connections). Nothing was applied; send it
    again later."""


class ServerError(TallyError):
    """5xx: the node failed (``NOT_DURABLE``, ``MODEL_UNAVAILABLE``, ...)."""


class ConnectionError(TallyError, builtins.ConnectionError):  # noqa: A001 - the SDK's name for it
    """No answer: the connection was refused, reset or timed out.

    Also a subclass of the built-in :class:`ConnectionError`. Whether a write
    that timed out was applied is unknown.
    """


#: The exception of each 4xx status that has its own.
_BY_STATUS: dict[int, type[TallyError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: TooLargeError,
    415: UnsupportedMediaTypeError,
    429: TooManyRequestsError,
}


def error_for_status(status: int, code: str, message: str, body: Any, records: list[dict[str, Any]] | None) -> TallyError:
    """Returns the exception for an error response with this status."""
    if code == "PARTLY_APPLIED":
        cls: type[TallyError] = PartlyAppliedError
    elif status >= 500:
        cls = ServerError
    else:
        cls = _BY_STATUS.get(status, TallyError)
    return cls(message, status=status, code=code, body=body, records=records)
