"""The paper's findings as functions of a tidy results table: curves, their fits, trends and extrapolation.

Input is the lab's results table (one row per run and metric: n, s, seed, error, plus the study's axes such as
model, level, pretrain_task, target); nothing here trains. The notebooks under notebooks/paper_*.ipynb call these
functions and write the figures and LaTeX tables of paper/ from them.

Protocol (Mikami et al., see ../shared/reference/scaling-law.md): error = 1 - metric at the last evaluation;
n = 0 (from scratch) is a baseline, never fitted; per-seed points are fitted (not means) so the bootstrap can
resample seeds; curves compared against each other share one D (the paper fixes D to one shared value), so
their alpha and C are comparable and a 6-point curve does not have to pin down three parameters alone.

Statistics: a seed is the same real fine-tuning subset and the same initial weights in every arm, so arms are
compared seed by seed (analysis.paired) and the bootstrap redraws whole seeds. Every verdict is one of
reproduced / opposite / not resolved (and partly for findings with several parts): see analysis.paired.
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
from analysis.paired import (NOT_RESOLVED, OPPOSITE, REPRODUCED, VERDICTS, PairedDifference, combine_verdicts,
                             count_verdicts, paired_difference, verdict_from_gain, verdict_from_interval)
from analysis.validation import InputError

__all__ = ["VERDICTS", "CurveFits", "Finding", "PairedDifference", "SSweep", "Trend", "benefit", "combine_verdicts",
           "curve_points", "curve_summary", "draw_curve", "extrapolation_table", "extrapolation_verdict",
           "findings_latex", "findings_markdown", "fit_curves", "gain_finding", "interval", "latex_table",
           "load_findings", "paired_difference", "s_sweep", "save_outputs", "seed_errors", "trend",
           "verdict_from_gain", "verdict_from_trend"]


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


def seed_errors(table: pd.DataFrame, metric: str = "top1", **where: Any) -> pd.Series:
    """Mean error per seed (index: seed) of the rows where every column in `where` equals its value, e.g.
    seed_errors(table, level="lv7", n=2000): one arm of a seed-paired comparison."""
    missing = [c for c in [*where, "seed", "error", "metric"] if c not in table.columns]
    if missing:
        raise InputError(f"the results table lacks columns {missing}; it has {list(table.columns)}")
    rows = table[table.metric == metric]
    for column, value in where.items():
        rows = rows[rows[column] == value]
    return rows.groupby("seed").error.mean()


def curve_summary(table: pd.DataFrame, by: Sequence[str], metric: str = "top1") -> pd.DataFrame:
    """Mean, standard deviation and seed count of the error per curve and n."""
    rows = curve_points(table, by, metric)
    return (rows.groupby([*by, "n"]).error.agg(["mean", "std", "count"]).reset_index()
            .rename(columns={"mean": "error_mean", "std": "error_std", "count": "seeds"}))


@dataclass(frozen=True)
class CurveFits:
    """One grouped fit of L(n) = D n^-alpha + C over several curves (D shared), and a row per curve."""

    result: FitResult
    frame: pd.DataFrame  # by..., curve, alpha, alpha_lo, alpha_hi, C, C_lo, C_hi, scratch, ..., points, interval_note
    by: tuple[str, ...]


def fit_curves(table: pd.DataFrame, by: Sequence[str], *, metric: str = "top1", shared: Sequence[str] = ("D",),
               bootstrap: int = 200, seed: int = 0) -> CurveFits:
    """Fit every curve (n > 0, one point per seed) in one problem with `shared` parameters common to all.

    The bootstrap redraws whole seeds (a seed's points at every n and in every curve together), so over k seeds
    it has C(2k - 1, k) distinct resamples: 2 seeds give 3, too few for an interval, and the intervals are NaN
    with the reason in `interval_note`."""
    rows = curve_points(table, by, metric)
    trained = rows[rows.n > 0]
    curves = list(dict.fromkeys(trained.curve))
    if not curves:
        raise InputError("no pre-trained points (n > 0) to fit")
    grouped = len(curves) > 1
    result = fit_law(trained.n.to_numpy(float), trained.error.to_numpy(float), "power_floor",
                     groups=list(trained.curve) if grouped else None, shared=tuple(shared) if grouped else (),
                     bootstrap=bootstrap, seed=seed, clusters=list(trained.seed))
    interval_note = result.bootstrap.no_interval_reason if result.bootstrap is not None else "no bootstrap"
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
                      points=int((part.n > 0).sum()), interval_note=interval_note)
        records.append(record)
    return CurveFits(result=result, frame=pd.DataFrame(records), by=tuple(by))


def _key(name: str, group: str | None, result: FitResult) -> str:
    return name if group is None or name in result.shared else f"{name}[{group}]"


@dataclass(frozen=True)
class Trend:
    """Does a fitted parameter move one way along an ordered axis (model size, scene complexity)?

    The change last - first is judged by its bootstrap interval: the grouped fit's resamples redraw the same
    seeds for every curve, so the difference of the two curves' draws is a seed-paired comparison."""

    parameter: str
    axis: str
    order: tuple[str, ...]
    values: tuple[float, ...]
    steps_down: int  # consecutive pairs where the parameter decreases
    endpoint_change: float  # last - first
    endpoints_separated: bool  # the first and last intervals exist and do not overlap
    change_lo: float = math.nan  # percentile interval of last - first over the bootstrap draws
    change_hi: float = math.nan
    level: float = 0.95
    note: str = ""  # why there is no interval of the change

    @property
    def resolved(self) -> bool:
        """The change is outside the noise: its interval excludes 0 (or, without one, the endpoints' intervals
        are disjoint)."""
        if math.isfinite(self.change_lo) and math.isfinite(self.change_hi):
            return not self.change_lo <= 0 <= self.change_hi
        return self.endpoints_separated

    def sentence(self) -> str:
        pairs = len(self.values) - 1
        direction = "lower" if self.endpoint_change < 0 else "higher"
        if math.isfinite(self.change_lo) and math.isfinite(self.change_hi):
            evidence = (f"{self.level:.0%} interval of the change [{self.change_lo:+.3f}, {self.change_hi:+.3f}] "
                        + ("excludes 0" if self.resolved else "includes 0: not resolved"))
        elif self.endpoints_separated:
            evidence = "endpoint intervals disjoint"
        else:
            evidence = f"not resolved ({self.note or 'endpoint intervals overlap'})"
        return (f"{self.parameter} along {self.axis} {' < '.join(self.order)}: "
                f"{', '.join(f'{v:.3f}' for v in self.values)}; decreases in {self.steps_down} of {pairs} steps; "
                f"{self.order[-1]} vs {self.order[0]}: {self.endpoint_change:+.3f}, {direction}; {evidence}")


def trend(fits: CurveFits, parameter: str, axis: str, order: Sequence[str]) -> Trend:
    """The fitted `parameter` of each curve in `order` of the `axis` column (one curve per value)."""
    frame = fits.frame.set_index(axis)
    absent = [o for o in order if o not in frame.index]
    if absent or frame.index.duplicated().any():
        raise InputError(f"trend needs exactly one curve per {axis} value; absent {absent}, curves: "
                         f"{list(fits.frame.curve)}")
    values = [float(frame.loc[o, parameter]) for o in order]
    first, last = frame.loc[order[0]], frame.loc[order[-1]]
    bounds = [float(x[f"{parameter}_{side}"]) for x in (first, last) for side in ("lo", "hi")]
    separated = all(math.isfinite(b) for b in bounds) and (bounds[3] < bounds[0] or bounds[2] > bounds[1])
    result, level = fits.result, fits.result.interval_level
    change_lo = change_hi = math.nan
    if result.bootstrap is None:
        note = "no bootstrap: fit with bootstrap=B"
    elif not result.bootstrap.has_interval:
        note = result.bootstrap.no_interval_reason
    else:
        group = (lambda row: str(row["curve"])) if result.groups else (lambda row: None)
        change = (result.param_draws(group(last))[parameter] - result.param_draws(group(first))[parameter])
        tail = (1 - level) / 2
        change_lo, change_hi = (float(v) for v in np.quantile(change, [tail, 1 - tail]))
        note = ""
    return Trend(parameter=parameter, axis=axis, order=tuple(order), values=tuple(values),
                 steps_down=sum(b < a for a, b in zip(values, values[1:])),
                 endpoint_change=values[-1] - values[0], endpoints_separated=bool(separated),
                 change_lo=change_lo, change_hi=change_hi, level=level, note=note)


def extrapolation_table(table: pd.DataFrame, by: Sequence[str], *, fit_up_to: int, metric: str = "top1",
                        fix: dict[str, float] | None = None) -> pd.DataFrame:
    """Per curve: fit L(n) on 0 < n <= fit_up_to, predict the mean error at each larger n, compare.

    The error is judged against the seed scatter at that n (a prediction inside it is as good as the data
    allow) and against two naive predictors scored on the same held-out points: the constant mean of the fitted
    points (`naive_mean`: the mean over fitted n of the mean error at each n) and the mean error at the largest
    fitted n (`naive_last`). A law that does not beat them has not shown that it extrapolates.
    Columns: by..., curve, fit_up_to, n, predicted, observed, abs_error, seed_std, naive_mean, naive_last,
    naive_mean_abs_error, naive_last_abs_error, law_beats_both, note. A curve that cannot be fitted keeps a row
    with the reason. `extrapolation_verdict` turns the table into a verdict.
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
        fitted_means = part[part.n <= fit_up_to].groupby("n").error.mean()
        naive_mean, naive_last = float(fitted_means.mean()), float(fitted_means.iloc[-1])
        for n, row in observed.iterrows():
            predicted = float(held.fit.predict(np.array([float(n)]))[0])
            law_error = abs(predicted - row["mean"])
            mean_error, last_error = abs(naive_mean - row["mean"]), abs(naive_last - row["mean"])
            records.append({**base, "n": int(n), "predicted": predicted, "observed": row["mean"],
                            "abs_error": law_error, "seed_std": row["std"], "naive_mean": naive_mean,
                            "naive_last": naive_last, "naive_mean_abs_error": mean_error,
                            "naive_last_abs_error": last_error,
                            "law_beats_both": bool(law_error < mean_error and law_error < last_error),
                            "note": "" if held.fit.converged else "fit did not converge"})
    return pd.DataFrame(records)


def extrapolation_verdict(held: pd.DataFrame, *, keys: Sequence[str] | None = None,
                          significance: float = 0.05) -> tuple[str, str]:
    """Does the law predict the largest n better than the naive predictors? (verdict, sentence).

    One point per curve: its largest held-out n (curves are the independent units; held-out n of one curve share
    its fit). `reproduced` only when the law's median abs error is below both naive predictors' medians AND its
    advantage over each is resolved (a t-test on naive_abs_error - abs_error paired by curve, its two-sided
    1 - significance interval excluding 0); `opposite` when a naive predictor is better by more than
    that noise; `not resolved` otherwise. `keys` name a curve (default: study and curve, those present)."""
    keys = list(keys) if keys is not None else [c for c in ("study", "curve") if c in held.columns]
    scored = held.dropna(subset=["abs_error"]) if "abs_error" in held.columns else held.iloc[0:0]
    if scored.empty:
        return NOT_RESOLVED, "no curve could be fitted below its cut: nothing to score"
    largest = scored.loc[scored.groupby(keys).n.idxmax()].copy()
    largest.index = largest[keys].astype(str).agg("/".join, axis=1)
    k = len(largest)
    medians = {name: float(largest[column].median()) for name, column in
               (("law", "abs_error"), ("mean", "naive_mean_abs_error"), ("last", "naive_last_abs_error"))}
    advantage = {name: paired_difference(largest[f"naive_{name}_abs_error"], largest.abs_error, significance)
                 for name in ("mean", "last")}
    verdicts = {name: diff.verdict(+1) for name, diff in advantage.items()}
    wins = int(largest.law_beats_both.sum())
    wins_each = {name: int((largest.abs_error < largest[f"naive_{name}_abs_error"]).sum())
                 for name in ("mean", "last")}
    if OPPOSITE in verdicts.values():
        verdict = OPPOSITE
    elif medians["law"] < min(medians["mean"], medians["last"]) and all(v == REPRODUCED for v in verdicts.values()):
        verdict = REPRODUCED
    else:
        verdict = NOT_RESOLVED
    sentence = (f"median abs error at the largest n: law {medians['law']:.4f}, constant mean of the fitted points "
                f"{medians['mean']:.4f}, last fitted point {medians['last']:.4f} over {k} curve{'s' * (k != 1)}; "
                f"the law beats the constant on {wins_each['mean']}, the last point on {wins_each['last']}, both on "
                f"{wins} of {k}; its advantage (naive - law, paired over curves) over the "
                f"constant {advantage['mean'].describe('+.4f', 'curves')}, over the last point "
                f"{advantage['last'].describe('+.4f', 'curves')}")
    return verdict, sentence


@dataclass(frozen=True)
class SSweep:
    """The fine-tuning size sweep: joint laws over (n, s), residuals per s, pre-training benefit per s."""

    fits: dict[str, FitResult]  # law name -> fit on every n > 0 point
    per_s: pd.DataFrame  # s, s_fraction, scratch, best (largest n), benefit (+ _se, _pairs, _lo, _hi, _verdict),
    #                      residual_<law>, seed_se
    held_out: pd.DataFrame  # law, fit_up_to_s, mean_abs_error, max_abs_error (predicting the larger s)
    breaks_at: float | None  # smallest s from which the multiplicative law's residuals exceed 2 SE
    benefit_shrink: PairedDifference | None = None  # benefit at the smallest s - at the largest s, seed-paired


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
    per_s, seed_benefits = [], []
    for s, part in rows.groupby("s"):
        at_s = part[part.n > 0]
        largest = at_s[at_s.n == at_s.n.max()]
        scratch_seeds = part[part.n == 0].groupby("seed").error.mean()
        best_seeds = largest.groupby("seed").error.mean()
        gain = paired_difference(scratch_seeds, best_seeds)
        seed_benefits.append((scratch_seeds - best_seeds).dropna())
        record = {"s": int(s), "s_fraction": s / pool, "scratch": part[part.n == 0].error.mean(),
                  "best": largest.error.mean(), "benefit": gain.mean, "benefit_se": gain.se,
                  "benefit_pairs": gain.pairs, "benefit_lo": gain.lo, "benefit_hi": gain.hi,
                  "benefit_verdict": gain.verdict(+1)}
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
    return SSweep(fits=fits, per_s=per_s_frame, held_out=pd.DataFrame(held), breaks_at=breaks_at,
                  benefit_shrink=paired_difference(seed_benefits[0], seed_benefits[-1]))


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
    verdict: str  # one of analysis.paired.VERDICTS: reproduced | opposite | not resolved | partly


def verdict_from_trend(result: Trend, expect: str = "lower") -> str:
    """`reproduced` when the change last - first is resolved (see `Trend.resolved`) in the `expect`ed direction
    ("lower", "higher", or "either" for a claim that the parameter changes), `opposite` when it is resolved the
    other way, `not resolved` otherwise (NaN intervals included)."""
    signs = {"lower": -1, "higher": 1, "either": 0}
    if expect not in signs:
        raise ValueError(f"expect must be one of {list(signs)}, got {expect!r}")
    if math.isfinite(result.change_lo) and math.isfinite(result.change_hi):
        return verdict_from_interval(result.change_lo, result.change_hi, signs[expect])
    if not result.endpoints_separated or result.endpoint_change == 0:
        return NOT_RESOLVED
    moved = 1 if result.endpoint_change > 0 else -1
    return REPRODUCED if signs[expect] in (0, moved) else OPPOSITE


def save_outputs(out: str | Path, name: str, *, figure: Any = None, tables: dict[str, str] | None = None,
                 findings: Sequence[Finding] = ()) -> list[Path]:
    """Write out/figures/<name>.{pdf,png}, out/tables/<key>.tex and out/findings/<name>.json, each atomically;
    the same figure gives the same bytes (analysis.plots.save_figure)."""
    import json
    import os
    import tempfile

    out = Path(out)
    written = []

    def atomic(path: Path, write: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
        mask = os.umask(0o022)  # mkstemp makes 0600; give the file the mode open() would (0666 minus the umask)
        os.umask(mask)
        os.fchmod(fd, 0o666 & ~mask)
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        written.append(path)

    if figure is not None:
        from analysis.plots import save_figure  # no dates or versions in the files: rerunning leaves git clean

        for suffix in ("pdf", "png"):
            atomic(out / "figures" / f"{name}.{suffix}",
                   lambda tmp, s=suffix: save_figure(figure, tmp, format=s, dpi=130, bbox_inches="tight"))
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


def benefit(table: pd.DataFrame, by: Sequence[str], metric: str = "top1",
            significance: float = 0.05) -> pd.DataFrame:
    """Per curve, seed-paired gains: `gain_vs_scratch` = error(n = 0) - error(largest n) and `gain_with_n` =
    error(smallest n > 0) - error(largest n), each the mean over the seeds both arms have of the per-seed
    difference, with `_se` (sd/sqrt(pairs)), `_pairs`, `_lo`/`_hi` (two-sided t interval, pairs - 1 df),
    `_p` (two-sided) and `_verdict` (reproduced: resolved gain > 0, opposite: resolved < 0, not resolved;
    fewer than 2 pairs: no test, said in `note`). `beats_scratch` / `improves_with_n` are `_verdict ==
    "reproduced"` (a one-sided test at significance / 2). Also: scratch, error_smallest_n, error_largest_n
    (means over all seeds), smallest_n, largest_n, noise_sd (seed SD pooled over the curve's n, descriptive)."""
    rows = curve_points(table, by, metric)
    records = []
    for curve, part in rows.groupby("curve", sort=False):
        trained = part[part.n > 0]
        per_seed = part.groupby(["n", "seed"]).error.mean()
        arm = {n: per_seed.xs(n, level="n") for n in part.n.unique()}
        empty = pd.Series(dtype=float)
        small = int(trained.n.min()) if len(trained) else None
        large = int(trained.n.max()) if len(trained) else None
        record = {**dict(zip(by, part.iloc[0][list(by)])), "curve": curve,
                  "scratch": part[part.n == 0].error.mean(),
                  "error_smallest_n": trained[trained.n == small].error.mean(),
                  "error_largest_n": trained[trained.n == large].error.mean(),
                  "smallest_n": small, "largest_n": large, "noise_sd": _pooled_noise(part)[0]}
        notes, after = [], arm.get(large, empty)
        for name, before in (("gain_vs_scratch", arm.get(0, empty)),
                             ("gain_with_n", arm.get(small, empty) if small != large else empty)):
            gain = paired_difference(before, after, significance)
            record.update({name: gain.mean, f"{name}_se": gain.se, f"{name}_pairs": gain.pairs,
                           f"{name}_lo": gain.lo, f"{name}_hi": gain.hi, f"{name}_p": gain.p_value,
                           f"{name}_verdict": gain.verdict(+1)})
            if gain.note:
                notes.append(f"{name}: {gain.note}")
        record["beats_scratch"] = record["gain_vs_scratch_verdict"] == REPRODUCED
        record["improves_with_n"] = record["gain_with_n_verdict"] == REPRODUCED
        record["note"] = "; ".join(notes)
        records.append(record)
    return pd.DataFrame(records)


def gain_finding(gains: pd.DataFrame, column: str = "gain_vs_scratch", unit: str = "panels") -> tuple[str, str]:
    """One verdict for a gain claimed for every curve of `benefit(...)` (combine_verdicts over the curves), and a
    sentence: `3 of 12 panels reproduced, 9 not resolved (seed-paired t-test, two-sided 95%, 2 paired seeds
    per panel, 1 df); mean gain -0.011`."""
    verdicts = list(gains[f"{column}_verdict"])
    pairs = gains[f"{column}_pairs"]
    one = unit[:-1] if unit.endswith("s") else unit
    if pairs.max() < 2:
        test = f"at most {int(pairs.max())} paired seed per {one}: no test"
    elif pairs.min() == pairs.max():
        k = int(pairs.min())
        test = f"seed-paired t-test, two-sided 95%, {k} paired seeds per {one}, {k - 1} df"
    else:
        test = f"seed-paired t-test, two-sided 95%, {int(pairs.min())}-{int(pairs.max())} paired seeds per {one}"
    sentence = f"{count_verdicts(verdicts, unit)} ({test}); mean gain {gains[column].mean():+.3f}"
    return combine_verdicts(verdicts), sentence


def _pooled_noise(part: pd.DataFrame) -> tuple[float, int]:
    """The seed-to-seed standard deviation pooled over the curve's n values, and its degrees of freedom."""
    groups = part.groupby("n").error
    df = int((groups.count() - 1).clip(lower=0).sum())
    if df == 0:
        return math.nan, 0
    return float(math.sqrt((groups.var(ddof=1).fillna(0) * (groups.count() - 1)).sum() / df)), df


SCRATCH_LABEL = "scratch (n = 0)"
UNLEARNED_LABEL = "pre-training did not beat its trivial baseline"


def count_label(n: float, _position: Any = None) -> str:
    """A tick label for a sample count: 250, 4k, 16k, 1.28M."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.3g}"


def draw_intervals(ax: Any, x: Sequence[float], point: Sequence[float], lo: Sequence[float],
                   hi: Sequence[float], **style: Any) -> None:
    """Points with their intervals drawn as they are: a bootstrap percentile interval need not contain the point
    estimate (a parameter on its bound), which errorbar's +-offsets cannot show."""
    ax.vlines(x, lo, hi, color=style.get("color", "C0"), lw=1.2)
    ax.plot(x, point, "o", color=style.get("color", "C0"), label=style.get("label"))


def draw_curve(ax: Any, points: pd.DataFrame, result: FitResult | None, *, group: str | None = None,
               color: Any = None, label: str = "", scratch_label: str | None = None) -> None:
    """Seeds as dots, the fitted L(n) over the n > 0 range (bootstrap band when present), the n = 0 mean dashed
    (in the legend as `scratch_label` when given). The x axis has a tick at each swept n (up to 8 of them), so
    even a range within one decade shows several labelled ticks."""
    from matplotlib.ticker import (FixedLocator, FormatStrFormatter, FuncFormatter, LogLocator, MaxNLocator,
                                   NullFormatter, NullLocator)

    trained, scratch = points[points.n > 0], points[points.n == 0].error
    ax.scatter(trained.n, trained.error, s=14, alpha=0.7, color=color)
    if result is not None:
        grid = np.geomspace(trained.n.min(), trained.n.max(), 100)
        ax.plot(grid, result.predict(grid, group=group), color=color, lw=1.6, label=label)
        if result.bootstrap is not None and result.bootstrap.has_interval:
            lo, hi = result.predict_interval(grid, group=group)
            ax.fill_between(grid, lo, hi, color=color, alpha=0.15, lw=0)
    if len(scratch):
        ax.axhline(scratch.mean(), color=color, ls="--", lw=1, label=scratch_label or "_nolegend_")
    ax.set(xscale="log", yscale="log", xlabel="n (synthetic images)", ylabel="error")
    swept = np.sort(trained.n.unique())
    ax.xaxis.set_major_locator(FixedLocator(swept) if 1 < len(swept) <= 8 else LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(count_label))
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor tick labels of a short log range overlap
    # errors often span less than a decade, where a log axis labels nothing: a few plain ticks instead
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    ax.yaxis.set_minor_locator(NullLocator())


def draw_figure1(errors: pd.DataFrame, fits: dict[tuple[str, int], Any], *,
                 controls: Sequence[str] = ()) -> Any:
    """Figure 1: one panel per pre-training task (rows) and (target, s) (columns), from `fit_curves` results keyed
    by (target, s). Every panel labels its own n ticks; one legend names the fit, the scratch line and the red
    crosses (pre-trainings that did not beat their trivial baseline). Controls are drawn in red, last."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    tasks = sorted(errors.pretrain_task.unique(), key=lambda t: (t in controls, t))
    columns = sorted(fits)
    figure, axes = plt.subplots(len(tasks), len(columns), figsize=(3.2 * len(columns), 2.5 * len(tasks) + 0.5),
                                squeeze=False)
    for i, task in enumerate(tasks):
        for j, (target, s) in enumerate(columns):
            ax = axes[i][j]
            part = errors[(errors.pretrain_task == task) & (errors.target == target) & (errors.s == s)]
            fit = fits[(target, s)]
            draw_curve(ax, part, fit.result, group=task if len(fit.frame) > 1 else None,
                       color="C3" if task in controls else "C0", label="fit L(n)", scratch_label=SCRATCH_LABEL)
            if "pretrain_beats_baseline" in part.columns:
                unlearned = part[(part.n > 0) & (part.pretrain_beats_baseline.astype(str) == "False")]
                ax.scatter(unlearned.n, unlearned.error, marker="x", color="red", s=30, zorder=5)
            ax.set_title(f"{task} -> {target}, s={s}", fontsize=8)
            ax.set(xlabel="n" if i == len(tasks) - 1 else "", ylabel="error" if j == 0 else "")
    handles = [Line2D([], [], color="C0", lw=1.6, label="fit L(n) = D n^-alpha + C (band: bootstrap 95%)"),
               Line2D([], [], color="C0", ls="--", lw=1, label=SCRATCH_LABEL),
               Line2D([], [], color="C0", marker="o", ls="", ms=4, label="seeds")]
    if "pretrain_beats_baseline" in errors.columns:
        handles.append(Line2D([], [], color="red", marker="x", ls="", label=UNLEARNED_LABEL))
    figure.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.45 / figure.get_figheight()))
    return figure


def draw_extrapolation(scored: pd.DataFrame) -> Any:
    """Predicted vs observed error at each curve's largest n, one colour per study; horizontal error bars are the
    seed standard deviation of the observed mean, so a point within its bar of the diagonal is as good as the seeds
    allow. `scored`: rows of `extrapolation_table` (with a `study` column) that have an abs_error."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    largest = scored.loc[scored.groupby(["study", "curve"]).n.idxmax()]
    figure, ax = plt.subplots(figsize=(5, 4))
    for color, (name, part) in zip(sns.color_palette("colorblind"), largest.groupby("study")):
        ax.errorbar(part.observed, part.predicted, xerr=part.seed_std.fillna(0), fmt="o", ms=4, color=color,
                    ecolor=color, elinewidth=1, capsize=2, label=name)
    spread = largest.seed_std.fillna(0)
    lims = [min(scored[["observed", "predicted"]].min().min(), (largest.observed - spread).min()) * 0.9,
            max(scored[["observed", "predicted"]].max().max(), (largest.observed + spread).max()) * 1.1]
    ax.plot(lims, lims, color="0.3", lw=1)
    ax.set(xlim=lims, ylim=lims, xlabel="observed error at the largest n (bars: seed SD)",
           ylabel="predicted from n <= largest/4")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure
