r"""A controlled synthetic-to-real transfer experiment whose exponents and bound are known exactly.

Setting (linear regression with power-law spectra)
--------------------------------------------------
Features x ~ N(0, diag(lambda_i)), lambda_i = i^-a, i = 1..d. In whitened coordinates
(v_i = sqrt(lambda_i) w_i) only the energy per eigen-direction matters:

* source (synthetic) task  y = <w_S, x>, energy p_i = lambda_i w_S,i^2 = i^-b on odd i;
* target (real) task       y = <w_T, x>, w_T = w_S + Delta, with the discrepancy Delta of energy
  q_i = g i^-c on even i. Supports are disjoint, so energies add and the task distance is
  ||w_T - w_S||^2_Sigma = sum_i q_i (``TransferSetting.task_distance``). Labels may carry noise sigma.

Procedure: pre-train by least squares on the top m = rho_n n eigen-directions of n source samples;
fine-tune by fitting the residual of s target samples on the top k = rho_s s directions
(w = w_pre + correction). Both are projection estimators, the simplest learners whose rates follow
the spectrum.

Exact expected risk
-------------------
For a Gaussian design, directions left out of a least-squares fit act as independent noise, and
the estimation error on the m fitted directions (whitened) is N(0, tau^2 W^-1) with
W ~ Wishart(n, I_m), E[W^-1] = I / (n - m - 1). Write S(j) = sum_{i>j} p_i, Q(j) = sum_{i>j} q_i.

* pre-training: tau_S^2 = sigma^2 + S(m); each fitted direction keeps error energy tau_S^2 / (n - m - 1).
* the error entering fine-tuning beyond its k directions, T = sum_{i>k} (w_T - w_pre)_i^2, has
  E T = Q(k) + S(max(k, m)) + (m - k)^+ tau_S^2 / (n - m - 1);
* fine-tuning: tau_T^2 = sigma^2 + T, and E[risk | T] = T + tau_T^2 k / (s - k - 1). Hence

      E L(n, s) = E T (1 + k / (s - k - 1)) + sigma^2 k / (s - k - 1).        (exact)

Exponents (sigma = 0)
---------------------
With m = rho_n n >> k: S(m) ~ m^(1-b) / (2 (b - 1)) and (m - k) / (n - m - 1) -> rho_n / (1 - rho_n), so

      E L(n, s) ~ [ C(s) + D n^-alpha ],  alpha = b - 1,
      C(s) = Q(k) (1 + k / (s - k - 1)) ~ g (rho_s s)^(1-c) / (2 (c - 1) (1 - rho_s)),  beta = c - 1,

i.e. the paper's L(n) = D n^-alpha + C at fixed s, with the transfer gap C set by the task
distance left unresolved by s real samples and decaying as s^-beta. When k >= m (fine-tuning
re-fits every direction pre-training learned) E T no longer depends on n: the benefit of
pre-training vanishes as s grows, which the additive joint law can express and the
multiplicative one cannot. With sigma > 0 both stages keep a noise floor sigma^2 rho / (1 - rho).

Bound
-----
For a decreasing f on a support of step 2 starting at i0 > j, sum_{i>j} f(i) <= f(i0) +
(1/2) int_{i0}^inf f, since f(i) <= (1/2) int_{i-2}^{i} f. Replacing S and Q by these closed forms
(also valid for finite d) gives B(n, s) >= E L(n, s):

      B(n, s) = [ Qb(k) + Sb(max(k, m)) + (m - k)^+ (sigma^2 + Sb(m)) / (n - m - 1) ] (1 + k / (s - k - 1))
                + sigma^2 k / (s - k - 1),

the paper's structure: a discrepancy term (gamma, fixed by the task distance), a pre-training
term decaying as n^-alpha, and a fine-tuning factor in s. Mean empirical curves must stay under B
(up to Monte-Carlo error), and fits of them must recover alpha, beta and C(s).

Simulation
----------
Instead of materialising X, the sufficient statistics are drawn exactly: the Wishart factor by
Bartlett's decomposition, the estimation error as tau A^-T z. ``simulate_explicit_design``
runs the same procedure with real design matrices (small sizes) to check that sampler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.linalg import solve_triangular
from scipy.special import zeta

from analysis.fit import FitResult, fit_law


@dataclass(frozen=True)
class TransferSetting:
    """Spectral exponents, task distance and learner sizes of the simulated transfer experiment."""

    source_decay: float = 1.8
    discrepancy_decay: float = 1.6
    discrepancy_scale: float = 0.05
    spectrum_decay: float = 1.5
    pretrain_feature_ratio: float = 1.0 / 64.0
    finetune_feature_ratio: float = 1.0 / 8.0
    label_noise: float = 0.0
    dimension: int | None = None

    def __post_init__(self) -> None:
        if self.source_decay <= 1 or self.discrepancy_decay <= 1:
            raise ValueError("energy decays b and c must exceed 1 for finite signal energy")
        if not (0 < self.pretrain_feature_ratio < 1 and 0 < self.finetune_feature_ratio < 1):
            raise ValueError("feature ratios must lie in (0, 1)")

    @property
    def alpha(self) -> float:
        """Pre-training exponent b - 1 (noiseless labels)."""
        return self.source_decay - 1.0

    @property
    def beta(self) -> float:
        """Rate at which the transfer gap shrinks with real samples: c - 1."""
        return self.discrepancy_decay - 1.0

    def source_energy(self, count: int) -> np.ndarray:
        """p_i for i = 1..count (zero on even i)."""
        i = np.arange(1, count + 1, dtype=float)
        return np.where(i % 2 == 1, i ** (-self.source_decay), 0.0)

    def discrepancy_energy(self, count: int) -> np.ndarray:
        """q_i for i = 1..count (zero on odd i)."""
        i = np.arange(1, count + 1, dtype=float)
        return np.where(i % 2 == 0, self.discrepancy_scale * i ** (-self.discrepancy_decay), 0.0)

    def source_tail(self, j: int) -> float:
        """S(j) = sum_{i > j} p_i, exact (Hurwitz zeta), truncated at ``dimension`` when finite."""
        return self._truncated(lambda start: _parity_tail(1.0, self.source_decay, start, parity=1), j)

    def discrepancy_tail(self, j: int) -> float:
        """Q(j) = sum_{i > j} q_i."""
        return self._truncated(
            lambda start: _parity_tail(self.discrepancy_scale, self.discrepancy_decay, start, parity=0), j
        )

    @property
    def task_distance(self) -> float:
        """||w_T - w_S|| in the feature covariance norm."""
        return float(math.sqrt(self.discrepancy_tail(0)))

    def pretrain_features(self, n: float) -> int:
        """m = rho_n n directions fitted in pre-training (0 for n = inf: the source model is exact)."""
        return 0 if math.isinf(n) else max(1, int(self.pretrain_feature_ratio * n))

    def finetune_features(self, s: float) -> int:
        return max(1, int(self.finetune_feature_ratio * s))

    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(w_S, w_T) in the original coordinates of a finite ``dimension`` (for the explicit-design check)."""
        if self.dimension is None:
            raise ValueError("explicit weights need a finite dimension")
        variances = np.arange(1, self.dimension + 1, dtype=float) ** (-self.spectrum_decay)
        source = np.sqrt(self.source_energy(self.dimension) / variances)
        return source, source + np.sqrt(self.discrepancy_energy(self.dimension) / variances)

    def _truncated(self, tail_from, j: int) -> float:
        if self.dimension is None:
            return tail_from(j)
        return tail_from(min(j, self.dimension)) - tail_from(self.dimension)


