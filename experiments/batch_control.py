"""`lab train`: run a batch-size-control recipe (experiments/conf/recipe/) as one job on any executor.

The recipe's launcher says where: `local` (tasks_per_node processes on this machine, DDP over gloo), `debug`
(in-process, one rank) or `slurm` (nodes x tasks_per_node tasks). Every check that can fail runs before the
job is submitted; a finished run is returned from its run directory, an interrupted one resumes. The job is a
one-task plan run by the one orchestrator (`lab.run.sweep`), like every study.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.run import sweep
from lab.run.launch import validate_launcher
from lab.stages.batch_control import BatchControlJob, run_batch_control
from lab.core.config import ConfigError, load_config, to_yaml
from lab.data.real import REAL_DATASETS, RealDataConfig, pool_size
from lab.models import check_model_name
from lab.parallel import resolve_grid
from lab.parallel.grid import GridError
from lab.parallel.recipe import BatchControlRecipe
from lab.core.rundir import atomic_write_text
from lab.run.sweep import Plan, Task

CONF_DIR = Path(__file__).resolve().parent / "conf"


@dataclass
class RecipeRunConfig:
    """One recipe trained on one lab dataset; the recipe group picks the recipe (default: the CPU toy)."""

    experiment: str = "batch_control"
    root: str = "runs"
    recipe: BatchControlRecipe = field(default_factory=BatchControlRecipe)
    data: RealDataConfig = field(default_factory=RealDataConfig)
    image_size: int = 16
    checkpoint_every: int = 50
    log_every: int = 1

    def job(self) -> BatchControlJob:
        launcher = self.recipe.launcher
        # Slurm gives each task its own cpus_per_task; the local executor's tasks share one job's share of cores
        threads = launcher.threads()
        if launcher.name != "slurm":
            threads = max(1, threads // launcher.tasks_per_node)
        return BatchControlJob(root=self.root, experiment=self.experiment, recipe=self.recipe, data=self.data,
                               image_size=self.image_size, checkpoint_every=self.checkpoint_every,
                               log_every=self.log_every, threads=threads)


def validate(config: RecipeRunConfig) -> None:
    """Every check that can fail, before anything is submitted."""
    recipe, launcher = config.recipe, config.recipe.launcher
    try:
        validate_launcher(launcher)
        recipe.validate(recipe.world_size)
        if recipe.world_size > 1 and recipe.allreduce.kind != "ring":
            resolve_grid(recipe.allreduce, recipe.world_size, launcher.tasks_per_node)
    except (ValueError, GridError) as error:
        raise ConfigError(f"recipe: {error}") from None
    if launcher.name == "debug" and recipe.world_size > 1:
        raise ConfigError(f"recipe.launcher.name=debug runs one process, but the recipe asks for "
                          f"{recipe.world_size} ranks; use launcher.name=local or slurm")
    if launcher.name == "local" and launcher.nodes > 1:
        raise ConfigError("recipe.launcher.name=local runs on this machine only: set recipe.launcher.nodes=1")
    check_model_name(recipe.model.name)
    REAL_DATASETS.get(config.data.name)
    pool = pool_size(config.data)
    if recipe.batch.dataset_size > pool:
        raise ConfigError(f"recipe.batch.dataset_size={recipe.batch.dataset_size} but data {config.data.name!r} "
                          f"holds {pool} training images (test_size={config.data.test_size}); lower it")
    if config.image_size <= 0 or config.checkpoint_every <= 0 or config.log_every <= 0:
        raise ConfigError("image_size, checkpoint_every and log_every must be positive")


def plan_recipe(config: RecipeRunConfig) -> Plan:
    """The recipe's one job as a one-task plan (its folder: <root>/<experiment>/sweep)."""
    job = config.job()
    run = job.run_dir()
    key = f"batch_control/{run.hash}"
    task = Task(key=key, stage="batch_control", fn=run_batch_control, job=job, outputs=[str(run.result_path)])
    return Plan(name=config.experiment, root=config.root, tasks=[task], points=[{"task": key}])


def run_recipe(config: RecipeRunConfig) -> dict[str, Any]:
    """Validate, submit the one job, wait, and return its result (raising with the job's error on failure)."""
    validate(config)
    plan = plan_recipe(config)
    atomic_write_text(Path(config.root) / config.experiment / "train_config.yaml", to_yaml(config))
    _, final = sweep.execute(plan, config.recipe.launcher)
    if sweep.unfinished_error(final):
        raise RuntimeError(f"lab train: the job {final.state.iloc[0]}: {final.error.iloc[0]} "
                           f"(logs: {plan.folder / 'jobs'})")
    run = config.job().run_dir()
    return {**run.read_result(), "dir": str(run.path)}


def load_run_config(overrides: list[str]) -> RecipeRunConfig:
    return load_config(CONF_DIR, "train", RecipeRunConfig, overrides)


def run_train_command(args: argparse.Namespace) -> int:
    """The `lab train` subcommand."""
    config = load_run_config(args.overrides)
    if args.show_config:
        print(to_yaml(config), end="")
        return 0
    result = run_recipe(config)
    metrics = result["metrics"]
    print(f"{result['model']} on {result['data']}: {result['steps']} steps, global batch per epoch "
          f"{result['global_batches']}, {result['world_size']} rank(s), all-reduce {result['allreduce']}"
          f"{' ' + result['grid'] if result['grid'] else ''}; test top-1 {metrics['top1']:.3f}, "
          f"loss {metrics['loss']:.3f}")
    print(f"Wrote {result['dir']}/metrics.jsonl (one line per step: global batch, accumulation, lr, loss)")
    return 0
