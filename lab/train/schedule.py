"""What a step draws: its learning rate and its batch, both pure functions of the step (so resuming repeats)."""

from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, steps: int, lr: float, warmup_frac: float, min_lr_frac: float = 0.0) -> float:
    """Linear warm-up over `warmup_frac` of `steps`, then cosine decay from `lr` to `min_lr_frac * lr`."""
    warmup = max(1, int(warmup_frac * steps))
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    floor = min_lr_frac * lr
    return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """Epoch-wise shuffling of n samples, a pure function of (seed, step): the batch of step `step`."""
    per_epoch = max(1, n // batch_size)
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return order[position * batch_size : (position + 1) * batch_size]
