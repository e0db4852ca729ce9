"""The one access gate of the API: a store-scoped bearer key. Every route requires it by default."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer

from storeloop.core.errors import Forbidden
from storeloop.stores.models import ApiKey
from storeloop.stores.services import authenticate_api_key


class StoreApiKey(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        key = authenticate_api_key(token)
        if key is None:
            return None
        # Touch at most once a minute: a write per request would serialise reads on SQLite.
        now = timezone.now()
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        request.store = key.store  # type: ignore[attr-defined]
        return key


def request_store(request: HttpRequest) -> Any:
    return request.store  # type: ignore[attr-defined]


def require_operator(request: HttpRequest) -> None:
    """Installation-wide resources (the task queue spans every store) need an operator key."""
    key = getattr(request, "auth", None)
    if not isinstance(key, ApiKey) or not key.operator:
        raise Forbidden(
            "this endpoint spans every store; use an operator key (storeloop apikey create --operator)",
            code="operator_key_required",
        )
