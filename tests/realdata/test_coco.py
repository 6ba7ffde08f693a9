"""COCO detection on disk: the loader checks the instances file, pycocotools scores, Faster R-CNN fine-tunes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch

from lab.data.coco import coco_split, load_coco
from lab.data.user_datasets import USER_DATASETS, TaskDataConfig
from lab.tasks import TASKS, TaskFinetuneConfig, TaskTrainConfig
from lab.stages.task_finetune import run_task_finetune
from lab.tasks.backbone import load_backbone_weights
from lab.tasks.detection import DetectorConfig, coco_map


def test_loader_reads_boxes_as_xyxy_with_contiguous_labels(coco_root):
    train, val = coco_split(str(coco_root))
    assert train.category_ids == val.category_ids == (3, 7) and train.num_classes == 3
    assert len(train.image_ids) == 6 and len(val.image_ids) == 3
    annotation = json.loads((coco_root / "annotations" / "instances_train2017.json").read_text())["annotations"][0]
    x, y, w, h = annotation["bbox"]
    np.testing.assert_allclose(train.boxes[0][0], [x, y, x + w, y + h])
    assert train.labels[0].tolist() == [1, 2]  # the crowd box of image 100 is left out of training targets
    data = USER_DATASETS.get("coco")(TaskDataConfig(name="coco", root=str(coco_root)))
    image, target = data.test[0]
    assert image.shape == (3, 48, 64) and target["boxes"].shape == (2, 4) and int(target["image_id"]) == 100


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"images": [], "annotations": []}', "missing list 'categories'"),
    ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [], "categories": []}', "not in"),
])
def test_malformed_instances_files_name_the_file(tmp_path, content, message):
    (tmp_path / "images").mkdir()
    (tmp_path / "instances.json").write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        load_coco(tmp_path / "instances.json", tmp_path / "images")
    assert "instances.json" in str(error.value)


def test_unknown_category_and_missing_folder_are_errors(coco_root):
    path = coco_root / "annotations" / "instances_val2017.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["category_id"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="instances_val2017.json: annotation 0 has unknown category_id 99"):
        coco_split(str(coco_root))
    with pytest.raises(FileNotFoundError, match="instances_train2017.json"):
        coco_split(str(coco_root / "missing"))


def test_coco_map_scores_perfect_detections_one_and_shifted_ones_lower(coco_root):
    _, val = coco_split(str(coco_root))
    perfect, shifted = [], []
    for image_id, boxes, labels in zip(val.image_ids, val.boxes, val.labels):
        for (x0, y0, x1, y1), label in zip(boxes.tolist(), labels.tolist()):
            entry = {"image_id": image_id, "category_id": val.category_ids[label - 1], "score": 0.9}
            perfect.append({**entry, "bbox": [x0, y0, x1 - x0, y1 - y0]})
            shifted.append({**entry, "bbox": [x0 + 1, y0 + 1, x1 - x0, y1 - y0]})
    assert coco_map(val.data, perfect, list(val.image_ids))["mAP"] == pytest.approx(1.0)
    assert 0.0 < coco_map(val.data, shifted, list(val.image_ids))["mAP"] < 0.9
    assert coco_map(val.data, [], list(val.image_ids))["mAP"] == 0.0


def test_timm_resnet_weights_load_into_the_detector_body(tmp_path):
    source = timm.create_model("resnet18", pretrained=False, in_chans=1, num_classes=10)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    model = TASKS.get("detection")().build_model("resnet18", 3, 64)
    load_backbone_weights(model.backbone.body, tmp_path / "model.pt")
    torch.testing.assert_close(model.backbone.body.layer3[0].conv1.weight, source.layer3[0].conv1.weight)
    torch.testing.assert_close(model.backbone.body.conv1.weight.sum(1), source.conv1.weight.sum(1))  # grey -> RGB
    other = TASKS.get("detection")().build_model("resnet50", 3, 64)
    with pytest.raises(ValueError, match="model.pt do not fit"):
        load_backbone_weights(other.backbone.body, tmp_path / "model.pt")


def test_detection_fine_tunes_a_few_steps_from_pretrained_weights(tmp_path, coco_root):
    torch.save(timm.create_model("resnet18", pretrained=False, in_chans=1).state_dict(), tmp_path / "model.pt")
    config = TaskFinetuneConfig(root=str(tmp_path / "runs"), task="detection", backbone="resnet18",
                                data=TaskDataConfig(name="coco", root=str(coco_root), image_size=64), s=4,
                                pretrained=str(tmp_path / "model.pt"),
                                train=TaskTrainConfig(steps=2, batch_size=2, lr=0.005, workers=0, eval_batch_size=2),
                                detector=DetectorConfig(rois_per_image=32, proposals_train=100, proposals_test=50),
                                device="cpu")
    result = run_task_finetune(config)
    assert result["metric"] == "mAP" and 0.0 <= result["metrics"]["error"] <= 1.0
    losses = [json.loads(line) for line in (tmp_path / "runs").rglob("metrics.jsonl").__next__().read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in losses if "loss" in r)


def test_task_and_dataset_must_match(coco_root):
    config = TaskFinetuneConfig(task="segmentation", data=TaskDataConfig(name="coco", root=str(coco_root)))
    with pytest.raises(ValueError, match="task segmentation reads ade20k"):
        run_task_finetune(config)
