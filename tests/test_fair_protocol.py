"""The fair-test protocol of the transfer studies: a fixed pre-training budget, held-out synthetic metrics next to
their trivial baselines, Fashion-MNIST as a real target with headroom, and equal learning-rate tuning for every
arm on a validation split that is never the test set."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lab.stages import image as stages
from lab.data.real import (FASHION_MNIST_PACKAGE, RealDataConfig, finetune_subset, load_fashion_mnist, pool_size,
                           real_split)
from lab.models import ModelConfig
from lab.tasks.pretrain import (AugmentConfig, HeadConfig, augment_batch, create_pretrain_task, heldout_losses,
                                load_scene_arrays, split_arrays)
from lab.core.results import results_table
from lab.stages.image import FinetuneConfig, FinetuneJob, PretrainConfig, heldout_classification, run_finetune
from lab.stages.scenes3d import Pretrain3DJob, run_pretrain_3d
from lab.train import to_tensor
from synth_render.dataset import render_dataset
from synth_render.scene3d.writer import Scene3DRendererConfig

SIZE, CLASSES = 32, 84


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("fair") / "scenes"
    render_dataset(Scene3DRendererConfig(level="lv5", width=SIZE, height=SIZE, shard_size=8), 24, out,
                   progress=False)
    return out


# --- the pre-training budget -------------------------------------------------------------------------------------

def test_the_fixed_budget_gives_every_n_the_same_steps():
    config = PretrainConfig(steps=700, batch_size=128)
    assert {config.train_config(n).steps for n in (1, 500, 4000, 1_280_000)} == {700}
    old = PretrainConfig(budget="epochs", epochs=10, min_steps=50, batch_size=128)
    assert [old.train_config(n).steps for n in (500, 4000, 16000)] == [50, 312, 1250]  # the old rule, kept
    with pytest.raises(ValueError, match="budget must be one of steps, epochs"):
        PretrainConfig(budget="tokens").train_config(10)


def test_the_render_holds_the_held_out_samples_before_the_largest_n():
    assert PretrainConfig(holdout=500).render_count(16000) == 16500
    assert PretrainConfig(holdout=500).render_count(0) == 0  # from scratch only: nothing to render


# --- held-out synthetic metrics and their trivial baselines ------------------------------------------------------

@pytest.mark.parametrize("name", ["multilabel", "segmentation", "normals", "detection"])
def test_every_3d_pretraining_records_its_held_out_loss_and_trivial_baseline(name, scenes, tmp_path):
    job = Pretrain3DJob(root=str(tmp_path), experiment="t", dataset=str(scenes), dataset_id="x", task=name, n=16,
                        seed=0, image_size=SIZE, num_classes=CLASSES, head=HeadConfig(decoder_channels=16),
                        train=PretrainConfig(steps=3, batch_size=8, holdout=8), threads=1)
    result = run_pretrain_3d(job)
    assert result["pretrain_metric"] == f"heldout_{name}_loss"
    assert math.isfinite(result["heldout"]) and math.isfinite(result["heldout_baseline"])
    assert result["beats_baseline"] == (result["heldout"] < result["heldout_baseline"])


def test_the_multilabel_baseline_is_the_loss_of_predicting_class_frequencies(scenes):
    task = create_pretrain_task("multilabel", ModelConfig(), HeadConfig(), CLASSES, SIZE)
    heldout, train = split_arrays(task, load_scene_arrays(task, scenes, 24), 8)
    frequency = train.targets.float().mean(0).clamp(1e-4, 1 - 1e-4)
    expected = F.binary_cross_entropy(frequency.expand(8, -1), heldout.targets.float()).item()

    class Perfect(torch.nn.Module):  # a "model" that outputs the true labels with high confidence
        def forward(self, x):
            return (heldout.targets.float()[: x.shape[0]] * 2 - 1) * 20

    scores = heldout_losses(task, Perfect(), torch.nn.Identity(), train, heldout, to_tensor)
    assert scores["heldout_baseline"] == pytest.approx(expected, rel=1e-5)
    assert scores["heldout"] < 1e-3 < scores["heldout_baseline"] and scores["beats_baseline"]


def test_dense_baselines_are_the_pixel_prior_and_the_mean_normal(scenes):
    segmentation = create_pretrain_task("segmentation", ModelConfig(), HeadConfig(), CLASSES, SIZE)
    arrays = load_scene_arrays(segmentation, scenes, 16)
    constant = segmentation.constant_outputs(arrays.targets, torch.zeros(2, 1, SIZE, SIZE))
    majority = torch.bincount(arrays.targets.long().flatten()).argmax()
    assert constant.shape == (2, CLASSES + 1, SIZE, SIZE) and bool((constant.argmax(1) == majority).all())

    normals = create_pretrain_task("normals", ModelConfig(), HeadConfig(), CLASSES, SIZE)
    targets = load_scene_arrays(normals, scenes, 16).targets
    mean = normals.constant_outputs(targets, torch.zeros(1, 1, SIZE, SIZE))[0, :, 0, 0]
    valid = targets["valid"]
    by_hand = (targets["normals"].float() * valid[:, None]).sum((0, 2, 3))
    assert torch.allclose(mean, by_hand / by_hand.norm(), atol=1e-5)


def test_digit_pretraining_is_judged_against_the_majority_class():
    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.tensor([[0.0, 5.0, 0.0]]).expand(x.shape[0], -1)

    images = np.zeros((4, 8, 8), np.uint8)
    scores = heldout_classification(Constant(), images, np.array([1, 1, 2, 0]), np.array([2, 2, 2, 1]))
    assert scores["heldout"] == 0.5 and scores["heldout_baseline"] == 0.75 and scores["beats_baseline"]
    assert heldout_classification(Constant(), images[:0], np.array([], int), np.array([1])) == {
        "pretrain_metric": None}


# --- pre-training augmentation -----------------------------------------------------------------------------------

def test_flip_moves_targets_with_the_image_and_invert_is_photometric(scenes):
    normals = create_pretrain_task("normals", ModelConfig(), HeadConfig(), CLASSES, SIZE)
    arrays = load_scene_arrays(normals, scenes, 8)
    x = to_tensor(arrays.images)
    target = normals.batch(arrays.targets, torch.arange(8))
    flipped_x, flipped = augment_batch(normals, x, target, AugmentConfig(flip=True), torch.Generator().manual_seed(0))
    rows = [i for i in range(8) if not torch.equal(flipped_x[i], x[i])]
    assert 0 < len(rows) < 8  # about half of the batch is mirrored
    i = rows[0]
    assert torch.equal(flipped_x[i], x[i].flip(-1))
    assert torch.equal(flipped["valid"][i], target["valid"][i].flip(-1))
    assert torch.equal(flipped["normals"][i, 0], -target["normals"][i, 0].flip(-1))  # x of the normal mirrors
    assert torch.equal(flipped["normals"][i, 1], target["normals"][i, 1].flip(-1))

    detection = create_pretrain_task("detection", ModelConfig(), HeadConfig(), CLASSES, SIZE)
    boxes = [(torch.tensor([[2.0, 3.0, 10.0, 12.0]]), torch.tensor([4]))]
    assert detection.flip(boxes, SIZE)[0][0].tolist() == [[22.0, 3.0, 30.0, 12.0]]

    inverted, same = augment_batch(normals, x, target, AugmentConfig(invert=1.0), torch.Generator().manual_seed(0))
    assert torch.equal(inverted, -x) and same is target
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(invert=1.5).validate("study.augment")


# --- Fashion-MNIST -----------------------------------------------------------------------------------------------

def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_fashion(tmp_path, monkeypatch):
    """A 10-class Fashion-MNIST look-alike in the package's file layout: 200 train, 50 test images."""
    rng = np.random.default_rng(0)
    for part, count in (("train", 200), ("t10k", 50)):
        labels = np.arange(count) % 10
        write_idx(tmp_path / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 255, (count, 28, 28)))
        write_idx(tmp_path / f"{part}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("LAB_FASHION_MNIST_DIR", str(tmp_path))
    load_fashion_mnist.cache_clear()
    yield tmp_path
    load_fashion_mnist.cache_clear()


def test_fashion_mnist_keeps_its_own_test_split_and_carves_validation_from_the_pool(tiny_fashion):
    config = RealDataConfig(name="fashion_mnist", test_size=0, val_size=20)
    split = real_split(config, 32)
    assert split.test_images.shape == (50, 32, 32)  # test_size 0: the whole official test set
    assert len(split.val_labels) == 20 and np.bincount(split.val_labels).tolist() == [2] * 10
    assert pool_size(config) == len(split.pool_labels) == 180
    images, labels = finetune_subset(split, 30, seed=0)
    assert images.shape == (30, 32, 32) and np.bincount(labels).tolist() == [3] * 10
    train_images = load_fashion_mnist()[0]
    pool_rows = {train_images[i].tobytes() for i in range(200)}
    assert len(pool_rows) == 200  # random images: rows identify samples
    val_rows = {np.asarray(v).tobytes() for v in real_split(RealDataConfig("fashion_mnist", 0, val_size=20), 28)
                .val_images}
    pool28 = real_split(RealDataConfig("fashion_mnist", 0, val_size=20), 28)
    all_pool = {pool28.pool_images[np.arange(180)][k].tobytes() for k in range(180)}
    assert not val_rows & all_pool  # no validation image is ever in the fine-tuning pool
    assert real_split(RealDataConfig("fashion_mnist", test_size=20), 32).test_images.shape == (20, 32, 32)


def test_missing_or_corrupt_fashion_mnist_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    load_fashion_mnist.cache_clear()
    with pytest.raises(FileNotFoundError, match=f"apt-get install {FASHION_MNIST_PACKAGE}"):
        real_split(RealDataConfig(name="fashion_mnist", test_size=0), 32)
    for part in ("train", "t10k"):
        write_idx(tmp_path / f"{part}-images-idx3-ubyte.gz", np.zeros((4, 28, 28)))
        with gzip.open(tmp_path / f"{part}-labels-idx1-ubyte.gz", "wb") as handle:
            handle.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(3))  # says 10 labels, holds 3
    monkeypatch.setenv("LAB_FASHION_MNIST_DIR", str(tmp_path))
    load_fashion_mnist.cache_clear()
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_fashion_mnist()
    load_fashion_mnist.cache_clear()


