"""Scaling laws as a registry of plain functions.

A law is a numpy function whose signature names its independent variables first and its
parameters after them (lmfit's convention), e.g. ``def power_floor(n, D, alpha, C)``. The
function must broadcast: the bootstrap evaluates it on (resamples x points) arrays at once.
``@register_law`` attaches bounds, a starting guess and a multi-start grid, so adding a law
touches one function and every test parametrised over ``LAWS`` picks it up.
"""

from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

Bounds = Mapping[str, tuple[float, float]]
StartGridFn = Callable[[Mapping[str, np.ndarray], np.ndarray], Mapping[str, Sequence[float]]]


@dataclass(frozen=True)
class Law:
    """A registered law: the function plus what a fitter needs to start and constrain it."""

    name: str
    func: Callable[..., np.ndarray]
    independent_vars: tuple[str, ...]
    param_names: tuple[str, ...]
    bounds: Mapping[str, tuple[float, float]]
    guess: Mapping[str, float]
    start_grid: StartGridFn | Mapping[str, Sequence[float]] = field(default_factory=dict)
    target_range: tuple[float, float] | None = None
    formula: str = ""
    max_grid_starts: int = 256

    @property
    def description(self) -> str:
        doc = inspect.getdoc(self.func) or ""
        return doc.splitlines()[0] if doc else self.formula

    def __call__(self, *xs: np.ndarray, **params: float | np.ndarray) -> np.ndarray:
        return self.func(*xs, **params)

    def evaluate(self, xs: Mapping[str, np.ndarray], params: Mapping[str, float | np.ndarray]) -> np.ndarray:
        """Evaluate with named inputs; extra keys in ``params`` are an error, missing ones too."""
        missing = [p for p in self.param_names if p not in params]
        if missing:
            raise ValueError(f"law {self.name!r} needs parameters {missing}")
        args = {v: np.asarray(xs[v], dtype=float) for v in self.independent_vars}
        return self.func(**args, **{p: params[p] for p in self.param_names})

    def starts(self, xs: Mapping[str, np.ndarray], y: np.ndarray) -> dict[str, list[float]]:
        """Per-parameter candidate start values (data-aware when the law provides a function)."""
        grid = self.start_grid(xs, y) if callable(self.start_grid) else self.start_grid
        return {p: [float(v) for v in grid.get(p, [self.guess[p]])] for p in self.param_names}


LAWS: dict[str, Law] = {}


