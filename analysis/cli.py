"""``lab fit``: fit a law to any tidy CSV, print the table, write JSON and a figure.

``add_fit_arguments`` and ``run_fit`` are what the ``lab`` command wires in as its ``fit`` subcommand;
``fit_csv`` does the work and is also what notebooks/fit_new_curves.ipynb calls (``fit_arguments`` builds its
options from keywords), so the notebook and the command write the same fit.json and fit.png.
``python -m analysis.cli FILE.csv ...`` runs it standalone.
Exit codes: 0 fitted, 2 bad input or options, 3 the fit did not converge (results still written).

``lab fit --help`` imports this module: pandas, scipy, lmfit and matplotlib are imported inside the functions
that read, fit and draw, never at the top.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from analysis.laws import LAWS, Law, get_law
from analysis.validation import InputError, validate_points

if TYPE_CHECKING:
    import pandas as pd

    from analysis.extrapolation import ExtrapolationResult, LawComparison
    from analysis.fit import FitResult

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_NOT_CONVERGED = 3
EXAMPLE_CSV = Path(__file__).resolve().parent / "data" / "example_curves.csv"  # one curve, 3 seeds, n = 0 baseline
# Columns that number repeats of one curve (never labels that tell curves apart), unless --seed-column names one.
SEED_COLUMNS = ("seed", "replicate", "repeat", "rep", "trial")
LIST_OPTIONS = ("x", "fix", "bounds", "where")  # repeatable options; fit_arguments also takes them comma-separated
# The library names its own arguments in messages; on the command line they are flags.
CLI_SPELLING = {
    "fit with bootstrap=B": "run with --bootstrap B",
    "pass target_range=None": "pass --no-range-check",
    "n_resamples must be >= 2": "--bootstrap must be 0 (no intervals) or >= 2",
    "level must be in (0, 1)": "--level must be in (0, 1)",
    "huber_delta must be > 0": "--huber-delta must be > 0",
    "fix names unknown parameters": "--fix names unknown parameters",
    "bounds names unknown parameters": "--bounds names unknown parameters",
    "shared names unknown parameters": "--shared names unknown parameters",
    "must satisfy lower < upper": "must satisfy LO < HI (--bounds NAME=LO:HI)",
}
BOUNDS_FORM = "NAME=LO:HI (e.g. alpha=0.1:1.5; leave LO or HI empty for no bound)"


def add_fit_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register the ``fit`` options on ``parser`` (a subparser of ``lab`` or a standalone one)."""
    parser.add_argument("csv", type=Path, help="tidy CSV: one row per run (x columns, y column, labels)")
    parser.add_argument("--x", nargs="+", default=["n"], help="input column(s), in the law's order (default: n)")
    parser.add_argument("--y", default="error", help="target column (default: error)")
    parser.add_argument("--law", default="power_floor", choices=sorted(LAWS), help="law to fit")
    parser.add_argument("--group", default=None, help="comma-separated columns; one curve per distinct value")
    parser.add_argument("--shared", default="", help="comma-separated parameters shared by all groups")
    parser.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE", help="fix a parameter (repeatable)")
    parser.add_argument("--bounds", action="append", default=[], metavar="NAME=LO:HI",
                        help="override a parameter's bounds, e.g. alpha=0.1:1.5 (repeatable)")
    parser.add_argument("--where", action="append", default=[], metavar="COL=VALUE",
                        help="keep rows with COL == VALUE (numbers compare as numbers; repeatable)")
    parser.add_argument("--seed-column", default=None, metavar="COL",
                        help=f"column numbering repeats of one curve (default: the first of {', '.join(SEED_COLUMNS)})")
    parser.add_argument("--space", choices=("linear", "log"), default="linear")
    parser.add_argument("--loss", choices=("l2", "huber"), default="l2")
    parser.add_argument("--huber-delta", type=float, default=1e-3)
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0 to skip)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the bootstrap")
    parser.add_argument("--level", type=float, default=0.95, help="interval level")
    parser.add_argument("--baseline-x", type=float, default=0.0, help="rows at this x are scratch baselines, not fitted")
    parser.add_argument("--no-range-check", action="store_true", help="allow targets outside [0, 1] for error laws")
    parser.add_argument("--extrapolate-from", type=float, default=None, metavar="X",
                        help="fit on x <= X only (the reported fit), score the held-out points beyond")
    parser.add_argument("--compare", default=None, help="comma-separated laws to rank by held-out error (needs --extrapolate-from)")
    parser.add_argument("--target-error", type=float, default=None, help="report (and mark) the n needed to reach this error")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: ./fits/<csv stem>/)")
    return parser


