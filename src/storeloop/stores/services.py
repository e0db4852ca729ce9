"""Connecting, listing and removing shops; their webhooks on the shop side; API keys."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from storeloop.core.crypto import constant_time_equals
from storeloop.core.errors import NotFound, ValidationError
from storeloop.integrations.woocommerce.errors import WooAuthError, WooCommerceError
from storeloop.stores.models import ApiKey, Store, StoreWebhook
from storeloop.stores.woo import WEBHOOK_TOPICS, client_for, delivery_url

logger = logging.getLogger("storeloop.stores")


def _validate_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError(f"store URL must be an http(s) URL, got {url!r}", code="invalid_store_url")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def add_store(
    *,
    name: str,
    url: str,
    consumer_key: str,
    consumer_secret: str,
    webhook_secret: str | None = None,
    register_webhooks: bool = True,
    auth_mode: str = Store.AuthMode.BASIC,
    is_demo: bool = False,
    import_history: bool = False,
) -> Store:
    """Check the credentials against the shop, store them encrypted, register our webhooks.

    Reconciliation starts 24 hours back unless ``import_history``, in which case its first sweep
    walks every order the shop has (resumable: it checkpoints after each page).
    """
    if not name.strip():
        raise ValidationError("store name must not be empty", code="invalid_store_name")
    if not consumer_key.strip() or not consumer_secret.strip():
        raise ValidationError("consumer key and secret are required", code="missing_credentials")
    if auth_mode not in Store.AuthMode.values:
        raise ValidationError(f"auth mode must be one of {Store.AuthMode.values}", code="invalid_auth_mode")
    store = Store(
        name=name.strip(),
        url=_validate_url(url),
        consumer_key=consumer_key.strip(),
        consumer_secret=consumer_secret.strip(),
        webhook_secret=webhook_secret or secrets.token_urlsafe(32),
        auth_mode=auth_mode,
        is_demo=is_demo,
        manage_webhooks=register_webhooks,
        reconciled_until=None if import_history else timezone.now() - dt.timedelta(days=1),
    )
    with client_for(store) as client:
        try:
            client.check_credentials()
        except WooAuthError as exc:
            raise ValidationError(
                f"the shop refused the credentials: {exc}", code="shop_credentials_rejected"
            ) from None
        except WooCommerceError as exc:
            raise ValidationError(f"could not reach the shop's REST API: {exc}", code="shop_unreachable") from None
    with transaction.atomic(durable=True):
        store.save()
    if register_webhooks:
        ensure_webhooks(store)
    return store


def ensure_webhooks(store: Store) -> list[StoreWebhook]:
    """Make sure each of our topics has an active webhook on the shop pointing at us.

    WooCommerce disables a webhook after repeated failed deliveries and never redelivers; this
    re-enables it (reconciliation repairs the orders missed meanwhile) and recreates missing ones.
    """
    target = delivery_url(store)
    now = timezone.now()
    with client_for(store) as client:
        remote = {(w.topic, w.delivery_url): w for w in client.list_webhooks()}
        states: list[StoreWebhook] = []
        for topic in WEBHOOK_TOPICS:
            hook = remote.get((topic, target))
            problem = ""
            if hook is None:
                problem = "missing" if _known(store, topic) else ""
                hook = client.create_webhook(
                    name=f"Storeloop {topic}", topic=topic, delivery_url=target, secret=store.webhook_secret
                )
            elif hook.status != "active":
                problem = hook.status
                hook = client.update_webhook(hook.id, status="active")
            row, _ = StoreWebhook.objects.update_or_create(
                store=store,
                topic=topic,
                defaults={"external_id": hook.id, "state": hook.status, "last_checked_at": now},
            )
            if problem:
                row.last_problem = problem
                row.last_problem_at = now
                row.reenabled_count += 1
                row.save(update_fields=["last_problem", "last_problem_at", "reenabled_count"])
                logger.warning("store %s: webhook %s was %s; repaired", store.pk, topic, problem)
            states.append(row)
    return states


def _known(store: Store, topic: str) -> bool:
    return StoreWebhook.objects.filter(store=store, topic=topic).exists()


def remove_store(store_id: int, *, unregister: bool = True) -> None:
    store = Store.objects.filter(pk=store_id).first()
    if store is None:
        raise NotFound(f"no store {store_id}", code="store_not_found")
    if unregister and store.manage_webhooks:
        try:
            with client_for(store) as client:
                for hook in StoreWebhook.objects.filter(store=store):
                    client.delete_webhook(hook.external_id)
        except WooCommerceError as exc:
            logger.warning("store %s: could not delete webhooks on the shop: %s", store.pk, exc)
    with transaction.atomic(durable=True):
        store.delete()


# --- API keys -------------------------------------------------------------------------------

KEY_PREFIX = "slk"


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str


def _hash(secret: str) -> str:
    # API keys are 256-bit random strings, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(*, store_id: int, name: str = "default", operator: bool = False) -> IssuedKey:
    store = Store.objects.filter(pk=store_id).first()
    if store is None:
        raise NotFound(f"no store {store_id}", code="store_not_found")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    plaintext = f"{KEY_PREFIX}_{prefix}_{secret}"
    with transaction.atomic(durable=True):
        key = ApiKey.objects.create(
            store=store, name=name[:100], prefix=prefix, key_hash=_hash(plaintext), operator=operator
        )
    return IssuedKey(api_key=key, plaintext=plaintext)


def authenticate_api_key(presented: str) -> ApiKey | None:
    parts = presented.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    key = ApiKey.objects.select_related("store").filter(prefix=parts[1], revoked_at__isnull=True).first()
    if key is None or not constant_time_equals(key.key_hash, _hash(presented.strip())):
        return None
    return key


def revoke_api_key(*, prefix: str) -> bool:
    return bool(ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True).update(revoked_at=timezone.now()))
