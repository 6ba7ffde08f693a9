"""The paper's findings as functions of a tidy results table: curves, their fits, trends and extrapolation.

Input is the lab's results table (one row per run and metric: n, s, seed, error, plus the study's axes such as
model, level, pretrain_task, target); nothing here trains. The notebooks under notebooks/paper_*.ipynb call these
functions and write the figures and LaTeX tables of paper/ from them.

Protocol (Mikami et al., see ../shared/reference/scaling-law.md): error = 1 - metric at the last evaluation;
n = 0 (from scratch) is a baseline, never fitted; per-seed points are fitted (not means) so the bootstrap can
resample seeds; curves compared against each other share one D (the paper fixes D to one shared value), so
their alpha and C are comparable and a 6-point curve does not have to pin down three parameters alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.extrapolation import evaluate_extrapolation
from analysis.fit import FitResult, fit_law
from analysis.validation import InputError


def curve_points(table: pd.DataFrame, by: Sequence[str], metric: str = "top1") -> pd.DataFrame:
    """Rows of one metric, with a `curve` label joining the `by` columns; a missing column is an error."""
    missing = [c for c in [*by, "n", "seed", "error", "metric"] if c not in table.columns]
    if missing:
        raise InputError(f"the results table lacks columns {missing}; it has {list(table.columns)}")
    rows = table[table.metric == metric].copy()
    if rows.empty:
        raise InputError(f"no rows with metric {metric!r}; metrics present: {sorted(table.metric.unique())}")
    rows["curve"] = rows[list(by)].astype(str).agg("/".join, axis=1) if by else "all"
    return rows


def curve_summary(table: pd.DataFrame, by: Sequence[str], metric: str = "top1") -> pd.DataFrame:
    """Mean, standard deviation and seed count of the error per curve and n."""
    rows = curve_points(table, by, metric)
    return (rows.groupby([*by, "n"]).error.agg(["mean", "std", "count"]).reset_index()
            .rename(columns={"mean": "error_mean", "std": "error_std", "count": "seeds"}))


@dataclass(frozen=True)
class CurveFits:
    """One grouped fit of L(n) = D n^-alpha + C over several curves (D shared), and a row per curve."""

    result: FitResult
    frame: pd.DataFrame  # by..., curve, alpha, alpha_lo, alpha_hi, C, C_lo, C_hi, scratch, ..., points
    by: tuple[str, ...]


def fit_curves(table: pd.DataFrame, by: Sequence[str], *, metric: str = "top1", shared: Sequence[str] = ("D",),
               bootstrap: int = 200, seed: int = 0) -> CurveFits:
    """Fit every curve (n > 0, one point per seed) in one problem with `shared` parameters common to all."""
    rows = curve_points(table, by, metric)
    trained = rows[rows.n > 0]
    curves = list(dict.fromkeys(trained.curve))
    if not curves:
        raise InputError("no pre-trained points (n > 0) to fit")
    grouped = len(curves) > 1
    result = fit_law(trained.n.to_numpy(float), trained.error.to_numpy(float), "power_floor",
                     groups=list(trained.curve) if grouped else None, shared=tuple(shared) if grouped else (),
                     bootstrap=bootstrap, seed=seed)
    records = []
    for curve in curves:
        part, group = rows[rows.curve == curve], curve if grouped else None
        record = dict(zip(by, part.iloc[0][list(by)]))
        params = result.law_params(group)
        record.update(curve=curve, alpha=params["alpha"], C=params["C"], D=params["D"])
        for name in ("alpha", "C"):
            lo, hi = result.intervals.get(_key(name, group, result), (math.nan, math.nan))
            record[f"{name}_lo"], record[f"{name}_hi"] = lo, hi
        scratch = part[part.n == 0].error
        largest = part[part.n == part.n.max()].error
        record.update(scratch=scratch.mean() if len(scratch) else math.nan,
                      largest_n=int(part.n.max()), error_at_largest=largest.mean(),
                      seed_std=part[part.n > 0].groupby("n").error.std().mean(),
                      points=int((part.n > 0).sum()))
        records.append(record)
    return CurveFits(result=result, frame=pd.DataFrame(records), by=tuple(by))


def _key(name: str, group: str | None, result: FitResult) -> str:
    return name if group is None or name in result.shared else f"{name}[{group}]"


@dataclass(frozen=True)
class Trend:
    """Does a fitted parameter move one way along an ordered axis (model size, scene complexity)?"""

    parameter: str
    axis: str
    order: tuple[str, ...]
    values: tuple[float, ...]
    steps_down: int  # consecutive pairs where the parameter decreases
    endpoint_change: float  # last - first
    endpoints_separated: bool  # the first and last intervals do not overlap

    def sentence(self) -> str:
        pairs = len(self.values) - 1
        verdict = ("lower" if self.endpoint_change < 0 else "higher") + (
            " (intervals disjoint)" if self.endpoints_separated else " (intervals overlap: not resolved)")
        return (f"{self.parameter} along {self.axis} {' < '.join(self.order)}: "
                f"{', '.join(f'{v:.3f}' for v in self.values)}; decreases in {self.steps_down} of {pairs} steps; "
                f"{self.order[-1]} vs {self.order[0]}: {self.endpoint_change:+.3f}, {verdict}")


def trend(fits: CurveFits, parameter: str, axis: str, order: Sequence[str]) -> Trend:
    """The fitted `parameter` of each curve in `order` of the `axis` column (one curve per value)."""
    frame = fits.frame.set_index(axis)
    absent = [o for o in order if o not in frame.index]
    if absent or frame.index.duplicated().any():
        raise InputError(f"trend needs exactly one curve per {axis} value; absent {absent}, curves: "
                         f"{list(fits.frame.curve)}")
    values = [float(frame.loc[o, parameter]) for o in order]
    first, last = frame.loc[order[0]], frame.loc[order[-1]]
    separated = bool(last[f"{parameter}_hi"] < first[f"{parameter}_lo"]
                     or last[f"{parameter}_lo"] > first[f"{parameter}_hi"])
    return Trend(parameter=parameter, axis=axis, order=tuple(order), values=tuple(values),
                 steps_down=sum(b < a for a, b in zip(values, values[1:])),
                 endpoint_change=values[-1] - values[0], endpoints_separated=separated)


def extrapolation_table(table: pd.DataFrame, by: Sequence[str], *, fit_up_to: int, metric: str = "top1",
                        fix: dict[str, float] | None = None) -> pd.DataFrame:
    """Per curve: fit L(n) on 0 < n <= fit_up_to, predict the mean error at each larger n, compare.

    The error is judged against the seed scatter at that n: a prediction inside it is as good as the data allow.
    A curve that cannot be fitted keeps a row with the reason.
    """
    rows = curve_points(table, by, metric)
    records = []
    for curve, part in rows[rows.n > 0].groupby("curve", sort=False):
        base = {**dict(zip(by, part.iloc[0][list(by)])), "curve": curve, "fit_up_to": fit_up_to}
        try:
            held = evaluate_extrapolation(part.n.to_numpy(float), part.error.to_numpy(float), "power_floor",
                                          cut=fit_up_to, fix=fix)
        except InputError as error:
            records.append({**base, "note": str(error)})
            continue
        observed = part[part.n > fit_up_to].groupby("n").error.agg(["mean", "std"])
        for n, row in observed.iterrows():
            predicted = float(held.fit.predict(np.array([float(n)]))[0])
            records.append({**base, "n": int(n), "predicted": predicted, "observed": row["mean"],
                            "abs_error": abs(predicted - row["mean"]), "seed_std": row["std"],
                            "note": "" if held.fit.converged else "fit did not converge"})
    return pd.DataFrame(records)


@dataclass(frozen=True)
class SSweep:
    """The fine-tuning size sweep: joint laws over (n, s), residuals per s, pre-training benefit per s."""

    fits: dict[str, FitResult]  # law name -> fit on every n > 0 point
    per_s: pd.DataFrame  # s, s_fraction, scratch, best (largest n), benefit, residual_<law>, seed_se
    held_out: pd.DataFrame  # law, fit_up_to_s, mean_abs_error, max_abs_error (predicting the larger s)
    breaks_at: float | None  # smallest s from which the multiplicative law's residuals exceed 2 SE


def s_sweep(table: pd.DataFrame, *, pool: int, metric: str = "top1", laws: Sequence[str] = ("joint_ns",
            "joint_additive"), fit_up_to_fraction: float = 0.33, bootstrap: int = 0, seed: int = 0) -> SSweep:
    """Fit the joint laws on every (n > 0, s) point; find where the multiplicative form stops describing the data."""
    rows = curve_points(table, [], metric)
    if rows.s.nunique() < 3:
        raise InputError(f"an s sweep needs at least 3 values of s, got {sorted(rows.s.unique())}")
    trained = rows[rows.n > 0]
    x = {"n": trained.n.to_numpy(float), "s": trained.s.to_numpy(float)}
    y = trained.error.to_numpy(float)
    fits = {law: fit_law(x, y, law, bootstrap=bootstrap, seed=seed) for law in laws}
    per_s = []
    for s, part in rows.groupby("s"):
        at_s = part[part.n > 0]
        largest = at_s[at_s.n == at_s.n.max()].error
        record = {"s": int(s), "s_fraction": s / pool, "scratch": part[part.n == 0].error.mean(),
                  "best": largest.mean(), "benefit": part[part.n == 0].error.mean() - largest.mean()}
        for law, fit in fits.items():
            residual = at_s.error.to_numpy() - fit.predict({"n": at_s.n.to_numpy(float),
                                                            "s": at_s.s.to_numpy(float)})
            record[f"residual_{law}"] = residual.mean()
        record["seed_se"] = (at_s.groupby("n").error.std().mean() / math.sqrt(at_s.seed.nunique())
                             if at_s.seed.nunique() > 1 else math.nan)
        per_s.append(record)
    per_s_frame = pd.DataFrame(per_s)
    off = per_s_frame[f"residual_{laws[0]}"].abs() > 2 * per_s_frame.seed_se
    breaks_at = None
    for i in range(len(per_s_frame)):  # from this s on, every residual is outside the seed noise
        if off.iloc[i:].all():
            breaks_at = float(per_s_frame.s.iloc[i])
            break
    cut = fit_up_to_fraction * pool
    held = []
    for law in laws:
        try:
            result = evaluate_extrapolation(x, y, law, cut=cut, x_axis="s")
            held.append({"law": law, "fit_up_to_s": cut, "mean_abs_error": result.mean_abs_error,
                         "max_abs_error": result.max_abs_error, "rmsle": result.rmsle, "note": ""})
        except InputError as error:
            held.append({"law": law, "fit_up_to_s": cut, "note": str(error)})
    return SSweep(fits=fits, per_s=per_s_frame, held_out=pd.DataFrame(held), breaks_at=breaks_at)


def latex_table(frame: pd.DataFrame, columns: dict[str, str], *, caption: str, label: str,
                formats: dict[str, str] | None = None) -> str:
    """A plain LaTeX table (tabular + hline, no extra packages) of `columns` {column: header}."""
    formats = formats or {}

    def cell(column: str, value: Any) -> str:
        if isinstance(value, float):
            return "--" if math.isnan(value) else _escape(format(value, formats.get(column, ".3f")))
        return _escape(str(value))

    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{" + "l" * len(columns) + "}",
             r"\hline", " & ".join(_escape(h) for h in columns.values()) + r" \\", r"\hline"]
    for _, row in frame.iterrows():
        lines.append(" & ".join(cell(c, row[c]) for c in columns) + r" \\")
    lines += [r"\hline", r"\end{tabular}", rf"\caption{{{_escape(caption)}}}", rf"\label{{{label}}}", r"\end{table}", ""]
    return "\n".join(lines)


def _escape(text: str) -> str:
    """LaTeX's special characters that appear in our labels (names with _, percentages)."""
    for char, escaped in (("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"), ("^", r"\^{}"),
                          ("~", r"\textasciitilde{}")):
        text = text.replace(char, escaped)
    return text


