"""Scaling-law fitting with honest uncertainty, extrapolation checks and the theoretical bound.

Pure functions that return dataclasses with a text ``report()``; nothing here imports ``lab``,
``synth_render`` or ``experiments`` (they depend on us, never the reverse).

Laws (``analysis.laws``)
    ``LAWS`` registry, ``get_law(name)`` (unknown name -> ValueError listing valid ones),
    ``@register_law(bounds=..., guess=..., start_grid=..., independent_vars=..., target_range=...)``.
    Registered: ``power_floor`` D n^-alpha + C; ``joint_ns`` delta (gamma + n^-alpha) s^-beta;
    ``joint_additive`` C + E s^-beta + D n^-alpha s^-kappa; ``chinchilla`` E + A/N^alpha + B/D^beta;
    ``broken_power`` (one smooth break); ``m4`` (Alabdulmohsin et al. 2022).

Fitting (``analysis.fit``)
    ``fit_law(x, y, law="power_floor", *, fix=None, bounds=None, space="linear"|"log",
    loss="l2"|"huber", huber_delta=1e-3, weights=None, groups=None, shared=(), grid=None,
    n_starts=None, target_range="law", bootstrap=0, seed=None, resample="auto", level=0.95,
    conf_interval=False, row_labels=None, max_nfev=None, clusters=None) -> FitResult``.
    x is a 1-D array, or a mapping / DataFrame / (m, k) array for joint laws. ``groups`` gives
    one label per point for a global fit; parameters named in ``shared`` are common to all groups,
    the others are per group (``alpha[group]``). ``bootstrap(result, n_resamples, seed=...,
    resample="seeds"|"points"|"residuals"|"auto")`` adds percentile intervals afterwards. With
    ``clusters`` (the seed of each point) the ``seeds`` bootstrap redraws whole seeds. A scheme that can draw
    fewer than 5 distinct data sets (k seeds: C(2k - 1, k), 3 for 2 seeds; m points: C(2m - 1, m)) gives NaN
    intervals and the warning "bootstrap over 2 seeds has only 3 distinct resamples: no interval";
    ``BootstrapSummary.distinct_resamples`` / ``has_interval`` record it.
    ``FitResult``: law, params, stderr, fixed, intervals (name -> (lo, hi)), r2, aic, bic,
    n_points, converged, message, warnings, ``predict(x, group=None)``,
    ``predict_interval(x)``, ``law_params(group)``, ``report()``, ``to_dict()``.
    Bad input raises ``InputError`` (a ValueError) naming the offending rows. Non-convergence is
    never raised or hidden: ``converged`` is False, ``message`` says why, ``warnings`` and the
    report flag it (also bounds hit, flat optima, weakly determined parameters).

Plots (``analysis.plots``)
    ``plot_fit(result, x, y, ax=None, *, groups=None, residuals=None, band=True, x_axis=None,
    extend_to=None, title=None) -> Figure`` (residual panel by default on a new figure);
    ``plot_transfer_grid(table, x="n", y="error", row="pretrain_task", col="finetune_task",
    hue=None, law="power_floor", fit_options=None) -> TransferGrid`` (Figure 1 layout; n = 0 rows
    drawn as a dashed scratch baseline).

Extrapolation (``analysis.extrapolation``)
    ``evaluate_extrapolation(x, y, law, *, cut, x_axis=None, groups=None, **fit_options)
    -> ExtrapolationResult`` (mean/max absolute error and RMSLE = rms log(pred/obs) beyond the cut);
    ``compare_laws(x, y, laws, *, cut, **fit_options) -> LawComparison`` ranked by held-out RMSLE,
    with AIC/BIC of full-data fits alongside.

Paired statistics and verdicts (``analysis.paired``)
    ``paired_difference(before, after) -> PairedDifference`` (seed-paired mean, SE, t interval, p, verdict);
    ``verdict_from_gain(mean, se, df, expect_sign=1, significance=0.05)`` -> reproduced | opposite |
    not resolved; ``combine_verdicts(parts)`` adds partly for findings with several parts.

Questions (``analysis.questions``), each an ``Estimate`` (value, bootstrap interval, note)
    ``transfer_gap(result, group=None, at=None)`` (the limit n -> inf, C for power_floor);
    ``n_to_reach(result, target, group=None, at=None)`` (inf when the target is below the gap);
    ``real_sample_equivalent(result, n=, s=, n_reference=)`` for joint (n, s) laws.

Theory (``analysis.theory``; derivation in its docstring)
    ``TransferSetting`` (spectral exponents, task distance, learner sizes), ``expected_risk``,
    ``risk_bound``, ``predicted_gap``, ``simulate_transfer(setting, ...) -> TransferSimulation``,
    ``simulate_explicit_design``, ``check_theory(simulation) -> TheoryCheck``, ``plot_theory``.

Adaptive design (``analysis.design``)
    ``plan_round(Observations.of(n, seed, loss, curve), DesignSpec(law=, target=Target.parse("alpha" | "C" |
    "loss@1.28e6"), shared=("D",), cost=CostModel(...), batch=...), target_width=, budget_left=) -> Decision``:
    fits (grouped, shared D), scores candidate points (new n on a log grid inside and beyond the range, another seed
    at a measured n) by the Fisher / delta-method narrowing of the target's 95% interval per unit cost and picks a
    batch greedily; ``delta_interval``, ``candidate_points``, ``CostModel.from_durations``, ``plot_rounds``.

Golden data (``analysis.chinchilla``)
    ``load_chinchilla(path)``, ``fit_chinchilla(frame, **fit_options)``, ``REPLICATION_ESTIMATES``.

Command line (``analysis.cli``)
    ``add_fit_arguments(parser)`` and ``run_fit(args) -> int`` back ``lab fit FILE.csv --x n --y error
    [--group COLS] [--shared alpha] [--law ...] [--fix D=0.48] [--extrapolate-from X] [--out DIR]``
    (default output folder ./fits/<csv stem>/); ``python -m analysis.cli FILE.csv ...`` runs it standalone.
    ``fit_csv(fit_arguments(csv, **options)) -> FitRun`` is the same run from Python (what
    notebooks/fit_new_curves.ipynb calls); ``EXAMPLE_CSV`` is the bundled example curve. A table holding
    several curves (label columns that differ at the same x and seed) is refused, not pooled; under
    ``--extrapolate-from`` the reported fit is the one on x <= X.

The names above are imported on first use, so importing ``analysis.cli`` (``lab fit --help``) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module: resolved on first use, so `import analysis.cli` (what `lab fit --help` loads) does not pay for
# lmfit and scipy before a fit actually runs.
_EXPORTS = {
    "BootstrapSummary": "analysis.fit",
    "FitResult": "analysis.fit",
    "bootstrap": "analysis.fit",
    "fit_law": "analysis.fit",
    "LAWS": "analysis.laws",
    "Law": "analysis.laws",
    "get_law": "analysis.laws",
    "list_laws": "analysis.laws",
    "register_law": "analysis.laws",
    "InputError": "analysis.validation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