def register_law(
    *,
    bounds: Bounds,
    guess: Mapping[str, float],
    independent_vars: Sequence[str] | None = None,
    start_grid: StartGridFn | Mapping[str, Sequence[float]] | None = None,
    target_range: tuple[float, float] | None = None,
    formula: str = "",
    max_grid_starts: int = 256,
    name: str | None = None,
) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Register ``func`` in ``LAWS``; the first ``len(independent_vars)`` arguments are inputs (default 1)."""

    def decorator(func: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        law_name = name or func.__name__
        arg_names = tuple(inspect.signature(func).parameters)
        inputs = tuple(independent_vars) if independent_vars is not None else arg_names[:1]
        if arg_names[: len(inputs)] != inputs:
            raise ValueError(f"{law_name}: independent variables {inputs} must come first in {arg_names}")
        params = arg_names[len(inputs):]
        for label, mapping in (("bounds", bounds), ("guess", guess)):
            if set(mapping) != set(params):
                raise ValueError(f"{law_name}: {label} keys {sorted(mapping)} != parameters {sorted(params)}")
        if law_name in LAWS:
            raise ValueError(f"law {law_name!r} is already registered")
        LAWS[law_name] = Law(
            name=law_name,
            func=func,
            independent_vars=inputs,
            param_names=params,
            bounds=dict(bounds),
            guess=dict(guess),
            start_grid=start_grid if start_grid is not None else {},
            target_range=target_range,
            formula=formula,
            max_grid_starts=max_grid_starts,
        )
        return func

    return decorator


def get_law(name: str | Law) -> Law:
    """Look a law up by name; unknown names list the valid ones."""
    if isinstance(name, Law):
        return name
    try:
        return LAWS[name]
    except KeyError:
        raise ValueError(f"unknown law {name!r}; valid laws: {', '.join(sorted(LAWS))}") from None


def list_laws() -> list[str]:
    return sorted(LAWS)


def _geomspace_between(values: np.ndarray, count: int) -> list[float]:
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size == 0:
        return [1.0]
    return list(np.geomspace(positive.min(), positive.max(), count))


def _floor_scale_starts(y: np.ndarray, upper: float | None) -> tuple[list[float], float]:
    """Starts for an additive floor C, plus a typical amplitude for the decaying term."""
    y_min, y_max = float(np.min(y)), float(np.max(y))
    floors = [0.0, 0.5 * y_min, 0.9 * y_min, 0.99 * y_min]
    if upper is not None:
        floors = [min(f, upper) for f in floors]
    return floors, max(y_max - 0.5 * y_min, 1e-12)


def _power_floor_starts(xs: Mapping[str, np.ndarray], y: np.ndarray) -> dict[str, list[float]]:
    n = np.asarray(xs["n"], dtype=float)
    floors, amplitude = _floor_scale_starts(y, upper=1.0)
    alphas = [0.1, 0.2, 0.4, 0.7, 1.0, 1.4]
    n_min = float(np.min(n[n > 0])) if np.any(n > 0) else 1.0
    amplitudes = sorted({float(amplitude * n_min**a) for a in alphas} | {0.48, 1.0})
    return {"alpha": alphas, "C": floors + [0.8], "D": amplitudes}


@register_law(
    bounds={"D": (1e-12, np.inf), "alpha": (0.1, 1.5), "C": (0.0, 1.0)},
    guess={"D": 1.0, "alpha": 0.2, "C": 0.8},
    start_grid=_power_floor_starts,
    target_range=(0.0, 1.0),
    formula="L(n) = D n^-alpha + C",
)
def power_floor(n, D, alpha, C):
    """Error vs synthetic pre-training size n; C is the transfer gap left at infinite n."""
    return D * n ** (-alpha) + C


def _joint_ns_starts(xs: Mapping[str, np.ndarray], y: np.ndarray) -> dict[str, list[float]]:
    s = np.asarray(xs["s"], dtype=float)
    s_ref = float(np.exp(np.mean(np.log(s[s > 0])))) if np.any(s > 0) else 1.0
    betas = [0.05, 0.2, 0.5, 1.0]
    deltas = sorted({float(np.median(y) * s_ref**b) for b in betas})
    return {"delta": deltas, "gamma": [0.0, 0.1, 1.0, 3.0], "alpha": [0.1, 0.3, 0.7], "beta": betas}


@register_law(
    independent_vars=("n", "s"),
    bounds={"delta": (1e-12, np.inf), "gamma": (0.0, np.inf), "alpha": (0.01, 3.0), "beta": (0.0, 3.0)},
    guess={"delta": 1.0, "gamma": 0.5, "alpha": 0.3, "beta": 0.3},
    start_grid=_joint_ns_starts,
    target_range=(0.0, 1.0),
    formula="L(n, s) = delta (gamma + n^-alpha) s^-beta",
)
def joint_ns(n, s, delta, gamma, alpha, beta):
    """Mikami et al.'s joint law: pre-training (n) and fine-tuning (s) rates multiply."""
    return delta * (gamma + n ** (-alpha)) * s ** (-beta)


def _joint_additive_starts(xs: Mapping[str, np.ndarray], y: np.ndarray) -> dict[str, list[float]]:
    floors, amplitude = _floor_scale_starts(y, upper=1.0)
    return {
        "C": floors[:3],
        "E": [0.1 * amplitude, amplitude, 10 * amplitude],
        "beta": [0.1, 0.4, 1.0],
        "D": [0.1 * amplitude, amplitude, 10 * amplitude],
        "alpha": [0.1, 0.4, 1.0],
        "kappa": [0.0, 0.5, 1.5],
    }


