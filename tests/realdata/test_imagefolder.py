"""A user's ImageNet-style folder: indexed without decoding, split by its own train/ and val/, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from lab.data.imagefolder import LazyImages, folder_split, index_folder
from lab.data.real import RealDataConfig, finetune_subset, pool_size, real_split
from lab.data.user_datasets import USER_DATASETS, TaskDataConfig
from lab.tasks import TaskFinetuneConfig, TaskTrainConfig
from lab.stages.task_finetune import run_task_finetune


def test_index_lists_classes_in_sorted_order(folder):
    train, val = folder_split(str(folder))
    assert train.classes == val.classes == ("cat", "dog")
    assert np.bincount(train.labels).tolist() == [6, 6] and np.bincount(val.labels).tolist() == [3, 3]


def test_imagefolder_is_a_real_dataset_for_the_digits_path(folder):
    config = RealDataConfig(name="imagefolder", root=str(folder), test_size=0)
    split = real_split(config, 20)
    assert split.test_images.shape == (6, 20, 20) and split.test_images.dtype == np.uint8
    assert pool_size(config) == 12 and len(split.pool_images) == 12
    images, labels = finetune_subset(split, 4, seed=0)
    assert images.shape == (4, 20, 20) and np.bincount(labels).tolist() == [2, 2]
    # the bright band says the class: the pool decodes the right files for the labels
    left = images[:, :, :10].mean(axis=(1, 2)) > images[:, :, 10:].mean(axis=(1, 2))
    assert (left == (labels == 0)).all()
    capped = real_split(RealDataConfig(name="imagefolder", root=str(folder), test_size=4), 20)
    assert np.bincount(capped.test_labels).tolist() == [2, 2]


def test_task_dataset_yields_rgb_crops(folder):
    data = USER_DATASETS.get("imagefolder")(TaskDataConfig(name="imagefolder", root=str(folder), image_size=32))
    image, label = data.train[0]
    assert image.shape == (3, 32, 32) and 0.0 <= image.min() and image.max() <= 1.0 and label == 0
    assert data.test[5][0].shape == (3, 32, 32) and data.num_classes == 2


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere/train"):
        folder_split(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="data.root"):
        folder_split("")


def test_bad_layouts_name_the_offending_folder_or_file(folder):
    (folder / "val" / "bird").mkdir()
    with pytest.raises(ValueError, match="train/ lacks: bird"):
        index_folder(folder / "val", ("cat", "dog"))
    (folder / "train" / "emu").mkdir()
    with pytest.raises(ValueError, match="emu holds no images"):
        index_folder(folder / "train")
    (folder / "train" / "emu" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        LazyImages([str(folder / "train" / "emu" / "broken.jpg")], 8)[[0]]


def test_classification_task_fine_tunes_and_is_reused(tmp_path, folder):
    config = TaskFinetuneConfig(root=str(tmp_path / "runs"), task="classification", backbone="resnet18",
                                data=TaskDataConfig(name="imagefolder", root=str(folder), image_size=32), s=8,
                                train=TaskTrainConfig(steps=2, batch_size=4, lr=0.01, workers=0), device="cpu")
    result = run_task_finetune(config)
    assert result["metric"] == "top1" and 0.0 <= result["metrics"]["error"] <= 1.0
    assert np.isfinite(result["metrics"]["loss"]) and result["test_size"] == 6 and result["s"] == 8
    assert run_task_finetune(config)["run_hash"] == result["run_hash"]


def test_classification_task_resumes_from_its_checkpoint(tmp_path, folder, monkeypatch):
    import torch

    config = TaskFinetuneConfig(root=str(tmp_path / "runs"), task="classification", backbone="resnet18",
                                data=TaskDataConfig(name="imagefolder", root=str(folder), image_size=32), s=8,
                                train=TaskTrainConfig(steps=4, batch_size=4, checkpoint_every=2, workers=0),
                                device="cpu")
    original, calls = torch.optim.SGD.step, {"n": 0}

    def step_then_die(self, *args, **kwargs):  # preempted during step 3
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", step_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_task_finetune(config)
    monkeypatch.setattr(torch.optim.SGD, "step", original)
    result = run_task_finetune(config)
    assert result["resumed_from_step"] == 2 and result["steps"] == 4