def interval(value: float, lo: float, hi: float, spec: str = ".3f") -> str:
    """`0.210 [0.150, 0.290]`, or the value alone without an interval."""
    if math.isnan(lo) or math.isnan(hi):
        return format(value, spec)
    return f"{value:{spec}} [{lo:{spec}}, {hi:{spec}}]"


@dataclass(frozen=True)
class Finding:
    """One row of the findings table: the paper's claim, what it reported, what the lab measured, the verdict."""

    claim: str
    paper: str
    lab: str
    verdict: str  # reproduced | partly | not reproduced | not resolved (within the seed noise)


def verdict_from_trend(result: Trend, expect: str = "lower") -> str:
    """`reproduced` when the parameter moves the expected way with disjoint endpoint intervals, `partly` when it
    moves that way within the noise, `not reproduced` otherwise."""
    moved = result.endpoint_change < 0 if expect == "lower" else result.endpoint_change > 0
    if moved and result.endpoints_separated:
        return "reproduced"
    return "partly (within the noise)" if moved else "not reproduced"


def save_outputs(out: str | Path, name: str, *, figure: Any = None, tables: dict[str, str] | None = None,
                 findings: Sequence[Finding] = ()) -> list[Path]:
    """Write out/figures/<name>.{pdf,png}, out/tables/<key>.tex and out/findings/<name>.json, each atomically."""
    import json
    import os
    import tempfile

    out = Path(out)
    written = []

    def atomic(path: Path, write: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        written.append(path)

    if figure is not None:
        for suffix in ("pdf", "png"):
            atomic(out / "figures" / f"{name}.{suffix}",
                   lambda tmp, s=suffix: figure.savefig(tmp, format=s, dpi=130, bbox_inches="tight"))
    for key, text in (tables or {}).items():
        atomic(out / "tables" / f"{key}.tex", lambda tmp, t=text: Path(tmp).write_text(t))
    if findings:
        rows = [f.__dict__ for f in findings]
        atomic(out / "findings" / f"{name}.json", lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=1)))
    return written


