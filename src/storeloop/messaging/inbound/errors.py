"""What a provider's webhook request can be refused with (rendered as ``{"code", "message", "details"}``)."""

from __future__ import annotations

from storeloop.core.errors import ApplicationError, NotFound, Unauthorized


class StoreNotFound(NotFound):
    code = "store_not_found"


class ChannelNotConnected(NotFound):
    code = "channel_not_configured"


class InvalidSignature(Unauthorized):
    code = "invalid_signature"


class WebhookNotConfigured(Unauthorized):
    """The connection has no secret to check requests with: nothing can be accepted until it has one."""

    code = "webhook_not_configured"


class VerificationFailed(ApplicationError):
    status_code = 403
    code = "verification_failed"


class InvalidPayload(ApplicationError):
    """Signed, but not the documented shape: storing it would only fail later."""

    status_code = 400
    code = "invalid_payload"
