"""Adaptive design: which experiment to run next so that the interval of alpha, C or a prediction shrinks fastest.

Given the points measured so far (n, seed, one loss per curve), one round fits the law as the paper does (a grouped
fit with shared parameters, e.g. D, across curves), then scores candidate points (a new n on a log grid inside and
beyond the measured range, or another seed at an n already measured) by the expected reduction of the target's
interval width per unit cost.

Approximation (cheap, stated): Fisher information with the delta method. The fit-space Jacobian J of the fitted
model at the estimate and the fitted noise sigma^2 = RSS / (m - k) give the covariance sigma^2 (J^T J)^-1; a
candidate adds its own Jacobian rows (one per curve: a point at n serves every curve, as one pre-training serves
every fine-tune) to J^T J, and the target's variance is g^T Cov g with g the gradient of the target (a parameter,
or the predicted loss at a named n). The width is 2 t_{m-k} sqrt(g^T Cov g); for a per-curve target (alpha of each
curve) the widest curve counts. A batch is chosen greedily: each choice updates the information before the next
is scored, so a batch does not pile onto one n. The same delta-method interval is what the rounds stop on and
what `delta_interval` reports; benchmarks/bench_adaptive.py checks it against the seed bootstrap and its
coverage of known exponents.

Laws of one input (power_floor, broken_power, m4) are supported; joint laws would need candidates over every input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

from analysis.fit import FitResult, fit_law
from analysis.laws import get_law
from analysis.problem import FitProblem, group_label
from analysis.validation import InputError

_FD_STEP = 1e-6  # relative finite-difference step of the Jacobian and of a target's gradient


@dataclass(frozen=True)
class Target:
    """What the design shrinks: the interval of a law parameter (``alpha``, ``C``, ``alpha[64]`` for one curve) or
    of the predicted loss at an n (``loss@1.28e6``)."""

    parameter: str = "alpha"
    at: float | None = None  # set for a prediction target: the n whose predicted loss counts

    @classmethod
    def parse(cls, text: str) -> "Target":
        """'alpha', 'C', 'alpha[64]' or 'loss@1280000' (also 'loss@1.28e6')."""
        text = str(text).strip()
        if text.startswith("loss@"):
            try:
                at = float(text.split("@", 1)[1])
            except ValueError:
                raise ValueError(f"target {text!r}: the n after 'loss@' must be a number, e.g. loss@1.28e6") from None
            if not at > 0:
                raise ValueError(f"target {text!r}: the n must be positive")
            return cls(parameter="loss", at=at)
        if not text:
            raise ValueError("empty target: name a parameter (alpha, C) or loss@N")
        return cls(parameter=text)

    @property
    def label(self) -> str:
        return f"loss@{self.at:g}" if self.at is not None else self.parameter


@dataclass(frozen=True)
class CostModel:
    """Cost of one point at n: fixed + per_n * n (a fixed-step protocol has per_n = 0; fixed epochs grow with n)."""

    fixed: float = 1.0
    per_n: float = 0.0

    def __post_init__(self) -> None:
        if self.fixed < 0 or self.per_n < 0 or self.fixed + self.per_n <= 0:
            raise ValueError(f"cost model needs fixed >= 0, per_n >= 0, not both 0; got {self}")

    def __call__(self, n: float) -> float:
        return self.fixed + self.per_n * float(n)

    @classmethod
    def protocol(cls, name: str) -> "CostModel":
        """'fixed_steps' (every point costs 1) or 'fixed_epochs' (a point costs its n)."""
        if name == "fixed_steps":
            return cls(fixed=1.0, per_n=0.0)
        if name == "fixed_epochs":
            return cls(fixed=0.0, per_n=1.0)
        raise ValueError(f"unknown cost protocol {name!r}; valid: fixed_epochs, fixed_steps")

    @classmethod
    def from_durations(cls, n: Sequence[float], seconds: Sequence[float]) -> "CostModel":
        """Least squares of recorded durations on (1, n) with both coefficients >= 0 (seconds per point)."""
        n_arr, s_arr = np.asarray(n, dtype=float), np.asarray(seconds, dtype=float)
        keep = np.isfinite(n_arr) & np.isfinite(s_arr)
        if keep.sum() == 0:
            raise ValueError("no recorded durations to fit a cost model to")
        n_arr, s_arr = n_arr[keep], s_arr[keep]
        if np.unique(n_arr).size < 2:
            return cls(fixed=max(float(np.mean(s_arr)), 1e-9), per_n=0.0)
        from scipy.optimize import nnls

        (fixed, per_n), _ = nnls(np.stack([np.ones_like(n_arr), n_arr], axis=1), s_arr)
        if fixed + per_n <= 0:
            fixed = max(float(np.mean(s_arr)), 1e-9)
        return cls(fixed=float(fixed), per_n=float(per_n))


@dataclass(frozen=True)
class Observations:
    """Measured points: one row per (n, seed, curve) with its loss; ``curve`` is None for a single curve."""

    n: np.ndarray
    seed: np.ndarray
    loss: np.ndarray
    curve: np.ndarray | None = None

    @classmethod
    def of(cls, n: Sequence[float], seed: Sequence[int], loss: Sequence[float],
           curve: Sequence[Any] | None = None) -> "Observations":
        n_arr, seed_arr, loss_arr = (np.asarray(v) for v in (n, seed, loss))
        if not n_arr.shape == seed_arr.shape == loss_arr.shape or n_arr.ndim != 1:
            raise InputError(f"n, seed and loss must be 1-D of one length; got {n_arr.shape}, {seed_arr.shape}, "
                             f"{loss_arr.shape}")
        curve_arr = None if curve is None else np.asarray([str(c) for c in curve], dtype=object)
        if curve_arr is not None and curve_arr.shape != n_arr.shape:
            raise InputError(f"curve has {curve_arr.shape[0]} rows but n has {n_arr.shape[0]}")
        return cls(n_arr.astype(float), seed_arr.astype(int), loss_arr.astype(float), curve_arr)

    @property
    def units(self) -> list[tuple[float, int]]:
        """Distinct (n, seed) pairs: what one run of the study measures (every curve at once)."""
        return sorted(set(zip(self.n.tolist(), self.seed.tolist())))


@dataclass(frozen=True)
class DesignSpec:
    """The law and fit options (as ``fit_law`` takes them), the target and how candidates are made and chosen."""

    law: str = "power_floor"
    target: Target = field(default_factory=Target)
    shared: tuple[str, ...] = ("D",)  # parameters common to every curve of a grouped fit (the paper shares D)
    space: str = "linear"
    bounds: Mapping[str, tuple[float, float]] | None = None
    fix: Mapping[str, float] | None = None
    target_range: Any = "law"
    level: float = 0.95
    cost: CostModel = field(default_factory=CostModel)
    batch: int = 2
    per_octave: int = 2  # candidate n per doubling on the log grid
    beyond: float = 4.0  # candidates reach this factor past the largest measured n
    below: float = 1.0  # ... and this factor under the smallest (1: not below it)
    n_min: float | None = None  # hard limits on a candidate's n (None: none)
    n_max: float | None = None

    def __post_init__(self) -> None:
        law = get_law(self.law)
        if len(law.independent_vars) != 1:
            raise ValueError(f"adaptive design supports laws of one input; {law.name} takes "
                             f"{list(law.independent_vars)}")
        unknown = sorted(set(self.shared) - set(law.param_names))
        if unknown:
            raise ValueError(f"shared names {unknown}, not parameters of {law.name} ({', '.join(law.param_names)})")
        if self.batch < 1 or self.per_octave < 1:
            raise ValueError(f"batch and per_octave must be >= 1, got {self.batch}, {self.per_octave}")
        if self.beyond < 1 or not 0 < self.below <= 1:
            raise ValueError(f"beyond must be >= 1 and below in (0, 1], got {self.beyond}, {self.below}")
        if self.target.at is None and self.target.parameter.split("[")[0] not in law.param_names:
            raise ValueError(f"target {self.target.parameter!r} is not a parameter of {law.name} "
                             f"({', '.join(law.param_names)}) nor loss@N")


@dataclass(frozen=True)
class Candidate:
    """A point the study could run next: a new n, or another seed at an n it has."""

    n: float
    seed: int
    kind: str  # "new n" or "another seed"

    def to_dict(self) -> dict[str, Any]:
        return {"n": int(self.n) if float(self.n).is_integer() else self.n, "seed": self.seed, "kind": self.kind}


@dataclass(frozen=True)
class ScoredCandidate:
    candidate: Candidate
    cost: float
    width_after: float  # the target's width if this point were added (Fisher / delta method)
    score: float  # (width now - width after) / cost

    def to_dict(self) -> dict[str, Any]:
        return {**self.candidate.to_dict(), "cost": self.cost, "width_after": _finite(self.width_after),
                "score": _finite(self.score)}


@dataclass(frozen=True)
class TargetInterval:
    """The target's estimate and delta-method interval (the widest curve for a per-curve target)."""

    label: str
    estimate: float
    low: float
    high: float
    width: float
    per_curve: dict[str, tuple[float, float, float]]  # curve -> (estimate, low, high)


