"""The demo scaling study: synthetic glyphs -> real handwritten digits, a small study on the one orchestrator.

render n_max synthetic digits once -> for every (n, s, seed): pre-train on the first n (n = 0: from scratch),
fine-tune on s real images, measure top-1 error on the held-out real set -> one tidy results table -> fit
L(n) = D n^-alpha + C on n > 0 (the scratch points are a baseline) -> figure + fit JSON + markdown report.
The study is planned once as render / pre-train / fine-tune tasks (`plan_demo`) and run like every other study
(`lab.run.sweep.run_to_completion`, any executor). Finished points are reused, so a second run, or a run after an
interruption, only does what is missing. `plan_rendered_study` plans any grid of studies that pre-train on
rendered data (the digits sweeps of `experiments.sweep`, Figure 1).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from lab.run import sweep
from lab.core.config import ConfigError, to_yaml
from lab.data.real import RealDataConfig, REAL_DATASETS, pool_size
from lab.data.shards import NPZ_FORMAT, ShardFormat, sidecar_path
from lab.run.launch import LauncherConfig, validate_launcher
from lab.models import ModelConfig, check_model_name
from lab.core.rundir import atomic_write_json, atomic_write_text, config_hash
from lab.stages.image import FinetuneConfig, FinetuneJob, PretrainConfig, PretrainJob, run_finetune, run_pretrain
from lab.run.sweep import Plan, Task
from synth_render.dataset import render_dataset, render_shards
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
    sweep.check_axes(config.n, config.s, config.seeds, n_unit="synthetic images", s_unit="real fine-tuning images")
    if config.render_workers <= 0:
        raise ConfigError(f"render_workers (parallel render tasks) must be positive, got {config.render_workers}")
    RENDERERS.get(config.renderer.name)
    REAL_DATASETS.get(config.data.name)
    check_model_name(config.model.name)
    try:
        validate_launcher(config.launcher)
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


@dataclass
class RenderSliceJob:
    renderer: Any
    count: int
    out: str
    shards: list[int]


@dataclass
class RenderedPretrainJob:
    """A pre-training that first makes sure its dataset is complete (verifies shards, writes the manifest)."""

    renderer: Any
    count: int
    pretrain: PretrainJob


def render_slice(job: RenderSliceJob) -> list[int]:
    return render_shards(job.renderer, job.count, job.out, job.shards)


def pretrain_after_render(job: RenderedPretrainJob) -> dict[str, Any]:
    render_dataset(job.renderer, job.count, job.pretrain.dataset, progress=False)
    return run_pretrain(job.pretrain)


STAGES = ("render", "pretrain", "finetune")


def render_slice_tasks(renderer: Any, count: int, dataset: Path, shards_per_task: int,
                       shard_format: ShardFormat = NPZ_FORMAT) -> list[Task]:
    """`count` samples of `renderer` into `dataset`, as tasks of `shards_per_task` shards (none when count = 0)."""
    dataset_id, tasks = config_hash(renderer), []
    n_shards = math.ceil(count / renderer.shard_size)
    for first in range(0, n_shards, shards_per_task):
        shards = list(range(first, min(first + shards_per_task, n_shards)))
        tasks.append(Task(key=f"render/{dataset_id}/{first}", stage="render", fn=render_slice,
                          job=RenderSliceJob(renderer, count, str(dataset), shards),
                          outputs=[str(sidecar_path(dataset / shard_format.file_name(s))) for s in shards]))
    return tasks


# (tasks so far, one cell's study, its grid overrides, its dataset folder, samples rendered, render task keys)
# -> the cell's points, after adding its pre-train and fine-tune tasks to `tasks`
AddPoints = Callable[[dict[str, Task], Any, dict[str, Any], Path, int, list[str]], list[dict[str, Any]]]


def plan_rendered_study(name: str, root: str, cells: Sequence[tuple[dict[str, Any], Any]],
                        dataset_folder: Callable[[Any], Path], shards_per_task: int, add_points: AddPoints,
                        shard_format: ShardFormat = NPZ_FORMAT) -> Plan:
    """The plan of a grid of studies that pre-train on rendered data: one render per renderer config, as large as
    the largest n of the cells that use it, then each cell's tasks; a task shared by cells appears once."""
    counts: dict[str, int] = {}
    for _, study in cells:
        dataset_id = config_hash(study.renderer)
        counts[dataset_id] = max(counts.get(dataset_id, 0), study.pretrain.render_count(max(study.n)))
    tasks: dict[str, Task] = {}
    renders: dict[str, list[str]] = {}
    points: list[dict[str, Any]] = []
    for overrides, study in cells:
        dataset_id, dataset = config_hash(study.renderer), dataset_folder(study.renderer)
        if dataset_id not in renders:
            slices = render_slice_tasks(study.renderer, counts[dataset_id], dataset, shards_per_task, shard_format)
            tasks.update({t.key: t for t in slices})
            renders[dataset_id] = [t.key for t in slices]
        points += add_points(tasks, study, overrides, dataset, counts[dataset_id], renders[dataset_id])
    return Plan(name=name, root=root, tasks=sweep.in_stage_order(tasks.values(), STAGES), points=points)


