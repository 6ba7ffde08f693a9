"""Semantic segmentation (ADE20K): DeepLabV3 (torchvision, weights=None) on a ResNet, scored by mIoU.

Bottleneck ResNets (50/101/152) run the last two stages dilated (output stride 8), as torchvision's
`deeplabv3_resnet50` does; ResNet-18/34 cannot dilate and keep stride 32. mIoU is the mean over classes
that occur in the evaluation set's labels or predictions (classes with an empty union are left out).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3

from lab.data.ade20k import IGNORE, pad_collate
from lab.data.user_datasets import TaskData
from lab.tasks.backbone import BOTTLENECK
from lab.tasks.base import TASKS
from lab.train import NORM_MEAN, NORM_STD


@TASKS.register("segmentation")
class Segmentation:
    metric = "mIoU"
    datasets = ("ade20k",)

    def __init__(self, config: Any = None) -> None:
        """Nothing to configure beyond the backbone and the data."""

    def build_model(self, backbone: str, num_classes: int, image_size: int) -> torch.nn.Module:
        dilation = [False, True, True] if backbone in BOTTLENECK else None
        resnet = getattr(torchvision.models, backbone)(weights=None, replace_stride_with_dilation=dilation)
        body = IntermediateLayerGetter(resnet, return_layers={"layer4": "out"})
        return DeepLabV3(body, DeepLabHead(resnet.fc.in_features, num_classes))

    def body(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.backbone

    def collate(self, batch: list[Any]) -> Any:
        return pad_collate(batch)

    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        images, labels = batch
        logits = model((images.to(device) - NORM_MEAN) / NORM_STD)["out"]
        return F.cross_entropy(logits, labels.to(device), ignore_index=IGNORE)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, loader: Any, data: TaskData, device: torch.device) -> dict[str, float]:
        confusion = torch.zeros(data.num_classes, data.num_classes, dtype=torch.int64, device=device)
        for images, labels in loader:
            predicted = model((images.to(device) - NORM_MEAN) / NORM_STD)["out"].argmax(1)
            confusion += confusion_matrix(predicted, labels.to(device), data.num_classes)
        return segmentation_scores(confusion.cpu().numpy())


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[true, predicted] pixel counts, IGNORE pixels left out."""
    keep = labels != IGNORE
    pairs = labels[keep] * num_classes + predicted[keep]
    return torch.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def segmentation_scores(confusion: np.ndarray) -> dict[str, float]:
    true_positive = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    present = union > 0
    miou = float((true_positive[present] / union[present]).mean()) if present.any() else 0.0
    pixels = confusion.sum()
    return {"mIoU": miou, "pixel_accuracy": float(true_positive.sum() / pixels) if pixels else 0.0,
            "classes_present": int(present.sum())}
