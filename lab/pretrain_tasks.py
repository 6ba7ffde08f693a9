"""Pre-training tasks on rendered 3D scenes: one small class per task (head, loss, in-memory targets).

Every task trains a timm classifier's body (`create_model`, the same `ModelConfig` the fine-tunes use), so the
saved state dict has the fine-tuning model's key names and `lab.stages._load_backbone` transfers it as is:

    multilabel    the timm model itself (global pool + fc with C outputs), BCE with logits
    segmentation  a light decoder on the body's feature pyramid -> C + 1 class logits at input size, CE
    normals       the same decoder -> 3 channels, 1 - cosine similarity on pixels where a surface was hit
    detection     CenterNet at stride 4: a C-class centre heatmap (penalty-reduced focal loss) + box width and
                  height at the centres (L1, in cells)

Images reach the body as the fine-tunes see theirs: grey (ITU-R 601 luma of the RGB render), uint8, normalised
by `lab.train.to_tensor`; the renderer draws them at the fine-tuning size, so the first convolution and the
input resolution are the same in both stages. Dense tasks build the model with `num_classes=0` (no fc: a
pre-trained fc would be dropped at transfer anyway).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lab.models import ModelConfig, create_model
from lab.registry import Registry

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

PRETRAIN_TASKS: Registry[type["PretrainTask"]] = Registry("pre-training task")


@dataclass
class HeadConfig:
    """Sizes of the task heads (the body is `ModelConfig`)."""

    decoder_channels: int = 64
    detection_stride: int = 4  # CenterNet output stride; the decoder's resolution
    size_weight: float = 0.1  # CenterNet's weight of the box-size loss


@dataclass
class SceneArrays:
    """The first n samples of a render, decoded once: grey images and the task's targets."""

    images: np.ndarray  # uint8 [N, H, W]
    targets: Any  # task-specific, indexable by a LongTensor of sample indices via `PretrainTask.batch`


def grey(rgb: torch.Tensor) -> np.ndarray:
    """float [3, H, W] in [0, 1] -> uint8 [H, W] luma."""
    luma = np.tensordot(LUMA, rgb.numpy(), axes=1)
    return np.clip(np.round(luma * 255.0), 0, 255).astype(np.uint8)


