"""Object detection (COCO): torchvision Faster R-CNN with a ResNet-FPN backbone, scored by COCO mAP@[.5:.95].

The ResNet body is built as `fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)` builds it (trainable
BatchNorm, all five stages trainable), for every depth, so a scratch run and a pre-trained run differ only in
the initial weights. Images are resized inside the model (short side = image_size, long side <= 1333/800 of it)
and boxes come back in original pixels, which is what pycocotools scores.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from lab.data.user_datasets import TaskData
from lab.tasks.base import TASKS
from lab.train import NORM_MEAN, NORM_STD


@dataclass
class DetectorConfig:
    """Faster R-CNN sampling sizes; the defaults are torchvision's (and detectron2's) for COCO."""

    rois_per_image: int = 512  # RoIs sampled per image for the box head's loss
    proposals_train: int = 2000  # RPN proposals kept after NMS, training
    proposals_test: int = 1000  # ... and evaluation
    detections_per_image: int = 100  # COCO scores at most 100 per image


@TASKS.register("detection")
class Detection:
    metric = "mAP"
    datasets = ("coco",)

    def __init__(self, config: Any = None) -> None:
        self.detector: DetectorConfig = getattr(config, "detector", None) or DetectorConfig()

    def build_model(self, backbone: str, num_classes: int, image_size: int) -> torch.nn.Module:
        fpn = resnet_fpn_backbone(backbone_name=backbone, weights=None, norm_layer=nn.BatchNorm2d, trainable_layers=5)
        d = self.detector
        return FasterRCNN(fpn, num_classes=num_classes, min_size=image_size, max_size=round(image_size * 1333 / 800),
                          image_mean=[NORM_MEAN] * 3, image_std=[NORM_STD] * 3, box_batch_size_per_image=d.rois_per_image,
                          rpn_post_nms_top_n_train=d.proposals_train, rpn_post_nms_top_n_test=d.proposals_test,
                          box_detections_per_img=d.detections_per_image)

    def body(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.backbone.body

    def collate(self, batch: list[Any]) -> Any:
        return tuple(zip(*batch))

    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        images, targets = batch
        losses = model([im.to(device) for im in images], [{k: v.to(device) for k, v in t.items()} for t in targets])
        return sum(losses.values())

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, loader: Any, data: TaskData, device: torch.device) -> dict[str, float]:
        index = data.test_index
        detections = []
        for images, targets in loader:
            for output, target in zip(model([im.to(device) for im in images]), targets):
                for box, label, score in zip(output["boxes"].tolist(), output["labels"].tolist(), output["scores"].tolist()):
                    detections.append({"image_id": int(target["image_id"]), "category_id": index.category_ids[label - 1],
                                       "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": score})
        return coco_map(index.data, detections, data.test_ids())


def coco_map(ground_truth: dict[str, Any], detections: list[dict[str, Any]], image_ids: list[int]) -> dict[str, float]:
    """COCO box mAP@[.5:.95] and mAP@.5 over `image_ids` (pycocotools; no detections scores 0)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return {"mAP": 0.0, "mAP50": 0.0, "detections": 0}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"info": {}, **ground_truth}
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(detections), "bbox")
        evaluation.params.imgIds = sorted(image_ids)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # -1 means no ground truth in that range; the COCO convention scores it as absent, we score it 0
    return {"mAP": max(0.0, float(evaluation.stats[0])), "mAP50": max(0.0, float(evaluation.stats[1])),
            "detections": len(detections)}
