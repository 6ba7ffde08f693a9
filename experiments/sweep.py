"""Sweeps of the digits study: a grid over any config keys, as render / pre-train / fine-tune tasks.

The sweep's study config gives the n, s and seeds axes; `grid` adds axes over any other key of the study
(`model.name`, `pretrain.lr`, `renderer.rotation_deg`, `data.name`, ...). Each grid cell is validated like
a demo before anything is submitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from experiments.digits_demo import DemoConfig, validate
from lab.config import ConfigError, grid_configs
from lab.launch import LauncherConfig
from lab.rundir import config_hash
from lab.stages import FinetuneJob, PretrainJob, run_finetune, run_pretrain
from lab.sweep import Plan, Task
from synth_render.dataset import render_dataset, render_shards


@dataclass
class SweepConfig:
    name: str = "digits_sweep"
    root: str = "runs"
    study: DemoConfig = field(default_factory=DemoConfig)
    grid: dict[str, list[Any]] = field(default_factory=dict)  # dotted study key -> values
    render_shards_per_task: int = 4
    launcher: LauncherConfig = field(default_factory=LauncherConfig)


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


def grid_cells(config: SweepConfig) -> list[tuple[dict[str, Any], DemoConfig]]:
    """Every combination of the grid's values, applied to the study config and validated."""
    cells = grid_configs(config.grid, config.study, DemoConfig)
    for _, study in cells:
        validate(study)
    return cells


def plan_sweep(config: SweepConfig) -> Plan:
    if config.render_shards_per_task <= 0:
        raise ConfigError("render_shards_per_task must be positive")
    try:
        config.launcher.validate()
    except ValueError as error:
        raise ConfigError(str(error)) from None
    cells = grid_cells(config)
    threads = config.launcher.threads()
    tasks: dict[str, Task] = {}
    points: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for _, study in cells:  # one render per renderer config, as large as its largest n
        counts[config_hash(study.renderer)] = max(counts.get(config_hash(study.renderer), 0),
                                                  study.pretrain.render_count(max(study.n)))
    renders: dict[str, list[str]] = {}
    for overrides, study in cells:
        dataset_id = config_hash(study.renderer)
        dataset = str(Path(config.root) / config.name / "render" / f"{study.renderer.name}-{dataset_id}")
        count = counts[dataset_id]
        if count > 0 and dataset_id not in renders:
            renders[dataset_id] = []
            n_shards = math.ceil(count / study.renderer.shard_size)
            for first in range(0, n_shards, config.render_shards_per_task):
                shards = list(range(first, min(first + config.render_shards_per_task, n_shards)))
                task = Task(key=f"render/{dataset_id}/{first}", stage="render", fn=render_slice,
                            job=RenderSliceJob(study.renderer, count, dataset, shards),
                            outputs=[str(Path(dataset) / f"shard-{s:05d}.json") for s in shards])
                tasks[task.key] = task
                renders[dataset_id].append(task.key)
        for n in study.n:
            for seed in study.seeds:
                pretrain = None
                if n > 0:
                    pretrain = PretrainJob(root=config.root, experiment=config.name, dataset=dataset,
                                           dataset_id=dataset_id, n=n, seed=seed, model=study.model,
                                           train=study.pretrain, threads=threads)
                    run = pretrain.run_dir()
                    tasks.setdefault(f"pretrain/{run.hash}", Task(
                        key=f"pretrain/{run.hash}", stage="pretrain", fn=pretrain_after_render,
                        job=RenderedPretrainJob(study.renderer, count, pretrain),
                        outputs=[str(run.result_path)], depends=list(renders[dataset_id])))
                for s in study.s:
                    job = FinetuneJob(root=config.root, experiment=config.name, data=study.data, s=s, seed=seed,
                                      image_size=study.renderer.image_size, model=study.model, train=study.finetune,
                                      pretrain=pretrain, threads=threads)
                    run = job.run_dir()
                    key = f"finetune/{run.hash}"
                    tasks.setdefault(key, Task(key=key, stage="finetune", fn=run_finetune, job=job,
                                               outputs=[str(run.result_path)],
                                               depends=[f"pretrain/{pretrain.run_dir().hash}"] if pretrain else []))
                    points.append({"n": n, "s": s, "seed": seed, "model": study.model.name, "data": study.data.name,
                                   **overrides, "task": key})
    stage_order = {"render": 0, "pretrain": 1, "finetune": 2}
    ordered = sorted(tasks.values(), key=lambda t: stage_order[t.stage])
    return Plan(name=config.name, root=config.root, tasks=ordered, points=points)
