"""``lab fit``: fit a law to any tidy CSV, print the table, write JSON and a figure.

``add_fit_arguments`` and ``run_fit`` are what the ``lab`` command wires in as its ``fit``
subcommand; ``python -m analysis.cli FILE.csv ...`` runs the same thing standalone.
Exit codes: 0 fitted, 2 bad input or options, 3 the fit did not converge (results still written).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from analysis.extrapolation import compare_laws, evaluate_extrapolation
from analysis.fit import FitResult, fit_law
from analysis.laws import LAWS, get_law
from analysis.questions import n_to_reach, transfer_gap
from analysis.validation import InputError

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_NOT_CONVERGED = 3


def add_fit_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register the ``fit`` options on ``parser`` (a subparser of ``lab`` or a standalone one)."""
    parser.add_argument("csv", type=Path, help="tidy CSV: one row per run (x columns, y column, labels)")
    parser.add_argument("--x", nargs="+", default=["n"], help="input column(s), in the law's order (default: n)")
    parser.add_argument("--y", default="error", help="target column (default: error)")
    parser.add_argument("--law", default="power_floor", choices=sorted(LAWS), help="law to fit")
    parser.add_argument("--group", default=None, help="comma-separated columns; one curve per distinct value")
    parser.add_argument("--shared", default="", help="comma-separated parameters shared by all groups")
    parser.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE", help="fix a parameter (repeatable)")
    parser.add_argument("--bounds", action="append", default=[], metavar="NAME=LO:HI", help="override a parameter's bounds")
    parser.add_argument("--where", action="append", default=[], metavar="COL=VALUE", help="keep rows with COL == VALUE")
    parser.add_argument("--space", choices=("linear", "log"), default="linear")
    parser.add_argument("--loss", choices=("l2", "huber"), default="l2")
    parser.add_argument("--huber-delta", type=float, default=1e-3)
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0 to skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--level", type=float, default=0.95, help="interval level")
    parser.add_argument("--baseline-x", type=float, default=0.0, help="rows at this x are scratch baselines, not fitted")
    parser.add_argument("--no-range-check", action="store_true", help="allow targets outside [0, 1] for error laws")
    parser.add_argument("--extrapolate-from", type=float, default=None, metavar="X", help="fit on x <= X, score beyond")
    parser.add_argument("--compare", default=None, help="comma-separated laws to rank by held-out error (needs --extrapolate-from)")
    parser.add_argument("--target-error", type=float, default=None, help="report the n needed to reach this error")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <csv stem>_fit next to the CSV)")
    return parser


def run_fit(args: argparse.Namespace) -> int:
    """Execute ``lab fit``; returns the process exit code."""
    try:
        return _run(args)
    except InputError as error:
        message = str(error).replace("pass target_range=None", "pass --no-range-check")
        note = " (row numbers are CSV line numbers)" if re.search(r"\brows? \d", message) else ""
        print(f"error: {args.csv}: {message}{note}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, KeyError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    law = get_law(args.law)
    try:
        frame = pd.read_csv(args.csv)
    except pd.errors.EmptyDataError:
        raise InputError("the file is empty (expected a header row of column names, then one row per run)") from None
    except UnicodeDecodeError as error:
        raise InputError(f"not a text CSV file ({error.reason} at byte {error.start})") from None
    if frame.empty:
        raise InputError(f"the file has a header ({', '.join(map(str, frame.columns))}) but no rows")
    frame.index = frame.index + 2
    for clause in args.where:
        column, value = _split(clause, "=", "--where")
        _require_columns(frame, [column])
        frame = frame[frame[column].astype(str) == value]
    _refuse_mixed_metrics(frame, group_columns=[c for c in (args.group or "").split(",") if c])
    if len(args.x) != len(law.independent_vars):
        raise ValueError(f"--x names {len(args.x)} column(s) but {law.name} takes {list(law.independent_vars)}")
    group_columns = [c for c in (args.group or "").split(",") if c]
    _require_columns(frame, list(args.x) + [args.y] + group_columns)
    axis = args.x[0]
    baseline_rows = frame[frame[axis] == args.baseline_x]
    fitted = frame[frame[axis] != args.baseline_x]
    xs = {var: _numbers(fitted, column) for var, column in zip(law.independent_vars, args.x)}
    y = _numbers(fitted, args.y)
    groups = None
    if group_columns:
        groups = fitted[group_columns].astype(str).agg("/".join, axis=1).tolist()
    options: dict[str, Any] = {
        "fix": dict(_parse_number(item, "--fix") for item in args.fix),
        "bounds": dict(_parse_bounds(item) for item in args.bounds),
        "space": args.space,
        "loss": args.loss,
        "huber_delta": args.huber_delta,
        "shared": [name for name in args.shared.split(",") if name],
        "row_labels": list(fitted.index),
        "level": args.level,
    }
    if args.no_range_check:
        options["target_range"] = None
    result = fit_law(xs, y, law, groups=groups, bootstrap=args.bootstrap, seed=args.seed, **options)

    out = args.out or args.csv.with_name(f"{args.csv.stem}_fit")
    out.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "input": {
            "csv": str(args.csv),
            "x": list(args.x),
            "y": args.y,
            "group": group_columns,
            "where": list(args.where),
            "rows_fitted": int(len(fitted)),
        },
        "fit": result.to_dict(),
    }
    print(result.report())
    if not baseline_rows.empty:
        baseline = _baseline_summary(baseline_rows, args.y, group_columns)
        payload["baseline"] = baseline
        print(f"baseline ({axis} = {args.baseline_x:g}, not fitted): {json.dumps(baseline)}")
    payload["questions"] = _answer_questions(result, args.target_error)
    for answer in payload["questions"].values():
        print(answer["text"])
    if args.extrapolate_from is not None:
        row_options = {k: v for k, v in options.items() if k != "row_labels"}
        held_out = evaluate_extrapolation(
            xs, y, law, cut=args.extrapolate_from, groups=groups, bootstrap=args.bootstrap, seed=args.seed, **row_options
        )
        payload["extrapolation"] = held_out.to_dict()
        print(
            f"extrapolation from {axis} <= {args.extrapolate_from:g}: mean |error| {held_out.mean_abs_error:.4g}, "
            f"max |error| {held_out.max_abs_error:.4g}, RMSLE {held_out.rmsle:.4g} on {held_out.n_test} points"
        )
        if args.compare:
            if groups is not None:
                raise ValueError("--compare ranks laws on one curve; drop --group or use --where to pick a curve")
            laws = [name for name in args.compare.split(",") if name]
            comparison = compare_laws(xs, y, laws, cut=args.extrapolate_from, **_comparable(row_options, law.name))
            payload["comparison"] = comparison.to_dict()
            print(comparison.report())
    figure_path = out / "fit.png"
    shown = result if args.extrapolate_from is None else held_out.fit
    _write_figure(shown, xs, y, groups, args.extrapolate_from, figure_path)
    json_path = out / "fit.json"
    json_path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    print(f"wrote {json_path} and {figure_path}")
    return EXIT_OK if result.converged else EXIT_NOT_CONVERGED