def load_findings(out: str | Path, order: Sequence[str]) -> list[Finding]:
    """The findings written by the notebooks named in `order` (a missing one is an error naming it)."""
    import json

    folder = Path(out) / "findings"
    missing = [name for name in order if not (folder / f"{name}.json").exists()]
    if missing:
        raise InputError(f"no findings from {missing} in {folder}; run their notebooks first (make figures)")
    return [Finding(**row) for name in order for row in json.loads((folder / f"{name}.json").read_text())]


def findings_markdown(findings: Sequence[Finding]) -> str:
    lines = ["| finding (paper) | paper | this lab | verdict |", "|---|---|---|---|"]
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines += [f"| {cell(f.claim)} | {cell(f.paper)} | {cell(f.lab)} | {cell(f.verdict)} |" for f in findings]
    return "\n".join(lines) + "\n"


def findings_latex(findings: Sequence[Finding]) -> str:
    frame = pd.DataFrame([f.__dict__ for f in findings])
    text = latex_table(frame, {"claim": "finding", "paper": "paper", "lab": "this lab", "verdict": "verdict"},
                       caption="What the lab reproduced at its scale, and what it did not.", label="tab:findings")
    return text.replace(r"\begin{tabular}{llll}", r"\begin{tabular}{p{3.2cm}p{3.2cm}p{5cm}p{2.2cm}}")