# --- equal tuning: the learning rate of every arm chosen on validation ------------------------------------------

def test_every_arm_chooses_its_learning_rate_on_validation_and_reads_the_test_set_once(tmp_path, monkeypatch):
    data = RealDataConfig(name="sklearn_digits", test_size=300, val_size=200)
    split = real_split(data, 16)
    seen = []
    real_evaluate = stages.evaluate

    def recording_evaluate(model, images, labels, *args, **kwargs):
        kind = ("test" if np.array_equal(labels, split.test_labels) and len(labels) == 300 else
                "val" if np.array_equal(labels, split.val_labels) and len(labels) == 200 else "other")
        seen.append(kind)
        return real_evaluate(model, images, labels, *args, **kwargs)

    monkeypatch.setattr(stages, "evaluate", recording_evaluate)
    grid = [1e-4, 3e-3, 3e-2]
    job = FinetuneJob(root=str(tmp_path), experiment="lr", data=data, s=60, seed=0, image_size=16,
                      train=FinetuneConfig(steps=15, batch_size=16, lr_grid=grid, checkpoint_every=100), threads=1)
    result = run_finetune(job)
    assert seen == ["val", "val", "val", "test"]  # one validation score per rate, then the chosen model's test
    errors = [trial["val_error"] for trial in result["lr_search"]]
    assert [trial["lr"] for trial in result["lr_search"]] == grid
    assert result["lr"] == grid[int(np.argmin(errors))] and result["val_error"] == min(errors)
    assert 0 < result["baseline_error"] <= 1 and result["beats_baseline"] == (result["metrics"]["error"]
                                                                               < result["baseline_error"])
    table = results_table([result], "lr")
    assert table.lr.iloc[0] == result["lr"] and "baseline_error" in table.columns

    seen.clear()
    assert run_finetune(job)["lr"] == result["lr"] and seen == []  # done: nothing is trained or evaluated again


def test_a_learning_rate_grid_without_a_validation_split_is_refused():
    with pytest.raises(ValueError, match="data.val_size > 0"):
        FinetuneConfig(lr_grid=[1e-3]).validate("finetune", RealDataConfig(name="mnist"))
    with pytest.raises(ValueError, match="positive learning rates"):
        FinetuneConfig(lr_grid=[0.0]).validate("finetune")
