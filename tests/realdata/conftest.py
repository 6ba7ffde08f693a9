"""Tiny datasets in the users' on-disk formats (ImageNet folder, COCO, ADE20K), written by the tests themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 60, (height, width, 3)).astype(np.uint8)


def make_imagefolder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), train: int = 6, val: int = 3,
                     size: tuple[int, int] = (36, 44)) -> Path:
    """root/{train,val}/<class>/*.jpg: class k has a bright vertical band at position k."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = _image(rng, *size)
                band = size[1] // len(classes)
                pixels[:, label * band : (label + 1) * band] += 180
                Image.fromarray(pixels).save(folder / f"{name}_{i}.jpg", quality=90)
    return root


def make_coco(root: Path, train: int = 6, val: int = 3, size: tuple[int, int] = (48, 64)) -> Path:
    """root/annotations/instances_{train2017,val2017}.json + images: bright boxes of two categories (ids 3, 7)."""
    rng = np.random.default_rng(1)
    (root / "annotations").mkdir(parents=True)
    for split, count in (("train2017", train), ("val2017", val)):
        (root / split).mkdir()
        images, annotations = [], []
        for i in range(count):
            pixels = _image(rng, *size)
            image_id = 100 + i
            for k, (category, colour) in enumerate(((3, (220, 40, 40)), (7, (40, 220, 40)))):
                x, y = int(rng.integers(2, size[1] - 24)), int(rng.integers(2, size[0] - 20))
                w, h = int(rng.integers(10, 20)), int(rng.integers(10, 16))
                pixels[y : y + h, x : x + w] = colour
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                    "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            name = f"{image_id:012d}.jpg"
            Image.fromarray(pixels).save(root / split / name, quality=95)
            images.append({"id": image_id, "file_name": name, "height": size[0], "width": size[1]})
        annotations.append({"id": len(annotations) + 1, "image_id": 100, "category_id": 3, "bbox": [0, 0, 5, 5],
                            "area": 25, "iscrowd": 1})
        data = {"images": images, "annotations": annotations,
                "categories": [{"id": 3, "name": "red"}, {"id": 7, "name": "green"}]}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return root


def make_ade20k(root: Path, train: int = 5, val: int = 2, size: tuple[int, int] = (40, 52)) -> Path:
    """root/images/{training,validation}/*.jpg and root/annotations/.../*.png with indices in 0..150."""
    rng = np.random.default_rng(2)
    for split, count in (("training", train), ("validation", val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i in range(count):
            labels = np.zeros(size, dtype=np.uint8)
            labels[:, size[1] // 2 :] = 1
            labels[size[0] // 2 :, :] = 150
            pixels = _image(rng, *size)
            pixels[labels == 1] += 150
            pixels[labels == 150] += 90
            name = f"ADE_{split}_{i:08d}"
            Image.fromarray(pixels).save(root / "images" / split / f"{name}.jpg", quality=95)
            Image.fromarray(labels).save(root / "annotations" / split / f"{name}.png")
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_imagefolder(tmp_path / "imagenet")


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    return make_coco(tmp_path / "coco")


@pytest.fixture
def ade_root(tmp_path: Path) -> Path:
    return make_ade20k(tmp_path / "ADEChallengeData2016")
