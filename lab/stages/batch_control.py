"""The batch-size-control training stage: a `BatchControlRecipe` trained on a lab dataset, resumably.

One job, one or many tasks: every task joins the job's process group (`init_distributed`), wraps the model
in DDP with the recipe's all-reduce (ring, 2D torus, hierarchical) and follows the recipe's batch schedule
(`lab.train.batch_control`). Like the other stages it is idempotent (a finished run directory is
returned as is) and resumes from its last checkpoint, so it runs unchanged in-process, under submitit's
local executor (with tasks) or on Slurm.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from lab.data.real import RealDataConfig, finetune_subset, real_split
from lab.core.distributed import DistributedContext
from lab.models import create_model
from lab.parallel import BatchSchedule, register_allreduce
from lab.train.batch_control import train_on_schedule
from lab.parallel.recipe import BatchControlRecipe
from lab.core.rundir import RunDir
from lab.core.provenance import provenance
from lab.stages.skeleton import run_stage
from lab.train import evaluate, to_tensor


@dataclass
class BatchControlJob:
    """The recipe, the data it trains on and where its run directory lives."""

    root: str
    experiment: str
    recipe: BatchControlRecipe = field(default_factory=BatchControlRecipe)
    data: RealDataConfig = field(default_factory=RealDataConfig)
    image_size: int = 16
    checkpoint_every: int = 50
    log_every: int = 1
    threads: int = 0  # torch threads per task; 0 leaves torch's default

    def identity(self) -> dict[str, Any]:
        """What determines the result: the recipe (its launcher only through the world size) and the data.

        The all-reduce kind is part of it, so a ring and a torus run of one recipe keep separate directories.
        """
        recipe = {k: v for k, v in asdict(self.recipe).items() if k != "launcher"}
        return {"recipe": recipe, "world_size": self.recipe.world_size, "data": self.data,
                "image_size": self.image_size}

    def run_dir(self) -> RunDir:
        return RunDir.for_config(self.root, self.experiment, "batch_control", self.identity())


def _device(context: DistributedContext) -> torch.device:
    """One GPU per task where there are GPUs (tasks of a node take consecutive devices), else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", context.rank % torch.cuda.device_count())


def run_batch_control(job: BatchControlJob) -> dict[str, Any]:
    """Train (or return the stored result of) one recipe; every task of the job calls this."""
    recipe = job.recipe
    run = job.run_dir()

    def work(context: DistributedContext) -> dict[str, Any]:
        if context.world_size != recipe.world_size:
            raise RuntimeError(f"the recipe asks for {recipe.world_size} ranks (launcher.nodes x tasks_per_node) "
                               f"but the job has {context.world_size}; launch it with the recipe's launcher")
        recipe.validate(context.world_size)
        started = time.perf_counter()
        if context.is_main:
            run.write_config(job.identity())
        split = real_split(job.data, job.image_size)
        size = recipe.batch.dataset_size
        if size > len(split.pool_labels):
            raise ValueError(f"batch.dataset_size={size} but data {job.data.name!r} holds {len(split.pool_labels)} "
                             f"training images")
        images, labels = finetune_subset(split, size, recipe.batch.seed)  # class-balanced: pools are class-sorted
        inputs, targets = to_tensor(images), torch.from_numpy(labels).long()
        torch.manual_seed(recipe.batch.seed)
        model = create_model(recipe.model, num_classes=int(split.pool_labels.max()) + 1).to(_device(context))
        trained = DistributedDataParallel(model) if context.active else model
        grid = register_allreduce(trained, recipe.allreduce, context) if context.active else None
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr.base_lr, momentum=recipe.momentum,
                                    weight_decay=recipe.weight_decay)
        schedule = BatchSchedule(recipe.batch, context.world_size)
        memory_format = torch.channels_last if recipe.model.channels_last else torch.contiguous_format
        model.train()
        records = train_on_schedule(trained, inputs, targets, schedule, recipe.lr, optimizer, context,
                                    label_smoothing=recipe.label_smoothing, run=run,
                                    checkpoint_every=job.checkpoint_every, log_every=job.log_every,
                                    memory_format=memory_format, autocast_dtype=recipe.autocast_dtype)
        metrics = evaluate(model.cpu(), split.test_images, split.test_labels)
        if context.is_main:
            run.log_metrics({"stage": "eval", "step": schedule.total_steps, **metrics})
        return {"run_hash": run.hash, "model": recipe.model.name, "data": job.data.name,
                "world_size": context.world_size, "allreduce": recipe.allreduce.kind,
                "grid": str(grid) if grid is not None else None, "steps": schedule.total_steps,
                "resumed_from_step": records[0].step if records else schedule.total_steps,
                "global_batches": [schedule.global_batch(e) for e in range(recipe.batch.epochs)],
                "final_lr": records[-1].lr if records else None, "metrics": metrics,
                "test_size": len(split.test_labels),
                "wall_seconds": time.perf_counter() - started, **provenance()}

    return run_stage(run, work, threads=job.threads)