def _parity_tail(scale: float, decay: float, j: int, parity: int) -> float:
    """scale * sum over i > j with i % 2 == parity of i^-decay: 2^-decay zeta(decay, first / 2)."""
    first = j + 1 if (j + 1) % 2 == parity else j + 2
    return float(scale * 2.0 ** (-decay) * zeta(decay, first / 2.0))


def _tail_bound(scale: float, decay: float, j: int, parity: int) -> float:
    """Closed-form upper bound on scale * sum over i > j with i % 2 == parity of i^-decay."""
    first = j + 1 if (j + 1) % 2 == parity else j + 2
    return scale * (first ** (-decay) + first ** (1.0 - decay) / (2.0 * (decay - 1.0)))


def _check_sizes(setting: TransferSetting, n: float, s: float) -> tuple[int, int]:
    m, k = setting.pretrain_features(n), setting.finetune_features(s)
    if not math.isinf(n) and n - m - 1 <= 0:
        raise ValueError(f"n = {n:g} is too small for {m} pre-training directions")
    if s - k - 1 <= 0:
        raise ValueError(f"s = {s:g} is too small for {k} fine-tuning directions")
    if setting.dimension is not None and max(m, k) >= setting.dimension:
        raise ValueError(f"dimension {setting.dimension} must exceed the fitted directions ({m}, {k})")
    return m, k


