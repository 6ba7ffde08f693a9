"""Figure 1 of Mikami et al.: pre-train on 3D scenes with each pre-training task, fine-tune on real targets.

render the largest n scenes once (tar shards; the first n are a nested subset) -> for every (pre-training task,
n, seed): pre-train a timm body (`lab.stages.scenes3d`) -> for every (real target, s): fine-tune and measure the held-out
error (`lab.stages.image.run_finetune`, unchanged) -> the tidy results table with columns pretrain_task, target, level,
n, s, seed, model -> one fit of L(n) = D n^-alpha + C per (pretrain_task, target, s); n = 0 (from scratch, shared
by every task) is the baseline, not fitted.

Channels and sizes: the scenes are rendered at the fine-tuning size (`renderer.width`, 32 px by default) and
pre-trained in grey (luma), the real targets (grey 28 / 8 / 25 px) are resized to that size, so the body's first
convolution (`model.in_chans` = 1) and its input resolution are the same in both stages.

Run it with `lab sweep --study figure1 launch|status|collect` (any executor), or in-process with `run_figure1`.
The sweep's "task" key names a plan task, so the pre-training task's column is `pretrain_task`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.digits_demo import plan_rendered_study
from lab.run import sweep
from lab.core.config import ConfigError, grid_configs, to_yaml
from lab.data.real import REAL_DATASETS, FolderSource, RealDataConfig, pool_size
from lab.data.tar_shards import TAR_FORMAT
from lab.run.launch import LauncherConfig, validate_launcher
from lab.core.launcher import extensible_dict, plain_dict
from lab.models import ModelConfig, check_model_name
from lab.tasks.pretrain import PRETRAIN_TASKS, AugmentConfig, HeadConfig
from lab.core.rundir import atomic_write_json, atomic_write_text, config_hash
from lab.stages.image import FinetuneConfig, FinetuneJob, PretrainConfig, run_finetune
from lab.stages.scenes3d import Pretrain3DJob, run_pretrain_3d
from lab.run.sweep import Plan, Task
from synth_render.dataset import render_dataset
from synth_render.scene3d.sampler import scene_sampler
from synth_render.scene3d.writer import Scene3DRendererConfig

METRIC = "top1"
PANEL = ["model", "level", "pretrain_task", "target", "s"]  # one fitted curve L(n) per panel


def panel_key(model: str, level: str, task: str, target: str, s: int) -> str:
    return f"{model}/{level}/{task}/{target}/s={s}"


def _renderer() -> Scene3DRendererConfig:
    return Scene3DRendererConfig(level="lv7", width=32, height=32, shard_size=256)


@dataclass
class Figure1StudyConfig:
    """The grid. Defaults are the CPU-sized full study (see the report for its cost); `figure1_toy` shrinks it."""

    tasks: list[str] = field(default_factory=lambda: ["multilabel", "segmentation", "normals", "detection"])
    targets: list[str] = field(default_factory=lambda: ["fashion_mnist", "mnist"])
    n: list[int] = field(default_factory=lambda: [0, 1000, 2000, 4000, 8000, 16000])
    s: list[int] = field(default_factory=lambda: [600])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    # held-out real images per target (fashion_mnist: 0 = its whole official 10k test set)
    test_size: dict[str, int] = field(default_factory=lambda: {"fashion_mnist": 0, "mnist": 1000,
                                                               "sklearn_digits": 500, "lfw_faces": 100})
    # fine-tuning sizes of single targets, replacing `s` for them (e.g. {fashion_mnist: [600, 6000]})
    s_per_target: dict[str, list[int]] = field(default_factory=dict)
    # validation images carved from each target's pool, on which finetune.lr_grid is chosen (0 = none)
    val_size: dict[str, int] = field(default_factory=dict)
    renderer: Scene3DRendererConfig = field(default_factory=_renderer)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def s_for(self, target: str) -> list[int]:
        return list(self.s_per_target.get(target, self.s))


@dataclass
class Figure1Config:
    name: str = "figure1"
    root: str = "runs"
    study: Figure1StudyConfig = field(default_factory=Figure1StudyConfig)
    # More axes over any study key, e.g. {model.name: [...]} (model size) or {renderer.level: [lv0, lv7]}
    # (scene complexity); each cell is a full Figure 1 grid with its own render where the renderer differs.
    grid: dict[str, list[Any]] = field(default_factory=extensible_dict)
    render_shards_per_task: int = 4
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    fit_bootstrap: int = 200

    def __post_init__(self) -> None:
        self.grid = plain_dict(self.grid)


@dataclass
class RenderedPretrain3DJob:
    """A pre-training that first makes sure its render is complete (verifies shards, writes the manifest)."""

    renderer: Scene3DRendererConfig
    count: int
    pretrain: Pretrain3DJob


def pretrain_after_render(job: RenderedPretrain3DJob) -> dict[str, Any]:
    render_dataset(job.renderer, job.count, job.pretrain.dataset, progress=False)
    return run_pretrain_3d(job.pretrain)


def validate(config: Figure1Config) -> list[tuple[dict[str, Any], Figure1StudyConfig]]:
    """Every check that can fail, before anything is rendered or submitted; returns the grid's cells."""
    try:
        validate_launcher(config.launcher)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if config.render_shards_per_task <= 0:
        raise ConfigError("render_shards_per_task must be positive")
    cells = grid_configs(config.grid, config.study, Figure1StudyConfig)
    for overrides, study in cells:
        try:
            validate_study(study)
        except ConfigError as error:
            raise ConfigError(f"grid cell {overrides}: {error}" if overrides else str(error)) from None
    return cells


