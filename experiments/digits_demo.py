"""The demo scaling study: synthetic glyphs -> real handwritten digits.

render n_max synthetic digits once -> for every (n, s, seed): pre-train on the first n (n = 0: from scratch),
fine-tune on s real images, measure top-1 error on the held-out real set -> one tidy results table -> fit
L(n) = D n^-alpha + C on n > 0 (the scratch points are a baseline) -> figure + fit JSON + markdown report.
Finished points are reused, so a second run, or a run after an interruption, only does what is missing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lab.config import ConfigError, to_yaml
from lab.data.real import RealDataConfig, REAL_DATASETS, pool_size
from lab.launch import LauncherConfig, run_jobs
from lab.models import ModelConfig, check_model_name
from lab.results import results_table, write_table
from lab.rundir import atomic_write_json, atomic_write_text, config_hash
from lab.stages import FinetuneConfig, FinetuneJob, PretrainConfig, PretrainJob, run_finetune
from synth_render.dataset import render_dataset
from synth_render.digits import DigitRendererConfig
from synth_render.registry import RENDERERS


@dataclass
class FitConfig:
    law: str = "power_floor"
    bootstrap: int = 1000
    seed: int = 0


@dataclass
class DemoConfig:
    """The digits scaling study. Defaults are sized for a 2-core laptop (7-9 minutes)."""

    experiment: str = "digits_demo"
    root: str = "runs"
    n: list[int] = field(default_factory=lambda: [0, 500, 1000, 2000, 4000, 8000, 16000])
    s: list[int] = field(default_factory=lambda: [50])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    render_workers: int = 2
    renderer: DigitRendererConfig = field(default_factory=DigitRendererConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    # the paper's fixed budget: 300 steps for every n (sized so the demo runs in under 10 minutes on 2 cores)
    pretrain: PretrainConfig = field(default_factory=lambda: PretrainConfig(steps=300))
    # every arm (scratch and each n) picks its learning rate from the same grid on the validation split
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(lr_grid=[0.003, 0.01]))
    data: RealDataConfig = field(default_factory=lambda: RealDataConfig(val_size=500))
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    fit: FitConfig = field(default_factory=FitConfig)

    @property
    def study_dir(self) -> Path:
        return Path(self.root) / self.experiment


def validate(config: DemoConfig) -> None:
    """Every check that can fail, before any work starts."""
    if not config.n or not config.s or not config.seeds:
        raise ConfigError("n, s and seeds must each list at least one value")
    if any(n < 0 for n in config.n):
        raise ConfigError(f"n must be >= 0 (0 = from scratch), got {config.n}")
    if any(s <= 0 for s in config.s):
        raise ConfigError(f"s (real fine-tuning images) must be positive, got {config.s}")
    RENDERERS.get(config.renderer.name)
    REAL_DATASETS.get(config.data.name)
    check_model_name(config.model.name)
    try:
        config.launcher.validate()
        config.renderer.validate()
        config.pretrain.train_config(max(config.n)).validate("pretrain")
        config.finetune.validate("finetune", config.data)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    pool = pool_size(config.data)
    if pool <= 0:
        raise ConfigError(f"data.test_size={config.data.test_size} leaves no fine-tuning pool in {config.data.name}")
    if max(config.s) > pool:
        raise ConfigError(f"s={max(config.s)} is larger than the {config.data.name} fine-tuning pool ({pool} images)")


def plan_points(config: DemoConfig, dataset_dir: Path) -> list[FinetuneJob]:
    """One job per (n, s, seed), largest pre-training first so the slowest jobs start early."""
    dataset_id = config_hash(config.renderer)
    jobs = []
    for n in sorted(set(config.n), reverse=True):
        for seed in config.seeds:
            pretrain = None
            if n > 0:
                pretrain = PretrainJob(root=config.root, experiment=config.experiment, dataset=str(dataset_dir),
                                       dataset_id=dataset_id, n=n, seed=seed, model=config.model,
                                       train=config.pretrain)
            for s in config.s:
                jobs.append(FinetuneJob(root=config.root, experiment=config.experiment, data=config.data, s=s,
                                        seed=seed, image_size=config.renderer.image_size, model=config.model,
                                        train=config.finetune, pretrain=pretrain, threads=config.launcher.threads()))
    return jobs


def fit_curves(table: pd.DataFrame, config: DemoConfig) -> tuple[dict[int, Any], dict[int, str]]:
    """Fit the law to the top-1 error of every s, on n > 0 with all seeds (bootstrap over seeds).

    A curve the law cannot be fitted to (too few points) is returned with the reason instead of a fit.
    """
    from analysis.fit import fit_law
    from analysis.validation import InputError

    fits, unfitted = {}, {}
    errors = table[table.metric == "top1"]
    for s, curve in errors[errors.n > 0].groupby("s"):
        try:
            fits[int(s)] = fit_law(curve.n.to_numpy(float), curve.error.to_numpy(float), law=config.fit.law,
                                   bootstrap=config.fit.bootstrap, seed=config.fit.seed)
        except InputError as error:
            unfitted[int(s)] = str(error)
    return fits, unfitted


def plot_study(table: pd.DataFrame, fits: dict[int, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.plots import plot_fit

    errors = table[table.metric == "top1"]
    fig, axes = plt.subplots(1, len(fits), figsize=(6 * len(fits), 4.5), squeeze=False)
    for ax, (s, result) in zip(axes[0], sorted(fits.items())):
        curve = errors[(errors.s == s) & (errors.n > 0)]
        plot_fit(result, curve.n.to_numpy(float), curve.error.to_numpy(float), ax=ax, residuals=True,
                 title=f"{table.model.iloc[0]}: synthetic digits -> {table.data.iloc[0]}, s = {s}")
        scratch = errors[(errors.s == s) & (errors.n == 0)].error
        if len(scratch):
            ax.axhline(scratch.mean(), color="grey", ls="--", label=f"from scratch ({scratch.mean():.1%})")
        ax.set_ylabel("real test error (1 - top-1)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    errors = table[table.metric == "top1"]
    return (errors.groupby(["s", "n"]).error.agg(["mean", "std", "count"]).reset_index()
            .rename(columns={"mean": "error_mean", "std": "error_std", "count": "seeds"}))


def write_report(config: DemoConfig, table: pd.DataFrame, fits: dict[int, Any], unfitted: dict[int, str],
                 timings: dict[str, float]) -> str:
    lines = [f"# {config.experiment}: synthetic digits -> real {config.data.name}", "",
             f"Model `{config.model.name}`; pre-training on n synthetic images, fine-tuning on s real images, "
             f"top-1 error on {config.data.test_size} held-out real images (last step, not the best). "
             f"Seeds: {list(config.seeds)}.", "", "## Error by n (mean and std over seeds)", "",
             "| s | n | error | std | seeds |", "|---|---|---|---|---|"]
    for row in summary_table(table).itertuples():
        std = "" if np.isnan(row.error_std) else f"{row.error_std:.2%}"
        lines.append(f"| {row.s} | {row.n} | {row.error_mean:.2%} | {std} | {row.seeds} |")
    for s, result in sorted(fits.items()):
        lines += ["", f"## Fit of L(n) = D n^-alpha + C at s = {s} (n > 0, all seeds; intervals: bootstrap over seeds)",
                  "", "```", result.report(), "```"]
        scratch = table[(table.metric == "top1") & (table.s == s) & (table.n == 0)].error
        if len(scratch):
            largest = table[(table.metric == "top1") & (table.s == s) & (table.n == max(config.n))].error.mean()
            lines.append(f"\nFrom scratch: {scratch.mean():.2%}; at n = {max(config.n)}: {largest:.2%} "
                         f"({scratch.mean() - largest:+.2%} points from pre-training).")
    for s, reason in sorted(unfitted.items()):
        lines += ["", f"## s = {s}: not fitted", "", reason]
    lines += baseline_lines(table, config)
    lines += ["", "## Compute per stage (seconds summed over the jobs that made these results; jobs ran in parallel)", "",
              "| stage | seconds |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    lines += ["", "Files: `results.csv` (tidy table), `fit.json`, `scaling.png`, `config.yaml`.", ""]
    return "\n".join(lines)


def baseline_lines(table: pd.DataFrame, config: DemoConfig) -> list[str]:
    """Every learned component against its trivial baseline: each pre-training's held-out synthetic error vs
    the majority class, each fine-tune's test error vs the label prior; failures are named."""
    rows = table[table.metric == "top1"]
    lines = ["", "## Trivial baselines", ""]
    trained = rows[rows.n > 0].drop_duplicates("pretrain_hash")
    if "pretrain_heldout" in trained.columns and trained.pretrain_heldout.notna().any():
        beaten = trained.pretrain_beats_baseline.astype(str) == "True"
        lines.append(f"Pre-training ({config.pretrain.steps_for(max(config.n))} steps for every n, budget "
                     f"`{config.pretrain.budget}`): held-out synthetic top-1 error {trained.pretrain_heldout.min():.2%}"
                     f" to {trained.pretrain_heldout.max():.2%} vs {trained.pretrain_heldout_baseline.max():.2%} "
                     f"for the majority class; {int(beaten.sum())} of {len(trained)} pre-trainings beat it.")
        for row in trained[~beaten].itertuples():
            lines.append(f"- NOT LEARNED: pre-training n={row.n} seed={row.seed} ({row.pretrain_heldout:.2%})")
    if config.finetune.lr_grid and "lr" in rows.columns:
        chosen = rows.groupby("n").lr.agg(lambda v: ", ".join(f"{x:g}" for x in v))
        lines.append(f"Fine-tuning learning rate, chosen per run from {list(config.finetune.lr_grid)} on "
                     f"{config.data.val_size} validation images carved from the real pool (never the test set): "
                     + "; ".join(f"n={n}: {lrs}" for n, lrs in chosen.items()) + ".")
    if "baseline_error" in rows.columns and rows.baseline_error.notna().any():
        beaten = rows.beats_baseline.astype(str) == "True"
        lines.append(f"Fine-tuning: {int(beaten.sum())} of {len(rows)} runs beat the label prior "
                     f"({rows.baseline_error.max():.2%} test error).")
        for row in rows[~beaten].itertuples():
            lines.append(f"- DID NOT BEAT THE PRIOR: n={row.n} s={row.s} seed={row.seed} ({row.error:.2%})")
    return lines


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run (or resume) the study and write results.csv, fit.json, scaling.png and report.md."""
    validate(config)
    out = config.study_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", to_yaml(config))
    timings: dict[str, float] = {}

    started = time.perf_counter()
    dataset_dir = out / "render" / f"{config.renderer.name}-seed{config.renderer.seed}-{config_hash(config.renderer)}"
    if max(config.n) > 0:
        render_dataset(config.renderer, config.pretrain.render_count(max(config.n)), dataset_dir,
                       workers=config.render_workers)
    timings["render"] = time.perf_counter() - started

    jobs = plan_points(config, dataset_dir)
    pending = [job for job in jobs if not job.run_dir().done]  # finished points are not even submitted
    outcomes = run_jobs(run_finetune, pending, config.launcher, out / "jobs", desc=f"{config.experiment} points")
    failed = [o for o in outcomes if not o.ok]

    finished = [job.run_dir().read_result() for job in jobs if job.run_dir().done]
    table = results_table(finished, config.experiment)
    write_table(table, out / "results.csv")
    timings["pretrain"] = sum({r["pretrain_hash"]: r["pretrain_seconds"] for r in finished}.values())
    timings["finetune"] = sum(r["finetune_seconds"] for r in finished)
    if failed:
        details = "\n".join(f"  n={o.config.n} s={o.config.s} seed={o.config.seed}: {o.error} (log: {o.log})"
                            for o in failed)
        raise RuntimeError(f"{len(failed)} of {len(outcomes)} points failed (finished ones are kept):\n{details}")

    started = time.perf_counter()
    fits, unfitted = fit_curves(table, config)
    timings["fit"] = time.perf_counter() - started
    atomic_write_json(out / "fit.json", {str(s): r.to_dict() for s, r in fits.items()})
    if fits:
        plot_study(table, fits, out / "scaling.png")
    report = write_report(config, table, fits, unfitted, timings)
    atomic_write_text(out / "report.md", report)
    return {"table": table, "fits": fits, "timings": timings, "report": report, "dir": out}