def expected_risk(setting: TransferSetting, n: float, s: float) -> float:
    """Exact E L(n, s) over pre-training and fine-tuning data (n = inf: the exact source model)."""
    m, k = _check_sizes(setting, n, s)
    sigma2 = setting.label_noise**2
    if math.isinf(n):
        tail = setting.discrepancy_tail(k)
    else:
        pretrain_noise = (sigma2 + setting.source_tail(m)) / (n - m - 1)
        tail = setting.discrepancy_tail(k) + setting.source_tail(max(k, m)) + max(m - k, 0) * pretrain_noise
    return tail * (1 + k / (s - k - 1)) + sigma2 * k / (s - k - 1)


def predicted_gap(setting: TransferSetting, s: float) -> float:
    """lim_{n -> inf} E L(n, s): what fitted C should converge to at this s."""
    k = setting.finetune_features(s)
    sigma2 = setting.label_noise**2
    rho = setting.pretrain_feature_ratio
    tail = setting.discrepancy_tail(k) + sigma2 * rho / (1 - rho)
    return tail * (1 + k / (s - k - 1)) + sigma2 * k / (s - k - 1)


def risk_bound(setting: TransferSetting, n: float, s: float) -> float:
    """Closed-form B(n, s) >= E L(n, s) (see the module docstring)."""
    m, k = _check_sizes(setting, n, s)
    sigma2 = setting.label_noise**2
    b, c, g = setting.source_decay, setting.discrepancy_decay, setting.discrepancy_scale
    tail = _tail_bound(g, c, k, parity=0)
    if not math.isinf(n):
        tail += _tail_bound(1.0, b, max(k, m), parity=1)
        tail += max(m - k, 0) * (sigma2 + _tail_bound(1.0, b, m, parity=1)) / (n - m - 1)
    return tail * (1 + k / (s - k - 1)) + sigma2 * k / (s - k - 1)


def _bartlett_inverse_transpose_times_normal(rng: np.random.Generator, dof: float, size: int) -> np.ndarray:
    """A^-T z with A the Bartlett factor of Wishart(dof, I_size): an exact N(0, W^-1) draw."""
    factor = np.tril(rng.standard_normal((size, size)), k=-1)
    factor[np.diag_indices(size)] = np.sqrt(rng.chisquare(dof - np.arange(size)))
    return solve_triangular(factor, rng.standard_normal(size), trans="T", lower=True)


