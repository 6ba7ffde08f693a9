"""The classification training loop: read top to bottom, resumable, and loud about bad numbers.

Batches and augmentations at step t are drawn from generators seeded by (seed, t), so a run resumed from a
checkpoint at step t continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from torch.nn.parallel import DistributedDataParallel

from lab.checkpoint import save_training_state
from lab.distributed import DistributedContext
from lab.parallel import AllReduceConfig, register_allreduce
from lab.rundir import RunDir

NORM_MEAN, NORM_STD = 0.5, 0.5


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the run stops and its directory is not marked done."""


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
    warmup = max(1, int(config.warmup_frac * config.steps))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * progress))


def _batch_indices(step: int, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """Epoch-wise shuffling, a pure function of (seed, step)."""
    per_epoch = max(1, n // batch_size)
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return order[position * batch_size : (position + 1) * batch_size]


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
    last = run.checkpoint_dir / "last.pt"
    start = 0
    if last.exists():
        state = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
    model.train()
    trained = DistributedDataParallel(model) if context.active else model
    if context.active:
        register_allreduce(trained, config.allreduce, context)
    batch_size = min(config.batch_size, len(y_all))
    started, running = time.perf_counter(), 0.0
    bar = tqdm(range(start, config.steps), desc=desc, initial=start, total=config.steps, leave=False,
               disable=not (progress and context.is_main))
    for step in bar:
        index = _batch_indices(step, len(y_all), batch_size, seed)[context.rank :: context.world_size]
        x, y = x_all[index], y_all[index]
        if config.augment:
            x = augment_batch(x, torch.Generator().manual_seed(seed * 1_000_003 + step + 7 + 7_919 * context.rank))
        x = x.contiguous(memory_format=memory_format)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        loss = F.cross_entropy(trained(x), y)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"{desc}: loss is {loss.item()} at step {step} (lr {lr_at(step, config):.3g}); "
                f"lower the learning rate or check the data. Last good checkpoint: {last if last.exists() else 'none'}"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running += loss.item()
        done = step + 1
        if context.is_main and (done % config.log_every == 0 or done == config.steps):
            count = (done - start) % config.log_every or config.log_every
            run.log_metrics({"stage": desc, "step": done, "loss": running / count, "lr": lr_at(step, config)})
            bar.set_postfix(loss=f"{running / count:.3f}")
            running = 0.0
        if context.is_main and done % config.checkpoint_every == 0 and done < config.steps:
            save_training_state(last, model, optimizer, done)
    bar.close()
    return {"steps": config.steps, "resumed_from_step": start, "train_seconds": time.perf_counter() - started,
            "world_size": context.world_size}


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
