"""Connecting a store to HubSpot or Zoho, and checking a connection."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

import orjson
from django.db import transaction

from storeloop.core.errors import NotFound, TerminalError, TransientError, ValidationError
from storeloop.crm.models import CrmConnection
from storeloop.integrations.zoho.auth import ZOHO_DATA_CENTERS
from storeloop.stores.models import Store

Provider = CrmConnection.Provider


def _url(value: str | None, name: str) -> str:
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError(f"{name} must be an http(s) URL", code="invalid_url", details=[{"field": name}])
    return value.rstrip("/")


def _store(store_id: int) -> Store:
    store = Store.objects.filter(pk=store_id).first()
    if store is None:
        raise NotFound(f"no store {store_id}", code="store_not_found")
    return store


def connect_hubspot(
    *, store_id: int, token: str, base_url: str | None = None, pipeline: str = "default"
) -> CrmConnection:
    if not token.strip():
        raise ValidationError("a HubSpot private-app token is required", code="missing_token")
    store = _store(store_id)
    base = _url(base_url, "base_url") or "https://api.hubapi.com"
    # The rate budget belongs to the HubSpot account; the token identifies it (hashed, not stored).
    budget = "hubspot:" + hashlib.sha256(f"{base}|{token.strip()}".encode()).hexdigest()[:32]
    return _save(
        store,
        Provider.HUBSPOT,
        credentials={"token": token.strip()},
        base_url=base,
        budget_key=budget,
        pipeline=pipeline,
    )


def connect_zoho(
    *,
    store_id: int,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    dc: str = "com",
    accounts_url: str | None = None,
    api_url: str | None = None,
    module: str = "Deals",
) -> CrmConnection:
    if not (client_id.strip() and client_secret.strip() and refresh_token.strip()):
        raise ValidationError("client id, client secret and refresh token are required", code="missing_credentials")
    if dc not in ZOHO_DATA_CENTERS:
        raise ValidationError(
            f"unknown Zoho data centre {dc!r}; one of {', '.join(sorted(ZOHO_DATA_CENTERS))}", code="invalid_dc"
        )
    if module not in ("Deals", "Sales_Orders"):
        raise ValidationError("module must be Deals or Sales_Orders", code="invalid_module")
    store = _store(store_id)
    return _save(
        store,
        Provider.ZOHO,
        credentials={"client_id": client_id.strip(), "client_secret": client_secret.strip(),
                     "refresh_token": refresh_token.strip()},
        base_url=_url(api_url, "api_url"),
        accounts_url=_url(accounts_url, "accounts_url"),
        data_center=dc,
        budget_key="zoho:" + hashlib.sha256(f"{dc}|{client_id.strip()}".encode()).hexdigest()[:32],
        zoho_module=module,
    )  # fmt: skip


def _save(store: Store, provider: str, *, credentials: dict[str, str], **fields: str) -> CrmConnection:
    with transaction.atomic(durable=True):
        connection, _ = CrmConnection.objects.update_or_create(
            store=store,
            provider=provider,
            defaults={
                "credentials": orjson.dumps(credentials).decode(),
                "cached_token": "",
                "status": CrmConnection.Status.ACTIVE,
                "broken_reason": "",
                **fields,
            },
        )
    return connection


def check_connection(connection: CrmConnection) -> str:
    """Check the credentials and setup against the CRM; returns "ok" or raises ValidationError."""
    from storeloop.crm.adapters.factory import adapter_for

    adapter = adapter_for(connection)
    try:
        adapter.check()
    except TerminalError as exc:
        raise ValidationError(f"{connection.get_provider_display()} refused: {exc}", code="crm_check_failed") from None
    except TransientError as exc:
        raise ValidationError(
            f"{connection.get_provider_display()} unreachable: {exc}", code="crm_unreachable"
        ) from None
    finally:
        adapter.close()
    if connection.status == CrmConnection.Status.BROKEN:
        CrmConnection.objects.filter(pk=connection.pk).update(status=CrmConnection.Status.ACTIVE, broken_reason="")
    return "ok"
