"""Datasets users bring on disk (ImageNet folder, COCO, ADE20K), opened by name for the task fine-tuning stage.

Each opener checks the whole layout before any work and returns a `TaskData`: the training pool (with its
augmentation), the evaluation set (val, or a fixed seeded sample of it), the class count, and the pool labels
when the task is single-label classification (so the s-subset can be class-balanced).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from lab.data.ade20k import NUM_CLASSES as ADE_CLASSES
from lab.data.ade20k import ADESegmentation, SegmentationIndex, index_ade20k
from lab.data.coco import CocoDetection, CocoIndex, coco_split
from lab.data.imagefolder import FolderClassification, folder_split
from lab.core.registry import Registry


@dataclass
class TaskDataConfig:
    """Where a user's dataset lives and how it is read; empty splits take the layout's usual names."""

    name: str = "imagefolder"  # imagefolder | coco | ade20k
    root: str = ""
    train_split: str = ""  # imagefolder: train, coco: train2017, ade20k: training
    val_split: str = ""  # imagefolder: val, coco: val2017, ade20k: validation
    image_size: int = 224  # classification crop; detection short side; segmentation crop / eval short side
    test_size: int = 0  # > 0: evaluate on a fixed seeded sample of that many val images; 0: all of val
    split_seed: int = 0


@dataclass
class TaskData:
    train: torch.utils.data.Dataset
    test: torch.utils.data.Dataset
    num_classes: int
    train_labels: np.ndarray | None = None  # single-label classification only
    test_index: Any = None  # the format's index of the evaluation set (COCO: for pycocotools)

    def test_ids(self) -> list[int]:
        """COCO image ids of the evaluation set (after any test_size sampling)."""
        test = self.test
        index = list(test.indices) if isinstance(test, torch.utils.data.Subset) else list(range(len(test)))
        return [self.test_index.image_ids[i] for i in index]


USER_DATASETS: Registry[Callable[[TaskDataConfig], TaskData]] = Registry("user dataset")


def _sample(dataset: torch.utils.data.Dataset, config: TaskDataConfig) -> torch.utils.data.Dataset:
    """The fixed evaluation sample: the same `test_size` val images for every run of a study."""
    if not 0 < config.test_size < len(dataset):
        return dataset
    index = np.sort(np.random.default_rng(config.split_seed).permutation(len(dataset))[: config.test_size])
    return torch.utils.data.Subset(dataset, index.tolist())


@USER_DATASETS.register("imagefolder")
def open_imagefolder(config: TaskDataConfig) -> TaskData:
    train, val = folder_split(config.root, config.train_split or "train", config.val_split or "val")
    return TaskData(FolderClassification(train, config.image_size, train=True),
                    _sample(FolderClassification(val, config.image_size, train=False), config),
                    num_classes=len(train.classes), train_labels=train.labels)


@USER_DATASETS.register("coco")
def open_coco(config: TaskDataConfig) -> TaskData:
    train, val = coco_split(config.root, config.train_split or "train2017", config.val_split or "val2017")
    return TaskData(CocoDetection(train, train=True), _sample(CocoDetection(val, train=False), config),
                    num_classes=train.num_classes, test_index=val)


@USER_DATASETS.register("ade20k")
def open_ade20k(config: TaskDataConfig) -> TaskData:
    if not config.root:
        raise ValueError("data.root must name the ADEChallengeData2016 folder (images/, annotations/)")
    root = Path(config.root)
    train = index_ade20k(root, config.train_split or "training")
    val = index_ade20k(root, config.val_split or "validation")
    return TaskData(ADESegmentation(train, config.image_size, train=True),
                    _sample(ADESegmentation(val, config.image_size, train=False), config), num_classes=ADE_CLASSES)


__all__ = ["USER_DATASETS", "TaskData", "TaskDataConfig", "CocoIndex", "SegmentationIndex"]
