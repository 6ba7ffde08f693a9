"""What a real-data task provides to the fine-tuning stage, and the registry of tasks."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from lab.data.user_datasets import TaskData
from lab.core.registry import Registry


class Task(Protocol):
    """A model family, its loss and its metric (error = 1 - metric) on one kind of user dataset."""

    metric: str  # the name of the score in [0, 1] that error is 1 minus
    datasets: tuple[str, ...]  # USER_DATASETS names this task reads

    def __init__(self, config: Any = None) -> None:
        """`config` is the whole TaskFinetuneConfig; a task reads its own section (detection: `detector`)."""

    def build_model(self, backbone: str, num_classes: int, image_size: int) -> torch.nn.Module: ...

    def body(self, model: torch.nn.Module) -> torch.nn.Module:
        """The ResNet part that pre-trained weights load into."""

    def collate(self, batch: list[Any]) -> Any: ...

    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> torch.Tensor: ...

    def evaluate(self, model: torch.nn.Module, loader: Any, data: TaskData, device: torch.device) -> dict[str, float]: ...


TASKS: Registry[type] = Registry("task")