def benefit(table: pd.DataFrame, by: Sequence[str], metric: str = "top1") -> pd.DataFrame:
    """Per curve: scratch error (n = 0), error at the smallest and largest n > 0, and whether the gains are
    resolved by a one-sided t-test at 2.5%. The seed noise is pooled over every n of the curve (one noise level
    per curve, as in a one-way ANOVA), so two or three seeds per n still give a usable number of degrees of
    freedom. `beats_scratch`: largest n vs n = 0; `improves_with_n`: largest vs smallest n > 0."""
    rows = curve_points(table, by, metric)
    records = []
    for curve, part in rows.groupby("curve", sort=False):
        trained = part[part.n > 0]
        noise_sd, df = _pooled_noise(part)
        scratch, low = part[part.n == 0].error, trained[trained.n == trained.n.min()].error
        high = trained[trained.n == trained.n.max()].error
        record = {**dict(zip(by, part.iloc[0][list(by)])), "curve": curve, "scratch": scratch.mean(),
                  "error_smallest_n": low.mean(), "error_largest_n": high.mean(), "noise_sd": noise_sd}
        record["gain_vs_scratch"], record["beats_scratch"] = _resolved_gain(scratch, high, noise_sd, df)
        record["gain_with_n"], record["improves_with_n"] = _resolved_gain(low, high, noise_sd, df)
        records.append(record)
    return pd.DataFrame(records)