def validate_study(study: Figure1StudyConfig) -> None:
    if not (study.tasks and study.targets):
        raise ConfigError("study.tasks and study.targets must each list at least one value")
    sweep.check_axes(study.n, study.s, study.seeds, prefix="study.", n_unit="rendered scenes",
                     s_unit="real fine-tuning images")
    for task in study.tasks:
        PRETRAIN_TASKS.get(task)
    if study.renderer.name != "scenes3d" or study.renderer.width != study.renderer.height:
        raise ConfigError("study.renderer must be a square scenes3d render (width = height = the fine-tuning size)")
    if study.model.in_chans != 1:
        raise ConfigError(f"study.model.in_chans must be 1: scenes are pre-trained in grey like the real targets, "
                          f"got {study.model.in_chans}")
    if study.pretrain.augment:
        raise ConfigError("study.pretrain.augment must be false (the digits' random affine would not move masks "
                          "and boxes with the image); use study.augment (flip, invert)")
    check_model_name(study.model.name)
    for key in ("val_size", "s_per_target"):
        unknown = sorted(set(getattr(study, key)) - set(study.targets))
        if unknown:
            raise ConfigError(f"study.{key} names {unknown}, which are not study.targets {study.targets}")
    if any(s <= 0 for target in study.targets for s in study.s_for(target)) or not all(
            study.s_for(target) for target in study.targets):
        raise ConfigError(f"every target needs fine-tuning sizes s > 0, got s={study.s} "
                          f"s_per_target={study.s_per_target}")
    try:
        study.renderer.validate()
        study.pretrain.train_config(max(study.n)).validate("study.pretrain")
        study.augment.validate("study.augment")
        study.finetune.validate("study.finetune")
    except ValueError as error:
        raise ConfigError(str(error)) from None
    for target in study.targets:
        if isinstance(REAL_DATASETS.get(target), FolderSource):
            raise ConfigError(f"target {target!r} reads a folder; figure1 targets are the built-in real datasets")
        if target not in study.test_size:
            raise ConfigError(f"study.test_size has no entry for target {target!r} (it has {sorted(study.test_size)})")
        try:
            study.finetune.validate("study.finetune", target_data(study, target))
            pool = pool_size(target_data(study, target))
        except (ValueError, FileNotFoundError) as error:
            raise ConfigError(f"target {target}: {error}") from None
        if max(study.s_for(target)) > pool:
            raise ConfigError(f"s={max(study.s_for(target))} is larger than the {target} fine-tuning pool "
                              f"({pool} images)")


def target_data(study: Figure1StudyConfig, target: str) -> RealDataConfig:
    return RealDataConfig(name=target, test_size=study.test_size[target], val_size=study.val_size.get(target, 0))


def render_folder(config: Figure1Config, renderer: Scene3DRendererConfig | None = None) -> Path:
    renderer = renderer or config.study.renderer
    return Path(config.root) / config.name / "render" / f"{renderer.name}-{config_hash(renderer)}"


def plan_figure1(config: Figure1Config) -> Plan:
    """render slices -> pre-train per (task, n, seed) -> fine-tune per (target, s), for every grid cell;
    shared parents (a render used by several cells, the n = 0 run shared by every task) appear once."""
    cells = validate(config)

    def add_points(tasks: dict[str, Task], study: Figure1StudyConfig, overrides: dict[str, Any], dataset: Path,
                   count: int, renders: list[str]) -> list[dict[str, Any]]:
        extra = {k: v for k, v in overrides.items() if k not in ("model.name", "renderer.level")}
        return [{**point, **extra} for point in _add_study_tasks(config, study, count, renders, tasks)]

    return plan_rendered_study(config.name, config.root, cells, lambda renderer: render_folder(config, renderer),
                               config.render_shards_per_task, add_points, shard_format=TAR_FORMAT)


