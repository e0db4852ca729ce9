"""The error tree every layer raises and the API renders.

An ``ApplicationError`` carries an HTTP status, a machine-readable ``code`` and a message that says
what to fix. The task engine reads the other axis: ``TransientError`` is retried with back-off,
``TerminalError`` stops at once (dead letter). Integrations map provider failures onto these two.
"""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class ValidationError(ApplicationError):
    status_code = 422
    code = "validation_error"


class NotFound(ApplicationError):
    status_code = 404
    code = "not_found"


class Unauthorized(ApplicationError):
    status_code = 401
    code = "unauthorized"


class Forbidden(ApplicationError):
    status_code = 403
    code = "forbidden"


class Conflict(ApplicationError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(ApplicationError):
    status_code = 413
    code = "payload_too_large"


class TransientError(Exception):
    """A failure worth retrying: timeouts, connection errors, 5xx, 429.

    ``retry_after`` (seconds) is the provider's own hint (e.g. ``Retry-After``); the engine waits
    at least that long before the next attempt.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TerminalError(Exception):
    """A failure that will not go away by retrying: validation, auth, other 4xx."""
