"""Judge laws by what matters: predicting runs larger than the ones they were fitted on.

In-sample fit rewards flexible laws; the paper's claim is that a law fitted on n <= 64k
predicts n = 1.28M within about 0.01. ``evaluate_extrapolation`` fits on x <= cut and scores
the held-out points beyond; ``compare_laws`` ranks several laws by that held-out error and
also lists in-sample AIC/BIC (comparable only between fits in the same space and loss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from analysis.fit import FitResult, fit_law
from analysis.laws import get_law
from analysis.validation import InputError, as_input_columns


@dataclass(frozen=True)
class ExtrapolationResult:
    """A fit on x <= cut and its errors on the points beyond the cut."""

    law: str
    cut: float
    x_axis: str
    fit: FitResult
    n_train: int
    n_test: int
    x_test: np.ndarray
    y_test: np.ndarray
    predicted: np.ndarray
    mean_abs_error: float
    max_abs_error: float
    rmsle: float
    groups_test: tuple[str, ...] | None = None
    rows_test: tuple[Any, ...] | None = None

    def report(self) -> str:
        return "\n".join(
            [
                f"[[extrapolation: {self.law}]] fit on {self.x_axis} <= {self.cut:g} ({self.n_train} points), "
                f"scored on {self.n_test} points beyond",
                f"  mean |error| {self.mean_abs_error:.4g}   max |error| {self.max_abs_error:.4g}   "
                f"RMSLE {self.rmsle:.4g}",
                *("  " + line for line in self.fit.report().splitlines()),
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "law": self.law,
            "cut": self.cut,
            "x_axis": self.x_axis,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "mean_abs_error": _finite_or_none(self.mean_abs_error),
            "max_abs_error": _finite_or_none(self.max_abs_error),
            "rmsle": _finite_or_none(self.rmsle),
            "fit": self.fit.to_dict(),
        }

    def points(self, x_name: str | None = None) -> list[dict[str, Any]]:
        """One record per held-out point: its input (keyed ``x_name``, default the law's input name), observed and
        predicted values, and its group and row when known."""
        records = []
        for i, (x, observed, predicted) in enumerate(zip(self.x_test, self.y_test, self.predicted)):
            record: dict[str, Any] = {x_name or self.x_axis: float(x), "observed": float(observed),
                                      "predicted": float(predicted)}
            if self.groups_test is not None:
                record["group"] = self.groups_test[i]
            if self.rows_test is not None:
                record["row"] = _plain(self.rows_test[i])
            records.append(record)
        return records

    def by_group(self) -> dict[str, dict[str, Any]]:
        """Held-out errors of each curve: a pooled mean can hide one curve that extrapolates badly."""
        if self.groups_test is None:
            return {}
        labels = np.asarray(self.groups_test, dtype=object)
        scores = {}
        for group in dict.fromkeys(self.groups_test):
            mask = labels == group
            mean_abs, max_abs, rmsle = _held_out_errors(self.predicted[mask], self.y_test[mask])
            scores[group] = {"n_test": int(mask.sum()), "mean_abs_error": _finite_or_none(mean_abs),
                             "max_abs_error": _finite_or_none(max_abs), "rmsle": _finite_or_none(rmsle)}
        return scores


def evaluate_extrapolation(
    x: Any,
    y: Any,
    law: str = "power_floor",
    *,
    cut: float,
    x_axis: str | None = None,
    groups: Sequence[object] | None = None,
    **fit_options: Any,
) -> ExtrapolationResult:
    """Fit on points with ``x_axis <= cut``, predict the rest, report absolute error and RMSLE.

    RMSLE here is the root mean square of log(predicted / observed): scale-free, so an error of
    0.01 on a 0.8 floor and on a 0.2 floor are judged relative to the level they sit at.
    ``row_labels`` (one per point, as for ``fit_law``) name training rows in errors and held-out rows in
    ``points()``.
    """
    row_labels = fit_options.pop("row_labels", None)
    law_obj = get_law(law)
    xs = as_input_columns(x, law_obj.independent_vars)
    y_array = np.asarray(y, dtype=float).ravel()
    axis_name = x_axis or law_obj.independent_vars[0]
    if axis_name not in xs:
        raise ValueError(f"x_axis {axis_name!r} is not an input of {law_obj.name}: {list(law_obj.independent_vars)}")
    train = xs[axis_name] <= cut
    if train.all() or not train.any():
        raise InputError(
            f"cut {cut:g} leaves {int(train.sum())} training and {int((~train).sum())} held-out points; "
            f"{axis_name} spans {xs[axis_name].min():g}..{xs[axis_name].max():g}"
        )
    group_array = None if groups is None else np.asarray([str(g) for g in groups], dtype=object)
    result = fit_law(
        {k: v[train] for k, v in xs.items()},
        y_array[train],
        law_obj,
        groups=None if group_array is None else group_array[train],
        row_labels=None if row_labels is None else [label for label, keep in zip(row_labels, train) if keep],
        **fit_options,
    )
    test_inputs = {k: v[~train] for k, v in xs.items()}
    if group_array is None:
        predicted = result.predict(test_inputs)
    else:
        predicted = np.empty(int((~train).sum()))
        test_groups = group_array[~train]
        for group in dict.fromkeys(test_groups):
            mask = test_groups == group
            predicted[mask] = result.predict({k: v[mask] for k, v in test_inputs.items()}, group=group)
    observed = y_array[~train]
    mean_abs_error, max_abs_error, rmsle = _held_out_errors(predicted, observed)
    return ExtrapolationResult(
        law=law_obj.name,
        cut=float(cut),
        x_axis=axis_name,
        fit=result,
        n_train=int(train.sum()),
        n_test=int((~train).sum()),
        x_test=xs[axis_name][~train],
        y_test=observed,
        predicted=predicted,
        mean_abs_error=mean_abs_error,
        max_abs_error=max_abs_error,
        rmsle=rmsle,
        groups_test=None if group_array is None else tuple(group_array[~train]),
        rows_test=None if row_labels is None else tuple(label for label, keep in zip(row_labels, train) if not keep),
    )


def _held_out_errors(predicted: np.ndarray, observed: np.ndarray) -> tuple[float, float, float]:
    """Mean and max absolute error, and RMSLE (inf when a prediction or observation is not positive)."""
    abs_error = np.abs(predicted - observed)
    with np.errstate(all="ignore"):
        log_ratio = np.log(predicted / observed)
    rmsle = float(np.sqrt(np.mean(log_ratio**2))) if np.all(np.isfinite(log_ratio)) else math.inf
    return float(np.mean(abs_error)), float(np.max(abs_error)), rmsle


@dataclass(frozen=True)
class LawComparison:
    """Laws ranked by held-out extrapolation error, with in-sample AIC/BIC alongside."""

    cut: float
    rows: tuple[dict[str, Any], ...]
    extrapolations: dict[str, ExtrapolationResult]
    full_fits: dict[str, FitResult]

    @property
    def best(self) -> str:
        return self.rows[0]["law"]

    def report(self) -> str:
        header = f"{'law':<16}{'free':>5}{'mean|err|':>11}{'max|err|':>10}{'RMSLE':>9}{'AIC':>10}{'BIC':>10}  note"
        lines = [f"[[law comparison]] fit on x <= {self.cut:g}, ranked by held-out RMSLE", header]
        for row in self.rows:
            lines.append(
                f"{row['law']:<16}{_cell(row['n_free'], 'd'):>5}{_cell(row['mean_abs_error']):>11}"
                f"{_cell(row['max_abs_error']):>10}{_cell(row['rmsle']):>9}{_cell(row['aic'], '.2f'):>10}"
                f"{_cell(row['bic'], '.2f'):>10}  {row['note']}"
            )
        return "\n".join(lines)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(list(self.rows))

    def to_dict(self) -> dict[str, Any]:
        return {
            "cut": self.cut,
            "best": self.best,
            "rows": [{k: (_finite_or_none(v) if isinstance(v, float) else v) for k, v in row.items()} for row in self.rows],
        }


def compare_laws(
    x: Any,
    y: Any,
    laws: Sequence[str] = ("power_floor", "broken_power", "m4"),
    *,
    cut: float,
    **fit_options: Any,
) -> LawComparison:
    """Fit each law on x <= cut (scored beyond it) and on all points (for AIC/BIC); rank by RMSLE.

    A law that cannot be fitted (too many parameters for the training points, say) stays in
    the table with its reason instead of aborting the comparison.
    """
    rows = []
    extrapolations: dict[str, ExtrapolationResult] = {}
    full_fits: dict[str, FitResult] = {}
    for name in laws:
        row: dict[str, Any] = {"law": name, "n_free": None, "mean_abs_error": math.nan, "max_abs_error": math.nan}
        row.update({"rmsle": math.nan, "aic": math.nan, "bic": math.nan, "note": ""})
        try:
            held_out = evaluate_extrapolation(x, y, name, cut=cut, **fit_options)
        except ValueError as error:
            row["note"] = f"not fitted: {error}"
            rows.append(row)
            continue
        extrapolations[name] = held_out
        full = fit_law(x, y, name, **fit_options)
        full_fits[name] = full
        row.update(
            n_free=full.n_free,
            mean_abs_error=held_out.mean_abs_error,
            max_abs_error=held_out.max_abs_error,
            rmsle=held_out.rmsle,
            aic=full.aic,
            bic=full.bic,
            note="" if held_out.fit.converged and full.converged else "did not converge",
        )
        rows.append(row)
    rows.sort(key=lambda r: (math.isnan(r["rmsle"]), round(r["rmsle"], 9), r["n_free"] or 0))
    return LawComparison(cut=float(cut), rows=tuple(rows), extrapolations=extrapolations, full_fits=full_fits)


def _cell(value: Any, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def _plain(value: Any) -> Any:
    """numpy scalars (a pandas index) as Python numbers, so records serialise to JSON."""
    return value.item() if isinstance(value, np.generic) else value


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
