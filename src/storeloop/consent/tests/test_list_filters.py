"""``core.bulk.ids_in`` and ``texts_in`` (the consent gate's suppression lookup) on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from storeloop.consent.models import Suppression
from storeloop.core.bulk import ids_in, texts_in

pytestmark = pytest.mark.django_db

ADDRESSES = ["ann@example.com", "o'brien@example.com", "zoë@exämple.com", '"quoted"@example.com', "+4915112345678"]


def suppress(store: Any, address: str) -> Suppression:
    return Suppression.objects.create(store=store, channel="email", address=address, reason="hard_bounce")


def test_texts_in_matches_exactly_the_values_given(store: Any) -> None:
    rows = [suppress(store, address) for address in [*ADDRESSES, "bob@example.com", "ANN@example.com"]]
    wanted = {*ADDRESSES, "nobody@example.com", "x') OR 1=1 --"}
    found = set(Suppression.objects.filter(texts_in(Suppression, "address", wanted)).values_list("address", flat=True))
    assert found == set(ADDRESSES)  # exact matches only: not bob, not the other case
    assert len(rows) == 7


def test_texts_in_with_nothing_matches_nothing(store: Any) -> None:
    suppress(store, "ann@example.com")
    assert not Suppression.objects.filter(texts_in(Suppression, "address", [])).exists()


def test_ids_in_matches_exactly_the_ids_given(store: Any) -> None:
    rows = [suppress(store, address) for address in ADDRESSES]
    wanted = [rows[0].pk, rows[3].pk, 10**9]
    found = set(Suppression.objects.filter(ids_in(Suppression, "id", wanted)).values_list("pk", flat=True))
    assert found == {rows[0].pk, rows[3].pk}
    assert not Suppression.objects.filter(ids_in(Suppression, "id", [])).exists()
