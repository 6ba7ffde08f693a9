"""The real-task fine-tuning stage: fine-tune a ResNet on s images of a user's dataset, evaluate once at the end.

Like the other stages it is idempotent (a finished run directory is reused; its hash covers the data, task,
backbone, s, seed, recipe and the pre-trained weights' content) and resumable (a checkpoint every
`checkpoint_every` steps; batches are a pure function of (seed, step)). The reported error is 1 - metric at the
last evaluation, the paper's convention.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from lab.data.real import balanced_subset
from lab.data.user_datasets import USER_DATASETS, TaskData, TaskDataConfig
from lab.core.rundir import RunDir, sha256_file
from lab.core.provenance import provenance
from lab.tasks.backbone import check_backbone, load_backbone_weights
from lab.tasks.base import TASKS
from lab.tasks.detection import DetectorConfig
from lab.core.distributed import resolve_device
from lab.train import Hooks, TrainConfig, batch_indices, lr_at, run_steps

OPTIMIZERS = {"sgd": lambda params, c: torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay),
              "adamw": lambda params, c: torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)}


@dataclass
class TaskTrainConfig:
    """Optimiser and schedule: linear warm-up then cosine decay to zero over `steps`."""

    steps: int = 2000
    batch_size: int = 16
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.02
    scratch_lr: float = 0.0  # from-scratch runs (no pre-trained weights); 0 = same as lr
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_frac: float = 0.05
    checkpoint_every: int = 500
    log_every: int = 50
    eval_batch_size: int = 8
    workers: int = 4  # DataLoader processes (not part of the run's identity)

    def validate(self) -> None:
        for key in ("steps", "batch_size", "checkpoint_every", "log_every", "eval_batch_size"):
            if getattr(self, key) <= 0:
                raise ValueError(f"train.{key} must be positive, got {getattr(self, key)}")
        if not self.lr > 0 or self.scratch_lr < 0:
            raise ValueError(f"train.lr must be positive and train.scratch_lr >= 0, got {self.lr}, {self.scratch_lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown train.optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")


@dataclass
class TaskFinetuneConfig:
    """One (task, data, backbone, s, seed) point; the schema of experiments/conf/task_finetune.yaml."""

    experiment: str = "task_finetune"
    root: str = "runs"
    task: str = "classification"  # classification | detection | segmentation
    backbone: str = "resnet50"
    data: TaskDataConfig = field(default_factory=TaskDataConfig)
    s: int = 0  # real training images; 0 = use s_fraction
    s_fraction: float = 0.01  # share of the training pool when s = 0 (the paper's usual 1%)
    seed: int = 0
    pretrained: str = ""  # pre-trained ResNet weights (a pretrain run's model.pt); "" = from scratch
    train: TaskTrainConfig = field(default_factory=TaskTrainConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)  # read by the detection task only
    device: str = "auto"  # auto | cpu | cuda | cuda:1 ...
    progress: bool = False


def resolve_s(config: TaskFinetuneConfig, pool: int) -> int:
    s = config.s or int(round(config.s_fraction * pool))
    if not 0 < s <= pool:
        raise ValueError(f"s={config.s} / s_fraction={config.s_fraction} gives {s} training images; "
                         f"the {config.data.name} pool at {config.data.root} holds {pool}")
    return s


def open_task(config: TaskFinetuneConfig) -> tuple[Any, TaskData]:
    """Every check that can fail (names, recipe, layout of the data on disk), before any training."""
    task = TASKS.get(config.task)(config)
    check_backbone(config.backbone)
    config.train.validate()
    if config.data.name not in task.datasets:
        raise ValueError(f"task {config.task} reads {', '.join(task.datasets)}, not data.name={config.data.name!r}")
    return task, USER_DATASETS.get(config.data.name)(config.data)


def identity(config: TaskFinetuneConfig, s: int) -> dict[str, Any]:
    recipe = {k: v for k, v in vars(config.train).items() if k != "workers"}
    weights = sha256_file(config.pretrained) if config.pretrained else None
    return {"task": config.task, "backbone": config.backbone, "data": config.data, "s": s, "seed": config.seed,
            "pretrained_sha256": weights, "train": recipe,
            **({"detector": config.detector} if config.task == "detection" else {})}


class StepBatches(torch.utils.data.Sampler):
    """Batches for steps start..steps-1, shuffled epoch by epoch: a pure function of (seed, step)."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, steps: int) -> None:
        self.n, self.batch_size, self.seed, self.start, self.steps = n, min(batch_size, n), seed, start, steps

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            yield batch_indices(step, self.n, self.batch_size, self.seed).tolist()


