"""Figures for fitted laws: one curve with its band and residuals, and the paper's Figure-1 grid.

Every function returns the matplotlib Figure and never calls ``plt.show``, so they work under
the Agg backend in tests, scripts and notebooks alike.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.ticker import FuncFormatter, NullFormatter

from analysis.fit import FitResult, fit_law
from analysis.laws import get_law
from analysis.validation import as_input_columns

_CURVE_POINTS = 200


def plot_fit(
    result: FitResult,
    x: Any,
    y: Any,
    ax: matplotlib.axes.Axes | None = None,
    *,
    groups: Sequence[object] | None = None,
    residuals: bool | None = None,
    band: bool = True,
    x_axis: str | None = None,
    extend_to: float | None = None,
    logy: bool = True,
    title: str | None = None,
    label: str | None = None,
    x_label: str | None = None,
    y_label: str | None = None,
) -> matplotlib.figure.Figure:
    """Log-log data, fitted curve, bootstrap band (when present) and, optionally, fit-space residuals.

    For joint laws the curve is drawn against ``x_axis`` (default: the first input) once per
    distinct value of the other inputs; for grouped fits pass the same ``groups`` as to ``fit_law``.
    ``residuals`` defaults to a panel under a new figure, and to none when drawing into ``ax``
    (pass True there for an inset panel below it). ``x_label``/``y_label`` name the axes after the data's
    columns (default: the law's input name, and error or loss). With several curves on a new figure the
    legend sits outside, right of the plot, so it covers neither the data nor the residual panel.
    """
    if residuals is None:
        residuals = ax is None
    law = get_law(result.law)
    xs = as_input_columns(x, law.independent_vars)
    y_array = np.asarray(y, dtype=float).ravel()
    axis_name = x_axis or law.independent_vars[0]
    if axis_name not in xs:
        raise ValueError(f"x_axis {axis_name!r} is not an input of {law.name}: {list(law.independent_vars)}")
    group_labels = np.asarray([str(g) for g in groups], dtype=object) if groups is not None else None
    if result.groups and group_labels is None:
        raise ValueError(f"this fit has groups {list(result.groups)}; pass groups= with one label per point")

    curves = _curve_keys(xs, axis_name, group_labels)
    legend_outside = ax is None and len(curves) > 1
    width = 6 + (2.2 if legend_outside else 0)  # room for the legend right of the plot
    with sns.axes_style("whitegrid"):
        if ax is None:
            if residuals:
                figure, (ax, residual_ax) = plt.subplots(
                    2, 1, figsize=(width, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
                )
            else:
                figure, ax = plt.subplots(figsize=(width, 4.2))
                residual_ax = None
        else:
            figure = ax.figure
            residual_ax = None
            if residuals:
                residual_ax = ax.inset_axes([0.0, -0.42, 1.0, 0.3], sharex=ax)

    palette = _distinct_colours(len(curves))
    x_hi = max(float(np.max(xs[axis_name])), extend_to or 0.0)
    grid = np.geomspace(float(np.min(xs[axis_name])), x_hi, _CURVE_POINTS)
    for color, (key, mask) in zip(palette, curves.items()):
        curve_label = label or (key if key else result.law)
        ax.scatter(xs[axis_name][mask], y_array[mask], color=color, s=22, alpha=0.75, zorder=3)
        inputs = {
            name: (grid if name == axis_name else np.full_like(grid, xs[name][mask][0])) for name in xs
        }
        group = str(group_labels[mask][0]) if group_labels is not None and result.groups else None
        ax.plot(grid, result.predict(inputs, group=group), color=color, lw=1.8, label=curve_label)
        if band and result.bootstrap is not None:
            lo, hi = result.predict_interval(inputs, group=group)
            ax.fill_between(grid, lo, hi, color=color, alpha=0.2, lw=0)
        if residual_ax is not None:
            point_inputs = {name: xs[name][mask] for name in xs}
            fitted = result.predict(point_inputs, group=group)
            if result.space == "log":
                gap = np.log(y_array[mask]) - np.log(fitted)
            else:
                gap = y_array[mask] - fitted
            residual_ax.scatter(xs[axis_name][mask], gap, color=color, s=16)
    if extend_to is not None and extend_to > float(np.max(xs[axis_name])):
        ax.axvline(float(np.max(xs[axis_name])), color="0.5", ls=":", lw=1)
    _log_axes(ax, logy=logy and bool(np.all(y_array > 0)))
    ax.set_ylabel(y_label or ("error" if law.target_range == (0.0, 1.0) else "loss"))
    ax.set_title(textwrap.fill(title or _default_title(result), 70), fontsize=10)
    if legend_outside:
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    elif len(curves) > 1 or label:
        ax.legend(fontsize=8, frameon=False)
    if residual_ax is not None:
        residual_ax.axhline(0.0, color="0.3", lw=1)
        residual_ax.set_xscale("log")
        residual_ax.set_ylabel("log residual" if result.space == "log" else "residual")
        residual_ax.set_xlabel(x_label or axis_name)
    else:
        ax.set_xlabel(x_label or axis_name)
    figure.tight_layout()
    return figure


def _distinct_colours(count: int) -> list[tuple[float, float, float]]:
    """The colour-blind palette has 10 colours; beyond that, evenly spaced hues so no two curves share one."""
    if count <= 10:
        return sns.color_palette("colorblind", max(count, 1))
    return sns.color_palette("husl", count)


def _log_axes(ax: matplotlib.axes.Axes, *, logy: bool) -> None:
    """Log scales with plain tick labels: error curves span less than a decade in y."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    if logy:
        ax.set_yscale("log")
        plain = FuncFormatter(lambda value, _: f"{value:.3g}")
        low, high = ax.get_ylim()
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain if high < 10 * low else NullFormatter())


