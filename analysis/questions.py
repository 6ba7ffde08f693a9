"""The questions a scientist asks of a fitted law, each answered with an interval.

A point estimate of "how much synthetic data do we need" without an interval invites
over-confident planning, so every answer is an ``Estimate`` whose interval comes from the
fit's bootstrap draws (the same resamples that gave the parameter intervals).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from analysis.fit import FitResult
from analysis.laws import get_law

_BISECTION_STEPS = 200
_LARGE = 1e300


@dataclass(frozen=True)
class Estimate:
    """A derived quantity with its bootstrap percentile interval (None without bootstrap draws)."""

    name: str
    value: float
    interval: tuple[float, float] | None
    level: float
    note: str = ""

    def report(self) -> str:
        band = f"  [{_fmt(self.interval[0])}, {_fmt(self.interval[1])}] ({self.level:.0%})" if self.interval else ""
        return f"{self.name}: {_fmt(self.value)}{band}" + (f"  - {self.note}" if self.note else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": _json_float(self.value),
            "interval": [_json_float(v) for v in self.interval] if self.interval else None,
            "level": self.level,
            "note": self.note,
        }


def transfer_gap(result: FitResult, *, group: str | None = None, at: Mapping[str, float] | None = None) -> Estimate:
    """The error left with unlimited synthetic data: the law's limit as n -> infinity.

    For ``power_floor`` that is C. For joint laws pass the fine-tuning size, e.g. ``at={"s": 1e4}``.
    """
    law = get_law(result.law)
    at_infinity = _inputs_with(law.independent_vars, law.independent_vars[0], np.inf, at)
    at_large = _inputs_with(law.independent_vars, law.independent_vars[0], _LARGE, at)

    def evaluate(params: Mapping[str, np.ndarray]) -> np.ndarray:
        with np.errstate(all="ignore"):
            limit = np.asarray(law.evaluate(at_infinity, params), dtype=float)
            large = np.asarray(law.evaluate(at_large, params), dtype=float)
        return np.where(np.isfinite(limit), limit, large)

    return _estimate(result, group, evaluate, "transfer gap (error at n -> infinity)")


def n_to_reach(
    result: FitResult,
    target: float,
    *,
    group: str | None = None,
    at: Mapping[str, float] | None = None,
    x_axis: str | None = None,
) -> Estimate:
    """Smallest n (or other input ``x_axis``) at which the fitted error falls to ``target``.

    Infinite when the target is at or below the transfer gap: more synthetic data cannot get
    there. Draws where that happens push the interval's upper end to infinity, honestly.
    """
    law = get_law(result.law)
    axis = x_axis or law.independent_vars[0]

    def evaluate(params: Mapping[str, np.ndarray]) -> np.ndarray:
        def error_at(log_x: np.ndarray) -> np.ndarray:
            return np.asarray(law.evaluate(_inputs_with(law.independent_vars, axis, np.exp(log_x), at), params))

        return _solve_decreasing(error_at, target, low=math.log(1e-6), high=math.log(1e30))

    return _estimate(result, group, evaluate, f"{axis} to reach error {target:g}")


def real_sample_equivalent(
    result: FitResult,
    *,
    n: float,
    s: float,
    n_reference: float,
    group: str | None = None,
) -> Estimate:
    """Extra real fine-tuning samples worth as much as pre-training on n instead of n_reference.

    Solves L(n_reference, s + extra) = L(n, s) for ``extra`` on a joint law of (n, s). Infinite
    when no amount of real data at n_reference reaches L(n, s).
    """
    law = get_law(result.law)
    if law.independent_vars != ("n", "s"):
        raise ValueError(f"real_sample_equivalent needs a joint law of (n, s); {law.name} takes {law.independent_vars}")

    def evaluate(params: Mapping[str, np.ndarray]) -> np.ndarray:
        with np.errstate(all="ignore"):
            goal = np.asarray(law.evaluate({"n": np.asarray(n), "s": np.asarray(s)}, params), dtype=float)

            def reference_error(log_s: np.ndarray) -> np.ndarray:
                return np.asarray(law.evaluate({"n": np.asarray(n_reference), "s": np.exp(log_s)}, params))

            needed = _solve_decreasing(reference_error, goal, low=math.log(s), high=math.log(s) + math.log(1e15))
        return needed - s

    return _estimate(
        result, group, evaluate, f"real samples worth n={n:g} vs n={n_reference:g} synthetic at s={s:g}"
    )


def _inputs_with(
    names: tuple[str, ...], axis: str, value: np.ndarray | float, at: Mapping[str, float] | None
) -> dict[str, np.ndarray]:
    given = dict(at or {})
    missing = [v for v in names if v != axis and v not in given]
    if missing:
        raise ValueError(f"pass at={{{', '.join(repr(v) + ': ...' for v in missing)}}} to fix the other inputs")
    return {v: (np.asarray(value) if v == axis else np.asarray(float(given[v]))) for v in names}


def _solve_decreasing(fn, target: np.ndarray | float, *, low: float, high: float) -> np.ndarray:
    """Log-input where a decreasing ``fn`` crosses ``target``, by batched bisection; inf if never."""
    target = np.asarray(target, dtype=float)
    with np.errstate(all="ignore"):
        shape = np.broadcast(target, fn(np.asarray(low))).shape
        lo = np.full(shape, low)
        hi = np.full(shape, high)
        reachable = fn(hi) <= target
        already = fn(lo) <= target
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            below = fn(mid) <= target
            hi = np.where(below, mid, hi)
            lo = np.where(below, lo, mid)
    answer = np.exp(hi)
    answer = np.where(already, np.exp(low), answer)
    return np.where(reachable, answer, np.inf)


def _estimate(result: FitResult, group: str | None, evaluate, name: str) -> Estimate:
    point = float(np.asarray(evaluate({k: np.asarray(v) for k, v in result.law_params(group).items()})).ravel()[0])
    interval = None
    note = ""
    if result.bootstrap is not None and not result.bootstrap.has_interval:
        note = result.bootstrap.no_interval_reason
    elif result.bootstrap is not None:
        values = np.asarray(evaluate(result.param_draws(group)), dtype=float).ravel()
        tail = (1.0 - result.interval_level) / 2.0
        if np.all(np.isfinite(values)):
            low, high = np.quantile(values, [tail, 1.0 - tail])
        else:
            low = np.quantile(values, tail, method="lower")
            high = np.quantile(values, 1.0 - tail, method="higher")
        interval = (float(low), float(high))
        unreachable = int(np.sum(~np.isfinite(values)))
        if unreachable:
            note = f"{unreachable} of {values.size} bootstrap draws never get there"
    else:
        note = "no interval: fit with bootstrap=B"
    return Estimate(name=name, value=point, interval=interval, level=result.interval_level, note=note)


def _fmt(value: float) -> str:
    return "inf" if value == math.inf else f"{value:.5g}"


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