@register_law(
    independent_vars=("n", "s"),
    bounds={
        "C": (0.0, 1.0),
        "E": (0.0, np.inf),
        "beta": (0.0, 3.0),
        "D": (0.0, np.inf),
        "alpha": (0.01, 3.0),
        "kappa": (0.0, 5.0),
    },
    guess={"C": 0.1, "E": 1.0, "beta": 0.3, "D": 1.0, "alpha": 0.3, "kappa": 0.5},
    start_grid=_joint_additive_starts,
    target_range=(0.0, 1.0),
    formula="L(n, s) = C + E s^-beta + D n^-alpha s^-kappa",
    max_grid_starts=512,
)
def joint_additive(n, s, C, E, beta, D, alpha, kappa):
    """Additive joint law: with kappa > beta the pre-training benefit vanishes as s grows."""
    return C + E * s ** (-beta) + D * n ** (-alpha) * s ** (-kappa)


_CHINCHILLA_GRID = {
    "E": list(np.exp(np.arange(-1.0, 1.01, 0.5))),
    "A": list(np.exp(np.arange(0.0, 25.1, 5.0))),
    "B": list(np.exp(np.arange(0.0, 25.1, 5.0))),
    "alpha": list(np.arange(0.0, 2.01, 0.5)),
    "beta": list(np.arange(0.0, 2.01, 0.5)),
}


@register_law(
    independent_vars=("N", "D"),
    bounds={"E": (0.0, np.inf), "A": (0.0, np.inf), "B": (0.0, np.inf), "alpha": (0.0, 3.0), "beta": (0.0, 3.0)},
    guess={"E": 1.7, "A": 400.0, "B": 400.0, "alpha": 0.34, "beta": 0.28},
    start_grid=_CHINCHILLA_GRID,
    formula="L(N, D) = E + A N^-alpha + B D^-beta",
    max_grid_starts=4500,
)
def chinchilla(N, D, E, A, B, alpha, beta):
    """Hoffmann et al.'s loss vs parameters N and tokens D; the grid matches the replication's."""
    return E + A * N ** (-alpha) + B * D ** (-beta)


def _broken_power_starts(xs: Mapping[str, np.ndarray], y: np.ndarray) -> dict[str, list[float]]:
    x = np.asarray(xs["x"], dtype=float)
    floors, amplitude = _floor_scale_starts(y, upper=None)
    x_min = float(np.min(x[x > 0])) if np.any(x > 0) else 1.0
    alphas = [0.1, 0.4, 1.0]
    return {
        "C": floors[:3],
        "D": sorted({float(amplitude * x_min**a) for a in alphas}),
        "alpha": alphas,
        "x_break": _geomspace_between(x, 4)[1:3] or [1.0],
        "delta_alpha": [-0.3, 0.3],
        "smoothness": [0.1, 0.5],
    }


@register_law(
    bounds={
        "C": (0.0, np.inf),
        "D": (1e-12, np.inf),
        "alpha": (0.0, 3.0),
        "x_break": (1e-12, np.inf),
        "delta_alpha": (-3.0, 3.0),
        "smoothness": (0.01, 5.0),
    },
    guess={"C": 0.0, "D": 1.0, "alpha": 0.3, "x_break": 1e4, "delta_alpha": 0.2, "smoothness": 0.1},
    start_grid=_broken_power_starts,
    formula="L(x) = C + D x^-alpha (1 + (x / x_break)^(1/smoothness))^(-delta_alpha smoothness)",
)
def broken_power(x, C, D, alpha, x_break, delta_alpha, smoothness):
    """One smooth break: slope alpha before x_break, alpha + delta_alpha after (Caballero et al. form)."""
    log_ratio = np.log(x / x_break) / smoothness
    softplus = np.logaddexp(0.0, log_ratio)
    return C + D * x ** (-alpha) * np.exp(-delta_alpha * smoothness * softplus)


