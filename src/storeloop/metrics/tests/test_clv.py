"""CLV models against the textbook data set, against their own simulation, and in a store.

fixtures/cdnow_summary.csv is the CDNOW sample summary (2,357 customers, weeks; columns
x, t_x, T and zbar, the mean value of the repeat purchases) used in Fader, Hardie & Lee (2005)
and Fader & Hardie's Gamma-Gamma note, as shipped in the ``lifetimes`` package (MIT) as
``datasets/cdnow_customers_summary_with_transactions.csv``.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import ApiClient

from storeloop.contacts.models import Contact
from storeloop.core.money import money_str
from storeloop.metrics.clv import bgnbd, gamma_gamma
from storeloop.metrics.clv.service import HORIZON_WEEKS, MIN_REPEAT_CUSTOMERS, predict
from storeloop.metrics.models import ClvModel, ContactMetrics
from storeloop.metrics.tests.builders import build_shop, updater
from storeloop.orders.models import Order

CDNOW = [
    (int(row["x"]), float(row["t_x"]), float(row["T"]), float(row["zbar"]))
    for row in csv.DictReader((Path(__file__).parent / "fixtures" / "cdnow_summary.csv").open())
]


def test_bgnbd_recovers_the_papers_cdnow_estimates() -> None:
    fit = bgnbd.fit(bgnbd.Summary((x, t_x, T) for x, t_x, T, _ in CDNOW))
    assert fit.converged
    p = fit.params
    # Fader, Hardie & Lee (2005), section 5: r = 0.243, α = 4.414, a = 0.793, b = 2.426, LL = −9582.4.
    assert (round(p.r, 3), round(p.alpha, 3), round(p.a, 3), round(p.b, 3)) == (0.243, 4.414, 0.793, 2.426)
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.05)
    # Hardie's spreadsheet: a customer with x = 2, t_x = 30.43, T = 38.86 buys 1.226 times in 39 weeks.
    assert bgnbd.expected_purchases(39, 2, 30.43, 38.86, p) == pytest.approx(1.226, abs=0.0005)
    assert bgnbd.probability_alive(0, 0.0, 38.86, p) == 1.0


def test_gamma_gamma_recovers_the_notes_cdnow_estimates() -> None:
    data = gamma_gamma.SpendData((x, zbar) for x, _, _, zbar in CDNOW)
    assert data.customers == 946
    fit = gamma_gamma.fit(data)
    assert fit.converged
    # Fader & Hardie, "The Gamma-Gamma Model of Monetary Value": p = 6.25, q = 3.74, γ = 15.44.
    assert fit.params.p == pytest.approx(6.25, abs=0.01)
    assert fit.params.q == pytest.approx(3.74, abs=0.01)
    assert fit.params.gamma == pytest.approx(15.44, abs=0.02)


def test_hypergeometric_series_and_eulers_transformation() -> None:
    z = 0.9
    assert bgnbd.hyp2f1(1, 1, 2, z) == pytest.approx(-math.log(1 - z) / z, rel=1e-12)
    # equation 10 written with the untransformed series gives the same expectation
    p = bgnbd.BgNbdParams(0.243, 4.414, 0.793, 2.426)
    x, t_x, T, t = 7, 30.0, 38.0, 52.0
    zz = t / (p.alpha + T + t)
    direct = ((p.alpha + T) / (p.alpha + T + t)) ** (p.r + x) * bgnbd.hyp2f1(p.r + x, p.b + x, p.a + p.b + x - 1, zz)
    odds = p.a / (p.b + x - 1) * ((p.alpha + T) / (p.alpha + t_x)) ** (p.r + x)
    expected = (p.a + p.b + x - 1) / (p.a - 1) * (1 - direct) / (1 + odds)
    assert bgnbd.expected_purchases(t, x, t_x, T, p) == pytest.approx(expected, rel=1e-9)


def simulate_bgnbd(n: int, params: bgnbd.BgNbdParams, rng: random.Random) -> list[tuple[int, float, float]]:
    """Customers drawn from the model itself, observed for 20 to 52 weeks at day resolution."""
    out = []
    for _ in range(n):
        rate = rng.gammavariate(params.r, 1 / params.alpha)
        drop = rng.betavariate(params.a, params.b)
        age = rng.randint(140, 364) / 7
        t = last = 0.0
        x = 0
        while True:
            t += rng.expovariate(rate)
            if t > age:
                break
            x, last = x + 1, round(t * 7) / 7
            if rng.random() < drop:
                break
        out.append((x, last, age))
    return out


def test_bgnbd_recovers_the_parameters_it_was_simulated_with() -> None:
    truth = bgnbd.BgNbdParams(r=0.5, alpha=5.0, a=0.8, b=2.5)
    fit = bgnbd.fit(bgnbd.Summary(simulate_bgnbd(3000, truth, random.Random(20260105))))
    assert fit.converged
    assert fit.params.r == pytest.approx(truth.r, rel=0.15)
    assert fit.params.alpha == pytest.approx(truth.alpha, rel=0.15)
    assert fit.params.a == pytest.approx(truth.a, rel=0.35)
    assert fit.params.b == pytest.approx(truth.b, rel=0.35)


def test_gamma_gamma_recovers_the_parameters_it_was_simulated_with() -> None:
    rng = random.Random(7)
    customers = []
    for _ in range(3000):
        mean_rate = rng.gammavariate(4.0, 1 / 15.0)
        x = rng.randint(1, 8)
        customers.append((x, sum(rng.gammavariate(6.0, 1 / mean_rate) for _ in range(x)) / x))
    fit = gamma_gamma.fit(gamma_gamma.SpendData(customers))
    assert fit.converged
    p, q, gamma = fit.params.p, fit.params.q, fit.params.gamma
    # p and γ trade off against each other; the population mean spend pγ/(q − 1) is sharp.
    assert p * gamma / (q - 1) == pytest.approx(6.0 * 15.0 / 3.0, rel=0.03)
    assert q == pytest.approx(4.0, rel=0.15)
    assert p == pytest.approx(6.0, rel=0.25)
    assert gamma == pytest.approx(15.0, rel=0.25)


@pytest.mark.django_db
def test_a_thin_store_is_flagged_too_thin(store: Any) -> None:
    build_shop(store)
    result = updater.refresh_store_models(store.pk, as_of=dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    assert [(o.currency, o.quality, o.repeat_customers) for o in result.clv] == [
        ("EUR", "too_thin", 1),
        ("USD", "too_thin", 0),
    ]
    model = ClvModel.objects.get(store=store, currency="EUR")
    assert model.reason == f"1 repeat customers, fewer than the {MIN_REPEAT_CUSTOMERS} a fit needs"
    assert (model.r, model.p) == (None, None)
    metrics = ContactMetrics.objects.filter(store=store, currency="EUR").first()
    assert metrics is not None
    assert predict(metrics, model, dt.datetime(2026, 2, 1, tzinfo=dt.UTC)).clv_12m is None


@pytest.mark.django_db
def test_a_store_with_enough_repeat_customers_gets_predictions(store: Any, api: ApiClient) -> None:
    """Customers drawn from both models (per-day purchase rate, drop-out and mean spend of
    their own), written straight to the mirror as a backfill does; then recompute and refit."""
    rng = random.Random(11)
    start = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)
    contacts = Contact.objects.bulk_create([Contact(store=store, email=f"p{i}@example.com") for i in range(300)])
    orders: list[Order] = []
    for contact in contacts:
        rate, drop = rng.gammavariate(1.0, 1 / 30), rng.betavariate(1.0, 3.0)
        mean_rate = rng.gammavariate(4.0, 1 / 150)
        t = float(rng.randint(0, 200))
        while True:
            created = start + dt.timedelta(days=int(t))
            total = Decimal(repr(round(rng.gammavariate(5.0, 1 / mean_rate), 2)))
            orders.append(Order(store=store, external_id=len(orders) + 1, contact=contact,
                                status="completed", currency="EUR", total=total,
                                date_created=created, date_modified=created))  # fmt: skip
            t += max(1.0, rng.expovariate(rate))
            if t > 364 or rng.random() < drop:
                break
    Order.objects.bulk_create(orders)
    updater.recalculate_customer_metrics(store.pk)
    as_of = dt.datetime(2025, 12, 31, tzinfo=dt.UTC)
    [outcome] = updater.refresh_store_models(store.pk, as_of=as_of).clv
    assert (outcome.quality, outcome.reason, outcome.customers) == ("ok", "", 300)
    assert outcome.repeat_customers >= MIN_REPEAT_CUSTOMERS
    model = ClvModel.objects.get(store=store, currency="EUR")
    loyal = ContactMetrics.objects.filter(store=store).order_by("-purchase_days", "contact_id").first()
    assert loyal is not None
    prediction = predict(loyal, model, as_of)
    assert prediction.quality == "ok"
    assert prediction.clv_12m is not None
    assert prediction.clv_12m > 0
    assert prediction.expected_purchases_12m is not None
    assert prediction.probability_alive is not None
    # the product of the two models, evaluated directly
    x = loyal.purchase_days - 1
    first = loyal.first_order_at.date()
    t_x, age = (loyal.last_order_at.date() - first).days / 7, (as_of.date() - first).days / 7
    m = (loyal.net_e4 - loyal.first_day_net_e4) / x / 10_000
    params = [model.r, model.alpha, model.a, model.b, model.p, model.q, model.gamma]
    assert None not in params
    r, alpha, a, b, p, q, gamma = (float(v or 0) for v in params)
    purchases = bgnbd.expected_purchases(HORIZON_WEEKS, x, t_x, age, bgnbd.BgNbdParams(r, alpha, a, b))
    spend = gamma_gamma.expected_spend(x, m, gamma_gamma.GammaGammaParams(p, q, gamma))
    assert prediction.clv_12m == Decimal(repr(purchases * spend)).quantize(Decimal("0.01"))
    body = api.get(f"/api/v1/contacts/{loyal.contact_id}/metrics", as_of="2025-12-31T00:00:00Z").json()
    [figures] = body["currencies"]
    assert figures["prediction_quality"] == "ok"
    assert figures["predicted_clv_12m"] == money_str(prediction.clv_12m)
    assert figures["expected_purchases_12m"] == prediction.expected_purchases_12m
    assert figures["probability_alive"] == prediction.probability_alive
