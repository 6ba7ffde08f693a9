"""A data-parallel loop that follows a `BatchSchedule` exactly: per step, this rank's micro-batches are
accumulated without synchronising and the last backward triggers the (configured) all-reduce once.

The lab's `train_classifier` keeps its fixed-batch loop; this is the loop for batch-size control, small
enough to read top to bottom and to run on CPU in tests. Every step's samples and learning rate are pure
functions of (schedule, step), so resuming from a checkpoint at step t only needs t: the schedule position
(epoch, step within the epoch, current global batch) follows, and is checked against the checkpoint.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from lab.checkpoint import load_checkpoint, save_checkpoint
from lab.distributed import DistributedContext
from lab.parallel.batch_schedule import BatchSchedule, StepPlan
from lab.parallel.loss import smoothed_cross_entropy
from lab.parallel.lr_schedule import LRScheduleConfig, lr_for
from lab.rundir import RunDir
from lab.train import NonFiniteLossError


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


def _restore(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: BatchSchedule,
             scaler: torch.amp.GradScaler | None) -> int:
    """Load the last checkpoint (if any) and return the step to continue from."""
    state = load_checkpoint(path)
    if state is None:
        return 0
    step = int(state["step"])
    here = _position(schedule.plan(step)) if step < schedule.total_steps else "the end of the schedule"
    if state["next"] != here:
        raise ScheduleMismatchError(f"{path} stopped before {state['next']}, but this batch schedule puts step "
                                    f"{step} at {here}; use a fresh run directory")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return step


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
    core = model.module if isinstance(model, DistributedDataParallel) else model
    device = next(core.parameters()).device
    use_autocast = autocast_dtype is not None and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_autocast and autocast_dtype == torch.float16 else None
    last = run.checkpoint_dir / "last.pt" if run is not None else None
    start = _restore(last, core, optimizer, schedule, scaler) if last is not None else 0
    end = schedule.total_steps if steps is None else min(steps, schedule.total_steps)
    records = []
    for step in range(start, end):
        plan = schedule.plan(step)
        rate = lr_for(plan, lr, schedule)
        for group in optimizer.param_groups:
            group["lr"] = rate
        optimizer.zero_grad(set_to_none=True)
        micro_batches = schedule.micro_batches(step, context.rank)
        total = 0.0
        for k, index in enumerate(micro_batches):
            skip_sync = isinstance(model, DistributedDataParallel) and k < len(micro_batches) - 1
            x = inputs[index].to(device).contiguous(memory_format=memory_format)
            y = targets[index].to(device)
            with model.no_sync() if skip_sync else contextlib.nullcontext():
                with torch.autocast("cuda", dtype=autocast_dtype) if use_autocast else contextlib.nullcontext():
                    loss = smoothed_cross_entropy(model(x), y, label_smoothing)
                scaled = loss / len(micro_batches)
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            total += loss.item() / len(micro_batches)
        if not torch.isfinite(torch.tensor(total)):
            raise NonFiniteLossError(f"loss is {total} at step {step} (epoch {plan.epoch}, lr {rate:.3g}); lower "
                                     f"lr.base_lr or lengthen the warm-up. Last good checkpoint: {last}")
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        record = StepRecord(step, plan.epoch, plan.position, plan.global_batch, len(micro_batches),
                            len(micro_batches[0]), sum(len(mb) for mb in micro_batches), rate, total)
        records.append(record)
        done = step + 1
        if run is not None and (done % log_every == 0 or done == end):
            _log(run, record, context, device)
        if run is not None and checkpoint_every and done % checkpoint_every == 0 and done < schedule.total_steps:
            if context.is_main:
                save_checkpoint(last, {"model": core.state_dict(), "optimizer": optimizer.state_dict(), "step": done,
                                       "next": _position(schedule.plan(done)),
                                       "scaler": scaler.state_dict() if scaler is not None else {}})
            context.barrier()  # no rank runs ahead of a checkpoint it might be restarted from
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
