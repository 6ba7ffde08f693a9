"""Pre-training tasks on rendered 3D scenes: one small class per task (head, loss, in-memory targets).

Every task trains a timm classifier's body (`create_model`, the same `ModelConfig` the fine-tunes use), so the
saved state dict has the fine-tuning model's key names and `lab.stages.image._load_backbone` transfers it as is:

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

from lab.data.scene_tasks import (DetectionDataset, MultiLabelDataset, NormalsDataset, SceneTaskDataset,
                                  SegmentationDataset)
from lab.models import ModelConfig, create_model
from lab.core.registry import Registry

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

PRETRAIN_TASKS: Registry[type["PretrainTask"]] = Registry("pre-training task")


@dataclass
class HeadConfig:
    """Sizes of the task heads (the body is `ModelConfig`)."""

    decoder_channels: int = 64
    detection_stride: int = 4  # CenterNet output stride; the decoder's resolution
    size_weight: float = 0.1  # CenterNet's weight of the box-size loss


@dataclass
class AugmentConfig:
    """Pre-training augmentation of 3D scenes, off by default (the renderer already randomises every view).

    flip: mirror half of each batch left-right, targets mirrored with it (masks, boxes, and the x of
    camera-frame normals). invert: the probability of inverting an image's brightness (x -> -x after
    normalisation), which makes dark-on-light and light-on-dark equally familiar; photometric, so targets stay.
    Draws are a pure function of (seed, step), so a resumed run continues exactly.
    """

    flip: bool = False
    invert: float = 0.0

    def validate(self, prefix: str) -> None:
        if not 0.0 <= self.invert <= 1.0:
            raise ValueError(f"{prefix}.invert is a probability in [0, 1], got {self.invert}")

    @property
    def active(self) -> bool:
        return self.flip or self.invert > 0


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
    """A task: the model it trains, its targets in memory, and its loss on a batch.

    A task is one class with one decorator, `@PRETRAIN_TASKS.register("name")`. It names the `view` of a rendered
    scenes3d folder it reads (a `lab.data.scene_tasks.SceneTaskDataset`; a new kind of target is a new subclass,
    which needs no registration of its own) and turns that view's per-sample targets into its own (`targets`).
    """

    view: type[SceneTaskDataset]
    control: bool = False  # a control arm (labels unrelated to the image): not expected to beat its baseline
    num_classes_of_body: int | None = 0  # None: C (the body's own classifier is the head)

    def __init__(self, model: ModelConfig, head: HeadConfig, num_classes: int, image_size: int) -> None:
        self.model_config, self.head_config = model, head
        self.num_classes, self.image_size = num_classes, image_size

    @property
    def dataset(self) -> str:
        """The name of the view it reads, as result keys (heldout_<dataset>_loss) and metric stages name it."""
        return self.view.name

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

    def forward(self, body: nn.Module, head: nn.Module, x: torch.Tensor) -> Any:
        """The task's raw outputs for a batch (what `loss_of` scores)."""
        raise NotImplementedError

    def loss_of(self, outputs: Any, target: Any) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, body: nn.Module, head: nn.Module, x: torch.Tensor, target: Any) -> torch.Tensor:
        return self.loss_of(self.forward(body, head, x), target)

    def constant_outputs(self, train_targets: Any, x: torch.Tensor) -> Any:
        """The trivial predictor's outputs for batch `x`: the best input-independent guess learned from the
        training targets (class frequencies, the mean normal, ...). A pre-training must beat its loss."""
        raise NotImplementedError

    def flip(self, target: Any, width: int) -> Any:
        """The batch target of horizontally flipped images."""
        raise NotImplementedError


@PRETRAIN_TASKS.register("multilabel")
class MultiLabelTask(PretrainTask):
    """Which classes are in the image: BCE on the body's pooled features (its own fc, C outputs)."""

    view = MultiLabelDataset
    num_classes_of_body = None

    def targets(self, examples: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(examples).to(torch.uint8)

    def forward(self, body, head, x):
        return body(x)

    def loss_of(self, outputs, target):
        return F.binary_cross_entropy_with_logits(outputs, target.float())

    def constant_outputs(self, train_targets, x):
        frequency = train_targets.float().mean(0).clamp(1e-4, 1 - 1e-4)
        return torch.logit(frequency).expand(x.shape[0], -1)

    def flip(self, target, width):
        return target


@PRETRAIN_TASKS.register("multilabel_shuffled")
class ShuffledMultiLabelTask(MultiLabelTask):
    """The control arm of multilabel: the same scenes, the same label statistics, but each image gets another
    image's label vector (a fixed permutation), so nothing about the content can be learned. A transfer gain
    that the control shows too comes from the optimisation, the image statistics or the longer training, not
    from what the synthetic labels say."""

    control = True

    def targets(self, examples: list[torch.Tensor]) -> torch.Tensor:
        labels = super().targets(examples)
        return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(20211))]