def _simulate_one(
    setting: TransferSetting, rng: np.random.Generator, n: float, s_values: Sequence[float]
) -> list[float]:
    """Pre-train once on n source samples, fine-tune on each s: realised risks.

    Directions up to J = max(m, k) are tracked one by one; beyond J nothing was fitted, so
    their error energy is the exact tail S(J) + Q(J).
    """
    sigma2 = setting.label_noise**2
    finetune = [setting.finetune_features(s) for s in s_values]
    tracked = max(finetune + ([] if math.isinf(n) else [setting.pretrain_features(n)]))
    q = setting.discrepancy_energy(tracked)
    direction_error = q.copy()
    remainder = setting.discrepancy_tail(tracked)
    if not math.isinf(n):
        m = setting.pretrain_features(n)
        p = setting.source_energy(tracked)
        noise = math.sqrt(sigma2 + setting.source_tail(m)) * _bartlett_inverse_transpose_times_normal(rng, n, m)
        direction_error[:m] = (np.sqrt(q[:m]) - noise) ** 2
        direction_error[m:] += p[m:]
        remainder += setting.source_tail(tracked)
    tails = np.concatenate([np.cumsum(direction_error[::-1])[::-1], [0.0]]) + remainder
    risks = []
    for s, k in zip(s_values, finetune):
        tail = float(tails[k])
        correction = _bartlett_inverse_transpose_times_normal(rng, s, k)
        risks.append(tail + (sigma2 + tail) * float(correction @ correction))
    return risks


@dataclass(frozen=True)
class TransferSimulation:
    """Realised risks per (n, s, replicate), with the exact expectation and the bound per (n, s)."""

    setting: TransferSetting
    n: np.ndarray
    s: np.ndarray
    replicate: np.ndarray
    risk: np.ndarray
    expected: np.ndarray
    bound: np.ndarray

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            {
                "n": self.n,
                "s": self.s,
                "seed": self.replicate,
                "error": self.risk,
                "expected": self.expected,
                "bound": self.bound,
            }
        )

    def mean_curve(self) -> Any:
        """Mean risk, its standard error, expectation and bound per (n, s)."""
        frame = self.to_frame()
        grouped = frame.groupby(["n", "s"], as_index=False)
        summary = grouped.agg(
            mean=("error", "mean"), std=("error", "std"), count=("error", "size"),
            expected=("expected", "first"), bound=("bound", "first"),
        )
        summary["stderr"] = summary["std"] / np.sqrt(summary["count"])
        return summary


def simulate_transfer(
    setting: TransferSetting = TransferSetting(),
    *,
    n_values: Sequence[float] = tuple(2048 * 2**j for j in range(6)),
    s_values: Sequence[float] = (64, 128, 256),
    gap_s_values: Sequence[float] = (1024, 2048, 4096, 8192, 16384),
    replicates: int = 12,
    seed: int = 0,
) -> TransferSimulation:
    """Run the two-stage experiment over n x s, plus exact-source (n = inf) runs at ``gap_s_values``.

    The n = inf runs measure the transfer gap directly, over a wider range of s than the n
    sweep needs, so the fine-tuning exponent beta can be fitted far from small-k effects.
    """
    rng = np.random.default_rng(seed)
    rows: list[tuple[float, float, int, float]] = []
    plan = [(float(n), [float(v) for v in s_values]) for n in n_values]
    if gap_s_values:
        plan.append((math.inf, [float(v) for v in gap_s_values]))
    for replicate in range(replicates):
        for n, s_list in plan:
            for s, risk in zip(s_list, _simulate_one(setting, rng, n, s_list)):
                rows.append((n, s, replicate, risk))
    n_col, s_col, rep_col, risk_col = (np.array(c) for c in zip(*rows))
    pairs = {(n, s): (expected_risk(setting, n, s), risk_bound(setting, n, s)) for n, s in zip(n_col, s_col)}
    return TransferSimulation(
        setting=setting,
        n=n_col,
        s=s_col,
        replicate=rep_col.astype(int),
        risk=risk_col,
        expected=np.array([pairs[(n, s)][0] for n, s in zip(n_col, s_col)]),
        bound=np.array([pairs[(n, s)][1] for n, s in zip(n_col, s_col)]),
    )