@dataclass(frozen=True)
class Decision:
    """One round: the fit, the target's interval, every candidate's score and the chosen batch."""

    fit: FitResult
    interval: TargetInterval
    candidates: list[ScoredCandidate]  # scored against the current design, before any choice of this round
    chosen: list[Candidate]
    predicted_width: float  # after the chosen batch, by the same approximation
    stop: str | None = None  # why no batch: "target", "budget", "no gain" (None when one was chosen)

    def to_dict(self) -> dict[str, Any]:
        fit = self.fit
        return {
            "estimate": _finite(self.interval.estimate),
            "interval": [_finite(self.interval.low), _finite(self.interval.high)],
            "width": _finite(self.interval.width),
            "per_curve": {k: [_finite(v) for v in vals] for k, vals in self.interval.per_curve.items()},
            "params": {k: _finite(v) for k, v in fit.params.items()},
            "converged": fit.converged,
            "points": fit.n_points,
            "candidates": [c.to_dict() for c in self.candidates],
            "chosen": [c.to_dict() for c in self.chosen],
            "predicted_width": _finite(self.predicted_width),
            "stop": self.stop,
        }


def fit_observations(data: Observations, spec: DesignSpec) -> FitResult:
    """The grouped fit the design reasons about: shared parameters across curves, no bootstrap."""
    grouped = data.curve is not None and len(set(data.curve.tolist())) > 1
    return fit_law(data.n, data.loss, spec.law, groups=list(data.curve) if grouped else None,
                   shared=spec.shared if grouped else (), space=spec.space, bounds=spec.bounds, fix=spec.fix,
                   target_range=spec.target_range, level=spec.level)


