"""ADE20K on disk: annotations shift to 0..149 with 'other' ignored, mIoU is right, DeepLabV3 fine-tunes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lab.data.ade20k import IGNORE, index_ade20k, read_annotation
from lab.data.user_datasets import USER_DATASETS, TaskDataConfig
from lab.tasks import TaskFinetuneConfig, TaskTrainConfig
from lab.stages.task_finetune import run_task_finetune
from lab.tasks.segmentation import confusion_matrix, segmentation_scores


def test_loader_pairs_images_with_shifted_labels(ade_root):
    index = index_ade20k(ade_root, "training")
    assert len(index.images) == 5 and index.annotations[0].name == index.images[0].stem + ".png"
    labels = read_annotation(index.annotations[0])
    assert set(np.unique(labels).tolist()) == {IGNORE, 0, 149}
    data = USER_DATASETS.get("ade20k")(TaskDataConfig(name="ade20k", root=str(ade_root), image_size=32))
    image, target = data.train[0]
    assert image.shape == (3, 32, 32) and target.shape == (32, 32)
    image, target = data.test[0]
    assert min(target.shape) == 32 and image.shape[1:] == target.shape and data.num_classes == 150


def test_class_index_out_of_range_names_the_file(ade_root):
    path = next((ade_root / "annotations" / "training").glob("*.png"))
    Image.fromarray(np.full((4, 4), 151, dtype=np.uint8)).save(path)
    with pytest.raises(ValueError, match=f"{path.name} has class index 151"):
        read_annotation(path)


def test_missing_annotation_or_folder_is_an_error(ade_root):
    next((ade_root / "annotations" / "validation").glob("*.png")).unlink()
    with pytest.raises(FileNotFoundError, match="annotations are missing, e.g.*ADE_validation_00000000.png"):
        index_ade20k(ade_root, "validation")
    with pytest.raises(FileNotFoundError, match="images/testing"):
        index_ade20k(ade_root, "testing")


def test_miou_counts_only_classes_that_occur():
    labels = torch.tensor([[0, 0, 1, 1], [2, 2, IGNORE, IGNORE]])
    predicted = torch.tensor([[0, 0, 1, 2], [2, 2, 0, 0]])
    scores = segmentation_scores(confusion_matrix(predicted, labels, 150).numpy())
    assert scores["mIoU"] == pytest.approx((1.0 + 0.5 + 2 / 3) / 3)  # class 1: 1/2, class 2: 2/3
    assert scores["classes_present"] == 3 and scores["pixel_accuracy"] == pytest.approx(5 / 6)


def test_segmentation_fine_tunes_a_few_steps(tmp_path, ade_root):
    config = TaskFinetuneConfig(root=str(tmp_path / "runs"), task="segmentation", backbone="resnet18",
                                data=TaskDataConfig(name="ade20k", root=str(ade_root), image_size=32), s=4,
                                train=TaskTrainConfig(steps=2, batch_size=2, lr=0.01, workers=0, eval_batch_size=2),
                                device="cpu")
    result = run_task_finetune(config)
    assert result["metric"] == "mIoU" and 0.0 <= result["metrics"]["error"] <= 1.0
    assert result["test_size"] == 2 and np.isfinite(result["metrics"]["pixel_accuracy"])