def simulate_explicit_design(
    setting: TransferSetting, *, n: int, s: int, replicates: int, seed: int = 0
) -> np.ndarray:
    """The same procedure with real Gaussian design matrices (small d): realised risks per replicate."""
    rng = np.random.default_rng(seed)
    source, target = setting.weights()
    scale = np.sqrt(np.arange(1, source.size + 1, dtype=float) ** (-setting.spectrum_decay))
    m, k = setting.pretrain_features(n), setting.finetune_features(s)
    risks = np.empty(replicates)
    for r in range(replicates):
        x_pre = rng.standard_normal((n, source.size)) * scale
        y_pre = x_pre @ source + setting.label_noise * rng.standard_normal(n)
        weights = np.zeros(source.size)
        weights[:m] = np.linalg.lstsq(x_pre[:, :m], y_pre, rcond=None)[0]
        x_ft = rng.standard_normal((s, source.size)) * scale
        y_ft = x_ft @ target + setting.label_noise * rng.standard_normal(s)
        weights[:k] += np.linalg.lstsq(x_ft[:, :k], y_ft - x_ft @ weights, rcond=None)[0]
        risks[r] = float(np.sum((scale * (target - weights)) ** 2))
    return risks


@dataclass(frozen=True)
class TheoryCheck:
    """Fitted exponents and gaps next to the theory's, and whether the bound held."""

    setting: TransferSetting
    per_s_fits: dict[float, FitResult]
    gap_theory: dict[float, float]
    beta_fit: FitResult | None
    bound_violations: int
    worst_bound_ratio: float
    level: float
    notes: tuple[str, ...] = field(default=())

    @property
    def alpha_within_intervals(self) -> bool:
        return all(_inside(self.setting.alpha, fit.intervals["alpha"]) for fit in self.per_s_fits.values())

    @property
    def gap_within_intervals(self) -> bool:
        return all(_inside(self.gap_theory[s], fit.intervals["C"]) for s, fit in self.per_s_fits.items())

    @property
    def beta_within_interval(self) -> bool:
        return self.beta_fit is not None and _inside(self.setting.beta, self.beta_fit.intervals["alpha"])

    def report(self) -> str:
        level = f"{self.level:.0%}"
        lines = [
            "[[theory check]] projection-estimator transfer with power-law spectra",
            f"  theory: alpha = b - 1 = {self.setting.alpha:.3g}, beta = c - 1 = {self.setting.beta:.3g}, "
            f"task distance {self.setting.task_distance:.3g}",
            f"  bound: {self.bound_violations} (n, s) cells with mean - 3 se above B; worst mean / B = "
            f"{self.worst_bound_ratio:.3f}",
            f"  {'s':>6} {'alpha fit':>10} {level + ' interval':>22} {'C fit':>10} {'C theory':>10} {level + ' interval':>22}",
        ]
        for s, fit in self.per_s_fits.items():
            a_lo, a_hi = fit.intervals["alpha"]
            c_lo, c_hi = fit.intervals["C"]
            lines.append(
                f"  {s:>6g} {fit.params['alpha']:>10.4f} {f'[{a_lo:.4f}, {a_hi:.4f}]':>22} "
                f"{fit.params['C']:>10.4g} {self.gap_theory[s]:>10.4g} {f'[{c_lo:.4g}, {c_hi:.4g}]':>22}"
            )
        if self.beta_fit is not None:
            lo, hi = self.beta_fit.intervals["alpha"]
            lines.append(f"  beta fit (gap vs s at n = inf): {self.beta_fit.params['alpha']:.4f} [{lo:.4f}, {hi:.4f}]")
        lines.append(
            f"  agree: alpha {self.alpha_within_intervals}, C {self.gap_within_intervals}, beta {self.beta_within_interval}"
        )
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def check_theory(
    simulation: TransferSimulation, *, bootstrap: int = 1000, level: float = 0.95, seed: int = 0
) -> TheoryCheck:
    """Fit power_floor over n at each s (finite n) and a power law of the n = inf gap over s.

    The alpha and C fits must contain b - 1 and C(s); the fitted exponent of the gap must contain c - 1.
    """
    setting = simulation.setting
    finite = np.isfinite(simulation.n)
    per_s: dict[float, FitResult] = {}
    gaps: dict[float, float] = {}
    for s in sorted(set(simulation.s[finite].tolist())):
        rows = finite & (simulation.s == s)
        per_s[s] = fit_law(
            simulation.n[rows],
            simulation.risk[rows],
            "power_floor",
            bounds={"alpha": (0.05, 3.0)},
            target_range=None,
            bootstrap=bootstrap,
            seed=seed,
            level=level,
        )
        gaps[s] = predicted_gap(setting, s)
    beta_fit = None
    infinite = ~finite
    if infinite.any() and len(set(simulation.s[infinite].tolist())) >= 3:
        beta_fit = fit_law(
            simulation.s[infinite],
            simulation.risk[infinite],
            "power_floor",
            fix={"C": 0.0},
            bounds={"alpha": (0.05, 3.0)},
            space="log",
            target_range=None,
            bootstrap=bootstrap,
            seed=seed,
            level=level,
        )
    summary = simulation.mean_curve()
    summary = summary[np.isfinite(summary["n"])]
    violations = int(np.sum(summary["mean"] - 3 * summary["stderr"].fillna(0) > summary["bound"]))
    worst = float(np.max(summary["mean"] / summary["bound"])) if len(summary) else math.nan
    return TheoryCheck(
        setting=setting,
        per_s_fits=per_s,
        gap_theory=gaps,
        beta_fit=beta_fit,
        bound_violations=violations,
        worst_bound_ratio=worst,
        level=level,
    )