class _Linearised:
    """The fit's problem, linearised at the estimate: Jacobian rows for any n on any curve and target gradients."""

    def __init__(self, fit: FitResult, spec: DesignSpec) -> None:
        if fit.problem is None or fit.theta is None:
            raise ValueError("the fit carries no problem (rebuilt from JSON?); refit with fit_observations")
        self.fit, self.spec = fit, spec
        self.problem: FitProblem = fit.problem
        self.theta = np.asarray(fit.theta, dtype=float)
        self.groups: tuple[str | None, ...] = self.problem.group_names or (None,)
        dof = self.problem.n_points - self.problem.n_free
        if dof < 1:
            raise InputError(f"{self.problem.n_points} points for {self.problem.n_free} free parameters leave no "
                             f"residual degrees of freedom: start the design with more points")
        residuals = self.problem.residuals(self.theta)
        self.sigma2 = max(float(np.sum(residuals**2)) / dof, 1e-300)
        self.quantile = float(stats.t.ppf(0.5 + spec.level / 2.0, dof))
        jacobian = self._jacobian(lambda theta: self.problem.residuals(theta))
        self.information = jacobian.T @ jacobian / self.sigma2

    def _steps(self) -> np.ndarray:
        return _FD_STEP * np.maximum(np.abs(self.theta), 1e-8)

    def _jacobian(self, fn) -> np.ndarray:
        """d fn / d theta by central differences, kept inside the bounds (one-sided at a bound)."""
        steps, columns = self._steps(), []
        lower, upper = self.problem.lower, self.problem.upper
        for j, step in enumerate(steps):
            up, down = self.theta.copy(), self.theta.copy()
            up[j] = min(self.theta[j] + step, upper[j])
            down[j] = max(self.theta[j] - step, lower[j])
            with np.errstate(all="ignore"):
                columns.append((np.asarray(fn(up), float) - np.asarray(fn(down), float)) / (up[j] - down[j]))
        return np.nan_to_num(np.stack(columns, axis=-1), nan=0.0, posinf=0.0, neginf=0.0)

    def _params_of(self, theta: np.ndarray, group: str | None) -> dict[str, Any]:
        values = {}
        for name in self.problem.law.param_names:
            if name in self.problem.fixed:
                values[name] = self.problem.fixed[name]
            else:
                key = name if group is None or name in self.problem.shared else group_label(name, group)
                values[name] = theta[self.problem.free_names.index(key)]
        return values

    def _curve_value(self, theta: np.ndarray, n: float, group: str | None) -> float:
        xs = {self.problem.law.independent_vars[0]: np.asarray([float(n)])}
        return float(self.problem.law.evaluate(xs, self._params_of(theta, group))[0])

    def rows(self, n: float) -> np.ndarray:
        """Fit-space Jacobian rows of one new point at n on every curve: (curves, free parameters)."""
        def values(theta: np.ndarray) -> np.ndarray:
            return self.problem.transform(np.array([self._curve_value(theta, n, g) for g in self.groups]))

        return self._jacobian(values)

    def gradients(self) -> dict[str, np.ndarray]:
        """The target's gradient per curve it concerns (one entry for a shared parameter)."""
        target = self.spec.target
        if target.at is not None:
            return {str(g): self._jacobian(lambda th, g=g: np.array([self._curve_value(th, target.at, g)]))[0]
                    for g in self.groups}
        names = self.problem.free_names
        if target.parameter in names:
            keys = {target.parameter: target.parameter}
        else:
            keys = {g: group_label(target.parameter, g) for g in self.groups if g is not None}
            keys = {g: k for g, k in keys.items() if k in names}
            if not keys:
                raise ValueError(f"target {target.parameter!r} is fixed or unknown; free parameters: {list(names)}")
        gradients = {}
        for curve, key in keys.items():
            gradient = np.zeros(len(names))
            gradient[names.index(key)] = 1.0
            gradients[str(curve)] = gradient
        return gradients

    def target_value(self, curve: str) -> float:
        target = self.spec.target
        if target.at is not None:
            group = None if curve == "None" else curve
            return self._curve_value(self.theta, target.at, group)
        names = self.problem.free_names
        key = target.parameter if target.parameter in names else group_label(target.parameter, curve)
        return float(self.theta[names.index(key)])

    def width(self, information: np.ndarray, gradients: Mapping[str, np.ndarray]) -> float:
        """The widest curve's 2 t sqrt(g^T I^-1 g)."""
        covariance = covariance_of(information)
        variances = [max(float(g @ covariance @ g), 0.0) for g in gradients.values()]
        return 2.0 * self.quantile * math.sqrt(max(variances))


