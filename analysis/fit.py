"""Fit a registered law with multi-start, robust losses, shared parameters and the bootstrap.

``fit_law`` screens a grid of starts with the vectorised solver, polishes the best few with
lmfit (whose covariance gives the standard errors), and returns a ``FitResult`` that says
whether it converged and what looks fragile (bounds hit, flat optima) instead of hiding it.
Bootstrap refits reuse the vectorised solver, so 1,000 resamples cost well under a second.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import lmfit
import numpy as np

from analysis.batched_lsq import solve_batched
from analysis.laws import Law, get_law, start_points
from analysis.problem import LOSSES, SPACES, FitProblem, group_label
from analysis.validation import (
    InputError,
    as_input_columns,
    default_row_labels,
    describe_rows,
    validate_identifiable,
    validate_points,
)

RESAMPLE_MODES = ("auto", "seeds", "points", "residuals")
MIN_DISTINCT_RESAMPLES = 5  # fewer distinct resamples than this give no interval, only a handful of refits
_EXACT_COUNT_UNITS = 12  # distinct resamples are counted exactly up to this many units (2^units subsets)
_COUNT_CAP = 10**12  # counts beyond this are reported as this (they only have to be compared with 5)
_SCREEN_ITERATIONS = 150
_PRUNE_ABOVE = 64


@dataclass(frozen=True)
class BootstrapSummary:
    """How the intervals were made: resampling unit, counts, seed, and the converged draws.

    ``distinct_resamples`` is how many different data sets the scheme can draw at all (over k seeds
    resampled with replacement: C(2k - 1, k) multisets, 3 for 2 seeds); however many resamples are
    drawn, fewer than ``MIN_DISTINCT_RESAMPLES`` distinct ones cannot make an interval.
    """

    n_resamples: int
    n_converged: int
    resample: str
    seed: int | None
    level: float
    draws: np.ndarray = field(repr=False)
    distinct_resamples: int | None = None
    unit: str = ""  # what is resampled, e.g. "2 seeds" or "18 points"
    no_dof: str = ""  # why the fit leaves nothing to resample (no residual degrees of freedom), '' when it does

    @property
    def has_interval(self) -> bool:
        """Residual degrees of freedom, enough converged draws and enough distinct resamples for a percentile
        interval."""
        return not self.no_interval_reasons

    @property
    def no_interval_reasons(self) -> list[str]:
        """Every reason there is no interval (none when there is one)."""
        reasons = [self.no_dof] if self.no_dof else []
        if self.distinct_resamples is not None and self.distinct_resamples < MIN_DISTINCT_RESAMPLES:
            plural = "s" if self.distinct_resamples != 1 else ""
            reasons.append(f"bootstrap over {self.unit} has only {self.distinct_resamples} distinct "
                           f"resample{plural}: no interval")
        if self.n_converged < 2:
            reasons.append(f"only {self.n_converged} of {self.n_resamples} bootstrap refits converged: no interval")
        return reasons

    @property
    def no_interval_reason(self) -> str:
        """Why there is no interval ('' when there is one)."""
        return self.no_interval_reasons[0] if self.no_interval_reasons else ""


@dataclass(frozen=True)
class FitResult:
    """One fitted law: estimates, uncertainty, goodness of fit and an honest convergence record.

    ``params`` holds every law parameter (fixed ones included); in a grouped fit per-group
    parameters are named ``alpha[group]`` and shared ones keep their plain name.
    """

    law: str
    formula: str
    params: dict[str, float]
    stderr: dict[str, float]
    fixed: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    interval_level: float
    r2: float
    aic: float
    bic: float
    cost: float
    n_points: int
    n_free: int
    converged: bool
    message: str
    warnings: tuple[str, ...]
    space: str
    loss: str
    huber_delta: float
    groups: tuple[str, ...] | None
    shared: tuple[str, ...]
    independent_vars: tuple[str, ...]
    n_starts: int
    n_starts_at_best: int
    bootstrap: BootstrapSummary | None = None
    profile_intervals: dict[str, tuple[float, float]] | None = None
    problem: FitProblem | None = field(default=None, repr=False, compare=False)
    theta: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def free_names(self) -> tuple[str, ...]:
        return tuple(name for name in self.params if name not in self.fixed)

    def law_params(self, group: str | None = None) -> dict[str, float]:
        """The law's own parameter names and values for one curve (``group`` in a grouped fit)."""
        self._check_group(group)
        return {name: self.params[self._param_key(name, group)] for name in get_law(self.law).param_names}

    def predict(self, x: Any, group: str | None = None) -> np.ndarray:
        """The fitted curve at new inputs (1-D array, or a mapping by input name for joint laws)."""
        law = get_law(self.law)
        xs = as_input_columns(x, law.independent_vars)
        return np.asarray(law.evaluate(xs, self.law_params(group)), dtype=float)

    def param_draws(self, group: str | None = None) -> dict[str, np.ndarray]:
        """Law parameters of every converged bootstrap draw, as (draws,) arrays (fixed ones repeated)."""
        if self.bootstrap is None or self.problem is None:
            raise ValueError("no bootstrap draws: fit with bootstrap=B or call analysis.fit.bootstrap(result)")
        self._check_group(group)
        draws = self.bootstrap.draws
        values: dict[str, np.ndarray] = {}
        for name in get_law(self.law).param_names:
            key = self._param_key(name, group)
            if key in self.fixed:
                values[name] = np.full(draws.shape[0], self.fixed[key])
            else:
                values[name] = draws[:, self.problem.free_names.index(key)]
        return values

    def predict_draws(self, x: Any, group: str | None = None) -> np.ndarray:
        """Curves of every converged bootstrap draw at ``x``: shape (draws, points)."""
        law = get_law(self.law)
        xs = {k: v[None, :] for k, v in as_input_columns(x, law.independent_vars).items()}
        values = {name: column[:, None] for name, column in self.param_draws(group).items()}
        with np.errstate(all="ignore"):
            return np.asarray(law.evaluate(xs, values), dtype=float)

    def predict_interval(
        self, x: Any, group: str | None = None, level: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Percentile prediction band of the fitted curve from the bootstrap draws (NaN when the bootstrap
        cannot give an interval, e.g. 2 seeds: 3 distinct resamples)."""
        curves = self.predict_draws(x, group)
        if self.bootstrap is not None and not self.bootstrap.has_interval:
            empty = np.full(curves.shape[1], math.nan)
            return empty, empty.copy()
        tail = (1.0 - (self.interval_level if level is None else level)) / 2.0
        return np.nanquantile(curves, tail, axis=0), np.nanquantile(curves, 1.0 - tail, axis=0)

    def report(self) -> str:
        """A text table in the spirit of lmfit's fit report."""
        level = f"{self.interval_level:.0%}"
        lines = [
            f"[[{self.law}]]  {self.formula}",
            f"  points {self.n_points}, free parameters {self.n_free}, space {self.space}, loss {self.loss}"
            + (f" (delta {self.huber_delta:g})" if self.loss == "huber" else ""),
            f"  converged: {'yes' if self.converged else 'NO'} ({self.message})",
            f"  starts: {self.n_starts_at_best} of {self.n_starts} reached the best cost",
            f"  R^2 {self.r2:.4f}   AIC {self.aic:.2f}   BIC {self.bic:.2f}   cost {self.cost:.4g}",
        ]
        if self.groups:
            lines.append(f"  groups: {', '.join(self.groups)}; shared: {', '.join(self.shared) or 'none'}")
        width = max(len(name) for name in self.params) + 2
        lines.append(f"  {'parameter':<{width}}{'value':>12}{'stderr':>12}   {level} interval")
        for name, value in self.params.items():
            if name in self.fixed:
                lines.append(f"  {name:<{width}}{_fmt(value):>12}{'fixed':>12}")
                continue
            interval = self.intervals.get(name)
            band = "-"
            if interval and not any(math.isfinite(v) for v in interval):
                band = "unavailable"
            elif interval:
                band = f"[{_fmt(interval[0])}, {_fmt(interval[1])}]"
            lines.append(f"  {name:<{width}}{_fmt(value):>12}{_fmt(self.stderr.get(name, math.nan)):>12}   {band}")
        if self.bootstrap is not None and self.bootstrap.no_dof:
            lines.append(f"  bootstrap: no interval: {self.bootstrap.no_dof.split(':')[0]}")
        elif self.bootstrap is not None:
            b = self.bootstrap
            lines.append(
                f"  bootstrap: {b.n_converged} of {b.n_resamples} resamples over {b.resample} converged (seed {b.seed})"
                + (f"; {b.distinct_resamples} distinct resamples possible over {b.unit}"
                   if b.distinct_resamples is not None else "")
            )
        if self.profile_intervals:
            lines.append("  profile-likelihood intervals (lmfit.conf_interval):")
            for name, (lo, hi) in self.profile_intervals.items():
                lines.append(f"    {name:<{width}}[{_fmt(lo)}, {_fmt(hi)}]")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (NaN becomes None; bootstrap draws are summarised, not dumped)."""
        bootstrap = None
        if self.bootstrap is not None:
            bootstrap = {
                "n_resamples": self.bootstrap.n_resamples,
                "n_converged": self.bootstrap.n_converged,
                "resample": self.bootstrap.resample,
                "seed": self.bootstrap.seed,
                "level": self.bootstrap.level,
                "distinct_resamples": self.bootstrap.distinct_resamples,
                "unit": self.bootstrap.unit,
                "has_interval": self.bootstrap.has_interval,
                "no_interval_reason": self.bootstrap.no_interval_reason or None,
            }
        return _jsonable(
            {
                "law": self.law,
                "formula": self.formula,
                "params": self.params,
                "stderr": self.stderr,
                "fixed": self.fixed,
                "intervals": {k: list(v) for k, v in self.intervals.items()},
                "interval_level": self.interval_level,
                "r2": self.r2,
                "aic": self.aic,
                "bic": self.bic,
                "cost": self.cost,
                "n_points": self.n_points,
                "n_free": self.n_free,
                "converged": self.converged,
                "message": self.message,
                "warnings": list(self.warnings),
                "space": self.space,
                "loss": self.loss,
                "huber_delta": self.huber_delta,
                "groups": list(self.groups) if self.groups else None,
                "shared": list(self.shared),
                "independent_vars": list(self.independent_vars),
                "n_starts": self.n_starts,
                "n_starts_at_best": self.n_starts_at_best,
                "bootstrap": bootstrap,
                "profile_intervals": (
                    {k: list(v) for k, v in self.profile_intervals.items()} if self.profile_intervals else None
                ),
            }
        )

    def _param_key(self, name: str, group: str | None) -> str:
        if name in self.params:
            return name
        if group is None:
            raise ValueError(f"{name} differs between groups {list(self.groups or ())}; pass group=")
        return group_label(name, group)

    def _check_group(self, group: str | None) -> None:
        if group is not None and group not in (self.groups or ()):
            raise ValueError(f"unknown group {group!r}; groups: {list(self.groups or ())}")


def fit_law(
    x: Any,
    y: Any,
    law: str | Law = "power_floor",
    *,
    fix: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    space: Literal["linear", "log"] = "linear",
    loss: Literal["l2", "huber"] = "l2",
    huber_delta: float = 1e-3,
    weights: Any = None,
    groups: Sequence[object] | None = None,
    shared: Sequence[str] = (),
    grid: Mapping[str, Sequence[float]] | None = None,
    n_starts: int | None = None,
    n_polish: int = 3,
    target_range: tuple[float, float] | None | Literal["law"] = "law",
    bootstrap: int = 0,
    seed: int | None = None,
    resample: Literal["auto", "seeds", "points", "residuals"] = "auto",
    level: float = 0.95,
    conf_interval: bool = False,
    row_labels: Sequence[Any] | None = None,
    max_nfev: int | None = None,
    clusters: Sequence[Any] | None = None,
) -> FitResult:
    """Fit ``law`` to (x, y); see the package docstring for the meaning of every option.

    ``clusters`` labels each point with its resampling unit, normally its seed: when points that share a seed
    share its noise (the same real fine-tuning subset and initial weights at every n), the ``seeds`` bootstrap
    must redraw whole seeds, every point of a seed together, not each point's replicates independently.

    Raises ``InputError`` for data that cannot be fitted (naming the rows) and ``ValueError``
    for unknown names; a fit that runs but does not converge is returned with converged=False.
    """
    law_obj = get_law(law)
    fix = dict(fix or {})
    _check_names("fix", fix, law_obj)
    _check_names("bounds", bounds or {}, law_obj)
    _check_names("shared", {name: None for name in shared}, law_obj)
    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}; valid: {', '.join(SPACES)}")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
    if resample not in RESAMPLE_MODES:
        raise ValueError(f"unknown resample {resample!r}; valid: {', '.join(RESAMPLE_MODES)}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if huber_delta <= 0:
        raise ValueError(f"huber_delta must be > 0, got {huber_delta}")
    merged_bounds = {**law_obj.bounds, **{k: tuple(map(float, v)) for k, v in (bounds or {}).items()}}
    for name, (lo, hi) in merged_bounds.items():
        if not lo < hi:
            raise ValueError(f"bounds for {name} must satisfy lower < upper, got ({lo}, {hi})")

    xs = as_input_columns(x, law_obj.independent_vars)
    y_array = np.asarray(y, dtype=float).ravel()
    weight_array = None if weights is None else np.asarray(weights, dtype=float).ravel()
    labels = list(row_labels) if row_labels is not None else default_row_labels(y, y_array.shape[0])
    validate_points(
        law_name=law_obj.name,
        xs=xs,
        y=y_array,
        weights=weight_array,
        row_labels=labels,
        target_range=law_obj.target_range if target_range == "law" else target_range,
    )
    if space == "log" and np.any(y_array <= 0):
        bad = y_array <= 0
        raise InputError(f"log-space fits need y > 0, not so in {describe_rows(labels, bad, y_array)}")

    problem = FitProblem.build(
        law_obj,
        xs,
        y_array,
        weights=weight_array,
        space=space,
        loss=loss,
        huber_delta=huber_delta,
        groups=groups,
        shared=shared,
        fixed=fix,
        bounds=merged_bounds,
        clusters=clusters,
    )
    if problem.n_free == 0:
        raise ValueError(f"every parameter of {law_obj.name} is fixed; nothing to fit")
    validate_identifiable(
        law_name=law_obj.name,
        xs=xs,
        group_codes=problem.group_codes,
        group_names=problem.group_names or ("all",),
        n_free_total=problem.n_free,
        n_free_per_group=problem.n_free_per_group,
        free_names=problem.free_names,
    )
    result = _multistart_fit(
        problem, grid=grid, n_starts=n_starts or law_obj.max_grid_starts, n_polish=n_polish, max_nfev=max_nfev
    )
    if conf_interval and problem.n_points > problem.n_free:
        result = _with_profile_intervals(result, level)
    if bootstrap:
        result = _run_bootstrap(result, bootstrap, seed=seed, resample=resample, level=level)
    return dataclasses.replace(result, interval_level=level)


def bootstrap(
    result: FitResult,
    n_resamples: int = 1000,
    *,
    seed: int | None = None,
    resample: Literal["auto", "seeds", "points", "residuals"] = "auto",
    level: float = 0.95,
) -> FitResult:
    """Add percentile intervals to a fit by refitting resampled data (all resamples in one batch).

    ``seeds`` redraws whole seeds when the fit was given ``clusters`` (every point of a drawn seed, counted as
    often as the seed is drawn), else the replicate measurements at each input independently (x repeated with
    several y, deviations inflated for the small-sample bias);
    ``points`` redraws whole points within each group (resamples with too few distinct inputs
    are redrawn); ``residuals`` adds redrawn fit-space residuals to the fitted curve.
    ``auto`` picks ``seeds`` when the fit has ``clusters`` or any input has replicates, else ``points``.
    When the scheme can draw fewer than ``MIN_DISTINCT_RESAMPLES`` distinct data sets (2 seeds: 3), the
    intervals are NaN and a warning says so.
    """
    if resample not in RESAMPLE_MODES:
        raise ValueError(f"unknown resample {resample!r}; valid: {', '.join(RESAMPLE_MODES)}")
    return _run_bootstrap(result, n_resamples, seed=seed, resample=resample, level=level)


def _check_names(what: str, mapping: Mapping[str, Any], law: Law) -> None:
    unknown = sorted(set(mapping) - set(law.param_names))
    if unknown:
        raise ValueError(f"{what} names unknown parameters {unknown}; {law.name} has {list(law.param_names)}")


def _multistart_fit(
    problem: FitProblem,
    *,
    grid: Mapping[str, Sequence[float]] | None,
    n_starts: int,
    n_polish: int,
    max_nfev: int | None,
) -> FitResult:
    law = problem.law
    free_law_order = [p for p in law.param_names if p not in problem.fixed]
    law_starts = start_points(law, problem.xs, problem.y, free_law_order, problem.bounds, grid, n_starts)
    theta_starts = problem.expand_starts(law_starts, free_law_order)
    lower, upper = problem.lower, problem.upper
    residual_fn = problem.batched_residual_fn(np.arange(problem.n_points)[None, :])
    screen = solve_batched(
        residual_fn,
        theta_starts,
        lower,
        upper,
        loss=problem.loss,
        huber_delta=problem.huber_delta,
        max_iter=_SCREEN_ITERATIONS if max_nfev is None else max(1, max_nfev // (problem.n_free + 1)),
        prune_every=10 if theta_starts.shape[0] > _PRUNE_ABOVE else None,
    )
    finite = np.isfinite(screen.cost)
    if not finite.any():
        raise InputError(f"{law.name}: the model is not finite at any start; check the inputs and bounds")
    order = np.argsort(np.where(finite, screen.cost, np.inf))
    polish_rows = _distinct_rows(screen.params, order[finite[order]], n_polish)

    best: tuple[float, lmfit.minimizer.MinimizerResult | None, np.ndarray] | None = None
    for row in polish_rows:
        outcome = _polish_with_lmfit(problem, screen.params[row], max_nfev)
        cost = problem.cost(outcome[1]) if outcome[0] is not None else math.inf
        if best is None or cost < best[0]:
            best = (cost, outcome[0], outcome[1])
    assert best is not None
    cost, lmfit_result, theta = best
    warnings: list[str] = []
    screen_best = float(screen.cost[order[0]])
    converged, message = False, "no lmfit result"
    if lmfit_result is not None:
        converged = bool(lmfit_result.success) and math.isfinite(cost)
        message = str(lmfit_result.message)
    if not math.isfinite(cost) or cost > screen_best * (1 + 1e-8) + 1e-18 * problem.n_points:
        warnings.append("lmfit ended above the screening optimum, which is reported instead (no stderr)")
        cost, lmfit_result, theta = screen_best, None, screen.params[order[0]].copy()
        converged = bool(screen.converged[order[0]])
        message = "vectorised screening optimum (lmfit polish failed)"
    stderr = {name: math.nan for name in problem.free_names}
    if lmfit_result is not None:
        for j, name in enumerate(problem.free_names):
            value = lmfit_result.params[f"p{j}"].stderr
            stderr[name] = float(value) if value is not None else math.nan
        if not all(math.isfinite(v) for v in stderr.values()) and problem.n_points > problem.n_free:
            warnings.append("covariance unavailable for some parameters (singular: at a bound or unidentifiable)")
    if problem.n_points <= problem.n_free:
        stderr = {name: math.nan for name in problem.free_names}
        warnings.insert(0, _no_dof_reason(problem))

    loose = [
        name
        for j, name in enumerate(problem.free_names)
        if math.isfinite(stderr[name]) and stderr[name] > 0.5 * abs(theta[j])
    ]
    if loose:
        warnings.append(
            f"weakly determined: stderr exceeds half the value for {', '.join(loose)}; "
            f"fix or share parameters, or add points"
        )
    tolerance = 1e-6 * max(screen_best, 1e-12)
    at_best = int(np.sum(screen.cost <= screen_best + tolerance))
    warnings.extend(_bound_warnings(problem, theta))
    warnings.extend(_flat_optimum_warnings(problem, screen, screen_best))
    if not converged:
        warnings.insert(0, f"fit did not converge: {message}")

    r2, aic, bic = _goodness_of_fit(problem, theta)
    return FitResult(
        law=law.name,
        formula=law.formula,
        params=_named_params(problem, theta),
        stderr=stderr,
        fixed=dict(problem.fixed),
        intervals={},
        interval_level=0.95,
        r2=r2,
        aic=aic,
        bic=bic,
        cost=float(cost),
        n_points=problem.n_points,
        n_free=problem.n_free,
        converged=converged,
        message=str(message),
        warnings=tuple(warnings),
        space=problem.space,
        loss=problem.loss,
        huber_delta=problem.huber_delta,
        groups=problem.group_names,
        shared=problem.shared,
        independent_vars=law.independent_vars,
        n_starts=int(theta_starts.shape[0]),
        n_starts_at_best=at_best,
        problem=problem,
        theta=np.asarray(theta, dtype=float),
    )


def _no_dof_reason(problem: FitProblem) -> str:
    """The warning of a fit with no residual degrees of freedom: the curve can pass through every point, so the
    residuals measure nothing and neither stderr (lmfit says 0) nor any bootstrap interval (every refit lands on
    the same curve) means anything."""
    return (f"no residual degrees of freedom ({problem.n_points} points for {problem.n_free} free parameters): "
            f"stderr and intervals are unavailable; add points or fix parameters")


def _goodness_of_fit(problem: FitProblem, theta: np.ndarray) -> tuple[float, float, float]:
    """R^2 of y in linear space; AIC/BIC from a Gaussian likelihood of the fit-space residuals.

    Under a Huber loss the likelihood is only approximate, so compare AIC/BIC between fits
    that share space and loss.
    """
    rss = float(np.sum(problem.residuals(theta) ** 2))
    n, k = problem.n_points, problem.n_free
    log_likelihood_term = n * math.log(max(rss, 1e-300) / n)
    weights = problem.weights
    mean_y = np.sum(weights * problem.y) / np.sum(weights)
    total = float(np.sum(weights * (problem.y - mean_y) ** 2))
    unexplained = float(np.sum(weights * (problem.y - problem.model(theta)) ** 2))
    r2 = 1.0 - unexplained / total if total > 0 else math.nan
    return r2, log_likelihood_term + 2 * k, log_likelihood_term + k * math.log(n)


def _named_params(problem: FitProblem, theta: np.ndarray) -> dict[str, float]:
    """Every law parameter by display name: fixed, shared, or one per group as ``name[group]``."""
    params: dict[str, float] = {}
    for name in problem.law.param_names:
        if name in problem.fixed:
            params[name] = problem.fixed[name]
        elif problem.group_names is None or name in problem.shared:
            params[name] = float(theta[problem.free_names.index(name)])
        else:
            for group in problem.group_names:
                label = group_label(name, group)
                params[label] = float(theta[problem.free_names.index(label)])
    return params


def _distinct_rows(params: np.ndarray, ranked_rows: np.ndarray, count: int) -> list[int]:
    chosen: list[int] = []
    for row in ranked_rows:
        candidate = params[row]
        if all(not np.allclose(candidate, params[c], rtol=1e-4, atol=1e-12) for c in chosen):
            chosen.append(int(row))
        if len(chosen) == count:
            break
    return chosen


def _lmfit_parameters(problem: FitProblem, start: np.ndarray) -> lmfit.Parameters:
    parameters = lmfit.Parameters()
    for j, (lo, hi) in enumerate(zip(problem.lower, problem.upper)):
        parameters.add(f"p{j}", value=float(np.clip(start[j], lo, hi)), min=float(lo), max=float(hi))
    return parameters


def _lmfit_residual(problem: FitProblem):
    names = [f"p{j}" for j in range(problem.n_free)]

    def residual(parameters: lmfit.Parameters) -> np.ndarray:
        theta = np.array([parameters[name].value for name in names])
        with np.errstate(all="ignore"):
            values = problem.residuals(theta)
        return np.nan_to_num(values, nan=1e10, posinf=1e10, neginf=-1e10)

    return residual


def _polish_with_lmfit(problem: FitProblem, start: np.ndarray, max_nfev: int | None) -> tuple[Any, np.ndarray]:
    minimizer = lmfit.Minimizer(_lmfit_residual(problem), _lmfit_parameters(problem, start), max_nfev=max_nfev)
    options: dict[str, Any] = {"x_scale": "jac"}
    if problem.loss == "huber":
        options.update(loss="huber", f_scale=problem.huber_delta)
    try:
        with np.errstate(all="ignore"):
            outcome = minimizer.minimize(method="least_squares", **options)
    except (ValueError, np.linalg.LinAlgError):
        return None, np.asarray(start, dtype=float)
    theta = np.array([outcome.params[f"p{j}"].value for j in range(problem.n_free)])
    return outcome, theta


def _bound_warnings(problem: FitProblem, theta: np.ndarray) -> list[str]:
    notes = []
    for j, name in enumerate(problem.free_names):
        for side, bound in (("lower", problem.lower[j]), ("upper", problem.upper[j])):
            if math.isfinite(bound) and abs(theta[j] - bound) <= 1e-6 * max(1.0, abs(bound)):
                notes.append(
                    f"{name} = {theta[j]:.6g} sits at its {side} bound {bound:g}: the data push beyond the allowed "
                    f"range, so its stderr and intervals understate the uncertainty"
                )
    return notes


def _flat_optimum_warnings(problem: FitProblem, screen: Any, best_cost: float) -> list[str]:
    """Starts that end within 1% of the best cost but far from its parameters mean a flat valley."""
    near = np.flatnonzero(screen.converged & (screen.cost <= best_cost * 1.01 + 1e-15))
    if near.size < 2:
        return []
    values = screen.params[near]
    centre = values[np.argmin(screen.cost[near])]
    spread = np.max(np.abs(values - centre), axis=0) / np.maximum(np.abs(centre), 1e-12)
    loose = [problem.free_names[j] for j in np.flatnonzero(spread > 0.1)]
    if not loose:
        return []
    return [
        f"flat optimum: starts within 1% of the best cost disagree by >10% on {', '.join(loose)}; "
        f"fix or share parameters and read the bootstrap intervals"
    ]


def _with_profile_intervals(result: FitResult, level: float) -> FitResult:
    problem = result.problem
    assert problem is not None and result.theta is not None
    minimizer = lmfit.Minimizer(_lmfit_residual(problem), _lmfit_parameters(problem, result.theta))
    options: dict[str, Any] = {"x_scale": "jac"}
    if problem.loss == "huber":
        options.update(loss="huber", f_scale=problem.huber_delta)
    try:
        outcome = minimizer.minimize(method="least_squares", **options)
        table = lmfit.conf_interval(minimizer, outcome, sigmas=[level])
    except Exception as error:  # lmfit raises many types when a profile cannot be traced
        return dataclasses.replace(result, warnings=result.warnings + (f"profile intervals failed: {error}",))
    intervals = {}
    for j, name in enumerate(problem.free_names):
        rows = table.get(f"p{j}")
        if rows:
            intervals[name] = (float(rows[0][1]), float(rows[-1][1]))
    return dataclasses.replace(result, profile_intervals=intervals)


def _strata(problem: FitProblem) -> np.ndarray:
    design = np.stack([problem.group_codes.astype(float)] + [problem.xs[v] for v in problem.xs], axis=1)
    return np.unique(design, axis=0, return_inverse=True)[1].ravel()


def _resample_within(strata: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Each point is replaced by a random member of its own stratum (keeps the design sizes)."""
    order = np.argsort(strata, kind="stable")
    counts = np.bincount(strata)
    offsets = np.cumsum(counts) - counts
    draws = np.floor(rng.random((n_resamples, strata.size)) * counts[strata]).astype(np.int64)
    return order[offsets[strata] + draws]


def _resample_replicates(
    y: np.ndarray, strata: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Redraw each input's replicate deviations around their mean, inflated by sqrt(c / (c - 1)).

    Plain resampling of c replicates has variance (c - 1) / c of the sample's, i.e. intervals
    a sixth too narrow with the usual 3 seeds; the inflation (Davison and Hinkley's modified
    residuals) removes that bias. Inputs with one replicate keep their value.
    """
    counts = np.bincount(strata)
    means = np.bincount(strata, weights=y) / counts
    inflation = np.sqrt(counts / np.maximum(counts - 1, 1))
    deviations = (y - means[strata]) * inflation[strata]
    picks = _resample_within(strata, n_resamples, rng)
    return means[strata][None, :] + deviations[picks]


def _resample_clusters(codes: np.ndarray, n_clusters: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Draw n_clusters clusters with replacement per resample; each point weighs as often as its cluster is drawn."""
    picks = rng.integers(0, n_clusters, size=(n_resamples, n_clusters))
    counts = np.zeros((n_resamples, n_clusters))
    np.add.at(counts, (np.arange(n_resamples)[:, None], picks), 1.0)
    return counts[:, codes]


def _present_strata(included: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """(resamples, points) mask of included points -> (resamples, strata) mask of strata with a point in."""
    counts = np.zeros((included.shape[0], int(strata.max()) + 1))
    np.add.at(counts, (np.arange(included.shape[0])[:, None], strata[None, :]), included.astype(float))
    return counts > 0


def _identifiable(present: np.ndarray, strata: np.ndarray, problem: FitProblem) -> np.ndarray:
    """Per resample: every curve keeps enough distinct inputs for its own parameters, and all of them together
    enough for every free parameter."""
    group_of_stratum = np.zeros(int(strata.max()) + 1, dtype=np.int64)
    group_of_stratum[strata] = problem.group_codes
    n_groups = len(problem.group_names or ("all",))
    per_group = np.stack([present[:, group_of_stratum == g].sum(axis=1) for g in range(n_groups)], axis=1)
    return (per_group.min(axis=1) >= problem.n_free_per_group) & (present.sum(axis=1) >= problem.n_free)


def _identifiable_rows(index: np.ndarray, strata: np.ndarray, problem: FitProblem) -> np.ndarray:
    included = np.zeros((index.shape[0], strata.size), dtype=bool)
    included[np.arange(index.shape[0])[:, None], index] = True
    return _identifiable(_present_strata(included, strata), strata, problem)


def _capped_product(factors: Sequence[int]) -> int:
    total = 1
    for factor in factors:
        total = min(total * factor, _COUNT_CAP)
    return total


def _distinct_multisets(units: int, valid: Any = None) -> int:
    """How many different multisets of ``units`` draws with replacement from ``units`` items there are (all
    C(2u - 1, u) of them, or only those whose set of distinct items passes ``valid``). A multiset with j
    distinct items is one of C(u - 1, j - 1) for each set of j items, so valid sets are enumerated (exact up
    to ``_EXACT_COUNT_UNITS`` items; beyond that the count of all multisets stands in)."""
    if valid is None or units > _EXACT_COUNT_UNITS:
        return min(math.comb(2 * units - 1, units), _COUNT_CAP)
    return sum(math.comb(units - 1, size - 1) for size in range(1, units + 1)
               for chosen in itertools.combinations(range(units), size) if valid(chosen))


def _distinct_resamples(problem: FitProblem, strata: np.ndarray, resample: str) -> tuple[int, str]:
    """How many distinct data sets the bootstrap scheme can draw (identifiable ones), and what it resamples."""
    m = problem.n_points
    if resample == "seeds" and problem.cluster_codes is not None:
        codes = problem.cluster_codes
        k = int(codes.max()) + 1
        members = [np.flatnonzero(codes == c) for c in range(k)]

        def valid(chosen: tuple[int, ...]) -> bool:
            included = np.zeros((1, m), dtype=bool)
            included[0, np.concatenate([members[c] for c in chosen])] = True
            return bool(_identifiable(_present_strata(included, strata), strata, problem)[0])

        return _distinct_multisets(k, valid), f"{k} seed{'s' if k != 1 else ''}"
    if resample == "seeds":
        replicates = np.bincount(strata)
        distinct = _capped_product([math.comb(2 * int(c) - 1, int(c)) for c in replicates])
        if np.all(replicates == replicates[0]):
            return distinct, f"{replicates[0]} seeds at each of {replicates.size} inputs"
        return distinct, f"the replicates at {replicates.size} inputs"
    if resample == "points":
        threshold = problem.n_free_per_group if problem.group_names else problem.n_free
        counts = []
        for g in range(len(problem.group_names or ("all",))):
            in_group = strata[problem.group_codes == g]
            counts.append(_distinct_multisets(
                in_group.size, lambda chosen, s=in_group: np.unique(s[list(chosen)]).size >= threshold))
        return _capped_product(counts), f"{m} points"
    distinct = _COUNT_CAP if m * math.log10(max(m, 1)) > 12 else m**m  # each point gets any of the m residuals
    return distinct, f"{m} residuals"


def _run_bootstrap(result: FitResult, n_resamples: int, *, seed: int | None, resample: str, level: float) -> FitResult:
    problem = result.problem
    if problem is None or result.theta is None:
        raise ValueError("this FitResult carries no problem to resample (was it rebuilt from JSON?)")
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be >= 2, got {n_resamples}")
    rng = np.random.default_rng(seed)
    strata = _strata(problem)
    clustered = problem.cluster_codes is not None
    if resample == "auto":
        resample = "seeds" if clustered or np.bincount(strata).max() >= 2 else "points"
    sample_y = sample_weight = None
    if resample == "seeds" and clustered:
        assert problem.cluster_codes is not None
        n_clusters = int(problem.cluster_codes.max()) + 1
        index = np.arange(problem.n_points)[None, :]
        sample_weight = _resample_clusters(problem.cluster_codes, n_clusters, n_resamples, rng)
        for _ in range(100):
            bad = ~_identifiable(_present_strata(sample_weight > 0, strata), strata, problem)
            if not bad.any():
                break
            sample_weight[bad] = _resample_clusters(problem.cluster_codes, n_clusters, int(bad.sum()), rng)
    elif resample == "seeds":
        index = np.broadcast_to(np.arange(problem.n_points), (n_resamples, problem.n_points)).copy()
        sample_y = _resample_replicates(problem.y, strata, n_resamples, rng)
    elif resample == "points":
        index = _resample_within(problem.group_codes, n_resamples, rng)
        for _ in range(100):
            bad = ~_identifiable_rows(index, strata, problem)
            if not bad.any():
                break
            index[bad] = _resample_within(problem.group_codes, int(bad.sum()), rng)
    else:
        index = np.broadcast_to(np.arange(problem.n_points), (n_resamples, problem.n_points)).copy()
        fitted = problem.transform(problem.model(result.theta))
        residuals = problem.transform(problem.y) - fitted
        picks = rng.integers(0, problem.n_points, size=(n_resamples, problem.n_points))
        sample_y = problem.inverse_transform(fitted[None, :] + residuals[picks])
    start = np.broadcast_to(result.theta, (n_resamples, problem.n_free))
    solution = solve_batched(
        problem.batched_residual_fn(index, sample_y, sample_weight),
        start,
        problem.lower,
        problem.upper,
        loss=problem.loss,
        huber_delta=problem.huber_delta,
        max_iter=300 if problem.loss == "huber" else 100,
    )
    draws = solution.params[solution.converged]
    distinct, unit = _distinct_resamples(problem, strata, resample)
    summary = BootstrapSummary(
        n_resamples=n_resamples,
        n_converged=int(draws.shape[0]),
        resample=resample,
        seed=seed,
        level=level,
        draws=draws,
        distinct_resamples=distinct,
        unit=unit,
        no_dof=_no_dof_reason(problem) if problem.n_points <= problem.n_free else "",
    )
    warnings = list(result.warnings)
    tail = (1.0 - level) / 2.0
    intervals = {name: (math.nan, math.nan) for name in problem.free_names}
    if summary.has_interval:
        low, high = np.quantile(draws, [tail, 1.0 - tail], axis=0)
        intervals = {name: (float(low[j]), float(high[j])) for j, name in enumerate(problem.free_names)}
        if distinct < min(n_resamples, 100):
            warnings.append(f"bootstrap over {unit} has only {distinct} distinct resamples: the interval is coarse")
    else:
        warnings.extend(reason for reason in summary.no_interval_reasons if reason not in warnings)
    if resample == "seeds" and not clustered:
        singletons = int(np.sum(np.bincount(strata) == 1))
        if singletons:
            warnings.append(
                f"{singletons} input(s) have a single replicate and stay fixed in the seed bootstrap; "
                f"intervals may be too narrow (resample='points' or 'residuals' avoids this)"
            )
    for j, name in enumerate(problem.free_names):
        touching = [b for b in (problem.lower[j], problem.upper[j]) if b in intervals[name]]
        if touching:
            warnings.append(f"the bootstrap interval of {name} reaches its bound {touching[0]:g}")
    failed = n_resamples - draws.shape[0]
    if failed > 0.05 * n_resamples:
        warnings.append(f"{failed} of {n_resamples} bootstrap refits did not converge; intervals use the rest")
    return dataclasses.replace(
        result, intervals=intervals, interval_level=level, bootstrap=summary, warnings=tuple(warnings)
    )


def _fmt(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "nan"
    return f"{value:.5g}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
