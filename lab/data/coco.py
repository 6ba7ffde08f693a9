"""COCO detection on disk: root/annotations/instances_<split>.json and the images in root/<split>/.

Category ids are mapped to contiguous labels 1..K (0 is the detector's background) in the order of the train
file's categories; evaluation maps them back, because pycocotools scores the original ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lab.data.imagefolder import read_image, to_rgb_tensor


@dataclass(frozen=True)
class CocoIndex:
    json_path: Path
    image_dir: Path
    data: dict[str, Any]  # the parsed instances file (pycocotools reads it as is)
    image_ids: tuple[int, ...]
    boxes: tuple[np.ndarray, ...]  # float32 [k, 4] xyxy per image, crowd regions left out
    labels: tuple[np.ndarray, ...]  # int64 [k] contiguous labels per image
    category_ids: tuple[int, ...]  # contiguous label - 1 -> COCO category id

    @property
    def num_classes(self) -> int:
        """Categories plus the background."""
        return len(self.category_ids) + 1


def _require(condition: bool, path: Path, message: str) -> None:
    if not condition:
        raise ValueError(f"{path}: {message}")


def load_coco(json_path: Path, image_dir: Path, category_ids: tuple[int, ...] | None = None) -> CocoIndex:
    """Parse and check an instances file; `category_ids` (from train) fixes the labels of a val file."""
    if not json_path.is_file():
        raise FileNotFoundError(f"COCO annotation file {json_path} does not exist")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"COCO image folder {image_dir} does not exist")
    try:
        data = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{json_path}: not valid JSON ({error})") from None
    _require(isinstance(data, dict), json_path, "expected a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        _require(isinstance(data.get(key), list), json_path, f"missing list '{key}'")
    try:
        own = tuple(sorted(int(c["id"]) for c in data["categories"]))
        images = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{json_path}: every category and image needs an 'id' (and images a 'file_name'): {error!r}") from None
    category_ids = own if category_ids is None else category_ids
    unknown = sorted(set(own) - set(category_ids))
    _require(not unknown, json_path, f"category ids {unknown[:10]} are not in the training file's categories")
    label_of = {c: k + 1 for k, c in enumerate(category_ids)}
    missing = [name for name in images.values() if not (image_dir / name).is_file()]
    _require(not missing, json_path, f"{len(missing)} images are not in {image_dir}, e.g. {missing[:3]}")
    per_image: dict[int, list[tuple[list[float], int]]] = {i: [] for i in images}
    for k, ann in enumerate(data["annotations"]):
        try:
            image_id, category, bbox = int(ann["image_id"]), int(ann["category_id"]), [float(v) for v in ann["bbox"]]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{json_path}: annotation {k} needs image_id, category_id and bbox: {error!r}") from None
        _require(image_id in per_image, json_path, f"annotation {k} refers to unknown image_id {image_id}")
        _require(category in label_of, json_path, f"annotation {k} has unknown category_id {category}")
        _require(len(bbox) == 4, json_path, f"annotation {k} bbox must be [x, y, w, h], got {bbox}")
        if ann.get("iscrowd", 0) or bbox[2] <= 0 or bbox[3] <= 0:
            continue
        x, y, w, h = bbox
        per_image[image_id].append(([x, y, x + w, y + h], label_of[category]))
    ids = tuple(sorted(images))
    boxes = tuple(np.asarray([b for b, _ in per_image[i]], dtype=np.float32).reshape(-1, 4) for i in ids)
    labels = tuple(np.asarray([c for _, c in per_image[i]], dtype=np.int64) for i in ids)
    return CocoIndex(json_path, image_dir, data, ids, boxes, labels, category_ids)


def coco_split(root: str, train: str = "train2017", val: str = "val2017") -> tuple[CocoIndex, CocoIndex]:
    if not root:
        raise ValueError("data.root must name the COCO folder (root/annotations/instances_<split>.json, root/<split>/)")
    base = Path(root)
    train_index = load_coco(base / "annotations" / f"instances_{train}.json", base / train)
    return train_index, load_coco(base / "annotations" / f"instances_{val}.json", base / val, train_index.category_ids)


class CocoDetection(torch.utils.data.Dataset):
    """(image float [3, H, W] in [0, 1], target) at the original size: the detector resizes, and maps back."""

    def __init__(self, index: CocoIndex, train: bool) -> None:
        self.index, self.train = index, train
        self.file_names = {int(im["id"]): str(im["file_name"]) for im in index.data["images"]}

    def __len__(self) -> int:
        return len(self.index.image_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image_id = self.index.image_ids[i]
        image = to_rgb_tensor(read_image(self.index.image_dir / self.file_names[image_id]))
        boxes = torch.from_numpy(self.index.boxes[i].copy())
        if self.train and torch.rand(()) < 0.5:
            image = image.flip(-1)
            boxes[:, [0, 2]] = image.shape[-1] - boxes[:, [2, 0]]
        return image, {"boxes": boxes, "labels": torch.from_numpy(self.index.labels[i]), "image_id": torch.tensor(image_id)}
