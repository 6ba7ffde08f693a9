"""Image classification on the one loop (`lab.train.engine`): the digits' recipe, augmentation and evaluation.

Batches and augmentations at step t are drawn from generators seeded by (seed, t), so a run resumed from a
checkpoint at step t continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from lab.core.distributed import DistributedContext
from lab.parallel import AllReduceConfig, register_allreduce
from lab.core.rundir import RunDir
from lab.train.engine import NonFiniteLossError, run_steps
from lab.train.schedule import batch_indices, warmup_cosine

NORM_MEAN, NORM_STD = 0.5, 0.5


@dataclass
class TrainConfig:
    """One optimisation recipe: AdamW with linear warm-up and cosine decay."""

    steps: int = 200
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    augment: bool = True
    checkpoint_every: int = 250
    log_every: int = 25
    allreduce: AllReduceConfig = field(default_factory=AllReduceConfig)  # gradient all-reduce of multi-task jobs

    def validate(self, prefix: str) -> None:
        for key in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{prefix}.{key} must be positive, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ValueError(f"{prefix}.lr must be positive, got {self.lr}")
        self.allreduce.validate(f"{prefix}.allreduce")


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W] -> normalised float [N, 1, H, W]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).unsqueeze(1)
    return (x - NORM_MEAN) / NORM_STD


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Light random affine (rotation +-10 deg, scale 0.9-1.1, shift +-2 px): real digits vary this much."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(10)
    scale = 0.9 + torch.rand(n, generator=generator) * 0.2
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2.0 / x.shape[-1]) * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)  # draws on the CPU
    background = -NORM_MEAN / NORM_STD  # pad with black, not with the normalised zero (grey)
    return F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background


def lr_at(step: int, config: TrainConfig) -> float:
    return warmup_cosine(step, config.steps, config.lr, config.warmup_frac)


_batch_indices = batch_indices  # the name earlier code imports


def train_classifier(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    run: RunDir,
    *,
    seed: int,
    desc: str = "train",
    channels_last: bool = False,
    progress: bool = True,
    context: DistributedContext = DistributedContext(),
) -> dict[str, Any]:
    """Train `model` on (images, labels) for `config.steps` steps, resuming from `run`'s last checkpoint.

    With a distributed `context`, every rank takes its share of each global batch and DDP averages the
    gradients, so the optimisation follows the same global batch size; only rank 0 writes.
    """
    x_all, y_all = to_tensor(images), torch.from_numpy(labels).long()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    trained = DistributedDataParallel(model) if context.active else model
    if context.active:
        register_allreduce(trained, config.allreduce, context)
    batch_size = min(config.batch_size, len(y_all))

    def step_loss(step: int) -> torch.Tensor:
        index = batch_indices(step, len(y_all), batch_size, seed)[context.rank :: context.world_size]
        x, y = x_all[index], y_all[index]
        if config.augment:
            x = augment_batch(x, torch.Generator().manual_seed(seed * 1_000_003 + step + 7 + 7_919 * context.rank))
        return F.cross_entropy(trained(x.contiguous(memory_format=memory_format)), y)

    stats = run_steps(model, optimizer, step_loss, steps=config.steps, lr_at=lambda step: lr_at(step, config),
                      run=run, desc=desc, log_every=config.log_every, checkpoint_every=config.checkpoint_every,
                      context=context, ddp=trained if context.active else None, progress=progress)
    return {key: stats[key] for key in ("steps", "resumed_from_step", "train_seconds", "world_size")}


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> dict[str, float]:
    """Top-1 accuracy, error (1 - top-1) and mean loss on a labelled set."""
    model.eval()
    correct, total_loss = 0, 0.0
    y_all = torch.from_numpy(labels).long()
    for start in range(0, len(labels), batch_size):
        x = to_tensor(images[start : start + batch_size])
        y = y_all[start : start + batch_size]
        logits = model(x)
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    accuracy = correct / len(labels)
    return {"top1": accuracy, "error": 1.0 - accuracy, "loss": total_loss / len(labels)}
