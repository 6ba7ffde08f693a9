"""Single-label classification (ImageNet folder): a torchvision ResNet, cross-entropy, top-1 accuracy."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import default_collate

from lab.data.user_datasets import TaskData
from lab.tasks.base import TASKS
from lab.train import NORM_MEAN, NORM_STD


@TASKS.register("classification")
class Classification:
    metric = "top1"
    datasets = ("imagefolder",)

    def __init__(self, config: Any = None) -> None:
        """Nothing to configure beyond the backbone and the data."""

    def build_model(self, backbone: str, num_classes: int, image_size: int) -> torch.nn.Module:
        return getattr(torchvision.models, backbone)(weights=None, num_classes=num_classes)

    def body(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def collate(self, batch: list[Any]) -> Any:
        return default_collate(batch)

    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        images, labels = batch
        return F.cross_entropy(model(_normalise(images.to(device))), labels.to(device))

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, loader: Any, data: TaskData, device: torch.device) -> dict[str, float]:
        correct, total, loss = 0, 0, 0.0
        for images, labels in loader:
            logits, labels = model(_normalise(images.to(device))), labels.to(device)
            loss += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
            total += len(labels)
        return {"top1": correct / total, "loss": loss / total}


def _normalise(images: torch.Tensor) -> torch.Tensor:
    """The lab's normalisation ((x - 0.5) / 0.5), the one pre-training used."""
    return (images - NORM_MEAN) / NORM_STD