def _pooled_noise(part: pd.DataFrame) -> tuple[float, int]:
    """The seed-to-seed standard deviation pooled over the curve's n values, and its degrees of freedom."""
    groups = part.groupby("n").error
    df = int((groups.count() - 1).clip(lower=0).sum())
    if df == 0:
        return math.nan, 0
    return float(math.sqrt((groups.var(ddof=1).fillna(0) * (groups.count() - 1)).sum() / df)), df


def _resolved_gain(before: pd.Series, after: pd.Series, noise_sd: float, df: int) -> tuple[float, bool]:
    """Mean of before - after, and whether it is positive beyond the noise (one-sided t-test, 2.5%)."""
    from scipy import stats

    if len(before) == 0 or len(after) == 0:
        return math.nan, False
    gain = float(before.mean() - after.mean())
    if df == 0 or math.isnan(noise_sd):
        return gain, False
    se = noise_sd * math.sqrt(1 / len(before) + 1 / len(after))
    return gain, bool(gain > stats.t.ppf(0.975, df) * se) if se > 0 else gain > 0


def draw_curve(ax: Any, points: pd.DataFrame, result: FitResult | None, *, group: str | None = None,
               color: Any = None, label: str = "") -> None:
    """Seeds as dots, the fitted L(n) over the n > 0 range (bootstrap band when present), the n = 0 mean dashed."""
    trained, scratch = points[points.n > 0], points[points.n == 0].error
    ax.scatter(trained.n, trained.error, s=14, alpha=0.7, color=color)
    if result is not None:
        grid = np.geomspace(trained.n.min(), trained.n.max(), 100)
        ax.plot(grid, result.predict(grid, group=group), color=color, lw=1.6, label=label)
        if result.bootstrap is not None:
            lo, hi = result.predict_interval(grid, group=group)
            ax.fill_between(grid, lo, hi, color=color, alpha=0.15, lw=0)
    if len(scratch):
        ax.axhline(scratch.mean(), color=color, ls="--", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="n (synthetic images)", ylabel="error")
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator, NullFormatter, NullLocator

    ax.xaxis.set_minor_formatter(NullFormatter())  # minor tick labels of a short log range overlap
    # errors often span less than a decade, where a log axis labels nothing: a few plain ticks instead
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    ax.yaxis.set_minor_locator(NullLocator())
