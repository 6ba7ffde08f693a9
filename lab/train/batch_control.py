"""A data-parallel loop that follows a `BatchSchedule` exactly: per step, this rank's micro-batches are
accumulated without synchronising and the last backward triggers the (configured) all-reduce once.

The steps are taken by the lab's one loop (`lab.train.engine.run_steps`); this module adds what batch-size
control needs: the schedule's micro-batches and learning rate, and a checkpoint that records its position. Every step's samples and learning rate are pure
functions of (schedule, step), so resuming from a checkpoint at step t only needs t: the schedule position
(epoch, step within the epoch, current global batch) follows, and is checked against the checkpoint.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from lab.core.distributed import DistributedContext
from lab.parallel.batch_schedule import BatchSchedule, StepPlan
from lab.parallel.loss import smoothed_cross_entropy
from lab.parallel.lr_schedule import LRScheduleConfig, lr_for
from lab.core.rundir import RunDir
from lab.train.engine import Hooks, run_steps


@dataclass(frozen=True)
class StepRecord:
    """What one optimiser step actually did on this rank (the per-step log the tests compare to the plan)."""

    step: int
    epoch: int
    position: int
    global_batch: int
    accumulation: int  # micro-batches this rank ran
    micro_batch: int  # samples in each of them
    rank_samples: int  # samples this rank saw in the step
    lr: float
    loss: float  # mean over this rank's samples


class ScheduleMismatchError(ValueError):
    """A checkpoint was written under a different batch schedule than the one resuming it."""


def _position(plan: StepPlan) -> dict[str, int]:
    return {"step": plan.step, "epoch": plan.epoch, "position": plan.position, "global_batch": plan.global_batch}


def train_on_schedule(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, schedule: BatchSchedule,
                      lr: LRScheduleConfig, optimizer: torch.optim.Optimizer, context: DistributedContext, *,
                      label_smoothing: float = 0.0, steps: int | None = None, run: RunDir | None = None,
                      checkpoint_every: int = 0, log_every: int = 1,
                      memory_format: torch.memory_format = torch.contiguous_format,
                      autocast_dtype: torch.dtype | None = None) -> list[StepRecord]:
    """Run the schedule's steps up to `steps` (default: all), resuming from `run`'s last checkpoint.

    `model` may be DDP-wrapped (with any registered all-reduce); gradient sync happens on the last micro-batch.
    `inputs` stay on the CPU; each micro-batch moves to the model's device. `autocast_dtype` turns on CUDA
    mixed precision (fp16 with a gradient scaler). With `run`, rank 0 logs every `log_every`-th step (the
    loss averaged over ranks) and checkpoints every `checkpoint_every` steps. Returns this rank's records of
    the steps it ran.
    """
    wrapped = isinstance(model, DistributedDataParallel)
    core = model.module if wrapped else model
    device = next(core.parameters()).device
    use_autocast = autocast_dtype is not None and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_autocast and autocast_dtype == torch.float16 else None
    records: list[StepRecord] = []
    drawn: dict[str, Any] = {}  # this step's plan and micro-batches, for its record

    def micro_batch(index: torch.Tensor) -> Callable[[], torch.Tensor]:
        x = inputs[index].to(device).contiguous(memory_format=memory_format)
        return lambda: smoothed_cross_entropy(model(x), targets[index].to(device), label_smoothing)

    def step_loss(step: int) -> list[Callable[[], torch.Tensor]]:
        drawn["plan"], drawn["micro"] = schedule.plan(step), schedule.micro_batches(step, context.rank)
        return [micro_batch(index) for index in drawn["micro"]]

    def check_resume(state: dict[str, Any]) -> None:
        step = int(state["step"])
        here = _position(schedule.plan(step)) if step < schedule.total_steps else "the end of the schedule"
        if state["next"] != here:
            raise ScheduleMismatchError(f"{run.checkpoint_dir / 'last.pt'} stopped before {state['next']}, but this "
                                        f"batch schedule puts step {step} at {here}; use a fresh run directory")

    def after_step(step: int, rate: float, loss: float | None) -> None:
        plan, micro = drawn["plan"], drawn["micro"]
        records.append(StepRecord(step, plan.epoch, plan.position, plan.global_batch, len(micro), len(micro[0]),
                                  sum(len(mb) for mb in micro), rate, loss))

    hooks = Hooks(
        checkpoint_state=lambda done: {"next": _position(schedule.plan(done)),
                                       "scaler": scaler.state_dict() if scaler is not None else {}},
        check_resume=check_resume, after_step=after_step,
        log=(lambda done, rate, means: _log(run, records[-1], context, device)) if run is not None else None)
    run_steps(core, optimizer, step_loss, steps=schedule.total_steps, stop_at=steps,
              lr_at=lambda step: lr_for(schedule.plan(step), lr, schedule), run=run, desc="train",
              log_every=log_every, checkpoint_every=checkpoint_every, context=context,
              ddp=model if wrapped else None, scaler=scaler,
              autocast=(lambda: torch.autocast("cuda", dtype=autocast_dtype)) if use_autocast else contextlib.nullcontext,
              hint="lower lr.base_lr or lengthen the warm-up", hooks=hooks)
    return records


def _log(run: RunDir, record: StepRecord, context: DistributedContext, device: torch.device) -> None:
    """Rank 0 appends the step to metrics.jsonl, with the loss averaged over ranks (a collective: all ranks call)."""
    loss = torch.tensor([record.loss], dtype=torch.float64, device=device)  # NCCL reduces device tensors only
    if context.active:
        dist.all_reduce(loss)
        loss /= context.world_size
    if context.is_main:
        run.log_metrics({"stage": "train", **asdict(record), "loss": float(loss), "rank_loss": record.loss})


def train_batch_controlled(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                           schedule: BatchSchedule, lr: LRScheduleConfig, optimizer: torch.optim.Optimizer,
                           context: DistributedContext, *, label_smoothing: float = 0.0,
                           steps: int | None = None) -> list[float]:
    """`train_on_schedule` without a run directory; returns this rank's loss per step."""
    records = train_on_schedule(model, inputs, targets, schedule, lr, optimizer, context,
                                label_smoothing=label_smoothing, steps=steps)
    return [record.loss for record in records]
