"""tally: the Python client of the tally feature server.

    >>> import tally
    >>> with tally.Client("http://127.0.0.1:8080") as c:
    ...     v = c.get_online_features("fraud_detection", {"user_id": "u1", "merchant": "m1", "country": "FR"},
    ...                               {"amt": 80.0, "lat": 51.5, "long": -0.12})

See the package README for the API, how values are converted, and errors.
"""

from .client import Client, FeatureVector, IngestResult, Prediction, __version__
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectionError,
    NotFoundError,
    PartlyAppliedError,
    PermissionDeniedError,
    ServerError,
    TallyError,
    TooLargeError,
    TooManyRequestsError,
    UnsupportedMediaTypeError,
)

__all__ = [
    "Client",
    "FeatureVector",
    "Prediction",
    "IngestResult",
    "TallyError",
    "BadRequestError",
    "ConflictError",
    "PartlyAppliedError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "TooLargeError",
    "TooManyRequestsError",
    "UnsupportedMediaTypeError",
    "ServerError",
    "ConnectionError",
    "__version__",
]
