"""The training loop learns, resumes exactly from its checkpoints, and stops loudly on NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lab.data.real import RealDataConfig, finetune_subset, pool_size, real_split
from lab.models import ModelConfig, create_model
from lab.core.registry import UnknownNameError
from lab.core.rundir import RunDir, atomic_write_json, config_hash
from lab.train import NonFiniteLossError, TrainConfig, evaluate, train_classifier


def toy_problem(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes a small CNN separates quickly: a bright left or right half."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 40, (n, 16, 16)).astype(np.uint8)
    for image, label in zip(images, labels):
        image[:, 8 * label : 8 * label + 8] += 200
    return images, labels.astype(np.int64)


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(ModelConfig(name="test_resnet"), num_classes=2)


def test_training_reduces_loss_and_learns(tmp_path):
    images, labels = toy_problem()
    model = tiny_model()
    before = evaluate(model, images, labels)
    train_classifier(model, images, labels, TrainConfig(steps=30, batch_size=16, lr=3e-3, augment=False),
                     RunDir(tmp_path), seed=0, progress=False)
    after = evaluate(model, images, labels)
    assert after["loss"] < before["loss"]
    assert after["top1"] >= 0.9
    logged = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(logged) == 30 // 25 + 1


def test_resume_from_checkpoint_matches_uninterrupted_run(tmp_path):
    images, labels = toy_problem()
    config = TrainConfig(steps=20, batch_size=16, checkpoint_every=10, augment=True)
    reference = tiny_model()
    train_classifier(reference, images, labels, config, RunDir(tmp_path / "a"), seed=1, progress=False)

    interrupted = tiny_model()
    short = TrainConfig(**{**config.__dict__, "steps": 20})
    run = RunDir(tmp_path / "b")

    class Stop(Exception):
        pass

    calls = {"n": 0}
    original = torch.optim.AdamW.step

    def step_then_die(self, *args, **kwargs):  # simulate preemption after step 13
        calls["n"] += 1
        if calls["n"] > 13:
            raise Stop
        return original(self, *args, **kwargs)

    torch.optim.AdamW.step = step_then_die
    try:
        with pytest.raises(Stop):
            train_classifier(interrupted, images, labels, short, run, seed=1, progress=False)
    finally:
        torch.optim.AdamW.step = original
    assert (run.checkpoint_dir / "last.pt").exists()

    resumed = tiny_model()
    stats = train_classifier(resumed, images, labels, short, run, seed=1, progress=False)
    assert stats["resumed_from_step"] == 10
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    images, labels = toy_problem()
    with pytest.raises(NonFiniteLossError, match="step"):
        train_classifier(tiny_model(), images, labels, TrainConfig(steps=20, lr=1e12, augment=False),
                         RunDir(tmp_path), seed=0, progress=False)
    assert not RunDir(tmp_path).done


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(UnknownNameError, match="resnet18"):
        create_model(ModelConfig(name="resnet_18"), num_classes=10)


def test_real_split_is_fixed_disjoint_and_stratified():
    config = RealDataConfig(name="mnist", test_size=1000)
    first, second = real_split(config, 28), real_split(config, 28)
    np.testing.assert_array_equal(first.test_labels, second.test_labels)
    assert len(first.test_labels) == 1000 and np.bincount(first.test_labels).tolist() == [100] * 10
    assert len(first.pool_labels) == pool_size(config) == 4000
    pool = {im.tobytes() for im in first.pool_images}
    assert not any(im.tobytes() in pool for im in first.test_images[:200])

    images, labels = finetune_subset(first, 50, seed=0)
    assert np.bincount(labels).tolist() == [5] * 10
    other, _ = finetune_subset(first, 50, seed=1)
    assert not np.array_equal(images, other)
    with pytest.raises(ValueError, match="pool holds 4000"):
        finetune_subset(first, 4001, seed=0)


def test_sklearn_digits_is_resized_to_the_study_size():
    split = real_split(RealDataConfig(name="sklearn_digits", test_size=500), 28)
    assert split.test_images.shape == (500, 28, 28)
    assert len(split.pool_labels) == 1797 - 500


def test_run_dir_hash_ignores_key_order_and_result_is_atomic(tmp_path):
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    run = RunDir.for_config(tmp_path, "exp", "stage", {"a": 1})
    assert not run.done
    run.write_result({"x": 1})
    assert run.done and run.read_result() == {"x": 1}
    assert not list(run.path.glob("*.tmp"))
    atomic_write_json(tmp_path / "r.json", {"y": 2})
    assert (tmp_path / "r.json").read_text().strip().startswith("{")