def fit_arguments(csv: str | Path, **options: Any) -> argparse.Namespace:
    """The options of ``lab fit CSV ...`` from keywords (``x="n"``, ``group="task"``, ``fix="D=0.48"``): defaults
    come from the parser itself, list options also take comma-separated text, unknown names are refused."""
    args = add_fit_arguments(argparse.ArgumentParser(prog="lab fit")).parse_args([str(csv)])
    unknown = sorted(set(options) - set(vars(args)))
    if unknown:
        raise ValueError(f"unknown fit option(s) {unknown}; valid: {sorted(vars(args))}")
    for name, value in options.items():
        if name in LIST_OPTIONS and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if name in ("csv", "out") and value is not None:
            value = Path(value)
        setattr(args, name, value)
    return args


@dataclass(frozen=True)
class FitRun:
    """What one ``lab fit`` produced: the reported fit (training rows only under --extrapolate-from), the JSON
    payload and the two files written."""

    result: FitResult
    payload: dict[str, Any]
    json_path: Path
    figure_path: Path


@dataclass(frozen=True)
class FitTable:
    """The rows to fit (index: CSV line numbers) and the scratch baselines set aside."""

    fitted: pd.DataFrame
    baseline: pd.DataFrame
    xs: dict[str, np.ndarray]  # by the law's input names
    y: np.ndarray
    groups: list[str] | None
    group_columns: list[str]

    @property
    def rows(self) -> list[int]:
        return [int(row) for row in self.fitted.index]


