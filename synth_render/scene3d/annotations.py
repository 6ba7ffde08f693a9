"""Annotations derived from a rendered scene: 2D boxes from instance masks, a multi-label vector, and the
per-sample record stored next to the images (so every task reads labels that agree with the masks).

Boxes are `[x0, y0, x1, y1]` in pixels with the far edges exclusive (pixel column j spans [j, j + 1)), which is
torchvision's box convention and gives COCO's `[x0, y0, x1 - x0, y1 - y0]` directly. Only objects with at least
`min_pixels` visible pixels are annotated: a fully occluded object has no box and is not in the label vector.
The writer sets that threshold with `visibility_threshold`: an object a few pixels across cannot be recognised
at the study's resolution, so it should not be a label the network is asked to predict. The masks themselves
keep every visible pixel.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class ObjectAnnotation:
    """One visible object: `instance_id` is its value in the instance mask (1 + index in `scene.objects`)."""

    instance_id: int
    class_id: int
    class_name: str
    bbox: tuple[int, int, int, int]
    area: int


def visibility_threshold(width: int, height: int, min_pixels: int = 1, min_visible_fraction: float = 0.0) -> int:
    """Fewest visible pixels an object needs to be annotated in a width x height image:
    max(min_pixels, ceil(min_visible_fraction * width * height)) (e.g. 6 at 32x32 and 21 at 64x64 for 4 and
    0.005). The 1e-9 keeps a product that is an integer up to rounding (0.01 * 100 * 100) from rounding up."""
    return max(int(min_pixels), math.ceil(min_visible_fraction * width * height - 1e-9))


def instance_boxes(instance: np.ndarray) -> dict[int, tuple[tuple[int, int, int, int], int]]:
    """Box and pixel count of every non-zero id in an instance mask."""
    instance = np.asarray(instance)
    ids = np.unique(instance)
    boxes = {}
    for instance_id in ids[ids != 0]:
        rows, cols = np.nonzero(instance == instance_id)
        box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
        boxes[int(instance_id)] = (box, int(rows.size))
    return boxes


def object_annotations(instance: np.ndarray, objects: Sequence[Any], min_pixels: int = 1) -> list[ObjectAnnotation]:
    """The visible objects of a render, in instance-id order; `objects` are the scene's `SceneObject`s."""
    annotations = []
    for instance_id, (box, area) in sorted(instance_boxes(instance).items()):
        if instance_id > len(objects):
            raise ValueError(f"instance id {instance_id} in the mask but the scene has {len(objects)} objects")
        if area < min_pixels:
            continue
        obj = objects[instance_id - 1]
        annotations.append(ObjectAnnotation(instance_id, int(obj.class_id), str(obj.class_name), box, area))
    return annotations


def multilabel_vector(class_ids: Sequence[int], num_classes: int) -> np.ndarray:
    """A 0/1 float32 vector with a 1 at every class present."""
    vector = np.zeros(num_classes, dtype=np.float32)
    for class_id in class_ids:
        if not 0 <= class_id < num_classes:
            raise ValueError(f"class id {class_id} outside [0, {num_classes})")
        vector[class_id] = 1.0
    return vector


def annotation_record(scene: Any, instance: np.ndarray, *, num_classes: int, min_pixels: int = 1) -> dict[str, Any]:
    """The JSON-ready annotations of one render: visible objects (box, area, class) and the multi-label vector."""
    objects = object_annotations(instance, scene.objects, min_pixels)
    present = sorted({o.class_id for o in objects})
    return {
        "objects": [asdict(o) | {"bbox": list(o.bbox)} for o in objects],
        "labels": present,
        "multilabel": multilabel_vector(present, num_classes).astype(int).tolist(),
    }
