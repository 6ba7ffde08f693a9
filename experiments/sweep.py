"""Sweeps of the digits study: a grid over any config keys, as render / pre-train / fine-tune tasks.

The sweep's study config gives the n, s and seeds axes; `grid` adds axes over any other key of the study
(`model.name`, `pretrain.lr`, `renderer.rotation_deg`, `data.name`, ...). Each grid cell is validated like
a demo before anything is submitted, and planned by the demo's own planner (`experiments.digits_demo`).
Both `grid={model.name: [a, b]}` (as the README and sweep.yaml write it) and `+grid=...` set the grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.design import DESIGN_KINDS, DesignConfig
from experiments.digits_demo import (  # noqa: F401 (the task types: plans pickled before they moved name them here)
    DemoConfig, RenderedPretrainJob, RenderSliceJob, digits_points, plan_rendered_study, pretrain_after_render,
    render_slice, validate,
)
from lab.core.config import ConfigError, grid_configs
from lab.core.launcher import extensible_dict, plain_dict
from lab.run.launch import LauncherConfig, validate_launcher
from lab.core.rundir import config_hash
from lab.run.sweep import Plan


@dataclass
class SweepConfig:
    name: str = "digits_sweep"
    root: str = "runs"
    study: DemoConfig = field(default_factory=DemoConfig)
    # dotted study key -> values; open to new keys, so `grid={model.name: [...]}` works without a '+'
    grid: dict[str, list[Any]] = field(default_factory=extensible_dict)
    render_shards_per_task: int = 4
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    design: DesignConfig = field(default_factory=DesignConfig)  # grid (default) or adaptive: `lab sweep adapt`

    def __post_init__(self) -> None:
        self.grid = plain_dict(self.grid)


MAX_RENDER_TASKS = 100_000  # render slices one sweep may plan (a Slurm array holds at most MaxArraySize - 1)


def grid_cells(config: SweepConfig) -> list[tuple[dict[str, Any], DemoConfig]]:
    """Every combination of the grid's values, applied to the study config and validated."""
    for key, values in config.grid.items():
        if not isinstance(values, (list, tuple)):
            raise ConfigError(f"grid.{key} must list the values to sweep, e.g. grid={{{key}: [a, b]}}; got {values!r}")
    cells = grid_configs(config.grid, config.study, DemoConfig)
    for _, study in cells:
        validate(study)
    return cells


def plan_sweep(config: SweepConfig) -> Plan:
    if config.design.kind not in DESIGN_KINDS:
        raise ConfigError(f"design.kind must be one of {', '.join(DESIGN_KINDS)}, got {config.design.kind!r}")
    if config.design.kind == "adaptive":
        raise ConfigError("this sweep opts into the adaptive design (design.kind=adaptive): run it with "
                          "`lab sweep adapt` and the same overrides; `launch` runs fixed grids")
    if config.render_shards_per_task <= 0:
        raise ConfigError("render_shards_per_task must be positive")
    try:
        validate_launcher(config.launcher)
    except ValueError as error:
        raise ConfigError(str(error)) from None

    def dataset_folder(renderer: Any) -> Path:
        return Path(config.root) / config.name / "render" / f"{renderer.name}-{config_hash(renderer)}"

    cells = grid_cells(config)
    shards: dict[str, int] = {}  # one render per renderer config, as large as its largest n
    for _, study in cells:
        count = math.ceil(study.pretrain.render_count(max(study.n)) / study.renderer.shard_size)
        shards[config_hash(study.renderer)] = max(count, shards.get(config_hash(study.renderer), 0))
    slices = sum(math.ceil(count / config.render_shards_per_task) for count in shards.values())
    if slices > MAX_RENDER_TASKS:  # an estimate before planning: a huge n would spin listing shards
        raise ConfigError(f"the sweep would render in {slices:,} tasks of {config.render_shards_per_task} shards "
                          f"(more than {MAX_RENDER_TASKS:,}): lower study.n, or raise study.renderer.shard_size or "
                          f"render_shards_per_task")
    return plan_rendered_study(config.name, config.root, cells, dataset_folder,
                               config.render_shards_per_task,
                               digits_points(config.name, config.root, config.launcher.threads()))
