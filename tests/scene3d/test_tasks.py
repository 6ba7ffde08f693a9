"""Task datasets over 3D-scene shards: tensor shapes and dtypes, and labels that agree with the stored masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lab.data.scene_tasks import SCENE_TASKS, create_task_dataset, detection_collate
from lab.data.tar_shards import INDEX, TarShardDataset
from lab.tasks.pretrain import PRETRAIN_TASKS
from lab.core.registry import UnknownNameError
from synth_render.dataset import render_dataset
from synth_render.scene3d.sampler import SceneSamplerConfig
from synth_render.scene3d.writer import Scene3DRendererConfig

COUNT, SIZE = 8, 32


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("tasks") / "scenes"
    config = Scene3DRendererConfig(engine="torch", level="lv5", width=SIZE, height=SIZE, shard_size=3,
                                   sampler=SceneSamplerConfig(objects_per_scene=[2, 4]))
    render_dataset(config, COUNT, out, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def raw(rendered):
    return list(TarShardDataset(rendered))


def examples(task, rendered, **kwargs):
    return list(create_task_dataset(task, rendered, **kwargs))


def test_every_task_is_registered():
    assert SCENE_TASKS.names() == ["depth", "detection", "multilabel", "normals", "segmentation"]
    assert all(SCENE_TASKS.get(name).name == name for name in SCENE_TASKS)


def test_every_pretraining_task_names_the_view_it_reads():
    """The view's name is in result keys (heldout_<view>_loss): these must not change."""
    views = {name: PRETRAIN_TASKS.get(name).view.name for name in PRETRAIN_TASKS}
    assert views == {"detection": "detection", "multilabel": "multilabel", "multilabel_shuffled": "multilabel",
                     "normals": "normals", "segmentation": "segmentation"}


def test_the_old_module_path_still_reads_the_views():
    from synth_render.scene3d import tasks

    assert tasks.SCENE_TASKS is SCENE_TASKS and tasks.create_task_dataset is create_task_dataset


@pytest.mark.parametrize("task", ["multilabel", "detection", "segmentation", "normals", "depth"])
def test_images_are_float_chw_in_unit_range(task, rendered, raw):
    items = examples(task, rendered)
    assert len(items) == COUNT
    for (image, _), sample in zip(items, raw):
        assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        np.testing.assert_allclose(image.permute(1, 2, 0).numpy() * 255, sample["rgb.png"], atol=1e-3)


def labelled(instance: np.ndarray) -> list[int]:
    """Instance ids with enough visible pixels for a label (ceil(0.005 * 32 * 32) = 6, the writer's default)."""
    ids, counts = np.unique(instance, return_counts=True)
    return [int(i) for i, c in zip(ids, counts) if i > 0 and c >= 6]


def test_multilabel_targets_are_the_classes_of_objects_visible_enough(rendered, raw):
    dataset = create_task_dataset("multilabel", rendered)
    assert dataset.num_classes == 84
    for (_, target), sample in zip(dataset, raw):
        assert target.shape == (84,) and target.dtype == torch.float32
        objects = sample["json"]["scene"]["objects"]
        present = sorted({objects[i - 1]["class_id"] for i in labelled(sample["instance.png"])})
        assert torch.nonzero(target).flatten().tolist() == present
    images, targets = next(iter(DataLoader(dataset, batch_size=4)))
    assert images.shape == (4, 3, SIZE, SIZE) and targets.shape == (4, 84)


def test_detection_targets_are_torchvision_style_and_match_the_masks(rendered, raw):
    objects = 0
    for (_, target), sample in zip(examples("detection", rendered), raw):
        k = len(target["labels"])
        assert target["boxes"].shape == (k, 4) and target["boxes"].dtype == torch.float32
        assert target["labels"].dtype == torch.int64 and target["masks"].shape == (k, SIZE, SIZE)
        assert int(target["image_id"]) == sample[INDEX]
        semantic = sample["semantic.png"]
        for box, label, mask in zip(target["boxes"], target["labels"], target["masks"].bool().numpy()):
            rows, cols = np.nonzero(mask)
            assert box.tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            assert set(np.unique(semantic[mask]).tolist()) == {int(label)}  # label = class_id + 1
            objects += 1
        union = target["masks"].sum(0).numpy()
        assert union.max() <= 1 and np.array_equal(union > 0, np.isin(sample["instance.png"],
                                                                        labelled(sample["instance.png"])))
    assert objects > COUNT
    images, targets = next(iter(DataLoader(create_task_dataset("detection", rendered), batch_size=3,
                                           collate_fn=detection_collate)))
    assert len(images) == len(targets) == 3 and "boxes" in targets[0]


def test_segmentation_target_is_the_class_mask(rendered, raw):
    for (_, target), sample in zip(examples("segmentation", rendered), raw):
        assert target.shape == (SIZE, SIZE) and target.dtype == torch.int64
        np.testing.assert_array_equal(target.numpy(), sample["semantic.png"])
        assert int(target.max()) <= 84


def test_normals_are_unit_where_valid_and_zero_elsewhere(rendered, raw):
    assert create_task_dataset("normals", rendered).normals_frame == "camera"
    for (_, target), sample in zip(examples("normals", rendered), raw):
        normals, valid = target["normals"], target["valid"]
        assert normals.shape == (3, SIZE, SIZE) and normals.dtype == torch.float32
        assert valid.shape == (SIZE, SIZE) and valid.dtype == torch.bool
        np.testing.assert_array_equal(valid.numpy(), np.isfinite(sample["depth.npy"]))
        assert valid.any()
        torch.testing.assert_close(normals.norm(dim=0)[valid], torch.ones(int(valid.sum())), atol=1e-3, rtol=0)
        assert (normals[:, ~valid] == 0).all()
        assert (normals[2][valid] > 0).float().mean() >= 0.95  # camera frame: z points back at the camera


def test_depth_target_and_subset_and_transform(rendered):
    items = examples("depth", rendered, n=5, image_transform=lambda image: image * 0)
    assert len(items) == 5
    image, target = items[0]
    assert image.abs().sum() == 0  # the image transform ran
    assert target["depth"].shape == (1, SIZE, SIZE) and (target["depth"][0][target["valid"]] > 0).all()


def test_unknown_task_lists_the_valid_ones(rendered):
    with pytest.raises(UnknownNameError, match="detection, multilabel"):
        create_task_dataset("keypoints", rendered)