def plot_theory(simulation: TransferSimulation, check: TheoryCheck | None = None):
    """Left: risk vs n per s (replicates, mean, exact expectation, bound, fit). Right: gap vs s."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import NullFormatter

    summary = simulation.mean_curve()
    finite = summary[np.isfinite(summary["n"])]
    s_values = sorted(finite["s"].unique())
    palette = dict(zip(s_values, sns.color_palette("colorblind", len(s_values))))
    with sns.axes_style("whitegrid"):
        figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for s in s_values:
        part = finite[finite["s"] == s].sort_values("n")
        color = palette[s]
        rows = np.isfinite(simulation.n) & (simulation.s == s)
        left.scatter(simulation.n[rows], simulation.risk[rows], color=color, s=8, alpha=0.35)
        left.plot(part["n"], part["expected"], color=color, lw=1.5, label=f"s={s:g}: exact E L")
        left.plot(part["n"], part["bound"], color=color, lw=1.2, ls="--")
        if check is not None and s in check.per_s_fits:
            grid = np.geomspace(part["n"].min(), part["n"].max(), 100)
            left.plot(grid, check.per_s_fits[s].predict(grid), color=color, lw=1, ls=":")
            left.axhline(check.gap_theory[s], color=color, lw=0.8, alpha=0.6)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("n (synthetic pre-training samples)")
    left.set_ylabel("target risk")
    left.set_title("risk vs n: replicates, E L (solid), bound (dashed), fit (dotted)", fontsize=9)
    left.legend(fontsize=7, frameon=False)
    s_grid = np.array(sorted(set(simulation.s.tolist())))
    gap_theory = [predicted_gap(simulation.setting, s) for s in s_grid]
    right.plot(s_grid, gap_theory, color="k", lw=1.5, label="theory C(s)")
    if check is not None:
        fitted = [(s, fit.params["C"]) for s, fit in check.per_s_fits.items()]
        right.scatter(*zip(*fitted), color="C3", zorder=3, label="fitted C")
        for s, fit in check.per_s_fits.items():
            lo, hi = fit.intervals["C"]
            right.plot([s, s], [lo, hi], color="C3", lw=1)
    infinite = ~np.isfinite(simulation.n)
    if infinite.any():
        right.scatter(simulation.s[infinite], simulation.risk[infinite], color="0.5", s=8, alpha=0.4, label="n = inf runs")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("s (real fine-tuning samples)")
    right.set_ylabel("transfer gap C")
    right.set_title(f"gap vs s: theory slope -beta = {-simulation.setting.beta:.2f}", fontsize=9)
    right.legend(fontsize=7, frameon=False)
    for ax in (left, right):
        ax.xaxis.set_minor_formatter(NullFormatter())
    figure.tight_layout()
    return figure


def _inside(value: float, interval: tuple[float, float]) -> bool:
    return interval[0] <= value <= interval[1]