class DenseTask(PretrainTask):
    """Per-pixel tasks: the decoder at stride 4, logits upsampled to the input size."""

    outputs: int

    def build_head(self, body: nn.Module) -> nn.Module:
        return self.decoder(body, self.outputs, stride=4)

    def forward(self, body: nn.Module, head: nn.Module, x: torch.Tensor) -> torch.Tensor:
        features = body.forward_intermediates(x, intermediates_only=True)
        size = (x.shape[-2] // 4, x.shape[-1] // 4)
        return F.interpolate(head(features, size), size=x.shape[-2:], mode="bilinear", align_corners=False)


@PRETRAIN_TASKS.register("segmentation")
class SegmentationTask(DenseTask):
    """Semantic segmentation: C + 1 ids (0 = background), cross-entropy over every pixel."""

    view = SegmentationDataset

    @property
    def outputs(self) -> int:
        return self.num_classes + 1

    def targets(self, examples: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(examples).to(torch.uint8 if self.num_classes < 255 else torch.int16)

    def loss_of(self, outputs, target):
        return F.cross_entropy(outputs, target.long())

    def constant_outputs(self, train_targets, x):
        """Log pixel frequencies of every id (the per-pixel class prior; its argmax is the majority class)."""
        counts = torch.bincount(train_targets.long().flatten(), minlength=self.outputs).float()
        log_prior = torch.log((counts / counts.sum()).clamp(min=1e-6))
        return log_prior[None, :, None, None].expand(x.shape[0], -1, *x.shape[-2:])

    def flip(self, target, width):
        return target.flip(-1)


@PRETRAIN_TASKS.register("normals")
class NormalsTask(DenseTask):
    """Surface normals: 1 - cos(predicted, true) averaged over pixels where a surface was hit."""

    view = NormalsDataset
    outputs = 3

    def targets(self, examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {"normals": torch.stack([e["normals"] for e in examples]).half(),
                "valid": torch.stack([e["valid"] for e in examples])}

    def batch(self, targets, index):
        return {k: v[index] for k, v in targets.items()}

    def loss_of(self, outputs, target):
        cosine = F.cosine_similarity(outputs, target["normals"].float(), dim=1, eps=1e-6)
        valid = target["valid"]
        return (1.0 - cosine)[valid].sum() / valid.sum().clamp(min=1)

    def constant_outputs(self, train_targets, x):
        """The mean normal over every valid training pixel (the direction that minimises 1 - cos on average)."""
        valid = train_targets["valid"]
        mean = (train_targets["normals"].float() * valid[:, None]).sum((0, 2, 3))
        return (mean / mean.norm().clamp(min=1e-6))[None, :, None, None].expand(x.shape[0], -1, *x.shape[-2:])

    def flip(self, target, width):
        """Mirror the image: pixels move, and a camera-frame normal's x (image right) changes sign."""
        normals = target["normals"].flip(-1).clone()
        normals[:, 0] = -normals[:, 0]
        return {"normals": normals, "valid": target["valid"].flip(-1)}


@PRETRAIN_TASKS.register("detection")
class DetectionTask(PretrainTask):
    """CenterNet (Zhou et al. 2019) at toy scale: a class heatmap of box centres and the boxes' sizes."""

    view = DetectionDataset

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

    def forward(self, body, head, x):
        cells = x.shape[-1] // self.head_config.detection_stride
        return head(body.forward_intermediates(x, intermediates_only=True), (cells, cells))

    def constant_outputs(self, train_targets, x):
        """Every class's frequency of being a centre cell, at every cell, and the mean box size (in cells)."""
        cells = x.shape[-1] // self.head_config.detection_stride
        heat, size, mask = self.encode(train_targets, cells)
        rate = heat.eq(1.0).float().mean((0, 2, 3)).clamp(1e-4, 1 - 1e-4)
        mean_size = size.permute(0, 2, 3, 1)[mask].mean(0) if mask.any() else torch.zeros(2)
        out = torch.cat([torch.logit(rate), mean_size])
        return out[None, :, None, None].expand(x.shape[0], -1, cells, cells)

    def flip(self, target, width):
        flipped = []
        for xyxy, labels in target:
            boxes = xyxy.clone()
            boxes[:, 0], boxes[:, 2] = width - xyxy[:, 2], width - xyxy[:, 0]
            flipped.append((boxes, labels))
        return flipped

    def loss_of(self, out, target):
        cells = out.shape[-1]
        heat, size, mask = self.encode(target, cells)
        logits = out[:, : self.num_classes]
        p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
        positive = heat.eq(1.0)
        focal = torch.where(positive, (1 - p) ** 2 * torch.log(p), (1 - heat) ** 4 * p**2 * torch.log(1 - p))
        heat_loss = -focal.sum() / positive.sum().clamp(min=1)
        predicted = out[:, self.num_classes :].permute(0, 2, 3, 1)[mask]
        size_loss = F.l1_loss(predicted, size.permute(0, 2, 3, 1)[mask], reduction="sum") / mask.sum().clamp(min=1)
        return heat_loss + self.head_config.size_weight * size_loss


def augment_batch(task: PretrainTask, x: torch.Tensor, target: Any, config: AugmentConfig,
                  generator: torch.Generator) -> tuple[torch.Tensor, Any]:
    """Flip (images and targets together) and invert brightness per `config`; a no-op when it is off."""
    if config.flip:
        flipped = torch.rand(x.shape[0], generator=generator) < 0.5
        if flipped.any():
            x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
            target = _merge_flipped(task, target, flipped, x.shape[-1])
    if config.invert > 0:
        inverted = torch.rand(x.shape[0], generator=generator) < config.invert
        x = torch.where(inverted[:, None, None, None], -x, x)
    return x, target


def _merge_flipped(task: PretrainTask, target: Any, flipped: torch.Tensor, width: int) -> Any:
    """The batch target with the `flipped` rows replaced by their mirrored version."""
    mirrored = task.flip(target, width)
    if isinstance(target, list):
        return [m if f else t for t, m, f in zip(target, mirrored, flipped.tolist())]
    if isinstance(target, dict):
        return {k: torch.where(flipped.view(-1, *[1] * (v.dim() - 1)), mirrored[k], v) for k, v in target.items()}
    return torch.where(flipped.view(-1, *[1] * (target.dim() - 1)), mirrored, target)


BASELINE_SAMPLES = 2000  # training targets the trivial predictor is estimated from (plenty for frequencies)


@torch.no_grad()
def heldout_losses(task: PretrainTask, body: nn.Module, head: nn.Module, train: SceneArrays, heldout: SceneArrays,
                   to_input: Any, batch_size: int = 256) -> dict[str, Any]:
    """The task loss on held-out scenes, of the trained model and of the trivial predictor (`constant_outputs`
    estimated on the training targets), averaged over held-out batches; empty when nothing is held out."""
    count = len(heldout.images)
    if count == 0:
        return {"pretrain_metric": None}
    modules = [body, head]
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    reference = task.batch(train.targets, torch.arange(min(BASELINE_SAMPLES, len(train.images))))
    model_sum = baseline_sum = 0.0
    for start in range(0, count, batch_size):
        index = torch.arange(start, min(start + batch_size, count))
        x, target = to_input(heldout.images[index.numpy()]), task.batch(heldout.targets, index)
        weight = len(index) / count
        model_sum += weight * task.loss_of(task.forward(body, head, x), target).item()
        baseline_sum += weight * task.loss_of(task.constant_outputs(reference, x), target).item()
    for m, mode in zip(modules, modes):
        m.train(mode)
    return {"pretrain_metric": f"heldout_{task.dataset}_loss", "heldout": model_sum,
            "heldout_baseline": baseline_sum, "beats_baseline": bool(model_sum < baseline_sum)}


def split_arrays(task: PretrainTask, arrays: SceneArrays, first: int) -> tuple[SceneArrays, SceneArrays]:
    """(samples [0, first), samples [first, end)) of decoded scenes."""
    count = len(arrays.images)
    head, tail = torch.arange(first), torch.arange(first, count)
    return (SceneArrays(arrays.images[:first], task.batch(arrays.targets, head)),
            SceneArrays(arrays.images[first:], task.batch(arrays.targets, tail)))


def create_pretrain_task(name: str, model: ModelConfig, head: HeadConfig, num_classes: int,
                         image_size: int) -> PretrainTask:
    return PRETRAIN_TASKS.get(name)(model, head, num_classes, image_size)


def load_scene_arrays(task: PretrainTask, folder: Path | str, n: int) -> SceneArrays:
    """Decode the first n samples of a scenes3d render for `task` (grey images, stacked targets)."""
    dataset = task.view(folder, n)
    images, targets = [], []
    for image, target in dataset:
        images.append(grey(image))
        targets.append(target)
    if len(images) != n:
        raise ValueError(f"{folder} yielded {len(images)} samples, expected {n}")
    return SceneArrays(np.stack(images), task.targets(targets))