pick_device = resolve_device  # the name earlier code imports


def fine_tune(config: TaskFinetuneConfig, task: Any, data: TaskData, s: int, run: RunDir) -> dict[str, Any]:
    started = time.perf_counter()
    if data.train_labels is not None:
        subset = balanced_subset(data.train_labels, s, config.seed)
    else:
        subset = np.sort(np.random.default_rng([config.seed, s]).permutation(len(data.train))[:s])
    torch.manual_seed(config.seed)
    model = task.build_model(config.backbone, data.num_classes, config.data.image_size)
    if config.pretrained:
        load_backbone_weights(task.body(model), config.pretrained)
    device = resolve_device(config.device)
    model.to(device)
    recipe = config.train
    lr = recipe.scratch_lr if not config.pretrained and recipe.scratch_lr > 0 else recipe.lr
    schedule = TrainConfig(steps=recipe.steps, lr=lr, warmup_frac=recipe.warmup_frac)
    optimizer = OPTIMIZERS[recipe.optimizer]([p for p in model.parameters() if p.requires_grad], recipe)
    desc = f"{config.task} {config.backbone} s={s} seed={config.seed}"
    batches: list[Iterator[Any]] = []  # the loader starts where the loop resumes, so it is made at the first step

    def step_loss(step: int) -> torch.Tensor:
        if not batches:
            batches.append(iter(torch.utils.data.DataLoader(
                torch.utils.data.Subset(data.train, subset.tolist()), collate_fn=task.collate,
                num_workers=recipe.workers, batch_sampler=StepBatches(len(subset), recipe.batch_size, config.seed,
                                                                      step, recipe.steps),
                generator=torch.Generator().manual_seed(config.seed * 1_000_003 + step), persistent_workers=False)))
        return task.loss(model, next(batches[0]), device)

    def log(done: int, rate: float, means: dict[str, float]) -> None:
        run.log_metrics({"stage": desc, "step": done, "loss": means["loss"], "lr": rate})
        if config.progress:
            print(f"{desc}: step {done}/{recipe.steps} loss {means['loss']:.4f}", flush=True)

    stats = run_steps(model, optimizer, step_loss, steps=recipe.steps, lr_at=lambda step: lr_at(step, schedule),
                      run=run, desc=desc, log_every=recipe.log_every, checkpoint_every=recipe.checkpoint_every,
                      hooks=Hooks(log=log))
    start = stats["resumed_from_step"]
    train_seconds = time.perf_counter() - started
    model.eval()
    test = torch.utils.data.DataLoader(data.test, batch_size=recipe.eval_batch_size, collate_fn=task.collate,
                                       num_workers=recipe.workers)
    metrics = task.evaluate(model, test, data, device)
    metrics["error"] = 1.0 - metrics[task.metric]
    run.log_metrics({"stage": "eval", "step": recipe.steps, **metrics})
    return {"run_hash": run.hash, "task": config.task, "backbone": config.backbone, "data": config.data.name,
            "s": s, "seed": config.seed, "metric": task.metric, "metrics": metrics, "test_size": len(data.test),
            "pretrained": config.pretrained or None, "steps": recipe.steps, "resumed_from_step": start,
            "train_seconds": train_seconds, "wall_seconds": time.perf_counter() - started, **provenance()}


def __getattr__(name: str) -> Any:
    """Task fine-tune jobs pickled before issue 17 name `lab.tasks.finetune.run_task_finetune`, the stage that now
    lives in lab.stages.task_finetune: kept for one release."""
    if name == "run_task_finetune":
        from lab.stages.task_finetune import run_task_finetune

        return run_task_finetune
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
