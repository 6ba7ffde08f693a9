"""Input checks that fail early and name the rows to fix.

A bad point silently dropped or a NaN that turns a fit into garbage costs more than an
error: every check here raises ``InputError`` whose message names the offending rows.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


class InputError(ValueError):
    """Data cannot be fitted as given; the message says which rows and why."""


_MAX_ROWS_SHOWN = 10


def describe_rows(labels: Sequence[Any], mask: np.ndarray, values: np.ndarray | None = None) -> str:
    """'rows 3, 7 (values nan, inf)' for the rows where ``mask`` is true, capped for long lists."""
    positions = np.flatnonzero(mask)
    shown = positions[:_MAX_ROWS_SHOWN]
    rows = ", ".join(str(labels[i]) for i in shown)
    more = f" and {positions.size - shown.size} more" if positions.size > shown.size else ""
    text = f"row{'s' if positions.size > 1 else ''} {rows}{more}"
    if values is not None:
        text += " (values " + ", ".join(f"{values[i]:.6g}" for i in shown) + ")"
    return text


def as_input_columns(x: Any, independent_vars: Sequence[str]) -> dict[str, np.ndarray]:
    """Accept a 1-D array (one input), a mapping or DataFrame keyed by input name, or an (m, k) array.

    A one-column mapping feeds a one-input law whatever its name, so n-named data can be
    compared across laws whose input is called x.
    """
    if isinstance(x, Mapping) or hasattr(x, "columns"):
        if len(independent_vars) == 1 and len(x) == 1 and independent_vars[0] not in x:
            only = next(iter(x.keys() if isinstance(x, Mapping) else x.columns))
            return {independent_vars[0]: np.asarray(x[only], dtype=float).ravel()}
        missing = [v for v in independent_vars if v not in x]
        if missing:
            raise InputError(f"inputs {missing} missing; the law needs {list(independent_vars)}")
        return {v: np.asarray(x[v], dtype=float).ravel() for v in independent_vars}
    array = np.asarray(x, dtype=float)
    if len(independent_vars) == 1:
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise InputError(f"x must be 1-D for a law of one input, got shape {array.shape}")
        return {independent_vars[0]: array}
    if array.ndim != 2 or array.shape[1] != len(independent_vars):
        raise InputError(
            f"x must be a mapping with keys {list(independent_vars)} or an (m, {len(independent_vars)}) array; "
            f"got shape {array.shape}"
        )
    return {v: array[:, j] for j, v in enumerate(independent_vars)}


def default_row_labels(obj: Any, size: int) -> list[Any]:
    """Row labels for messages: a pandas index when there is one, else 0-based positions."""
    index = getattr(obj, "index", None)
    if index is not None and len(index) == size:
        return list(index)
    return list(range(size))


def validate_points(
    *,
    law_name: str,
    xs: Mapping[str, np.ndarray],
    y: np.ndarray,
    weights: np.ndarray | None,
    row_labels: Sequence[Any],
    target_range: tuple[float, float] | None,
    y_name: str = "y",
) -> None:
    """Shapes agree, values are finite, inputs positive, targets in the law's range."""
    size = y.shape[0]
    for name, column in xs.items():
        if column.shape[0] != size:
            raise InputError(f"{name} has {column.shape[0]} rows but {y_name} has {size}")
    if weights is not None and weights.shape[0] != size:
        raise InputError(f"weights have {weights.shape[0]} rows but {y_name} has {size}")
    for name, column in {**xs, y_name: y}.items():
        bad = ~np.isfinite(column)
        if bad.any():
            raise InputError(f"{name} is NaN or infinite in {describe_rows(row_labels, bad, column)}")
    for name, column in xs.items():
        bad = column <= 0
        if bad.any():
            raise InputError(
                f"{name} must be > 0 for law {law_name!r} (x^-alpha diverges at 0) but is not in "
                f"{describe_rows(row_labels, bad, column)}; drop n = 0 (scratch) runs and show them as a baseline"
            )
    if weights is not None:
        bad = ~np.isfinite(weights) | (weights < 0)
        if bad.any():
            raise InputError(f"weights must be finite and >= 0: {describe_rows(row_labels, bad, weights)}")
    if target_range is not None:
        lo, hi = target_range
        bad = (y < lo) | (y > hi)
        if bad.any():
            raise InputError(
                f"{y_name} must lie in [{lo:g}, {hi:g}] for law {law_name!r} (it models error rates) but "
                f"{describe_rows(row_labels, bad, y)} do not; {_range_hint(y, y_name, (lo, hi))}"
            )


def _range_hint(y: np.ndarray, y_name: str, target_range: tuple[float, float]) -> str:
    """Errors written in percent are the usual cause; lifting the range check would fit them against C <= 1."""
    if target_range == (0.0, 1.0) and np.all((y >= 0) & (y <= 100)) and np.median(y) > 1:
        return (f"{y_name} looks like a percentage (median {np.median(y):.3g}): divide it by 100 "
                f"(error = percent / 100)")
    return "convert metrics with error = 1 - metric, or pass target_range=None for unbounded targets"


def validate_identifiable(
    *,
    law_name: str,
    xs: Mapping[str, np.ndarray],
    group_codes: np.ndarray,
    group_names: Sequence[str],
    n_free_total: int,
    n_free_per_group: int,
    free_names: Sequence[str],
) -> None:
    """Enough points, and enough distinct input values, for the number of free parameters."""
    design = np.stack([xs[v] for v in xs] + [group_codes.astype(float)], axis=1)
    n_points = design.shape[0]
    n_distinct = np.unique(design, axis=0).shape[0]
    if n_points < n_free_total or n_distinct < n_free_total:
        raise InputError(
            f"law {law_name!r} has {n_free_total} free parameters ({', '.join(free_names)}) but only "
            f"{n_points} points at {n_distinct} distinct inputs; fix or share parameters (e.g. fix D) or add points"
        )
    for code, group in enumerate(group_names):
        in_group = group_codes == code
        distinct = np.unique(design[in_group], axis=0).shape[0]
        if distinct < n_free_per_group:
            raise InputError(
                f"group {group!r} has {distinct} distinct inputs but {n_free_per_group} parameters of its own; "
                f"share more parameters across groups or add points"
            )
