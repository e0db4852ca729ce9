"""Gamma-Gamma: how much a customer spends per purchase (Fader & Hardie 2013).

"The Gamma-Gamma Model of Monetary Value", http://brucehardie.com/notes/025/. A customer's
spend per purchase varies around their own mean ν with shape p (Gamma(p, ν)); ν varies across
customers as Gamma(q, γ). Fitted by maximum likelihood (the note's equation 1a) on repeat
customers: ``x`` repeat purchases with mean value ``m`` > 0 (their first purchase excluded, as
in the note). It assumes spend is independent of purchase frequency.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from storeloop.metrics.clv.optimize import nelder_mead


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    gamma: float


@dataclass(frozen=True)
class GammaGammaFit:
    params: GammaGammaParams
    log_likelihood: float
    converged: bool


class SpendData:
    """Repeat customers' (x, m), with the sums the likelihood needs precomputed."""

    def __init__(self, customers: Iterable[tuple[int, float]]) -> None:
        pairs = [(int(x), float(m)) for x, m in customers if x > 0 and m > 0]
        self.customers = len(pairs)
        self.x_counts = sorted(Counter(x for x, _ in pairs).items())
        self.x_m = [(x, x * m) for x, m in pairs]
        self.sum_ln_m = sum(math.log(m) for _, m in pairs)
        self.sum_x_ln_m = sum(x * math.log(m) for x, m in pairs)
        self.sum_x_ln_x = sum(x * math.log(x) for x, _ in pairs)
        self.median_m = statistics.median(m for _, m in pairs) if pairs else 1.0

    def scaled(self, factor: float) -> SpendData:
        """The same customers with every amount divided by ``factor``."""
        copy = object.__new__(SpendData)
        copy.customers, copy.x_counts = self.customers, self.x_counts
        copy.x_m = [(x, xm / factor) for x, xm in self.x_m]
        shift = math.log(factor)
        copy.sum_ln_m = self.sum_ln_m - self.customers * shift
        copy.sum_x_ln_m = self.sum_x_ln_m - sum(x * n for x, n in self.x_counts) * shift
        copy.sum_x_ln_x = self.sum_x_ln_x
        copy.median_m = self.median_m / factor
        return copy


def log_likelihood(params: GammaGammaParams, data: SpendData) -> float:
    """Sum over customers of lnΓ(px+q) − lnΓ(px) − lnΓ(q) + q ln γ + (px−1) ln m + px ln x
    − (px+q) ln(γ + m x)."""
    p, q, gamma = params.p, params.q, params.gamma
    n = data.customers
    total = n * (q * math.log(gamma) - math.lgamma(q))
    total += sum(c * (math.lgamma(p * x + q) - math.lgamma(p * x)) for x, c in data.x_counts)
    total += p * data.sum_x_ln_m - data.sum_ln_m + p * data.sum_x_ln_x
    total -= sum((p * x + q) * math.log(gamma + xm) for x, xm in data.x_m)
    return total


def fit(data: SpendData) -> GammaGammaFit:
    """Maximum likelihood over log-parameters with Nelder–Mead from p = q = γ = 1, amounts in
    units of the median spend while fitting (γ scales with them, p and q do not)."""
    factor = data.median_m if data.median_m > 0 else 1.0
    scaled = data.scaled(factor)
    n = max(data.customers, 1)

    def objective(v: Sequence[float]) -> float:
        p, q, gamma = (math.exp(x) for x in v)
        return -log_likelihood(GammaGammaParams(p, q, gamma), scaled) / n

    best = nelder_mead(objective, [0.0, 0.0, 0.0])
    p, q, gamma = (math.exp(x) for x in best.x)
    params = GammaGammaParams(p, q, gamma * factor)
    ll = log_likelihood(params, data) if math.isfinite(best.value) else -math.inf
    return GammaGammaFit(params, ll, best.converged and math.isfinite(ll))


def expected_spend(x: int, m: float, params: GammaGammaParams) -> float:
    """E[spend per purchase | x, m] = p (γ + m x) / (p x + q − 1); the population mean when x = 0.

    Needs q > 1 (otherwise the mean spend is infinite).
    """
    p, q, gamma = params.p, params.q, params.gamma
    return p * (gamma + m * x) / (p * x + q - 1)
