"""Nelder–Mead minimisation, enough for the 3- and 4-parameter likelihoods of the CLV models.

Standard coefficients (reflection 1, expansion 2, contraction ½, shrink ½; Nelder & Mead 1965,
as in Press et al., Numerical Recipes §10.5) and one restart from the best vertex, the usual
guard against a simplex that collapsed before reaching the optimum. Non-finite values count as
+inf, so the search steps back from parameters where a likelihood is undefined. A search whose
best point runs past ``max_abs_x`` stops unconverged: on log-parameters that is a likelihood
with no interior maximum (e.g. no heterogeneity to fit), which would otherwise drift along its
flat ridge until the evaluation budget is spent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Minimum:
    x: tuple[float, ...]
    value: float
    converged: bool
    evaluations: int


def _safe(f: Callable[[Sequence[float]], float]) -> Callable[[Sequence[float]], float]:
    def wrapped(x: Sequence[float]) -> float:
        try:
            value = f(x)
        except (ValueError, OverflowError, ZeroDivisionError):
            return math.inf
        return value if math.isfinite(value) else math.inf

    return wrapped


def _run(
    f: Callable[[Sequence[float]], float],
    x0: Sequence[float],
    step: float,
    xtol: float,
    ftol: float,
    max_evaluations: int,
    max_abs_x: float,
) -> Minimum:
    n = len(x0)
    simplex = [list(x0)] + [[v + (step if i == j else 0.0) for j, v in enumerate(x0)] for i in range(n)]
    values = [f(p) for p in simplex]
    evaluations = n + 1
    while evaluations < max_evaluations:
        order = sorted(range(n + 1), key=values.__getitem__)
        simplex = [simplex[i] for i in order]
        values = [values[i] for i in order]
        best, worst = simplex[0], simplex[-1]
        spread = max(abs(v - values[0]) for v in values[1:])
        size = max(abs(a - b) for p in simplex[1:] for a, b in zip(p, best, strict=True))
        if spread <= ftol and size <= xtol:
            return Minimum(tuple(best), values[0], True, evaluations)
        if max(abs(v) for v in best) > max_abs_x:
            return Minimum(tuple(best), values[0], False, evaluations)
        centroid = [sum(p[j] for p in simplex[:-1]) / n for j in range(n)]
        reflected = [c + (c - w) for c, w in zip(centroid, worst, strict=True)]
        f_reflected = f(reflected)
        evaluations += 1
        if f_reflected < values[0]:
            expanded = [c + 2.0 * (r - c) for c, r in zip(centroid, reflected, strict=True)]
            f_expanded = f(expanded)
            evaluations += 1
            if f_expanded < f_reflected:
                simplex[-1], values[-1] = expanded, f_expanded
            else:
                simplex[-1], values[-1] = reflected, f_reflected
            continue
        if f_reflected < values[-2]:
            simplex[-1], values[-1] = reflected, f_reflected
            continue
        toward = reflected if f_reflected < values[-1] else worst
        contracted = [c + 0.5 * (t - c) for c, t in zip(centroid, toward, strict=True)]
        f_contracted = f(contracted)
        evaluations += 1
        if f_contracted < min(f_reflected, values[-1]):
            simplex[-1], values[-1] = contracted, f_contracted
            continue
        for i in range(1, n + 1):
            simplex[i] = [b + 0.5 * (v - b) for b, v in zip(best, simplex[i], strict=True)]
            values[i] = f(simplex[i])
        evaluations += n
    i = min(range(n + 1), key=values.__getitem__)
    return Minimum(tuple(simplex[i]), values[i], False, evaluations)


def nelder_mead(
    f: Callable[[Sequence[float]], float],
    x0: Sequence[float],
    *,
    step: float = 0.5,
    xtol: float = 1e-7,
    ftol: float = 1e-11,
    max_evaluations: int = 6000,
    max_abs_x: float = 12.0,
) -> Minimum:
    """Minimise ``f`` from ``x0``. ``converged`` is False when the evaluation budget ran out."""
    safe = _safe(f)
    first = _run(safe, x0, step, xtol, ftol, max_evaluations, max_abs_x)
    if not first.converged or not math.isfinite(first.value):
        return first
    second = _run(safe, first.x, step / 10, xtol, ftol, max_evaluations, max_abs_x)
    best = second if second.value <= first.value else first
    return Minimum(best.x, best.value, second.converged, first.evaluations + second.evaluations)
