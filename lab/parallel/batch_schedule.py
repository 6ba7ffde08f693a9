"""Batch-size control: the global batch grows over epochs (34K then 68K in Mikami et al.), and each rank
reaches it with gradient accumulation once its own batch cannot grow any more.

Everything is a pure function of (seed, step, rank), so every rank agrees on the schedule without talking,
and a resumed run sees the same samples as the uninterrupted one.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import torch


@dataclass
class BatchPhase:
    start_epoch: int
    global_batch: int


@dataclass
class BatchScheduleConfig:
    """Phases of the global batch (first must start at epoch 0); max_rank_batch is what one rank's memory holds."""

    epochs: int = 90
    dataset_size: int = 1_281_167
    phases: list[BatchPhase] = field(default_factory=lambda: [BatchPhase(0, 32768), BatchPhase(30, 65536)])
    max_rank_batch: int = 32
    seed: int = 0

    def validate(self, world_size: int, prefix: str = "batch") -> None:
        starts = [p.start_epoch for p in self.phases]
        if not self.phases or starts[0] != 0 or starts != sorted(set(starts)):
            raise ValueError(f"{prefix}.phases must start at epoch 0 with increasing start epochs, got {starts}")
        if self.epochs <= starts[-1] or self.max_rank_batch <= 0:
            raise ValueError(f"{prefix}: epochs={self.epochs} must exceed the last phase start {starts[-1]} "
                             f"and max_rank_batch={self.max_rank_batch} must be positive")
        for phase in self.phases:
            if phase.global_batch <= 0 or phase.global_batch % world_size:
                raise ValueError(f"{prefix}: global batch {phase.global_batch} (epoch {phase.start_epoch}) is not "
                                 f"a positive multiple of the {world_size} ranks")
            if phase.global_batch > self.dataset_size:
                raise ValueError(f"{prefix}: global batch {phase.global_batch} exceeds the dataset "
                                 f"({self.dataset_size} samples): an epoch would have no step")


@dataclass(frozen=True)
class StepPlan:
    """What one optimiser step does: which epoch, where in it, and how the batch is cut."""

    step: int
    epoch: int
    position: int  # step within the epoch
    steps_in_epoch: int
    global_batch: int
    rank_batch: int  # samples per rank per step
    accumulation: int  # micro-batches per rank per step
    micro_batch: int

    @property
    def epoch_progress(self) -> float:
        """Epochs done at the end of this step (a float), the clock the LR schedule runs on."""
        return self.epoch + (self.position + 1) / self.steps_in_epoch


def accumulation_for(rank_batch: int, max_rank_batch: int) -> int:
    """The fewest equal micro-batches, each at most max_rank_batch, that make up rank_batch exactly."""
    steps = -(-rank_batch // max_rank_batch)
    while rank_batch % steps:
        steps += 1
    return steps


class BatchSchedule:
    def __init__(self, config: BatchScheduleConfig, world_size: int) -> None:
        config.validate(world_size)
        self.config, self.world_size = config, world_size
        starts = [p.start_epoch for p in config.phases]
        self._batches = [config.phases[bisect.bisect_right(starts, e) - 1].global_batch for e in range(config.epochs)]
        self._first_step = [0]
        for batch in self._batches:
            self._first_step.append(self._first_step[-1] + config.dataset_size // batch)

    @property
    def total_steps(self) -> int:
        return self._first_step[-1]

    def global_batch(self, epoch: int) -> int:
        return self._batches[epoch]

    def plan(self, step: int) -> StepPlan:
        if not 0 <= step < self.total_steps:
            raise IndexError(f"step {step} is outside the schedule's {self.total_steps} steps")
        epoch = bisect.bisect_right(self._first_step, step) - 1
        batch = self._batches[epoch]
        rank_batch = batch // self.world_size
        accumulation = accumulation_for(rank_batch, self.config.max_rank_batch)
        return StepPlan(step, epoch, step - self._first_step[epoch], self._first_step[epoch + 1] - self._first_step[epoch],
                        batch, rank_batch, accumulation, rank_batch // accumulation)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(self.config.dataset_size, generator=generator)

    def global_indices(self, step: int) -> torch.Tensor:
        """The samples of the whole global batch at `step` (drop-last epochs, reshuffled every epoch)."""
        plan = self.plan(step)
        return self.epoch_order(plan.epoch)[plan.position * plan.global_batch : (plan.position + 1) * plan.global_batch]

    def micro_batches(self, step: int, rank: int) -> list[torch.Tensor]:
        """This rank's contiguous share of the global batch, cut into `accumulation` equal micro-batches."""
        plan = self.plan(step)
        share = self.global_indices(step)[rank * plan.rank_batch : (rank + 1) * plan.rank_batch]
        return list(share.split(plan.micro_batch))