def digits_points(name: str, root: str, threads: int) -> AddPoints:
    """The digits study's tasks for one cell: a pre-training per (n > 0, seed), a fine-tune per (n, s, seed)."""

    def add(tasks: dict[str, Task], study: DemoConfig, overrides: dict[str, Any], dataset: Path, count: int,
            renders: list[str]) -> list[dict[str, Any]]:
        dataset_id, points = config_hash(study.renderer), []
        for n in dict.fromkeys(study.n):
            for seed in dict.fromkeys(study.seeds):
                pretrain = None
                if n > 0:
                    pretrain = PretrainJob(root=root, experiment=name, dataset=str(dataset), dataset_id=dataset_id,
                                           n=n, seed=seed, model=study.model, train=study.pretrain, threads=threads)
                    run = pretrain.run_dir()
                    tasks.setdefault(f"pretrain/{run.hash}", Task(
                        key=f"pretrain/{run.hash}", stage="pretrain", fn=pretrain_after_render,
                        job=RenderedPretrainJob(study.renderer, count, pretrain), outputs=[str(run.result_path)],
                        depends=list(renders)))
                for s in dict.fromkeys(study.s):
                    job = FinetuneJob(root=root, experiment=name, data=study.data, s=s, seed=seed,
                                      image_size=study.renderer.image_size, model=study.model, train=study.finetune,
                                      pretrain=pretrain, threads=threads)
                    run = job.run_dir()
                    key = f"finetune/{run.hash}"
                    tasks.setdefault(key, Task(key=key, stage="finetune", fn=run_finetune, job=job,
                                               outputs=[str(run.result_path)],
                                               depends=[f"pretrain/{pretrain.run_dir().hash}"] if pretrain else []))
                    points.append({"n": n, "s": s, "seed": seed, "model": study.model.name, "data": study.data.name,
                                   **overrides, "task": key})
        return points

    return add


def render_folder(config: DemoConfig) -> Path:
    renderer = config.renderer
    return config.study_dir / "render" / f"{renderer.name}-seed{renderer.seed}-{config_hash(renderer)}"


def plan_demo(config: DemoConfig) -> Plan:
    """The study as render / pre-train / fine-tune tasks, after every check; the render is split into
    `render_workers` tasks that run in parallel."""
    validate(config)
    shards = math.ceil(config.pretrain.render_count(max(config.n)) / config.renderer.shard_size)
    return plan_rendered_study(config.experiment, config.root, [({}, config)], lambda _: render_folder(config),
                               max(1, math.ceil(shards / config.render_workers)),
                               digits_points(config.experiment, config.root, config.launcher.threads()))


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
    plan = plan_demo(config)
    out = config.study_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", to_yaml(config))
    _, table = sweep.run_to_completion(plan, config.launcher, config.experiment, out / "results.csv")
    runs = table[table.metric == "top1"]
    timings = {"render": sweep.stage_seconds(plan).get("render", 0.0),
               "pretrain": float(runs.drop_duplicates("pretrain_hash").pretrain_seconds.sum()),
               "finetune": float(runs.finetune_seconds.sum())}

    started = time.perf_counter()
    fits, unfitted = fit_curves(table, config)
    timings["fit"] = time.perf_counter() - started
    atomic_write_json(out / "fit.json", {str(s): r.to_dict() for s, r in fits.items()})
    if fits:
        plot_study(table, fits, out / "scaling.png")
    report = write_report(config, table, fits, unfitted, timings)
    atomic_write_text(out / "report.md", report)
    return {"table": table, "fits": fits, "timings": timings, "report": report, "dir": out}