_RIDGE = 1e-9  # relative to each parameter's own information: an unidentified direction gets a huge variance


def covariance_of(information: np.ndarray) -> np.ndarray:
    """The inverse of the Fisher information with a vanishing ridge: a direction the data do not determine (D at
    0 leaves alpha free) gets an enormous variance, not the zero a pseudo-inverse would give it."""
    diagonal = np.diag(information).copy()
    scale = np.where(diagonal > 0, diagonal, max(float(diagonal.max(initial=0.0)), 1.0))
    return np.linalg.inv(information + np.diag(_RIDGE * scale))


def delta_interval(fit: FitResult, spec: DesignSpec) -> TargetInterval:
    """The target's estimate and delta-method interval: estimate -+ t_{m-k} sqrt(g^T sigma^2 (J^T J)^-1 g)."""
    lin = _Linearised(fit, spec)
    covariance = covariance_of(lin.information)
    per_curve = {}
    for curve, gradient in lin.gradients().items():
        value = lin.target_value(curve)
        half = lin.quantile * math.sqrt(max(float(gradient @ covariance @ gradient), 0.0))
        per_curve[curve] = (value, value - half, value + half)
    widest = max(per_curve, key=lambda c: per_curve[c][2] - per_curve[c][1])
    estimate, low, high = per_curve[widest]
    return TargetInterval(spec.target.label, estimate, low, high, high - low, per_curve)


def candidate_points(data: Observations, spec: DesignSpec, extra: Sequence[tuple[float, int]] = ()) -> list[Candidate]:
    """The log grid (``per_octave`` per doubling, from ``below`` x the smallest measured n to ``beyond`` x the
    largest, within n_min .. n_max) and every measured n; each with the smallest seed not yet used there
    (``extra``: (n, seed) pairs chosen earlier in this round count as used)."""
    used: dict[float, set[int]] = {}
    for n, seed in list(data.units) + list(extra):
        used.setdefault(float(n), set()).add(int(seed))
    measured = sorted(used)
    low, high = measured[0] * spec.below, measured[-1] * spec.beyond
    if spec.n_min is not None:
        low = max(low, spec.n_min)
    if spec.n_max is not None:
        high = min(high, spec.n_max)
    octaves = math.log2(high / low) if high > low else 0.0
    steps = int(math.floor(octaves * spec.per_octave + 1e-9))
    grid = {float(round(low * 2.0 ** (i / spec.per_octave))) for i in range(steps + 1)}
    values = sorted(set(measured) | {g for g in grid if all(abs(g - m) > 0.02 * m for m in measured)})
    candidates = []
    for n in values:
        if (spec.n_min is not None and n < spec.n_min) or (spec.n_max is not None and n > spec.n_max):
            continue
        seeds = used.get(n, set())
        seed = next(s for s in range(len(seeds) + 1) if s not in seeds)
        candidates.append(Candidate(n=n, seed=seed, kind="another seed" if n in measured else "new n"))
    return candidates


