"""PyTorch datasets for the pre-training tasks of a rendered 3D-scene folder, streamed from its tar shards.

Reading a folder that `synth_render.scene3d.writer` wrote is data reading, so it lives here, below the
pre-training tasks (`lab.tasks.pretrain`: each names the view it reads) and beside the tar-shard reader.

Every dataset yields `(image, target)` with `image` a float32 tensor [3, H, W] in [0, 1] (then `image_transform`,
which must be photometric: boxes and masks are not moved with the image). Targets:

    multilabel    float32 [C]: 1 for every class with a visible object (the record's `multilabel`)
    detection     torchvision-style dict: boxes float32 [K, 4] (x0, y0, x1, y1 pixels), labels int64 [K]
                  (class_id + 1; 0 is background as torchvision's detectors expect), masks uint8 [K, H, W],
                  image_id int64 (the sample index); batch it with `detection_collate`
    segmentation  int64 [H, W]: the semantic mask (0 background, class_id + 1 for objects)
    normals       dict: normals float32 [3, H, W] (unit normals facing the camera, 0 where invalid), valid bool
                  [H, W] (pixels where a surface was hit). The frame is the folder's `normals_frame` (the
                  dataset's `normals_frame` attribute): "camera" (the writer's default) has x = image right,
                  y = image up, z = towards the camera, inferable from the image alone; "world" is the scene's
                  z-up frame, which needs the camera pose (folders from before the manifest recorded a frame)
    depth         dict: depth float32 [1, H, W] (metres, 0 where invalid), valid bool [H, W]

`num_classes` of a dataset is the number of object classes C (segmentation and detection use C + 1 ids).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from lab.data.tar_shards import INDEX, TarShardDataset
from lab.core.registry import Registry

ImageTransform = Callable[[torch.Tensor], torch.Tensor]

SCENE_TASKS: Registry[type["SceneTaskDataset"]] = Registry("scene3d task")


def register_view(view: type["SceneTaskDataset"]) -> type["SceneTaskDataset"]:
    """Put `view` in SCENE_TASKS under its `name`."""
    return SCENE_TASKS.register(view.name)(view)


def image_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)


class SceneTaskDataset(TarShardDataset):
    """A task view of a rendered folder: decodes only `fields` and turns each sample into (image, target).

    A view that `register_view` puts in SCENE_TASKS is one `create_task_dataset` builds by its `name`; a
    pre-training task reads the view class it names, registered or not."""

    name: str  # the view's name: its SCENE_TASKS key, and in the result keys of the tasks that read it
    fields: tuple[str, ...] = ("rgb.png",)

    def __init__(self, path: Path | str, n: int | None = None, *, image_transform: ImageTransform | None = None,
                 manifest: str = "manifest.json", verify: bool = True) -> None:
        super().__init__(path, n, manifest=manifest, fields=("rgb.png", *self.fields), transform=self.example,
                         verify=verify)
        self.image_transform = image_transform
        self.class_names: list[str] = list(self.manifest["class_names"])
        self.num_classes = len(self.class_names)

    def example(self, sample: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        image = image_tensor(sample["rgb.png"])
        if self.image_transform is not None:
            image = self.image_transform(image)
        return image, self.target(sample)

    def target(self, sample: dict[str, Any]) -> Any:
        raise NotImplementedError


@register_view
class MultiLabelDataset(SceneTaskDataset):
    name = "multilabel"
    fields = ("json",)

    def target(self, sample: dict[str, Any]) -> torch.Tensor:
        return torch.tensor(sample["json"]["multilabel"], dtype=torch.float32)


@register_view
class DetectionDataset(SceneTaskDataset):
    name = "detection"
    fields = ("json", "instance.png")

    def target(self, sample: dict[str, Any]) -> dict[str, torch.Tensor]:
        objects = sample["json"]["objects"]
        instance = torch.from_numpy(sample["instance.png"].astype(np.int64))
        ids = torch.tensor([o["instance_id"] for o in objects], dtype=torch.int64)
        return {
            "boxes": torch.tensor([o["bbox"] for o in objects], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([o["class_id"] + 1 for o in objects], dtype=torch.int64),
            "masks": (instance[None] == ids[:, None, None]).to(torch.uint8),
            "area": torch.tensor([o["area"] for o in objects], dtype=torch.float32),
            "iscrowd": torch.zeros(len(objects), dtype=torch.int64),
            "image_id": torch.tensor(sample[INDEX], dtype=torch.int64),
        }


@register_view
class SegmentationDataset(SceneTaskDataset):
    name = "segmentation"
    fields = ("semantic.png",)

    def target(self, sample: dict[str, Any]) -> torch.Tensor:
        return torch.from_numpy(sample["semantic.png"].astype(np.int64))


@register_view
class NormalsDataset(SceneTaskDataset):
    name = "normals"
    fields = ("normals.npy", "depth.npy")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.normals_frame: str = self.manifest.get("normals_frame", "world")

    def target(self, sample: dict[str, Any]) -> dict[str, torch.Tensor]:
        valid = torch.from_numpy(np.isfinite(sample["depth.npy"]))
        normals = torch.from_numpy(np.ascontiguousarray(sample["normals.npy"], dtype=np.float32)).permute(2, 0, 1)
        return {"normals": normals * valid, "valid": valid}


@register_view
class DepthDataset(SceneTaskDataset):
    name = "depth"
    fields = ("depth.npy",)

    def target(self, sample: dict[str, Any]) -> dict[str, torch.Tensor]:
        depth = torch.from_numpy(np.asarray(sample["depth.npy"], dtype=np.float32))
        valid = torch.isfinite(depth)
        return {"depth": torch.where(valid, depth, 0.0)[None], "valid": valid}


def create_task_dataset(task: str, path: Path | str, n: int | None = None, **kwargs: Any) -> SceneTaskDataset:
    """The `task` view (see SCENE_TASKS.names()) of the first `n` samples of a rendered folder."""
    return SCENE_TASKS.get(task)(path, n, **kwargs)


def detection_collate(batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[list, list]:
    """Images and targets as lists (detection targets differ in size), as torchvision's detectors take them."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)
