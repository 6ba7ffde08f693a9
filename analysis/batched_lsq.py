"""Vectorised bounded Levenberg-Marquardt for many small least-squares problems at once.

Bootstrap refits and multi-start screening solve hundreds to thousands of tiny problems
(7-250 points, 2-6 parameters). Calling an optimiser per problem spends its time in Python
overhead, so this module advances every problem one damped Gauss-Newton step per numpy call.
Huber losses are handled by iteratively reweighted least squares; box bounds by clipping the
step and freezing coordinates whose gradient pushes against an active bound. The final answer
of a single fit still comes from lmfit; this solver only has to be right, not feature-complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

ResidualFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class BatchSolution:
    """Per-problem optimum, robust cost and whether the step criterion was met."""

    params: np.ndarray
    cost: np.ndarray
    converged: np.ndarray
    iterations: int


def robust_cost(residuals: np.ndarray, loss: str, huber_delta: float) -> np.ndarray:
    """0.5 sum r^2, or the Huber sum (quadratic within delta, linear beyond), per row."""
    if loss == "l2":
        return 0.5 * np.sum(residuals**2, axis=-1)
    magnitude = np.abs(residuals)
    quadratic = magnitude <= huber_delta
    per_point = np.where(quadratic, 0.5 * residuals**2, huber_delta * (magnitude - 0.5 * huber_delta))
    return np.sum(per_point, axis=-1)


def _irls_weights(residuals: np.ndarray, loss: str, huber_delta: float) -> np.ndarray:
    if loss == "l2":
        return np.ones_like(residuals)
    magnitude = np.abs(residuals)
    return np.where(magnitude <= huber_delta, 1.0, huber_delta / np.maximum(magnitude, 1e-300))


def _safe_cost(residuals: np.ndarray, loss: str, huber_delta: float) -> np.ndarray:
    cost = robust_cost(residuals, loss, huber_delta)
    return np.where(np.isfinite(cost), cost, np.inf)


def solve_batched(
    residual_fn: ResidualFn,
    start: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    loss: str = "l2",
    huber_delta: float = 1e-3,
    max_iter: int = 200,
    ftol: float = 1e-12,
    prune_every: int | None = None,
    min_keep: int = 8,
) -> BatchSolution:
    """Minimise the cost of ``residual_fn(theta[rows], rows)`` for every row of ``start``.

    ``residual_fn`` receives a (b, k) parameter block and the (b,) row ids it belongs to and
    returns (b, m) residuals. With ``prune_every`` the worse half of the still-running rows is
    abandoned every that many iterations (successive halving for multi-start screening);
    abandoned rows report converged=False.
    """
    params = np.clip(np.array(start, dtype=float), lower, upper)
    n_rows, n_params = params.shape
    all_rows = np.arange(n_rows)
    residuals = residual_fn(params, all_rows)
    cost = _safe_cost(residuals, loss, huber_delta)
    damping = np.full(n_rows, 1e-3)
    converged = np.zeros(n_rows, dtype=bool)
    running = np.isfinite(cost)
    span = np.where(np.isfinite(upper - lower), upper - lower, np.inf)
    iteration = 0
    for iteration in range(1, max_iter + 1):
        rows = np.flatnonzero(running)
        if rows.size == 0:
            break
        p = params[rows]
        r = residuals[rows]
        step = 1e-7 * np.maximum(np.abs(p), 1e-6)
        step = np.minimum(step, 0.5 * span)
        backwards = p + step > upper
        signed_step = np.where(backwards, -step, step)
        probes = np.repeat(p[:, None, :], n_params, axis=1)
        probes[:, np.arange(n_params), np.arange(n_params)] += signed_step
        probe_residuals = residual_fn(probes.reshape(-1, n_params), np.repeat(rows, n_params))
        probe_residuals = probe_residuals.reshape(rows.size, n_params, -1)
        jacobian = (probe_residuals - r[:, None, :]) / signed_step[:, :, None]
        jacobian = np.where(np.isfinite(jacobian), jacobian, 0.0)
        weights = _irls_weights(r, loss, huber_delta)
        hessian = np.einsum("bim,bm,bjm->bij", jacobian, weights, jacobian)
        gradient = np.einsum("bim,bm,bm->bi", jacobian, weights, r)
        pinned = ((p <= lower) & (gradient > 0)) | ((p >= upper) & (gradient < 0))
        free = ~pinned
        hessian = hessian * free[:, :, None] * free[:, None, :]
        gradient = gradient * free
        diagonal = np.diagonal(hessian, axis1=1, axis2=2)
        diagonal = np.maximum(diagonal, 1e-12 * np.maximum(diagonal.max(axis=1, keepdims=True), 1e-300))
        system = hessian + (damping[rows, None] * diagonal)[:, :, None] * np.eye(n_params)
        system[:, np.arange(n_params), np.arange(n_params)] += pinned * 1.0
        try:
            delta = -np.linalg.solve(system, gradient[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            delta = -np.linalg.lstsq(system.sum(axis=0), gradient.sum(axis=0), rcond=None)[0][None, :]
        delta = np.where(np.isfinite(delta), delta, 0.0)
        trial = np.clip(p + delta, lower, upper)
        trial_residuals = residual_fn(trial, rows)
        trial_cost = _safe_cost(trial_residuals, loss, huber_delta)
        old_cost = cost[rows]
        improved = trial_cost < old_cost
        accepted = rows[improved]
        params[accepted] = trial[improved]
        residuals[accepted] = trial_residuals[improved]
        cost[accepted] = trial_cost[improved]
        damping[rows] = np.where(improved, np.maximum(damping[rows] * 0.3, 1e-12), damping[rows] * 4.0)
        relative_gain = (old_cost - trial_cost) / np.maximum(old_cost, 1e-300)
        tiny_step = np.all(np.abs(trial - p) <= 1e-10 * (np.abs(p) + 1e-10), axis=1)
        done = (improved & (relative_gain < ftol)) | tiny_step | (damping[rows] > 1e12) | (old_cost == 0)
        converged[rows[done]] = True
        running[rows[done]] = False
        if prune_every and iteration % prune_every == 0:
            still = np.flatnonzero(running)
            if still.size > min_keep:
                keep_count = max(min_keep, still.size // 2)
                order = np.argsort(cost[still])
                running[still[order[keep_count:]]] = False
    return BatchSolution(params=params, cost=cost, converged=converged, iterations=iteration)