def plan_round(data: Observations, spec: DesignSpec, *, target_width: float | None = None,
               budget_left: float = math.inf, fit: FitResult | None = None) -> Decision:
    """Fit, measure the target's width, score every candidate and choose a batch greedily (see the module doc).

    Stops (no batch, ``stop`` says why) when the width is at most ``target_width``, when no candidate fits in
    ``budget_left`` (in the cost model's units), or when no candidate narrows the interval."""
    fit = fit if fit is not None else fit_observations(data, spec)
    interval = delta_interval(fit, spec)
    lin = _Linearised(fit, spec)
    gradients = lin.gradients()
    information = lin.information.copy()
    width_now = lin.width(information, gradients)
    rows_at: dict[float, np.ndarray] = {}

    def scored(candidates: list[Candidate], info: np.ndarray, width: float) -> list[ScoredCandidate]:
        out = []
        for candidate in candidates:
            rows = rows_at.setdefault(candidate.n, lin.rows(candidate.n))
            after = lin.width(info + rows.T @ rows / lin.sigma2, gradients)
            cost = spec.cost(candidate.n)
            out.append(ScoredCandidate(candidate, cost, after, (width - after) / cost))
        return out

    first = scored(candidate_points(data, spec), information, width_now)
    if target_width is not None and interval.width <= target_width:
        return Decision(fit, interval, first, [], width_now, stop="target")
    chosen: list[Candidate] = []
    spent, width, options = 0.0, width_now, first
    for _ in range(spec.batch):
        affordable = [s for s in options if s.cost <= budget_left - spent + 1e-12 and s.score > 0]
        if not affordable:
            break
        best = max(affordable, key=lambda s: (s.score, -s.candidate.n))
        chosen.append(best.candidate)
        spent += best.cost
        rows = rows_at[best.candidate.n]
        information = information + rows.T @ rows / lin.sigma2
        width = best.width_after
        options = scored(candidate_points(data, spec, [(c.n, c.seed) for c in chosen]), information, width)
    stop = None
    if not chosen:
        stop = "budget" if not any(s.cost <= budget_left + 1e-12 for s in first) else "no gain"
    return Decision(fit, interval, first, chosen, width, stop=stop)


def plot_rounds(rounds: Sequence[Mapping[str, Any]], *, target_width: float | None = None, title: str = "",
                axes: Sequence[Any] | None = None):
    """The figure of one adaptive run from its logged rounds (``Decision.to_dict`` plus ``round``, ``spent`` and
    ``units``: the (n, seed) pairs measured when it was made): left, the target's width against the cost spent
    (dots: measured, crosses: predicted after the batch); right, where the points went (n by round). ``axes``:
    draw into these two instead of a new figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, NullFormatter

    if axes is None:
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    else:
        left, right = axes
        figure = left.figure
    spent = [r["spent"] for r in rounds]
    widths = [r["width"] if r["width"] is not None else math.nan for r in rounds]
    left.plot(spent, widths, "o-", color="C0", label="measured width (delta method)")
    for r, nxt in zip(rounds, rounds[1:]):
        if r.get("predicted_width") is not None and r["chosen"]:
            left.plot([nxt["spent"]], [r["predicted_width"]], "x", color="C1")
    left.plot([], [], "x", color="C1", label="predicted after the batch (Fisher)")
    if target_width is not None:
        left.axhline(target_width, color="0.4", ls="--", lw=1, label="target width")
    left.set_xlabel("cost spent")
    left.set_ylabel(f"width of the {rounds[0].get('target', 'target')} interval" if rounds else "width")
    if any(w > 0 for w in widths):
        left.set_yscale("log")
    left.legend(fontsize=7, frameon=False)
    for r in rounds:
        measured = {tuple(u) for u in r.get("units", [])}
        if r is rounds[0]:
            right.scatter([u[0] for u in measured], [r["round"]] * len(measured), color="0.5", s=18,
                          label="measured at the start")
        chosen = r["chosen"]
        right.scatter([c["n"] for c in chosen], [r["round"] + 1] * len(chosen), color="C3", s=24, marker="D",
                      label="chosen" if r is rounds[0] else None)
    right.set_xscale("log")
    right.xaxis.set_minor_formatter(NullFormatter())  # a log axis within a decade labels every minor tick
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xlabel("n")
    right.set_ylabel("round")
    right.legend(fontsize=7, frameon=False)
    if title:
        figure.suptitle(title, fontsize=9)
    if axes is None:
        figure.tight_layout()
    return figure


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
