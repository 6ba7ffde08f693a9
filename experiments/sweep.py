"""Sweeps of the digits study: a grid over any config keys, as render / pre-train / fine-tune tasks.

The sweep's study config gives the n, s and seeds axes; `grid` adds axes over any other key of the study
(`model.name`, `pretrain.lr`, `renderer.rotation_deg`, `data.name`, ...). Each grid cell is validated like
a demo before anything is submitted, and planned by the demo's own planner (`experiments.digits_demo`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.digits_demo import (  # noqa: F401 (the task types: plans pickled before they moved name them here)
    DemoConfig, RenderedPretrainJob, RenderSliceJob, digits_points, plan_rendered_study, pretrain_after_render,
    render_slice, validate,
)
from lab.core.config import ConfigError, grid_configs
from lab.run.launch import LauncherConfig, validate_launcher
from lab.core.rundir import config_hash
from lab.run.sweep import Plan


@dataclass
class SweepConfig:
    name: str = "digits_sweep"
    root: str = "runs"
    study: DemoConfig = field(default_factory=DemoConfig)
    grid: dict[str, list[Any]] = field(default_factory=dict)  # dotted study key -> values
    render_shards_per_task: int = 4
    launcher: LauncherConfig = field(default_factory=LauncherConfig)


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
        validate_launcher(config.launcher)
    except ValueError as error:
        raise ConfigError(str(error)) from None

    def dataset_folder(renderer: Any) -> Path:
        return Path(config.root) / config.name / "render" / f"{renderer.name}-{config_hash(renderer)}"

    return plan_rendered_study(config.name, config.root, grid_cells(config), dataset_folder,
                               config.render_shards_per_task,
                               digits_points(config.name, config.root, config.launcher.threads()))