def _write_figure(
    result: FitResult,
    xs: dict[str, np.ndarray],
    y: np.ndarray,
    groups: list[str] | None,
    extrapolate_from: float | None,
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.plots import plot_fit

    title = None if extrapolate_from is None else f"{result.law} fitted on x <= {extrapolate_from:g} (dotted line)"
    figure = plot_fit(result, xs, y, groups=groups, title=title)
    if extrapolate_from is not None:
        figure.axes[0].axvline(extrapolate_from, color="0.4", ls=":", lw=1)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _answer_questions(result: FitResult, target_error: float | None) -> dict[str, dict[str, Any]]:
    law = get_law(result.law)
    answers: dict[str, dict[str, Any]] = {}
    if len(law.independent_vars) != 1:
        return answers
    curves = list(result.groups) if result.groups else [None]
    for group in curves:
        suffix = f"[{group}]" if group else ""
        gap = transfer_gap(result, group=group)
        answers[f"transfer_gap{suffix}"] = {**gap.to_dict(), "text": gap.report() + (f" {group}" if group else "")}
        if target_error is not None:
            needed = n_to_reach(result, target_error, group=group)
            answers[f"n_to_reach{suffix}"] = {**needed.to_dict(), "text": needed.report() + (f" {group}" if group else "")}
    return answers


def _baseline_summary(rows: Any, y: str, group_columns: list[str]) -> dict[str, Any]:
    if not group_columns:
        return {"mean": float(rows[y].mean()), "count": int(len(rows))}
    labels = rows[group_columns].astype(str).agg("/".join, axis=1)
    return {label: float(values.mean()) for label, values in rows[y].groupby(labels)}


def _comparable(options: dict[str, Any], fitted_law: str) -> dict[str, Any]:
    """Fixed values and bounds name one law's parameters; other laws are compared without them."""
    shared_options = {k: v for k, v in options.items() if k not in ("fix", "bounds", "shared")}
    if options.get("fix") or options.get("bounds"):
        print(f"note: --fix/--bounds apply to {fitted_law} only; other laws in --compare use their defaults")
    return shared_options


def _refuse_mixed_metrics(frame: Any, group_columns: list[str]) -> None:
    """A results table stacks metrics (top1, loss, ...) in one column; fitting them together is a mistake."""
    if "metric" not in frame.columns or "metric" in group_columns:
        return
    metrics = sorted(frame["metric"].astype(str).unique())
    if len(metrics) > 1:
        raise ValueError(
            f"the table holds several metrics ({', '.join(metrics)}); pick one with --where metric={metrics[-1]} "
            f"or add metric to --group"
        )


def _numbers(frame: Any, column: str) -> np.ndarray:
    """The column as floats, or an `InputError` naming the column and the rows (CSV line numbers) that are not."""
    import pandas as pd

    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if bad.any():
        rows = list(frame.index[bad])
        shown = ", ".join(f"row {row} ({frame[column][row]!r})" for row in rows[:5])
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        raise InputError(f"column {column!r} must hold numbers but has text in {shown}{more}")
    return values.to_numpy(float)


def _require_columns(frame: Any, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the CSV; it has {list(frame.columns)}")


def _split(item: str, separator: str, flag: str) -> tuple[str, str]:
    if separator not in item:
        raise ValueError(f"{flag} expects NAME{separator}VALUE, got {item!r}")
    name, value = item.split(separator, 1)
    return name.strip(), value.strip()


def _parse_number(item: str, flag: str) -> tuple[str, float]:
    name, value = _split(item, "=", flag)
    try:
        return name, float(value)
    except ValueError:
        raise ValueError(f"{flag} {item!r}: {value!r} is not a number") from None


def _parse_bounds(item: str) -> tuple[str, tuple[float, float]]:
    name, value = _split(item, "=", "--bounds")
    low, high = _split(value, ":", "--bounds")
    return name, (_parse_limit(low, -math.inf), _parse_limit(high, math.inf))


def _parse_limit(text: str, missing: float) -> float:
    """'' means unbounded on that side; inf and -inf are accepted as written."""
    if not text:
        return missing
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--bounds limit {text!r} is not a number") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_fit_arguments(argparse.ArgumentParser(prog="lab fit", description=__doc__.splitlines()[0]))
    return run_fit(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