def run_fit(args: argparse.Namespace) -> int:
    """Execute ``lab fit``; returns the process exit code."""
    import matplotlib

    matplotlib.use("Agg")  # the command writes a PNG: no window, no GUI toolkit to import
    try:
        run = fit_csv(args)
    except InputError as error:
        message = cli_words(str(error))
        note = " (row numbers are CSV line numbers)" if re.search(r"\brows? \d", message) else ""
        print(f"error: {args.csv}: {message}{note}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, KeyError, FileNotFoundError) as error:
        print(f"error: {cli_words(str(error))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK if run.result.converged else EXIT_NOT_CONVERGED


def fit_csv(args: argparse.Namespace) -> FitRun:
    """Everything ``lab fit`` does: read and check the table, fit, print the table and the answers, write
    fit.json and fit.png. Every check (the cut included) runs before anything is printed."""
    law = get_law(args.law)
    compared = _compared_laws(args)
    options = _fit_options(args)
    table = read_fit_table(args, law)
    held_out = None
    if args.extrapolate_from is not None:
        from analysis.extrapolation import evaluate_extrapolation

        # The reported fit is the one that never saw the held-out points: a fit on all rows would
        # judge the extrapolation with data it was fitted to.
        held_out = evaluate_extrapolation(table.xs, table.y, law.name, cut=args.extrapolate_from, groups=table.groups,
                                          row_labels=table.rows, **options)
        result = held_out.fit
    else:
        from analysis.fit import fit_law

        result = fit_law(table.xs, table.y, law, groups=table.groups, row_labels=table.rows, **options)
    comparison = None
    if compared:
        from analysis.extrapolation import compare_laws

        comparison = compare_laws(table.xs, table.y, compared, cut=args.extrapolate_from,
                                  **_comparable(options, law.name))
    questions = _answer_questions(result, args.target_error)
    payload = _payload(args, table, result, held_out, comparison, questions)
    _print_summary(args, table, result, held_out, comparison, payload)

    out = args.out or default_output_folder(args.csv)
    out.mkdir(parents=True, exist_ok=True)
    figure_path = out / "fit.png"
    _write_figure(result, table, args, questions, figure_path)
    json_path = out / "fit.json"
    json_path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    print(f"wrote {json_path} and {figure_path}")
    return FitRun(result=result, payload=payload, json_path=json_path, figure_path=figure_path)


def default_output_folder(csv: Path) -> Path:
    """./fits/<csv stem>/ under the current directory: the CSV's own folder may be a shared, read-only or
    versioned data folder, which a fit should not write into."""
    return Path("fits") / Path(csv).stem


def cli_words(text: str) -> str:
    """A library message with its argument names spelled as the command's flags."""
    for library, flag in CLI_SPELLING.items():
        text = text.replace(library, flag)
    return text


def read_fit_table(args: argparse.Namespace, law: Law) -> FitTable:
    """The CSV filtered by --where, checked (one metric, one curve per group, numbers in range) and split into
    the rows to fit and the baseline rows; problems raise before any fitting."""
    frame = _read_csv(args.csv)
    for clause in args.where:
        frame = _keep_matching(frame, clause)
    group_columns = _columns(args.group)
    _refuse_mixed_metrics(frame, group_columns)
    if len(args.x) != len(law.independent_vars):
        raise ValueError(f"--x names {len(args.x)} column(s) but {law.name} takes {list(law.independent_vars)}")
    _require_columns(frame, list(args.x) + [args.y] + group_columns)
    axis = args.x[0]
    is_baseline = _numbers(frame, axis) == args.baseline_x
    fitted, baseline = frame[~is_baseline], frame[is_baseline]
    if fitted.empty:
        raise InputError(f"every row has {axis} = {args.baseline_x:g}, the scratch baseline (--baseline-x): nothing to fit")
    columns = {column: _numbers(fitted, column) for column in args.x}
    y = _numbers(fitted, args.y)
    where_columns = [clause.split("=", 1)[0].strip() for clause in args.where]
    if args.seed_column is not None:
        _require_columns(frame, [args.seed_column])
    _refuse_pooled_curves(fitted, list(args.x), seed_column=args.seed_column or _seed_column(fitted),
                          group_columns=group_columns, ignored=[args.y, *where_columns])
    # Checked here with the CSV's column names, on every row: held-out rows included.
    validate_points(law_name=law.name, xs=columns, y=y, weights=None, row_labels=list(fitted.index),
                    target_range=None if args.no_range_check else law.target_range, y_name=args.y)
    groups = fitted[group_columns].astype(str).agg("/".join, axis=1).tolist() if group_columns else None
    xs = {var: columns[column] for var, column in zip(law.independent_vars, args.x)}
    return FitTable(fitted=fitted, baseline=baseline, xs=xs, y=y, groups=groups, group_columns=group_columns)


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise InputError("the file is empty (expected a header row of column names, then one row per run)") from None
    except UnicodeDecodeError as error:
        raise InputError(f"not a text CSV file ({error.reason} at byte {error.start})") from None
    if frame.empty:
        raise InputError(f"the file has a header ({', '.join(map(str, frame.columns))}) but no rows")
    frame.index = frame.index + 2  # CSV line numbers (line 1 is the header) name rows in every message
    return frame


def _fit_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {
        "fix": dict(_parse_number(item, "--fix") for item in args.fix),
        "bounds": dict(_parse_bounds(item) for item in args.bounds),
        "space": args.space,
        "loss": args.loss,
        "huber_delta": args.huber_delta,
        "shared": _columns(args.shared),
        "level": args.level,
        "bootstrap": args.bootstrap,
        "seed": args.seed,
    }
    if args.no_range_check:
        options["target_range"] = None
    return options


def _compared_laws(args: argparse.Namespace) -> list[str]:
    """--compare's laws, checked up front: a misspelt law should not cost a whole fit first."""
    laws = _columns(args.compare)
    if not laws:
        return []
    if args.extrapolate_from is None:
        raise ValueError("--compare ranks laws by held-out error: add --extrapolate-from X")
    if args.group:
        raise ValueError("--compare ranks laws on one curve; drop --group or use --where to pick a curve")
    for name in laws:
        get_law(name)  # unknown name -> ValueError listing the registered laws
    return laws


def _payload(
    args: argparse.Namespace,
    table: FitTable,
    result: FitResult,
    held_out: ExtrapolationResult | None,
    comparison: LawComparison | None,
    questions: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "input": {
            "csv": str(args.csv),
            "x": list(args.x),
            "y": args.y,
            "group": table.group_columns,
            "where": list(args.where),
            "rows": int(len(table.fitted)),
            "rows_fitted": int(result.n_points),
        },
        "fit": result.to_dict(),
    }
    if not table.baseline.empty:
        payload["baseline"] = _baseline_summary(table.baseline, args.y, table.group_columns)
    payload["questions"] = questions
    if held_out is not None:
        summary = {k: v for k, v in held_out.to_dict().items() if k != "fit"}  # the fit is payload["fit"]
        payload["extrapolation"] = {**summary, "by_group": held_out.by_group(), "points": held_out.points(args.x[0])}
    if comparison is not None:
        payload["comparison"] = comparison.to_dict()
    return payload


def _print_summary(
    args: argparse.Namespace,
    table: FitTable,
    result: FitResult,
    held_out: ExtrapolationResult | None,
    comparison: LawComparison | None,
    payload: dict[str, Any],
) -> None:
    axis = args.x[0]
    if held_out is not None:
        print(f"fit on {axis} <= {args.extrapolate_from:g}: {held_out.n_train} of {len(table.fitted)} points; "
              f"the {held_out.n_test} beyond are held out and scored below")
    print(cli_words(result.report()))
    if "baseline" in payload:
        print(f"baseline ({axis} = {args.baseline_x:g}, not fitted): {json.dumps(payload['baseline'])}")
    for answer in payload["questions"].values():
        print(answer["text"])
    if held_out is not None:
        print(f"extrapolation from {axis} <= {args.extrapolate_from:g}: {_errors_text(payload['extrapolation'])}")
        for group, scores in payload["extrapolation"]["by_group"].items():
            print(f"  {group}: {_errors_text(scores)}")
    if comparison is not None:
        print(comparison.report())


def _errors_text(scores: dict[str, Any]) -> str:
    if not scores["n_test"]:
        return "no held-out points"

    def shown(value: float | None) -> str:
        return "inf" if value is None else f"{value:.4g}"

    return (f"mean |error| {shown(scores['mean_abs_error'])}, max |error| {shown(scores['max_abs_error'])}, "
            f"RMSLE {shown(scores['rmsle'])} on {scores['n_test']} points")


def _write_figure(
    result: FitResult,
    table: FitTable,
    args: argparse.Namespace,
    questions: dict[str, dict[str, Any]],
    path: Path,
) -> None:
    import matplotlib.pyplot as plt

    figure = fit_figure(result, table, args, questions)
    figure.savefig(path, dpi=120, bbox_inches="tight")  # tight: the title and an outside legend are kept whole
    plt.close(figure)


def fit_figure(
    result: FitResult, table: FitTable, args: argparse.Namespace, questions: dict[str, dict[str, Any]]
) -> Any:
    """Data, fit, band and residuals, axes named after the CSV's columns, the cut and the target n marked."""
    from analysis.plots import plot_fit

    axis = args.x[0]
    x_values = next(iter(table.xs.values()))
    # Targets an n below the data needs are met already; beyond it, draw the curve out to them, unless absurdly far.
    targets = {group: n for group, n in _reachable_targets(questions).items() if n >= float(np.min(x_values))}
    extend_to = min(max(targets.values()), 1000 * float(np.max(x_values))) if targets else None
    title = None
    if args.extrapolate_from is not None:
        title = f"{result.law} fitted on {axis} <= {args.extrapolate_from:g} (dotted line); points beyond held out"
    figure = plot_fit(result, table.xs, table.y, groups=table.groups, title=title, x_label=axis, y_label=args.y,
                      extend_to=extend_to)
    main = figure.axes[0]
    if args.extrapolate_from is not None:
        main.axvline(args.extrapolate_from, color="0.4", ls=":", lw=1)
    if args.target_error is not None and args.target_error > 0:
        _mark_target(main, args.target_error, targets, axis, args.y)
    return figure


def _reachable_targets(questions: dict[str, dict[str, Any]]) -> dict[str | None, float]:
    """n_to_reach per curve (None: the single curve), for the curves that get there."""
    reached = {}
    for key, answer in questions.items():
        if key.startswith("n_to_reach") and answer["value"] is not None and answer["value"] > 0:
            reached[key[len("n_to_reach["):-1] if "[" in key else None] = float(answer["value"])
    return reached


def _mark_target(ax: Any, target: float, reached_at: dict[str | None, float], axis: str, y: str) -> None:
    """The target error as a dashed line and a star, in the curve's colour, at the n each curve needs (named when
    there is one curve; with several the stars would write over each other)."""
    ax.axhline(target, color="0.25", ls="--", lw=1)
    ax.annotate(f"target {y} = {target:g}", (0.01, target), xycoords=("axes fraction", "data"),
                xytext=(0, 3), textcoords="offset points", fontsize=8, color="0.25")
    colours = {line.get_label(): line.get_color() for line in ax.get_lines()}
    for group, n in reached_at.items():
        ax.scatter([n], [target], marker="*", s=110, color=colours.get(group, "black"), edgecolor="black",
                   linewidth=0.5, zorder=5)
        if len(reached_at) == 1:
            ax.annotate(f"{axis} = {n:,.0f}", (n, target), xytext=(5, 4), textcoords="offset points", fontsize=8,
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})


def _answer_questions(result: FitResult, target_error: float | None) -> dict[str, dict[str, Any]]:
    from analysis.questions import n_to_reach, transfer_gap

    law = get_law(result.law)
    answers: dict[str, dict[str, Any]] = {}
    if len(law.independent_vars) != 1:
        return answers
    curves = list(result.groups) if result.groups else [None]
    for group in curves:
        suffix = f"[{group}]" if group else ""
        estimates = {f"transfer_gap{suffix}": transfer_gap(result, group=group)}
        if target_error is not None:
            estimates[f"n_to_reach{suffix}"] = n_to_reach(result, target_error, group=group)
        for key, estimate in estimates.items():
            answer = estimate.to_dict()
            answer["note"] = cli_words(answer["note"])
            answers[key] = {**answer, "text": (f"{group}: " if group else "") + cli_words(estimate.report())}
    return answers


def _baseline_summary(rows: Any, y: str, group_columns: list[str]) -> dict[str, Any]:
    if not group_columns:
        return {"mean": float(rows[y].mean()), "count": int(len(rows))}
    labels = rows[group_columns].astype(str).agg("/".join, axis=1)
    return {label: float(values.mean()) for label, values in rows[y].groupby(labels)}


def _comparable(options: dict[str, Any], fitted_law: str) -> dict[str, Any]:
    """Fixed values and bounds name one law's parameters; other laws are compared without them."""
    shared_options = {k: v for k, v in options.items() if k not in ("fix", "bounds", "shared", "bootstrap", "seed")}
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


def _seed_column(frame: pd.DataFrame) -> str | None:
    by_name = {str(c).lower(): c for c in frame.columns}
    return next((by_name[name] for name in SEED_COLUMNS if name in by_name), None)


def _refuse_pooled_curves(
    frame: pd.DataFrame, x_columns: list[str], seed_column: str | None, group_columns: list[str], ignored: list[str]
) -> None:
    """Rows of one curve (same --group values) that repeat an (x, seed) and differ in a label column are several
    curves; pooled as repeats of one they give a meaningless fit with a confident-looking interval. Columns that
    follow the groups (a pre-training task's metric name) never differ within one, so they are not flagged."""
    seeds = [seed_column] if seed_column and seed_column not in x_columns else []
    key = list(dict.fromkeys([*x_columns, *seeds, *group_columns]))
    if not frame.duplicated(key).any():
        return
    candidates = [c for c in frame.columns if c not in key and c not in ignored and _looks_like_label(frame[c])]
    # Text and whole-number columns (task, model, s) name curves before fractional ones (an lr chosen per run).
    candidates.sort(key=lambda c: not _is_discrete(frame[c]))
    labels = _splitting_columns(frame, key, candidates)
    if not labels:
        return
    described = "; ".join(f"{c}: {_value_list(frame[c], limit=5)}" for c in labels)
    first = frame[labels].dropna().iloc[0] if frame[labels].notna().all(axis=1).any() else frame[labels].iloc[0]
    one_curve = " ".join(f"--where {c}={_format_value(first[c])}" for c in labels)
    raise InputError(
        f"the table holds several curves: rows with the same {', '.join(key)} differ in {', '.join(labels)} "
        f"({described}). Fit one curve per value with --group {','.join([*group_columns, *labels])}, or pick one "
        f"curve with {one_curve}. (A column that numbers repeats of one curve is not a label: name it with "
        f"--seed-column.)"
    )


def _splitting_columns(frame: pd.DataFrame, key: list[str], candidates: list[str]) -> list[str]:
    """The candidates, in order, that each split rows still repeating the key: a column that follows one already
    taken (a hash of the level, a second name of the model) splits nothing and is left out of the message."""
    chosen: list[str] = []
    for column in candidates:
        repeated = frame[frame.duplicated([*key, *chosen], keep=False)]
        if repeated.empty:
            break
        if (repeated.groupby([*key, *chosen], dropna=False)[column].nunique() > 1).any():
            chosen.append(column)
    return chosen


def _looks_like_label(column: pd.Series) -> bool:
    """A label takes few values, each shared by many rows; a per-run measurement or hash is nearly unique."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(column) or set(column.dropna().unique()) <= {True, False}:
        return False  # a per-run verdict (beats_baseline), even when missing values made it text
    distinct = column.nunique()
    return 2 <= distinct <= len(column) / 2


def _is_discrete(column: pd.Series) -> bool:
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(column):
        return True
    values = column.dropna().to_numpy(float)
    return bool(np.all(values == np.round(values)))


def _keep_matching(frame: pd.DataFrame, clause: str) -> pd.DataFrame:
    column, value = _split(clause, "=", "--where", "COL=VALUE")
    _require_columns(frame, [column])
    matches = _matches(frame[column], value)
    if not matches.any():
        raise InputError(f"no rows match {column}={value} (values present: {_value_list(frame[column])})")
    return frame[matches]


def _matches(column: pd.Series, text: str) -> pd.Series:
    """Equality in the column's own type: numbers compare as numbers (fratio=1.0 matches 1), booleans ignore case."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(column):
        return column.astype(str).str.lower() == text.lower()
    if pd.api.types.is_numeric_dtype(column):
        try:
            return column == float(text)
        except ValueError:
            return pd.Series(False, index=column.index)
    return column.astype(str) == text


def _value_list(column: pd.Series, limit: int = 12) -> str:
    values = list(dict.fromkeys(column.dropna().tolist()))
    if not values:
        return "none, the column is empty"
    try:
        values = sorted(values)
    except TypeError:
        pass
    shown = ", ".join(_format_value(value) for value in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _format_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


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


def _columns(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _require_columns(frame: Any, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the CSV; it has {list(frame.columns)}")


def _split(item: str, separator: str, flag: str, form: str) -> tuple[str, str]:
    if separator not in item:
        raise ValueError(f"{flag} expects {form}, got {item!r}")
    name, value = item.split(separator, 1)
    return name.strip(), value.strip()


def _parse_number(item: str, flag: str) -> tuple[str, float]:
    name, value = _split(item, "=", flag, "NAME=VALUE")
    try:
        return name, float(value)
    except ValueError:
        raise ValueError(f"{flag} {item!r}: {value!r} is not a number") from None


def _parse_bounds(item: str) -> tuple[str, tuple[float, float]]:
    """NAME=LO:HI; an empty LO or HI leaves that side unbounded, inf and -inf are accepted as written."""
    name, value = _split(item, "=", "--bounds", BOUNDS_FORM)
    if ":" not in value:
        raise ValueError(f"--bounds expects {BOUNDS_FORM}, got {item!r}")
    low, high = (part.strip() for part in value.split(":", 1))
    return name, (_parse_limit(low, -np.inf, item), _parse_limit(high, np.inf, item))


def _parse_limit(text: str, missing: float, item: str) -> float:
    if not text:
        return missing
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--bounds {item!r}: {text!r} is not a number (the form is {BOUNDS_FORM})") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_fit_arguments(argparse.ArgumentParser(prog="lab fit", description=__doc__.splitlines()[0]))
    return run_fit(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
