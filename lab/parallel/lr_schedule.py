"""Learning rate for large, changing batches: a scaling rule from a reference batch, linear warm-up, decay.

The scaling rules are a registry: linear (Goyal et al.: lr grows with the batch) and square root (keeps the
gradient-noise scale for adaptive optimisers). By default the peak follows the current phase's batch; with
`rescale_on_batch_change=False` it stays at the first phase's, so growing the batch acts like decaying the
learning rate (Smith et al., "Don't decay the learning rate, increase the batch size").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from lab.parallel.batch_schedule import BatchSchedule, StepPlan
from lab.core.registry import Registry

SCALING_RULES: Registry[Callable[[float], float]] = Registry("lr scaling rule")
SCALING_RULES.register("linear")(lambda ratio: ratio)
SCALING_RULES.register("sqrt")(math.sqrt)
SCALING_RULES.register("none")(lambda ratio: 1.0)

DECAYS: Registry[Callable[[float, float], float]] = Registry("lr decay")
DECAYS.register("none")(lambda progress, power: 1.0)
DECAYS.register("cosine")(lambda progress, power: 0.5 * (1 + math.cos(math.pi * progress)))
DECAYS.register("poly")(lambda progress, power: (1 - progress) ** power)


@dataclass
class LRScheduleConfig:
    base_lr: float = 0.1  # at base_batch
    base_batch: int = 256
    scaling: str = "linear"
    warmup_epochs: float = 5.0
    decay: str = "poly"
    poly_power: float = 2.0
    rescale_on_batch_change: bool = True

    def validate(self, prefix: str = "lr") -> None:
        SCALING_RULES.get(self.scaling)
        DECAYS.get(self.decay)
        if not (self.base_lr > 0 and self.base_batch > 0 and self.warmup_epochs >= 0):
            raise ValueError(f"{prefix}: base_lr and base_batch must be positive and warmup_epochs >= 0")


def peak_lr(config: LRScheduleConfig, global_batch: int) -> float:
    return config.base_lr * SCALING_RULES.get(config.scaling)(global_batch / config.base_batch)


def lr_for(plan: StepPlan, config: LRScheduleConfig, schedule: BatchSchedule) -> float:
    """The learning rate of the step `plan` describes: warm-up on the epoch clock, then decay to the last epoch."""
    batch = plan.global_batch if config.rescale_on_batch_change else schedule.global_batch(0)
    peak = peak_lr(config, batch)
    clock, epochs = plan.epoch_progress, schedule.config.epochs
    if clock <= config.warmup_epochs:
        return peak * clock / config.warmup_epochs
    progress = (clock - config.warmup_epochs) / max(epochs - config.warmup_epochs, 1e-12)
    return peak * DECAYS.get(config.decay)(min(progress, 1.0), config.poly_power)