def _default_title(result: FitResult) -> str:
    headline = ("alpha", "beta", "C", "gamma")
    shown = [
        f"{name}={value:.3g}" for name, value in result.params.items() if name.split("[")[0] in headline
    ][:4]
    return f"{result.law}: " + ", ".join(shown) if shown else result.law


def _curve_keys(
    xs: Mapping[str, np.ndarray], axis_name: str, group_labels: np.ndarray | None
) -> dict[str, np.ndarray]:
    """One boolean mask per drawn curve: per group and per value of the inputs not on the x axis."""
    others = [name for name in xs if name != axis_name]
    size = next(iter(xs.values())).shape[0]
    keys = []
    for i in range(size):
        parts = [str(group_labels[i])] if group_labels is not None else []
        parts += [f"{name}={xs[name][i]:g}" for name in others]
        keys.append(", ".join(parts))
    key_array = np.asarray(keys, dtype=object)
    return {key: key_array == key for key in dict.fromkeys(keys)}


@dataclass(frozen=True)
class TransferGrid:
    """The Figure-1 grid and the fit behind each curve, keyed by (row, col, hue)."""

    figure: matplotlib.figure.Figure
    fits: dict[tuple[Any, Any, Any], FitResult]
    baselines: dict[tuple[Any, Any, Any], float]


