"""Fitting the CLV models per store and currency, and predicting one contact's next 12 months.

Inputs per contact and currency (from ``ContactMetrics``), at day resolution as in the papers'
"purchase periods": x = distinct purchase days − 1, t_x = last − first purchase day, T = as_of
day − first purchase day, all in weeks; m = net spend of the repeat days ÷ x.

The fit is *too thin* (no prediction) when fewer than ``MIN_REPEAT_CUSTOMERS`` customers have
bought on two or more days with a positive repeat spend: below that the Gamma-Gamma spend model
(three parameters over repeat customers only) and the BG/NBD drop-out parameters are poorly
identified. It is also too thin when either fit does not converge, or when q ≤ 1 (the model's
mean spend is then infinite). Past ``FIT_MAX_CUSTOMERS`` the fit uses an evenly spaced sample
by contact id, which keeps the nightly refit a few seconds long in pure Python.

Predicted 12-month CLV = BG/NBD expected purchases in the next 365 days × Gamma-Gamma expected
net spend per purchase, undiscounted, revenue rather than margin (the mirror knows no costs).
It is computed when read, with T measured to the reading time, so it ages correctly between fits.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from storeloop.metrics.clv import bgnbd, gamma_gamma
from storeloop.metrics.models import MONEY_SCALE, ClvModel, ContactMetrics

MIN_REPEAT_CUSTOMERS = 100
FIT_MAX_CUSTOMERS = 20_000
HORIZON_WEEKS = 365 / 7
DAYS_PER_WEEK = 7.0


@dataclass(frozen=True)
class CustomerInputs:
    x: int
    t_x: float
    T: float
    m: float


def customer_inputs(
    purchase_days: int,
    first_order_at: dt.datetime,
    last_order_at: dt.datetime,
    net_e4: int,
    first_day_net_e4: int,
    as_of: dt.datetime,
) -> CustomerInputs:
    x = max(purchase_days - 1, 0)
    first = first_order_at.astimezone(dt.UTC).date()
    t_x = (last_order_at.astimezone(dt.UTC).date() - first).days / DAYS_PER_WEEK
    age = (as_of.astimezone(dt.UTC).date() - first).days / DAYS_PER_WEEK
    m = (net_e4 - first_day_net_e4) / x / MONEY_SCALE if x else 0.0
    return CustomerInputs(x, t_x if x else 0.0, max(age, t_x if x else 0.0, 0.0), max(m, 0.0))


@dataclass(frozen=True)
class FitOutcome:
    currency: str
    quality: str
    reason: str
    customers: int
    repeat_customers: int

    def as_dict(self) -> dict[str, object]:
        return {
            "currency": self.currency,
            "quality": self.quality,
            "reason": self.reason,
            "customers": self.customers,
            "repeat_customers": self.repeat_customers,
        }


def _fit_currency(store_id: int, currency: str, as_of: dt.datetime) -> FitOutcome:
    rows = list(
        ContactMetrics.objects.filter(store_id=store_id, currency=currency)
        .order_by("contact_id")
        .values_list("purchase_days", "first_order_at", "last_order_at", "net_e4", "first_day_net_e4")
    )
    everyone = [customer_inputs(*row, as_of=as_of) for row in rows]
    repeat = sum(1 for c in everyone if c.x > 0 and c.m > 0)
    step = math.ceil(len(everyone) / FIT_MAX_CUSTOMERS) if everyone else 1
    sample = everyone[::step]
    fields: dict[str, object] = {
        "fitted_at": timezone.now(),
        "as_of": as_of,
        "customers": len(sample),
        "repeat_customers": repeat,
        **dict.fromkeys(("r", "alpha", "a", "b", "p", "q", "gamma"), None),
        "bgnbd_log_likelihood": None,
        "gamma_gamma_log_likelihood": None,
    }
    reason = ""
    if repeat < MIN_REPEAT_CUSTOMERS:
        reason = f"{repeat} repeat customers, fewer than the {MIN_REPEAT_CUSTOMERS} a fit needs"
    else:
        purchases = bgnbd.fit(bgnbd.Summary((c.x, c.t_x, c.T) for c in sample))
        spend = gamma_gamma.fit(gamma_gamma.SpendData((c.x, c.m) for c in sample))
        fields.update(
            r=purchases.params.r,
            alpha=purchases.params.alpha,
            a=purchases.params.a,
            b=purchases.params.b,
            bgnbd_log_likelihood=purchases.log_likelihood,
            p=spend.params.p,
            q=spend.params.q,
            gamma=spend.params.gamma,
            gamma_gamma_log_likelihood=spend.log_likelihood,
        )
        if not purchases.converged:
            reason = "the BG/NBD fit did not converge"
        elif not spend.converged:
            reason = "the Gamma-Gamma fit did not converge"
        elif spend.params.q <= 1:
            reason = "Gamma-Gamma q <= 1: mean spend is undefined"
    quality = ClvModel.Quality.TOO_THIN if reason else ClvModel.Quality.OK
    ClvModel.objects.update_or_create(
        store_id=store_id, currency=currency, defaults={**fields, "quality": quality, "reason": reason}
    )
    return FitOutcome(currency, quality, reason, len(sample), repeat)


def fit_store_models(store_id: int, as_of: dt.datetime | None = None) -> list[FitOutcome]:
    """Refit BG/NBD + Gamma-Gamma for every currency of the store; one row per currency."""
    as_of = as_of or timezone.now()
    currencies = sorted(set(ContactMetrics.objects.filter(store_id=store_id).values_list("currency", flat=True)))
    outcomes = []
    for currency in currencies:
        with transaction.atomic():
            outcomes.append(_fit_currency(store_id, currency, as_of))
    ClvModel.objects.filter(store_id=store_id).exclude(currency__in=currencies).delete()
    return outcomes


@dataclass(frozen=True)
class Prediction:
    quality: str  # "ok" | "too_thin" | "not_fitted"
    clv_12m: Decimal | None = None
    expected_purchases_12m: float | None = None
    probability_alive: float | None = None


def _fitted_params(model: ClvModel) -> tuple[bgnbd.BgNbdParams, gamma_gamma.GammaGammaParams] | None:
    r, alpha, a, b, p, q, gamma = model.r, model.alpha, model.a, model.b, model.p, model.q, model.gamma
    if r is None or alpha is None or a is None or b is None or p is None or q is None or gamma is None:
        return None
    return bgnbd.BgNbdParams(r, alpha, a, b), gamma_gamma.GammaGammaParams(p, q, gamma)


def predict(metrics: ContactMetrics, model: ClvModel | None, as_of: dt.datetime) -> Prediction:
    """One contact's predicted 12-month CLV in the metrics' currency (see module docstring)."""
    if model is None:
        return Prediction("not_fitted")
    params = _fitted_params(model)
    if model.quality != ClvModel.Quality.OK or params is None:
        return Prediction(ClvModel.Quality.TOO_THIN)
    purchases_params, spend_params = params
    c = customer_inputs(
        metrics.purchase_days,
        metrics.first_order_at,
        metrics.last_order_at,
        metrics.net_e4,
        metrics.first_day_net_e4,
        as_of,
    )
    try:
        purchases = bgnbd.expected_purchases(HORIZON_WEEKS, c.x, c.t_x, c.T, purchases_params)
        alive = bgnbd.probability_alive(c.x, c.t_x, c.T, purchases_params)
    except (ArithmeticError, ValueError):
        return Prediction(ClvModel.Quality.TOO_THIN)
    spend = gamma_gamma.expected_spend(c.x, c.m, spend_params)
    value = Decimal(repr(purchases * spend)).quantize(Decimal("0.01"))
    return Prediction(ClvModel.Quality.OK, value, round(purchases, 4), round(alive, 4))