class PyramidDecoder(nn.Module):
    """Project every feature level from `stride` down, upsample to that stride, sum, refine, predict."""

    def __init__(self, channels: list[int], reductions: list[int], stride: int, width: int, out: int) -> None:
        super().__init__()
        self.levels = [i for i, r in enumerate(reductions) if r >= stride]
        if not self.levels:
            raise ValueError(f"the backbone has no feature level at stride >= {stride} (reductions {reductions})")
        self.lateral = nn.ModuleList(nn.Conv2d(channels[i], width, 1) for i in self.levels)
        self.refine = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.predict = nn.Conv2d(width, out, 1)

    def forward(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        fused = None
        for lateral, i in zip(self.lateral, self.levels):
            level = F.interpolate(lateral(features[i]), size=size, mode="bilinear", align_corners=False)
            fused = level if fused is None else fused + level
        return self.predict(self.refine(fused))


class PretrainTask:
    """A task: the model it trains, its targets in memory, and its loss on a batch."""

    dataset: str  # the SCENE_TASKS view it reads
    num_classes_of_body: int | None = 0  # None: C (the body's own classifier is the head)

    def __init__(self, model: ModelConfig, head: HeadConfig, num_classes: int, image_size: int) -> None:
        self.model_config, self.head_config = model, head
        self.num_classes, self.image_size = num_classes, image_size

    def build(self) -> tuple[nn.Module, nn.Module]:
        """(body, head): the body's state dict is what transfers."""
        classes = self.num_classes if self.num_classes_of_body is None else self.num_classes_of_body
        body = create_model(self.model_config, classes)
        return body, self.build_head(body)

    def build_head(self, body: nn.Module) -> nn.Module:
        return nn.Identity()

    def decoder(self, body: nn.Module, out: int, stride: int) -> PyramidDecoder:
        probe = torch.zeros(2, self.model_config.in_chans, self.image_size, self.image_size)
        was_training = body.training
        body.eval()
        with torch.no_grad():
            features = body.forward_intermediates(probe, intermediates_only=True)
        body.train(was_training)
        reductions = [self.image_size // f.shape[-1] for f in features]
        return PyramidDecoder([f.shape[1] for f in features], reductions, stride, self.head_config.decoder_channels,
                              out)

    def targets(self, examples: list[Any]) -> Any:
        """Stack the dataset's per-sample targets for in-memory training."""
        raise NotImplementedError

    def batch(self, targets: Any, index: torch.Tensor) -> Any:
        return targets[index]

    def loss(self, body: nn.Module, head: nn.Module, x: torch.Tensor, target: Any) -> torch.Tensor:
        raise NotImplementedError


@PRETRAIN_TASKS.register("multilabel")
class MultiLabelTask(PretrainTask):
    """Which classes are in the image: BCE on the body's pooled features (its own fc, C outputs)."""

    dataset = "multilabel"
    num_classes_of_body = None

    def targets(self, examples: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(examples).to(torch.uint8)

    def loss(self, body, head, x, target):
        return F.binary_cross_entropy_with_logits(body(x), target.float())


class DenseTask(PretrainTask):
    """Per-pixel tasks: the decoder at stride 4, logits upsampled to the input size."""

    outputs: int

    def build_head(self, body: nn.Module) -> nn.Module:
        return self.decoder(body, self.outputs, stride=4)

    def predict(self, body: nn.Module, head: nn.Module, x: torch.Tensor) -> torch.Tensor:
        features = body.forward_intermediates(x, intermediates_only=True)
        size = (x.shape[-2] // 4, x.shape[-1] // 4)
        return F.interpolate(head(features, size), size=x.shape[-2:], mode="bilinear", align_corners=False)


@PRETRAIN_TASKS.register("segmentation")
class SegmentationTask(DenseTask):
    """Semantic segmentation: C + 1 ids (0 = background), cross-entropy over every pixel."""

    dataset = "segmentation"

    @property
    def outputs(self) -> int:
        return self.num_classes + 1

    def targets(self, examples: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(examples).to(torch.uint8 if self.num_classes < 255 else torch.int16)

    def loss(self, body, head, x, target):
        return F.cross_entropy(self.predict(body, head, x), target.long())


@PRETRAIN_TASKS.register("normals")
class NormalsTask(DenseTask):
    """Surface normals: 1 - cos(predicted, true) averaged over pixels where a surface was hit."""

    dataset = "normals"
    outputs = 3

    def targets(self, examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {"normals": torch.stack([e["normals"] for e in examples]).half(),
                "valid": torch.stack([e["valid"] for e in examples])}

    def batch(self, targets, index):
        return {k: v[index] for k, v in targets.items()}

    def loss(self, body, head, x, target):
        cosine = F.cosine_similarity(self.predict(body, head, x), target["normals"].float(), dim=1, eps=1e-6)
        valid = target["valid"]
        return (1.0 - cosine)[valid].sum() / valid.sum().clamp(min=1)


@PRETRAIN_TASKS.register("detection")
class DetectionTask(PretrainTask):
    """CenterNet (Zhou et al. 2019) at toy scale: a class heatmap of box centres and the boxes' sizes."""

    dataset = "detection"

    def build_head(self, body: nn.Module) -> nn.Module:
        head = self.decoder(body, self.num_classes + 2, stride=self.head_config.detection_stride)
        with torch.no_grad():  # CenterNet's prior: p(centre) = 0.1 everywhere at the start
            head.predict.bias[: self.num_classes].fill_(-2.19)
        return head

    def targets(self, examples: list[dict[str, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(e["boxes"], e["labels"] - 1) for e in examples]

    def batch(self, targets, index):
        return [targets[i] for i in index.tolist()]

    def encode(self, boxes: list[tuple[torch.Tensor, torch.Tensor]], cells: int) -> tuple[torch.Tensor, ...]:
        """Gaussian centre heatmaps [B, C, h, w], and size targets + mask at the centre cells."""
        stride = self.head_config.detection_stride
        heat = torch.zeros(len(boxes), self.num_classes, cells, cells)
        size = torch.zeros(len(boxes), 2, cells, cells)
        mask = torch.zeros(len(boxes), cells, cells, dtype=torch.bool)
        grid = torch.arange(cells, dtype=torch.float32)
        for b, (xyxy, labels) in enumerate(boxes):
            for (x0, y0, x1, y1), label in zip(xyxy.tolist(), labels.tolist()):
                w, h = (x1 - x0) / stride, (y1 - y0) / stride
                cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride
                ix, iy = min(int(cx), cells - 1), min(int(cy), cells - 1)
                sigma = max(0.5, (w + h) / 12)
                gauss = torch.exp(-((grid[None, :] - ix) ** 2 + (grid[:, None] - iy) ** 2) / (2 * sigma**2))
                heat[b, label] = torch.maximum(heat[b, label], gauss)
                size[b, :, iy, ix] = torch.tensor([w, h])
                mask[b, iy, ix] = True
        return heat, size, mask

    def loss(self, body, head, x, target):
        stride = self.head_config.detection_stride
        cells = x.shape[-1] // stride
        features = body.forward_intermediates(x, intermediates_only=True)
        out = head(features, (cells, cells))
        heat, size, mask = self.encode(target, cells)
        logits = out[:, : self.num_classes]
        p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
        positive = heat.eq(1.0)
        focal = torch.where(positive, (1 - p) ** 2 * torch.log(p), (1 - heat) ** 4 * p**2 * torch.log(1 - p))
        heat_loss = -focal.sum() / positive.sum().clamp(min=1)
        predicted = out[:, self.num_classes :].permute(0, 2, 3, 1)[mask]
        size_loss = F.l1_loss(predicted, size.permute(0, 2, 3, 1)[mask], reduction="sum") / mask.sum().clamp(min=1)
        return heat_loss + self.head_config.size_weight * size_loss


def create_pretrain_task(name: str, model: ModelConfig, head: HeadConfig, num_classes: int,
                         image_size: int) -> PretrainTask:
    return PRETRAIN_TASKS.get(name)(model, head, num_classes, image_size)


def load_scene_arrays(task: PretrainTask, folder: Path | str, n: int) -> SceneArrays:
    """Decode the first n samples of a scenes3d render for `task` (grey images, stacked targets)."""
    from synth_render.scene3d.tasks import create_task_dataset

    dataset = create_task_dataset(task.dataset, folder, n)
    images, targets = [], []
    for image, target in dataset:
        images.append(grey(image))
        targets.append(target)
    if len(images) != n:
        raise ValueError(f"{folder} yielded {len(images)} samples, expected {n}")
    return SceneArrays(np.stack(images), task.targets(targets))
