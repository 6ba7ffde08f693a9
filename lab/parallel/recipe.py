"""A large-batch recipe in one dataclass: batch schedule, learning rate, label smoothing, all-reduce, launcher.

`experiments/conf/recipe/resnet50_batch_control.yaml` is an instance; `load_recipe` rejects keys the
schema does not have, so a typo in a cluster config fails before anything is submitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf

from lab.core.launcher import LauncherConfig
from lab.models import ModelConfig
from lab.parallel.batch_schedule import BatchScheduleConfig
from lab.parallel.config import AllReduceConfig
from lab.parallel.lr_schedule import LRScheduleConfig


MIXED_PRECISION: dict[str, torch.dtype | None] = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class BatchControlRecipe:
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="resnet50"))
    batch: BatchScheduleConfig = field(default_factory=BatchScheduleConfig)
    lr: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    label_smoothing: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-5
    mixed_precision: str = "fp16"  # forward/backward dtype on GPUs (none on CPUs); gradients travel per allreduce
    allreduce: AllReduceConfig = field(default_factory=AllReduceConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)

    def validate(self, world_size: int) -> None:
        self.batch.validate(world_size)
        self.lr.validate()
        self.allreduce.validate()
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision={self.mixed_precision!r} is unknown; "
                             f"valid: {', '.join(MIXED_PRECISION)}")
        if not (0.0 <= self.momentum < 1.0 and self.weight_decay >= 0.0):
            raise ValueError(f"momentum must be in [0, 1) and weight_decay >= 0, got {self.momentum}, "
                             f"{self.weight_decay}")

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return MIXED_PRECISION[self.mixed_precision]

    @property
    def world_size(self) -> int:
        return self.launcher.nodes * self.launcher.tasks_per_node


def load_recipe(path: Path | str) -> BatchControlRecipe:
    """The recipe in a YAML file, merged over the dataclass defaults (unknown keys are errors)."""
    merged = OmegaConf.merge(OmegaConf.structured(BatchControlRecipe), OmegaConf.load(path))
    return OmegaConf.to_object(merged)  # type: ignore[return-value]
