"""The resumable optimisation loop SFT and DPO share: AdamW, warm-up + cosine, clipping, checkpoints, metrics.

Like `lab.lm_train.train_lm`, the batch of step t is a pure function of (seed, t), so a run resumed from its last
checkpoint continues exactly as the uninterrupted run would; only the loss of a step differs between stages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

from lab.checkpoint import save_training_state
from lab.lm_train import LMTrainConfig, autocast, lr_at
from lab.rundir import RunDir
from lab.train import NonFiniteLossError

StepLoss = Callable[[int], "tuple[torch.Tensor, dict[str, float]]"]  # step -> (loss, extra metrics)


def train_steps(model: Any, step_loss: StepLoss, config: LMTrainConfig, run: RunDir, *,
                device: torch.device = torch.device("cpu"), dtype: str = "float32", desc: str = "train",
                progress: bool = False) -> dict[str, Any]:
    """Minimise `step_loss(step)` over `model`'s trainable parameters for `config.steps`, resuming from `run`."""
    config.validate(desc)
    model.to(device)
    optimizer = torch.optim.AdamW(model.optimizer_param_groups(config.weight_decay), lr=config.lr, betas=(0.9, 0.95))
    last = run.checkpoint_dir / "last.pt"
    start = 0
    if last.exists():
        state = torch.load(last, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
    model.train()
    started, first_loss, sums, count = time.perf_counter(), None, {}, 0
    bar = tqdm(range(start, config.steps), desc=desc, initial=start, total=config.steps, leave=False,
               disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        with autocast(device, dtype):
            loss, extra = step_loss(step)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"{desc}: loss is {loss.item()} at step {step} (lr {lr_at(step, config):.3g}); "
                                     f"lower the learning rate. Last good checkpoint: "
                                     f"{last if last.exists() else 'none'}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        value = loss.item()
        first_loss = value if first_loss is None else first_loss
        for key, item in {"loss": value, **extra}.items():
            sums[key] = sums.get(key, 0.0) + item
        count += 1
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            run.log_metrics({"stage": desc, "step": done, "lr": lr_at(step, config),
                             **{key: total / count for key, total in sums.items()}})
            bar.set_postfix(loss=f"{sums['loss'] / count:.3f}")
            sums, count = {}, 0
        if done % config.checkpoint_every == 0 and done < config.steps:
            save_training_state(last, model, optimizer, done)
    bar.close()
    return {"steps": config.steps, "resumed_from_step": start, "first_loss": first_loss,
            "last_loss": value if start < config.steps else None, "train_seconds": time.perf_counter() - started}
