"""The lab's one training loop: every optimiser step in the code base is taken by `run_steps`.

A training is a function `step_loss(step)` that draws step `step`'s batch (a pure function of seed and step, so a
resumed run repeats the uninterrupted one) and returns its loss; the loop does the rest, the same way for the
classifier, the 3D-scene tasks, real-task fine-tuning, language models, SFT/DPO/distillation, batch-size control
and the passkey study:

    resume from the run's last intact checkpoint (checksum-verified; a damaged one is named and set aside, and the
    previous checkpoint or step 0 is used instead) -> per step: set the learning rate, forward (under autocast),
    stop on a NaN/inf loss, backward (accumulating micro-batches, DDP syncing on the last), clip, step -> log means
    every `log_every` steps -> checkpoint every `checkpoint_every` steps (rank 0 writes, every rank waits). Given
    a run directory, rank 0 also records the step count there (lab.core.progress) for a process waiting on the job.

Gradient accumulation: `step_loss` returns a list of zero-argument callables, one per micro-batch; each loss is
divided by their number before its backward, so the step follows the mean over the whole batch.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Sequence, Union

import torch
from tqdm.auto import tqdm

from lab.core.checkpoint import load_checkpoint, save_checkpoint
from lab.core.distributed import DistributedContext
from lab.core.progress import write_progress
from lab.core.rundir import RunDir


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the run stops and its directory is not marked done."""


Loss = Union[torch.Tensor, "tuple[torch.Tensor, dict[str, float]]"]  # a loss, or (loss, extra metrics to log)
StepLoss = Callable[[int], Union[Loss, Sequence[Callable[[], Loss]]]]


def _split(out: Loss) -> tuple[torch.Tensor, dict[str, float]]:
    return out if isinstance(out, tuple) else (out, {})


@dataclass
class Hooks:
    """What a training adds to the loop without copying it; every field is optional."""

    # extra checkpoint entries at step `done` (e.g. the batch schedule's position), written next to model/optimizer
    checkpoint_state: Callable[[int], dict[str, Any]] | None = None
    # called with a loaded checkpoint before it is applied: raise when it does not belong to this run
    check_resume: Callable[[dict[str, Any]], None] | None = None
    # called after every step with (step, lr, loss); the loss is a float when checked every step, else None
    after_step: Callable[[int, float, float | None], None] | None = None
    # replaces the default metrics line: (steps done, lr, {name: mean since the last log})
    log: Callable[[int, float, dict[str, float]], None] | None = None


