"""A data-parallel loop that follows a `BatchSchedule` exactly: per step, this rank's micro-batches are
accumulated without synchronising and the last backward triggers the (configured) all-reduce once.

The lab's `train_classifier` keeps its fixed-batch loop; this is the loop for batch-size control, small
enough to read top to bottom and to run on CPU in tests.
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn.parallel import DistributedDataParallel

from lab.distributed import DistributedContext
from lab.parallel.batch_schedule import BatchSchedule
from lab.parallel.loss import smoothed_cross_entropy
from lab.parallel.lr_schedule import LRScheduleConfig, lr_for


def train_batch_controlled(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                           schedule: BatchSchedule, lr: LRScheduleConfig, optimizer: torch.optim.Optimizer,
                           context: DistributedContext, *, label_smoothing: float = 0.0,
                           steps: int | None = None) -> list[float]:
    """Run `steps` (default: all) scheduled steps; returns this rank's loss per step (mean over its samples).

    `model` may be DDP-wrapped (with any registered all-reduce); gradient sync happens on the last micro-batch.
    """
    losses = []
    for step in range(steps if steps is not None else schedule.total_steps):
        plan = schedule.plan(step)
        for group in optimizer.param_groups:
            group["lr"] = lr_for(plan, lr, schedule)
        optimizer.zero_grad(set_to_none=True)
        micro_batches = schedule.micro_batches(step, context.rank)
        total = 0.0
        for k, index in enumerate(micro_batches):
            last = k == len(micro_batches) - 1
            skip_sync = isinstance(model, DistributedDataParallel) and not last
            with model.no_sync() if skip_sync else contextlib.nullcontext():
                loss = smoothed_cross_entropy(model(inputs[index]), targets[index], label_smoothing)
                (loss / len(micro_batches)).backward()
            total += loss.item() / len(micro_batches)
        optimizer.step()
        losses.append(total)
    return losses
