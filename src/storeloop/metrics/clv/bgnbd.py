"""BG/NBD: how many purchases a customer will make (Fader, Hardie & Lee 2005).

"Counting Your Customers the Easy Way: An Alternative to the Pareto/NBD Model", Marketing Science
24(2), 275–284, and Hardie's implementation note http://brucehardie.com/notes/004/.

Per customer: ``x`` repeat purchases (purchase periods after the first), ``t_x`` the time of the
last one and ``T`` the age, both measured from the first purchase. While active a customer buys
at a Poisson rate λ ~ Gamma(r, α); after each purchase they drop out with probability
p ~ Beta(a, b). Parameters are fitted by maximum likelihood (equation 6 of the paper, in the
note's log-sum-exp form) and used in equation 10 for the expected purchases in the next ``t``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from storeloop.metrics.clv.optimize import nelder_mead


@dataclass(frozen=True)
class BgNbdParams:
    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class BgNbdFit:
    params: BgNbdParams
    log_likelihood: float
    converged: bool


class Summary:
    """Customers as distinct (x, t_x, T) with counts: one likelihood term per distinct triple."""

    def __init__(self, customers: Iterable[tuple[int, float, float]]) -> None:
        counts = Counter((int(x), float(t_x) if x else 0.0, float(T)) for x, t_x, T in customers)
        self.xs = sorted({x for x, _, _ in counts})
        self.recencies = sorted({t for _, t, _ in counts})
        self.ages = sorted({T for _, _, T in counts})
        xi = {v: i for i, v in enumerate(self.xs)}
        ti = {v: i for i, v in enumerate(self.recencies)}
        ai = {v: i for i, v in enumerate(self.ages)}
        self.rows = [(xi[x], ti[t], ai[T], n) for (x, t, T), n in sorted(counts.items())]
        self.customers = sum(counts.values())

    def scaled(self, factor: float) -> Summary:
        copy = object.__new__(Summary)
        copy.xs, copy.rows, copy.customers = self.xs, self.rows, self.customers
        copy.recencies = [t / factor for t in self.recencies]
        copy.ages = [T / factor for T in self.ages]
        return copy


def log_likelihood(params: BgNbdParams, data: Summary) -> float:
    """The sample log-likelihood (equation 6 of the paper)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    base = r * math.log(alpha) - math.lgamma(r) + math.lgamma(a + b) - math.lgamma(b)
    # Terms that depend on x only, once per distinct x.
    a12 = [base + math.lgamma(r + x) + math.lgamma(b + x) - math.lgamma(a + b + x) for x in data.xs]
    c4 = [math.log(a) - math.log(b + x - 1) if x > 0 else 0.0 for x in data.xs]
    rx = [r + x for x in data.xs]
    ln_age = [math.log(alpha + T) for T in data.ages]
    ln_rec = [math.log(alpha + t) for t in data.recencies]
    total = 0.0
    for i, t, T, n in data.rows:
        a3 = -rx[i] * ln_age[T]
        if data.xs[i] == 0:
            total += n * (a12[i] + a3)
            continue
        a4 = c4[i] - rx[i] * ln_rec[t]
        top = a3 if a3 > a4 else a4
        total += n * (a12[i] + top + math.log(math.exp(a3 - top) + math.exp(a4 - top)))
    return total


def fit(data: Summary) -> BgNbdFit:
    """Maximum likelihood over log-parameters with Nelder–Mead, started at r = α = a = b = 1.

    Time is rescaled so that the oldest customer is 10 units old while fitting (α scales with
    it, the other parameters do not): it keeps α of the same order as the others.
    """
    factor = max(data.ages) / 10.0 if data.ages and max(data.ages) > 0 else 1.0
    scaled = data.scaled(factor)
    n = max(data.customers, 1)

    def objective(v: Sequence[float]) -> float:
        r, alpha, a, b = (math.exp(p) for p in v)
        return -log_likelihood(BgNbdParams(r, alpha, a, b), scaled) / n

    best = nelder_mead(objective, [0.0, 0.0, 0.0, 0.0])
    r, alpha, a, b = (math.exp(p) for p in best.x)
    params = BgNbdParams(r, alpha * factor, a, b)
    ll = log_likelihood(params, data) if math.isfinite(best.value) else -math.inf
    return BgNbdFit(params, ll, best.converged and math.isfinite(ll))


def hyp2f1(a: float, b: float, c: float, z: float, *, tol: float = 1e-13, max_terms: int = 500_000) -> float:
    """Gauss's hypergeometric series ₂F₁(a, b; c; z) for 0 ≤ z < 1."""
    if not 0.0 <= z < 1.0:
        raise ValueError("hyp2f1 needs 0 <= z < 1")
    term = total = 1.0
    settle = abs(a) + abs(b) + abs(c) + 2  # past this the term ratio is close to its limit z
    for n in range(max_terms):
        ratio = (a + n) * (b + n) / ((c + n) * (n + 1)) * z
        term *= ratio
        total += term
        if term == 0.0:
            return total
        bound = max(abs(ratio), z)
        if n > settle and bound < 1.0 and abs(term) * bound / (1.0 - bound) <= tol * abs(total):
            return total
    raise ArithmeticError("hypergeometric series did not converge")


def expected_purchases(t: float, x: int, t_x: float, T: float, params: BgNbdParams) -> float:
    """E[purchases in (T, T + t] | x, t_x, T]: equation 10 of the paper.

    Its ₂F₁(r+x, b+x; a+b+x−1; z) converges slowly for large x; Euler's transformation
    (1−z)^(r+x)·₂F₁(r+x, b+x; c; z) = (1−z)^(a−1)·₂F₁(a+b−1−r, a−1; c; z) gives the same value
    from a series whose parameters do not grow with x.
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    if abs(a - 1.0) < 1e-9:
        a = 1.0 + 1e-9  # the formula has a removable singularity at a = 1
    c = a + b + x - 1
    z = t / (alpha + T + t)
    tail = math.pow((alpha + T) / (alpha + T + t), a - 1) * hyp2f1(a + b - 1 - r, a - 1, c, z)
    return (c / (a - 1)) * (1.0 - tail) / (1.0 + _death_odds(x, t_x, T, params))


def probability_alive(x: int, t_x: float, T: float, params: BgNbdParams) -> float:
    """P(still active | x, t_x, T) (equation 11 of the note)."""
    return 1.0 / (1.0 + _death_odds(x, t_x, T, params))


def _death_odds(x: int, t_x: float, T: float, params: BgNbdParams) -> float:
    if x == 0:
        return 0.0
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    return a / (b + x - 1) * math.pow((alpha + T) / (alpha + t_x), r + x)
