"""The 3D-scene pre-training stage: one (task, n, seed) on the first n samples of a scenes3d render.

Idempotent and resumable like `lab.stages.image.run_pretrain` (a run directory keyed by the job's identity, a lock,
checkpoints every `checkpoint_every` steps with batches drawn as a pure function of (seed, step)), and it
writes the same `model.pt` + result keys, so `lab.stages.image.FinetuneJob` starts from it unchanged (the body's
state dict has the fine-tuning model's key names; `_load_backbone` drops the classifier).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from lab.core.distributed import DistributedContext
from lab.models import ModelConfig
from lab.tasks.pretrain import (AugmentConfig, HeadConfig, PretrainTask, SceneArrays, augment_batch,
                                create_pretrain_task, heldout_losses, load_scene_arrays, split_arrays)
from lab.core.rundir import RunDir
from lab.stages.image import PretrainConfig
from lab.core.provenance import provenance
from lab.stages.skeleton import run_stage
from lab.train import TrainConfig, batch_indices, lr_at, run_steps, to_tensor


@dataclass
class Pretrain3DJob:
    """Pre-train a body on task `task` of the first n samples of a rendered scenes3d folder."""

    root: str
    experiment: str
    dataset: str  # the render's folder (tar shards + manifest)
    dataset_id: str  # hash of the renderer config: it names the content
    task: str  # a PRETRAIN_TASKS name
    n: int
    seed: int
    image_size: int
    num_classes: int  # object classes of the render
    model: ModelConfig = field(default_factory=ModelConfig)
    train: PretrainConfig = field(default_factory=PretrainConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    threads: int = 0

    def identity(self) -> dict[str, Any]:
        identity = {"dataset": self.dataset_id, "task": self.task, "n": self.n, "seed": self.seed,
                    "image_size": self.image_size, "num_classes": self.num_classes, "model": self.model,
                    "train": self.train, "head": self.head, "input": "grey"}
        if self.augment.active:  # runs without augmentation keep the identity (and hash) they always had
            identity["augment"] = self.augment
        return identity

    def run_dir(self) -> RunDir:
        return RunDir.for_config(self.root, self.experiment, "pretrain3d", self.identity())

    def execute(self, progress: bool = False) -> dict[str, Any]:
        """The stage `lab.stages.image.run_finetune` runs for its parent."""
        return run_pretrain_3d(self, progress)


def run_pretrain_3d(job: Pretrain3DJob, progress: bool = False) -> dict[str, Any]:
    """Pre-train (or return the stored result of) one (render, task, n, model, seed)."""
    if job.train.augment:
        raise ValueError("pretrain.augment (the digits' random affine) must be false for 3D pre-training: masks "
                         "and boxes would have to move with the image; use the study's `augment` (flip, invert)")
    run = job.run_dir()

    def work(context: DistributedContext) -> dict[str, Any]:
        if context.active:
            raise RuntimeError("run_pretrain_3d runs in one process; launch it with launcher.tasks_per_node=1")
        started = time.perf_counter()
        task = create_pretrain_task(job.task, job.model, job.head, job.num_classes, job.image_size)
        holdout = job.train.holdout
        arrays = load_scene_arrays(task, job.dataset, holdout + job.n)  # held-out scenes first, then the n
        if arrays.images.shape[1:] != (job.image_size, job.image_size):
            raise ValueError(f"{job.dataset} holds {arrays.images.shape[1:]} images, the job expects "
                             f"{job.image_size}x{job.image_size} (render at the fine-tuning size)")
        heldout, train = split_arrays(task, arrays, holdout)
        run.write_config({**job.identity(), "dataset_path": job.dataset})
        torch.manual_seed(job.seed)
        body, head = task.build()
        stats = train_task(task, body, head, train, job.train.train_config(job.n), run, seed=job.seed,
                           augment=job.augment)
        scores = heldout_losses(task, body, head, train, heldout, to_tensor)
        weights = run.path / "model.pt"
        torch.save(body.state_dict(), weights)
        return {"run_hash": run.hash, "weights": str(weights), "dataset_hash": job.dataset_id, "task": job.task,
                "control": task.control, "n": job.n, "seed": job.seed, **stats, **scores, "wall_seconds": time.perf_counter() - started,
                **provenance()}

    return run_stage(run, work, threads=job.threads)


def train_task(task: PretrainTask, body: torch.nn.Module, head: torch.nn.Module, arrays: SceneArrays,
               config: TrainConfig, run: RunDir, *, seed: int,
               augment: AugmentConfig = AugmentConfig()) -> dict[str, Any]:
    """The one loop (`lab.train.engine`) on the task's loss: AdamW, warm-up + cosine, batches as in `lab.train`."""
    x_all = to_tensor(arrays.images)
    memory_format = torch.channels_last if task.model_config.channels_last else torch.contiguous_format
    modules = torch.nn.ModuleDict({"body": body, "head": head})
    optimizer = torch.optim.AdamW(modules.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batch_size = min(config.batch_size, len(x_all))

    def step_loss(step: int) -> torch.Tensor:
        index = batch_indices(step, len(x_all), batch_size, seed)
        x, target = augment_batch(task, x_all[index], task.batch(arrays.targets, index), augment,
                                  torch.Generator().manual_seed(seed * 1_000_003 + step + 7))
        return task.loss(body, head, x.contiguous(memory_format=memory_format), target)

    stats = run_steps(modules, optimizer, step_loss, steps=config.steps, lr_at=lambda step: lr_at(step, config),
                      run=run, desc=f"pretrain3d-{task.dataset}", log_every=config.log_every,
                      checkpoint_every=config.checkpoint_every, hint="lower the learning rate")
    return {key: stats[key] for key in ("steps", "resumed_from_step", "train_seconds", "final_loss")}