def _add_study_tasks(config: Figure1Config, study: Figure1StudyConfig, count: int, renders: list[str],
                     tasks: dict[str, Task]) -> list[dict[str, Any]]:
    threads, renderer = config.launcher.threads(), study.renderer
    dataset, dataset_id = render_folder(config, renderer), config_hash(renderer)
    num_classes = len(scene_sampler(renderer.sampler_config()).class_names)
    points: list[dict[str, Any]] = []
    for task_name in study.tasks:
        for n in study.n:
            for seed in study.seeds:
                pretrain = None
                if n > 0:
                    pretrain = Pretrain3DJob(root=config.root, experiment=config.name, dataset=str(dataset),
                                             dataset_id=dataset_id, task=task_name, n=n, seed=seed,
                                             image_size=renderer.width, num_classes=num_classes, model=study.model,
                                             train=study.pretrain, head=study.head, augment=study.augment,
                                             threads=threads)
                    run = pretrain.run_dir()
                    tasks.setdefault(f"pretrain/{run.hash}", Task(
                        key=f"pretrain/{run.hash}", stage="pretrain", fn=pretrain_after_render,
                        job=RenderedPretrain3DJob(renderer, count, pretrain), outputs=[str(run.result_path)],
                        depends=list(renders)))
                for target in study.targets:
                    for s in study.s_for(target):
                        job = FinetuneJob(root=config.root, experiment=config.name, data=target_data(study, target),
                                          s=s, seed=seed, image_size=renderer.width, model=study.model,
                                          train=study.finetune, pretrain=pretrain, threads=threads)
                        key = f"finetune/{job.run_dir().hash}"
                        depends = [f"pretrain/{pretrain.run_dir().hash}"] if pretrain else []
                        tasks.setdefault(key, Task(  # n = 0 is one scratch run shared by every task's panel
                            key=key, stage="finetune", fn=run_finetune, job=job,
                            outputs=[str(job.run_dir().result_path)], depends=depends))
                        points.append({"n": n, "s": s, "seed": seed, "model": study.model.name, "data": target,
                                       "pretrain_task": task_name, "target": target, "level": renderer.level,
                                       "task": key})
    return points


def fit_panels(table: pd.DataFrame, bootstrap: int = 200, seed: int = 0) -> tuple[dict[str, Any], dict[str, str]]:
    """L(n) = D n^-alpha + C per panel (model, level, pretrain_task, target, s) on n > 0, all seeds; a panel that
    cannot be fitted (too few points) comes back with the reason."""
    from analysis.fit import fit_law
    from analysis.validation import InputError

    fits, unfitted = {}, {}
    rows = table[(table.metric == METRIC) & (table.n > 0)]
    for panel, curve in rows.groupby(PANEL):
        key = panel_key(*panel)
        try:
            fits[key] = fit_law(curve.n.to_numpy(float), curve.error.to_numpy(float), law="power_floor",
                                bootstrap=bootstrap, seed=seed)
        except InputError as error:
            unfitted[key] = str(error)
    return fits, unfitted


def summary(table: pd.DataFrame) -> pd.DataFrame:
    errors = table[table.metric == METRIC]
    return (errors.groupby([*PANEL, "n"]).error.agg(["mean", "std", "count"]).reset_index()
            .rename(columns={"mean": "error_mean", "std": "error_std", "count": "seeds"}))


def pretrain_checks(table: pd.DataFrame) -> pd.DataFrame:
    """One row per pre-training: its held-out synthetic metric, the trivial predictor's, and whether it beat it."""
    columns = ["pretrain_hash", "pretrain_task", "level", "model", "n", "seed", "pretrain_metric",
               "pretrain_heldout", "pretrain_heldout_baseline", "pretrain_beats_baseline"]
    rows = table[(table.metric == METRIC) & (table.n > 0)]
    present = [c for c in columns if c in rows.columns]
    return rows[present].drop_duplicates("pretrain_hash").sort_values(["pretrain_task", "n", "seed"],
                                                                        ignore_index=True)


