"""ImageNet-style classification folders: root/train/<class>/*.jpg and root/val/<class>/*.jpg.

Classes are the sorted sub-folder names of train/ (label = position), as torchvision's ImageFolder does, so
val/ must use the same names. Indexing only lists files; images are decoded when a batch needs them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm"})


@dataclass(frozen=True)
class FolderIndex:
    classes: tuple[str, ...]
    paths: tuple[str, ...]
    labels: np.ndarray  # int64 [N]


def read_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """Decode one image, or fail with an error that names the file."""
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from None


def index_folder(split_dir: Path, classes: Sequence[str] | None = None) -> FolderIndex:
    """List split_dir/<class>/<image>; `classes` (from train/) fixes the labels of a val/ folder."""
    if not split_dir.is_dir():
        raise FileNotFoundError(f"image folder {split_dir} does not exist (expected {split_dir}/<class>/*.jpg)")
    found = sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())
    if not found:
        raise ValueError(f"image folder {split_dir} has no class sub-folders (expected {split_dir}/<class>/*.jpg)")
    classes = tuple(found) if classes is None else tuple(classes)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(f"{split_dir} has classes that train/ lacks: {', '.join(unknown[:10])}")
    paths, labels = [], []
    for label, name in enumerate(classes):
        folder = split_dir / name
        if not folder.is_dir():
            continue
        files = sorted(e.path for e in os.scandir(folder) if e.is_file() and Path(e.name).suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(f"class folder {folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        paths += files
        labels += [label] * len(files)
    return FolderIndex(classes, tuple(paths), np.asarray(labels, dtype=np.int64))


@lru_cache(maxsize=4)
def folder_split(root: str, train: str = "train", val: str = "val") -> tuple[FolderIndex, FolderIndex]:
    """(train, val) indexes of a classification folder; listed once per process (ImageNet: 1.3M files)."""
    if not root:
        raise ValueError("data.root must name the image folder (root/train/<class>/*, root/val/<class>/*)")
    train_index = index_folder(Path(root) / train)
    return train_index, index_folder(Path(root) / val, train_index.classes)


class LazyImages:
    """Array-like view of image files as uint8 [N, size, size]; indexing decodes only the picked files."""

    def __init__(self, paths: Sequence[str], size: int, mode: str = "L") -> None:
        self.paths, self.size, self.mode = tuple(paths), size, mode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: np.ndarray | Sequence[int]) -> np.ndarray:
        return np.stack([np.asarray(read_image(self.paths[i], self.mode).resize((self.size, self.size), Image.BILINEAR))
                         for i in np.asarray(index).ravel()])


def to_rgb_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float [3, H, W] in [0, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


class FolderClassification(torch.utils.data.Dataset):
    """RGB samples of a FolderIndex: training gets a random resized crop and a flip, evaluation a centre crop."""

    def __init__(self, index: FolderIndex, image_size: int, train: bool) -> None:
        from torchvision.transforms import v2

        self.index, self.image_size, self.train = index, image_size, train
        if train:
            self.transform = v2.Compose([v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()])
        else:
            self.transform = v2.Compose([v2.Resize(int(round(image_size / 0.875)), antialias=True),
                                         v2.CenterCrop(image_size)])

    def __len__(self) -> int:
        return len(self.index.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(to_rgb_tensor(read_image(self.index.paths[i]))), int(self.index.labels[i])