def _m4_starts(xs: Mapping[str, np.ndarray], y: np.ndarray) -> dict[str, list[float]]:
    y_min, y_max = float(np.min(y)), float(np.max(y))
    return {
        "eps_inf": [0.0, 0.5 * y_min, 0.9 * y_min],
        "eps_0": [min(1.0, y_max * 1.05), 1.0],
        "beta": [0.1, 1.0, 10.0, 100.0],
        "c": [-0.1, -0.3, -0.7],
        "alpha": [0.0, 0.5, 1.0],
    }


_M4_BISECTION_STEPS = 60


@register_law(
    bounds={"eps_inf": (0.0, 1.0), "eps_0": (1e-9, 1.0), "beta": (1e-12, np.inf), "c": (-3.0, 0.0), "alpha": (0.0, 5.0)},
    guess={"eps_inf": 0.0, "eps_0": 1.0, "beta": 1.0, "c": -0.3, "alpha": 0.5},
    start_grid=_m4_starts,
    target_range=(0.0, 1.0),
    formula="(L - eps_inf) / (eps_0 - L)^alpha = beta x^c",
)
def m4(x, eps_inf, eps_0, beta, c, alpha):
    """Alabdulmohsin et al. (2022) M4: sigmoid-like in log x between eps_0 (tiny x) and eps_inf.

    L is implicit; the root of (L - eps_inf) - beta x^c (eps_0 - L)^alpha on (eps_inf, eps_0) is
    unique because the left side increases in L, so a fixed-step bisection solves it in batch.
    """
    x, eps_inf, eps_0, beta, c, alpha = np.broadcast_arrays(
        *(np.asarray(v, dtype=float) for v in (x, eps_inf, eps_0, beta, c, alpha))
    )
    span = np.maximum(eps_0 - eps_inf, 1e-300)
    rhs = beta * x**c
    lo = np.zeros_like(span)
    hi = np.ones_like(span)
    for _ in range(_M4_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        level = eps_inf + mid * span
        excess = (level - eps_inf) - rhs * np.maximum(eps_0 - level, 0.0) ** alpha
        above = excess > 0
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return eps_inf + 0.5 * (lo + hi) * span


def start_points(
    law: Law,
    xs: Mapping[str, np.ndarray],
    y: np.ndarray,
    free: Sequence[str],
    bounds: Bounds,
    grid: Mapping[str, Sequence[float]] | None,
    max_starts: int,
) -> np.ndarray:
    """The law's guess, then its start grid over the free parameters (clipped into bounds).

    Grids larger than ``max_starts`` are thinned by a fixed-seed sample, so fits are reproducible.
    """
    candidates = law.starts(xs, y)
    if grid:
        unknown = sorted(set(grid) - set(law.param_names))
        if unknown:
            raise ValueError(f"grid names unknown parameters {unknown}; {law.name} has {list(law.param_names)}")
        candidates.update({k: [float(v) for v in vals] for k, vals in grid.items()})
    axes = []
    for name in free:
        lo, hi = bounds[name]
        values = np.clip(np.asarray(candidates[name] + [law.guess[name]], dtype=float), lo, hi)
        axes.append(np.unique(values))
    total = int(np.prod([len(a) for a in axes])) if axes else 1
    if total <= max_starts:
        combos = np.array(list(itertools.product(*axes)), dtype=float).reshape(total, len(free))
    else:
        shape = [len(a) for a in axes]
        flat = np.random.default_rng(0).choice(total, size=max_starts, replace=False)
        picks = np.stack(np.unravel_index(np.sort(flat), shape), axis=1)
        combos = np.stack([axes[j][picks[:, j]] for j in range(len(axes))], axis=1)
    guess_row = [np.clip(law.guess[name], *bounds[name]) for name in free]
    return np.vstack([np.asarray(guess_row, dtype=float)[None, :], combos])