def write_report(config: Figure1Config, table: pd.DataFrame, fits: dict[str, Any], unfitted: dict[str, str],
                 seconds: float) -> str:
    study = config.study
    grid = f" Grid: {dict(config.grid)}." if config.grid else ""
    lines = [f"# {config.name}: 3D scenes ({study.renderer.width} px, grey) -> real targets", "",
             f"Top-1 error on the held-out real set after fine-tuning on s images.{grid}", "",
             "| model | level | pretrain_task | target | s | n | error | std | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in summary(table).itertuples():
        std = "" if pd.isna(row.error_std) else f"{row.error_std:.2%}"
        lines.append(f"| {row.model} | {row.level} | {row.pretrain_task} | {row.target} | {row.s} | {row.n} | "
                     f"{row.error_mean:.2%} | {std} | {row.seeds} |")
    checks = pretrain_checks(table)
    if "pretrain_beats_baseline" in checks.columns and len(checks):
        control = checks.pretrain_task.map(lambda name: PRETRAIN_TASKS.get(name).control)
        failed = checks[(checks.pretrain_beats_baseline.astype(str) != "True") & ~control]
        lines += ["", "## Did every pre-training learn? (held-out synthetic scenes vs the trivial predictor)", "",
                  f"{len(checks) - len(failed) - int(control.sum())} of {len(checks) - int(control.sum())} "
                  "pre-trainings (control arms aside) beat their trivial baseline "
                  "(class frequencies / the pixel prior / the mean normal / constant centre rates) on held-out "
                  "scenes." + (" NOT LEARNED: the rows marked below measured a perturbed random init, not "
                               "transfer." if len(failed) else ""), "",
                  "| task | n | seed | metric | held-out | trivial | beats |", "|---|---|---|---|---|---|---|"]
        for row, is_control in zip(checks.itertuples(), control):
            mark = "yes" if str(row.pretrain_beats_baseline) == "True" else "**NO**"
            mark += " (control: labels shuffled, not expected to)" if is_control else ""
            lines.append(f"| {row.pretrain_task} | {row.n} | {row.seed} | {row.pretrain_metric} | "
                         f"{row.pretrain_heldout:.4f} | {row.pretrain_heldout_baseline:.4f} | {mark} |")
    for key, result in sorted(fits.items()):
        lines += ["", f"## {key}: L(n) = D n^-alpha + C (n > 0)", "", "```", result.report(), "```"]
    for key, reason in sorted(unfitted.items()):
        lines += ["", f"## {key}: not fitted", "", reason]
    lines += ["", f"Wall time of this call: {seconds:.0f} s. Same fits from the command line: `lab fit "
              f"{Path(config.root) / config.name / 'results.csv'} --where metric=top1 --group {','.join(PANEL)}`",
              ""]
    return "\n".join(lines)


def plot_panels(table: pd.DataFrame, fits: dict[str, Any], path: Path) -> None:
    """Figure 1's layout: one log-log panel per (pre-training task) row and (target, s, model, level) column,
    with the fitted curve and the from-scratch line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.plots import plot_fit

    errors = table[table.metric == METRIC]
    panels = sorted(errors.groupby(PANEL).groups)
    tasks = sorted({p[2] for p in panels})
    columns = sorted({(p[0], p[1], p[3], p[4]) for p in panels})
    fig, axes = plt.subplots(len(tasks), len(columns), figsize=(4.5 * len(columns), 3.5 * len(tasks)),
                             squeeze=False)
    for panel in panels:
        model, level, task, target, s = panel
        ax = axes[tasks.index(task)][columns.index((model, level, target, s))]
        curve = errors[(errors[PANEL] == pd.Series(dict(zip(PANEL, panel)))).all(axis=1)]
        trained, scratch = curve[curve.n > 0], curve[curve.n == 0].error
        key = panel_key(*panel)
        if key in fits:
            plot_fit(fits[key], trained.n.to_numpy(float), trained.error.to_numpy(float), ax=ax, title=key)
        else:
            ax.plot(trained.n, trained.error, "o")
            ax.set(xscale="log", yscale="log", title=f"{key} (not fitted)")
        if "pretrain_beats_baseline" in trained.columns:  # pre-trainings that learned nothing: a red cross
            unlearned = trained[trained.pretrain_beats_baseline.astype(str) == "False"]
            if len(unlearned):
                ax.scatter(unlearned.n, unlearned.error, marker="x", color="red", s=40, zorder=5,
                           label="pre-training did not beat its trivial baseline")
        if len(scratch):
            ax.axhline(scratch.mean(), color="grey", ls="--", label=f"scratch {scratch.mean():.1%}")
            ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def run_figure1(config: Figure1Config) -> dict[str, Any]:
    """Launch (or resume) the sweep, wait for it, collect results.csv, fit every panel, write fit.json,
    figure1.png and report.md."""
    started = time.perf_counter()
    plan = plan_figure1(config)
    out = Path(config.root) / config.name
    atomic_write_text(plan.folder / "config.yaml", to_yaml(config))
    launched, table = sweep.run_to_completion(plan, config.launcher, config.name, out / "results.csv")
    fits, unfitted = fit_panels(table, bootstrap=config.fit_bootstrap)
    atomic_write_json(out / "fit.json", {k: r.to_dict() for k, r in fits.items()})
    plot_panels(table, fits, out / "figure1.png")
    report = write_report(config, table, fits, unfitted, time.perf_counter() - started)
    atomic_write_text(out / "report.md", report)
    return {"table": table, "fits": fits, "unfitted": unfitted, "report": report, "dir": out, "launch": launched}
