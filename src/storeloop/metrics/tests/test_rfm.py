"""RFM scores and segments on a hand-made store."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from conftest import ApiClient

from storeloop.metrics.definitions import SEGMENT_GRID, quintile_cuts, segment_for
from storeloop.metrics.models import ContactMetrics, RfmThresholds
from storeloop.metrics.tests.builders import metric_tables, order_payload, send, updater

DAY = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)
AS_OF = DAY + dt.timedelta(days=20)

# Contact i last bought on DAY + i days; (orders, total of each order).
SHOP = [(1, "10.00"), (1, "20.00"), (2, "15.00"), (1, "5.00"), (3, "50.00"),
        (1, "40.00"), (4, "30.00"), (1, "100.00"), (1, "8.00"), (5, "60.00")]  # fmt: skip

# Worked by hand. R: the last-order times are distinct, two contacts per quintile.
# F values 1,1,1,1,1,1,2,3,4,5: cuts (1, 1, 1, 3), so 1 → 1; 2, 3 → 4; 4, 5 → 5 (ties share a score).
# M (net) 10,20,30,5,150,40,120,100,8,300: cuts (8, 20, 40, 120).
EXPECTED = [
    # R, F, M, segment (FM = (F + M + 1) // 2)
    (1, 1, 2, "hibernating"),
    (1, 1, 2, "hibernating"),
    (2, 4, 3, "at_risk"),
    (2, 1, 1, "hibernating"),
    (3, 4, 5, "loyal_customers"),
    (3, 1, 3, "about_to_sleep"),
    (4, 5, 4, "loyal_customers"),
    (4, 1, 4, "potential_loyalists"),
    (5, 1, 1, "new_customers"),
    (5, 5, 5, "champions"),
]


def email(i: int) -> str:
    return f"c{i}@example.com"


def build(store: Any) -> None:
    n = 0
    for i, (orders, total) in enumerate(SHOP):
        for k in range(orders):
            n += 1
            send(store, order_payload(n, email=email(i), total=total, created=DAY + dt.timedelta(days=i - 2 * k)))


def scores(store: Any, contacts: int = len(SHOP)) -> list[tuple[int | None, int | None, int | None, str]]:
    rows = ContactMetrics.objects.filter(store=store).select_related("contact")
    by_email = {m.contact.email: (m.r_score, m.f_score, m.m_score, m.segment) for m in rows}
    return [by_email[email(i)] for i in range(contacts)]


def test_the_grid_is_total_and_uses_all_eleven_segments() -> None:
    assert set(SEGMENT_GRID) == {(r, fm) for r in range(1, 6) for fm in range(1, 6)}
    assert len(set(SEGMENT_GRID.values())) == 11
    assert segment_for(5, 5, 4) == "champions"
    assert segment_for(1, 1, 1) == "lost"
    assert segment_for(1, 5, 5) == "cant_lose_them"


def test_nearest_rank_quintiles() -> None:
    assert quintile_cuts([1, 2, 3, 4, 5]) == (1, 2, 3, 4)
    assert quintile_cuts(list(range(1, 11))) == (2, 4, 6, 8)
    assert quintile_cuts([7]) == (7, 7, 7, 7)


@pytest.mark.django_db
def test_scores_and_segments_of_a_hand_made_store(store: Any, api: ApiClient) -> None:
    build(store)
    assert {s[3] for s in scores(store)} == {""}  # no thresholds yet
    result = updater.refresh_store_models(store.pk, as_of=AS_OF)
    assert result.rfm_contacts == {"EUR": 10}
    t = RfmThresholds.objects.get(store=store, currency="EUR")
    assert (t.r_cut1, t.r_cut2, t.r_cut3, t.r_cut4) == tuple(DAY + dt.timedelta(days=d) for d in (1, 3, 5, 7))
    assert (t.f_cut1, t.f_cut2, t.f_cut3, t.f_cut4) == (1, 1, 1, 3)
    assert (t.m_cut1, t.m_cut2, t.m_cut3, t.m_cut4) == (80_000, 200_000, 400_000, 1_200_000)
    assert (t.as_of, t.contacts) == (AS_OF, 10)
    assert scores(store) == EXPECTED
    segments = api.get("/api/v1/metrics/rfm").json()["currencies"][0]["segments"]
    assert {k: v for k, v in segments.items() if v} == {
        "hibernating": 3, "at_risk": 1, "loyal_customers": 2, "about_to_sleep": 1,
        "potential_loyalists": 1, "new_customers": 1, "champions": 1,
    }  # fmt: skip


@pytest.mark.django_db
def test_an_update_scores_against_the_stored_thresholds(store: Any) -> None:
    build(store)
    updater.refresh_store_models(store.pk, as_of=AS_OF)
    # Contact 0 buys again after the refresh: last order beyond every recency cut (R5), two
    # orders (F4), net 20.00 (M2), so FM 3: a potential loyalist, before any refresh.
    send(store, order_payload(100, email=email(0), total="10.00", created=AS_OF + dt.timedelta(days=1)))
    assert scores(store)[0] == (5, 4, 2, "potential_loyalists")
    assert scores(store)[1:] == EXPECTED[1:]
    rows = metric_tables(store.pk)
    updater.recalculate_customer_metrics(store.pk)
    assert metric_tables(store.pk) == rows


@pytest.mark.django_db
def test_too_few_contacts_are_left_unscored(store: Any) -> None:
    for i in range(4):
        send(store, order_payload(i + 1, email=email(i), created=DAY + dt.timedelta(days=i)))
    assert updater.refresh_store_models(store.pk, as_of=AS_OF).rfm_contacts == {}
    assert not RfmThresholds.objects.filter(store=store).exists()
    assert scores(store, 4) == [(None, None, None, "")] * 4