def run_steps(modules: torch.nn.Module, optimizer: torch.optim.Optimizer, step_loss: StepLoss, *, steps: int,
              lr_at: Callable[[int], float], run: RunDir | None = None, desc: str = "train", stop_at: int | None = None,
              log_every: int = 25, checkpoint_every: int = 0, grad_clip: float = 0.0,
              context: DistributedContext = DistributedContext(), ddp: torch.nn.Module | None = None,
              autocast: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
              scaler: torch.amp.GradScaler | None = None, check_every: int = 1, progress: bool = False,
              hint: str = "lower the learning rate or check the data", hooks: Hooks = Hooks()) -> dict[str, Any]:
    """Take steps [resume point, `stop_at` or `steps`) of `step_loss` on `modules`; return what happened.

    `modules` is what the checkpoint holds (the unwrapped model, or a ModuleDict of body and head); `ddp` its
    DistributedDataParallel wrapper when there is one (micro-batches before the last skip the gradient sync).
    `lr_at(step)` is the schedule. `check_every` > 1 checks the loss for NaN only every that many steps (a GPU
    run then never waits for the device inside a step). The result holds steps, resumed_from_step,
    train_seconds, first_loss, last_loss, final_loss (the mean of the last logged window) and world_size.
    """
    last = run.checkpoint_dir / "last.pt" if run is not None else None
    start = 0
    # rank 0 owns the run directory: it alone moves a damaged checkpoint aside; every rank falls back alike
    state = load_checkpoint(last, set_aside_bad=context.is_main) if last is not None else None
    if state is not None:
        if hooks.check_resume is not None:
            hooks.check_resume(state)
        modules.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start = int(state["step"])
    end = steps if stop_at is None else min(stop_at, steps)
    modules.train()
    device = next(modules.parameters()).device
    started = time.perf_counter()
    sums: dict[str, float] = {}
    count, first_loss, value, final_loss = 0, None, None, None
    pending, pending_steps = torch.zeros((), device=device), 0  # losses not yet checked (check_every > 1)
    bar = tqdm(range(start, end), desc=desc, initial=start, total=end, leave=False,
               disable=not (progress and context.is_main))
    # the step count a process waiting on this job shows (lab.run.sweep.wait_for): at most once a second
    record_progress = run is not None and context.is_main
    recorded = time.monotonic()
    if record_progress:
        write_progress(run.path, desc, start, steps)
    for step in bar:
        rate = lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = rate
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            out = step_loss(step)
        parts = out if isinstance(out, (list, tuple)) and out and callable(out[0]) else None
        total, extras = 0.0, {}
        for k in range(len(parts) if parts is not None else 1):
            skip_sync = ddp is not None and parts is not None and k < len(parts) - 1
            with ddp.no_sync() if skip_sync else contextlib.nullcontext():
                if parts is None:
                    loss, extras = _split(out)
                else:
                    with autocast():
                        loss, extras = _split(parts[k]())
                share = len(parts) if parts is not None else 1
                if check_every == 1:
                    item = loss.item()
                    if not math.isfinite(item):
                        raise NonFiniteLossError(
                            f"{desc}: loss is {item} at step {step} (lr {rate:.3g}); {hint}. "
                            f"Last good checkpoint: {last if last is not None and last.exists() else 'none'}")
                    total += item / share
                else:
                    pending += loss.detach().float() / share
                scaled = loss / share if parts is not None else loss
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
        if grad_clip > 0:
            if scaler is not None:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(modules.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        done = step + 1
        count += 1
        if check_every == 1:
            value = total
            first_loss = value if first_loss is None else first_loss
            for key, item in {"loss": value, **extras}.items():
                sums[key] = sums.get(key, 0.0) + item
        else:
            pending_steps += 1
            if done % check_every == 0 or done % log_every == 0 or done == end:
                window = pending.item()
                if not math.isfinite(window):
                    raise NonFiniteLossError(f"{desc}: loss is {window / pending_steps} in the {pending_steps} "
                                             f"steps before step {done} (lr {rate:.3g}); {hint}")
                sums["loss"] = sums.get("loss", 0.0) + window
                pending.zero_()
                pending_steps = 0
        if hooks.after_step is not None:
            hooks.after_step(step, rate, value if check_every == 1 else None)
        if done % log_every == 0 or done == end:
            means = {key: total_ / count for key, total_ in sums.items()}
            final_loss = means.get("loss", final_loss)
            if hooks.log is not None:
                hooks.log(done, rate, means)
            elif run is not None and context.is_main:
                run.log_metrics({"stage": desc, "step": done, "loss": means.get("loss"), "lr": rate,
                                 **{k: v for k, v in means.items() if k != "loss"}})
            if "loss" in means:
                bar.set_postfix(loss=f"{means['loss']:.3f}")
            sums, count = {}, 0
        if last is not None and checkpoint_every and done % checkpoint_every == 0 and done < steps:
            if context.is_main:
                extra = hooks.checkpoint_state(done) if hooks.checkpoint_state is not None else {}
                save_checkpoint(last, {"model": modules.state_dict(), "optimizer": optimizer.state_dict(),
                                       "step": done, **extra})
            context.barrier()  # no rank runs ahead of a checkpoint it might be restarted from
        if record_progress and (done == end or time.monotonic() - recorded >= 1.0):
            write_progress(run.path, desc, done, steps)
            recorded = time.monotonic()
    bar.close()
    return {"steps": steps, "resumed_from_step": start, "train_seconds": time.perf_counter() - started,
            "first_loss": first_loss, "last_loss": value if start < end else None, "final_loss": final_loss,
            "world_size": context.world_size}
