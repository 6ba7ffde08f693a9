"""COCO-style JSON export of a rendered 3D-scene dataset (for detection / instance-segmentation tools).

Images are named by their tar member (`000000012.rgb.png`, with its `shard` file alongside); category ids
are `class_id + 1` (the value in the semantic mask, so 0 stays background); boxes are COCO `[x, y, width,
height]` in pixels; masks are uncompressed RLE (`{"size": [h, w], "counts": [...]}`, column-major runs
starting with background, what `pycocotools.mask.frPyObjects` accepts); `iscrowd` is 0 for every object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from lab.data.tar_shards import INDEX, KEY, TarShardDataset
from lab.core.rundir import atomic_write_json


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed COCO RLE of a binary mask."""
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def rle_to_mask(rle: Mapping[str, Any]) -> np.ndarray:
    """The inverse of `mask_to_rle` (for tests and quick checks without pycocotools)."""
    height, width = rle["size"]
    values = np.zeros(sum(rle["counts"]), dtype=bool)
    position, value = 0, False
    for count in rle["counts"]:
        values[position : position + count] = value
        position, value = position + count, not value
    return values.reshape((height, width), order="F")


def coco_categories(class_names: Sequence[str]) -> list[dict[str, Any]]:
    return [{"id": class_id + 1, "name": name, "supercategory": "shape"} for class_id, name in enumerate(class_names)]


def coco_from_samples(samples: Iterable[Mapping[str, Any]], class_names: Sequence[str],
                      shard_of: Callable[[int], str] | None = None) -> dict[str, Any]:
    """The COCO dict of decoded samples (each with `instance.png` and the `json` record)."""
    images, annotations = [], []
    for sample in samples:
        record = sample["json"]
        instance = np.asarray(sample["instance.png"])
        image_id = int(sample[INDEX])
        images.append({"id": image_id, "file_name": f"{sample[KEY]}.rgb.png",
                       "width": int(instance.shape[1]), "height": int(instance.shape[0])}
                      | ({"shard": shard_of(image_id)} if shard_of else {}))
        for obj in record["objects"]:
            x0, y0, x1, y1 = obj["bbox"]
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": obj["class_id"] + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": obj["area"], "iscrowd": 0,
                "segmentation": mask_to_rle(instance == obj["instance_id"]),
            })
    return {"info": {"description": "synth_render scene3d dataset"}, "images": images,
            "annotations": annotations, "categories": coco_categories(class_names)}


def export_coco(folder: Path | str, out: Path | str, n: int | None = None) -> Path:
    """Write the COCO JSON of the first `n` samples (all by default) of a rendered folder."""
    dataset = TarShardDataset(folder, n)
    records = dataset.manifest["shards"]

    def shard_of(index: int) -> str:
        return next(r["file"] for r in records if r["start"] <= index < r["start"] + r["count"])

    out = Path(out)
    atomic_write_json(out, coco_from_samples(dataset, dataset.manifest["class_names"], shard_of))
    return out