def plot_transfer_grid(
    table: Any,
    *,
    x: str = "n",
    y: str = "error",
    row: str = "pretrain_task",
    col: str = "finetune_task",
    hue: str | None = None,
    law: str = "power_floor",
    fit_options: Mapping[str, Any] | None = None,
    baseline_x: float = 0.0,
    height: float = 2.8,
) -> TransferGrid:
    """Log-log error vs n, one panel per (pre-training task, fine-tuning task), one fitted curve per hue.

    Rows at ``x == baseline_x`` (scratch runs, n = 0) are left out of the fit and drawn as a
    dashed horizontal baseline, as in the paper. A curve whose fit fails is drawn as data only.
    """
    import pandas as pd

    frame = pd.DataFrame(table)
    missing = [c for c in (x, y, row, col) + ((hue,) if hue else ()) if c not in frame.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the table; it has {list(frame.columns)}")
    rows = list(dict.fromkeys(frame[row]))
    cols = list(dict.fromkeys(frame[col]))
    hues = list(dict.fromkeys(frame[hue])) if hue else [None]
    palette = dict(zip(hues, sns.color_palette("colorblind", len(hues))))
    fits: dict[tuple[Any, Any, Any], FitResult] = {}
    baselines: dict[tuple[Any, Any, Any], float] = {}
    with sns.axes_style("whitegrid"):
        figure, axes = plt.subplots(
            len(rows), len(cols), figsize=(height * 1.25 * len(cols), height * len(rows)), squeeze=False
        )
    for i, row_value in enumerate(rows):
        for j, col_value in enumerate(cols):
            ax = axes[i][j]
            panel = frame[(frame[row] == row_value) & (frame[col] == col_value)]
            for hue_value in hues:
                part = panel if hue is None else panel[panel[hue] == hue_value]
                if part.empty:
                    continue
                color = palette[hue_value]
                key = (row_value, col_value, hue_value)
                scratch = part[part[x] == baseline_x]
                trained = part[part[x] != baseline_x]
                if not scratch.empty:
                    baselines[key] = float(scratch[y].mean())
                    ax.axhline(baselines[key], color=color, ls="--", lw=1)
                ax.scatter(trained[x], trained[y], color=color, s=14, alpha=0.8)
                try:
                    result = fit_law(trained[x].to_numpy(float), trained[y].to_numpy(float), law, **(fit_options or {}))
                except ValueError:
                    continue
                fits[key] = result
                grid = np.geomspace(trained[x].min(), trained[x].max(), _CURVE_POINTS)
                curve_label = f"{hue_value}: " if hue else ""
                alpha, gap = result.params.get("alpha"), result.params.get("C")
                if alpha is not None and gap is not None:
                    curve_label += f"alpha={alpha:.2f}, C={gap:.2f}"
                ax.plot(grid, result.predict(grid), color=color, lw=1.5, label=curve_label or None)
            _log_axes(ax, logy=True)
            ax.set_title(f"{row_value} -> {col_value}", fontsize=9)
            if i == len(rows) - 1:
                ax.set_xlabel(x)
            if j == 0:
                ax.set_ylabel(y)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6, frameon=False)
    figure.tight_layout()
    return TransferGrid(figure=figure, fits=fits, baselines=baselines)


# Metadata keys that hold the time or the software version, per format: dropped so that the bytes depend on the
# figure alone. A date is written only when SOURCE_DATE_EPOCH asks for one (matplotlib then uses that time).
_VOLATILE_METADATA = {"pdf": ("CreationDate", "Creator", "Producer"), "svg": ("Date", "Creator"),
                      "png": ("Software",)}
_DATE_KEYS = ("CreationDate", "Date")


def save_figure(figure: matplotlib.figure.Figure, path: Any, *, format: str | None = None, **savefig: Any) -> None:
    """`figure.savefig` with reproducible bytes: saving the same figure again gives an identical file, so
    regenerated paper figures leave git clean. PDF and SVG carry no creation date (the SOURCE_DATE_EPOCH time when
    that is set) and no matplotlib version; PNG has no Software key; SVG element ids come from a fixed salt."""
    import os
    from pathlib import Path

    kind = (format or Path(str(path)).suffix.lstrip(".") or matplotlib.rcParams["savefig.format"]).lower()
    dated = "SOURCE_DATE_EPOCH" in os.environ
    metadata = {key: None for key in _VOLATILE_METADATA.get(kind, ()) if not (dated and key in _DATE_KEYS)}
    metadata.update(savefig.pop("metadata", None) or {})
    with matplotlib.rc_context({"svg.hashsalt": "lab"}):
        figure.savefig(path, format=kind, metadata=metadata or None, **savefig)
