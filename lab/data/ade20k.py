"""ADE20K scene parsing on disk (ADEChallengeData2016): images/<split>/*.jpg, annotations/<split>/*.png.

Annotation pixels hold 0..150 where 0 is 'other': as in the benchmark, class c becomes label c - 1 and 0
becomes IGNORE, so the model predicts 150 classes and mIoU is over those.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lab.data.imagefolder import IMAGE_EXTENSIONS, read_image, to_rgb_tensor

NUM_CLASSES = 150
IGNORE = 255


@dataclass(frozen=True)
class SegmentationIndex:
    images: tuple[Path, ...]
    annotations: tuple[Path, ...]


def index_ade20k(root: Path, split: str) -> SegmentationIndex:
    """Pair every image with the annotation PNG of the same stem; a missing one is an error naming it."""
    image_dir, annotation_dir = root / "images" / split, root / "annotations" / split
    for folder in (image_dir, annotation_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"ADE20K folder {folder} does not exist (expected {root}/images|annotations/{split})")
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise ValueError(f"ADE20K folder {image_dir} holds no images")
    annotations = tuple(annotation_dir / f"{p.stem}.png" for p in images)
    missing = [str(a) for a in annotations if not a.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} annotations are missing, e.g. {missing[:3]}")
    return SegmentationIndex(tuple(images), annotations)


def read_annotation(path: Path) -> np.ndarray:
    """Class-index PNG -> uint8 labels 0..149 with IGNORE for 'other'; bad files fail with their name."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(f"annotation {path} has mode {image.mode}; expected one channel of class indices")
            raw = np.asarray(image)
    except OSError as error:
        raise ValueError(f"cannot read annotation {path}: {error}") from None
    if raw.size and int(raw.max()) > NUM_CLASSES:
        raise ValueError(f"annotation {path} has class index {int(raw.max())}; ADE20K indices are 0..{NUM_CLASSES}")
    labels = raw.astype(np.int64) - 1
    labels[labels < 0] = IGNORE
    return labels.astype(np.uint8)


class ADESegmentation(torch.utils.data.Dataset):
    """Training: random scale (0.5-2x of image_size on the short side), crop image_size, flip.
    Evaluation: the short side resized to image_size (labels by nearest neighbour)."""

    def __init__(self, index: SegmentationIndex, image_size: int, train: bool) -> None:
        self.index, self.image_size, self.train = index, image_size, train

    def __len__(self) -> int:
        return len(self.index.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = to_rgb_tensor(read_image(self.index.images[i]))
        labels = torch.from_numpy(read_annotation(self.index.annotations[i])).long()
        if image.shape[1:] != labels.shape:
            raise ValueError(f"{self.index.annotations[i]} is {tuple(labels.shape)} but its image is {tuple(image.shape[1:])}")
        scale = self.image_size / min(labels.shape)
        if self.train:
            scale *= random.uniform(0.5, 2.0)
        size = [max(1, round(labels.shape[0] * scale)), max(1, round(labels.shape[1] * scale))]
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        labels = F.interpolate(labels[None, None].float(), size=size, mode="nearest")[0, 0].long()
        if self.train:
            image, labels = self._crop(image, labels)
            if random.random() < 0.5:
                image, labels = image.flip(-1), labels.flip(-1)
        return image, labels

    def _crop(self, image: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.image_size
        pad_h, pad_w = max(0, s - labels.shape[0]), max(0, s - labels.shape[1])
        image = F.pad(image, (0, pad_w, 0, pad_h), value=0.5)
        labels = F.pad(labels, (0, pad_w, 0, pad_h), value=IGNORE)
        top, left = random.randint(0, labels.shape[0] - s), random.randint(0, labels.shape[1] - s)
        return image[:, top : top + s, left : left + s], labels[top : top + s, left : left + s]


def pad_collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images and label maps of different sizes by padding (grey images, IGNORE labels)."""
    height = max(im.shape[1] for im, _ in batch)
    width = max(im.shape[2] for im, _ in batch)
    images = torch.stack([F.pad(im, (0, width - im.shape[2], 0, height - im.shape[1]), value=0.5) for im, _ in batch])
    labels = torch.stack([F.pad(lb, (0, width - lb.shape[1], 0, height - lb.shape[0]), value=IGNORE) for _, lb in batch])
    return images, labels
