"""scikit-image's LFW subset is a third offline real target: it loads, splits and fine-tunes like MNIST."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lab.data.real import REAL_DATASETS, RealDataConfig, finetune_subset, pool_size, real_split
from lab.models import ModelConfig
from lab.stages.image import FinetuneConfig, FinetuneJob, run_finetune


def test_lfw_faces_loads_offline_as_two_balanced_classes():
    images, labels = REAL_DATASETS.get("lfw_faces")()
    assert images.shape == (200, 25, 25) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [100, 100]
    assert images.max() > 200 and images.min() < 50  # scaled from [0, 1] floats, not left at 0/1


def test_lfw_faces_split_is_fixed_and_stratified():
    config = RealDataConfig(name="lfw_faces", test_size=100)
    first, second = real_split(config, 32), real_split(config, 32)
    np.testing.assert_array_equal(first.test_images, second.test_images)
    assert first.test_images.shape == (100, 32, 32)
    assert np.bincount(first.test_labels).tolist() == [50, 50] and pool_size(config) == 100
    _, labels = finetune_subset(first, 20, seed=0)
    assert np.bincount(labels).tolist() == [10, 10]


def test_lfw_faces_fine_tunes_a_few_steps(tmp_path):
    job = FinetuneJob(root=str(tmp_path), experiment="lfw", data=RealDataConfig(name="lfw_faces", test_size=100),
                      s=20, seed=0, image_size=28, model=ModelConfig(name="test_resnet"),
                      train=FinetuneConfig(steps=4, batch_size=8, checkpoint_every=100))
    result = run_finetune(job)
    assert 0.0 <= result["metrics"]["error"] <= 1.0 and np.isfinite(result["metrics"]["loss"])
    assert result["test_size"] == 100


def test_lfw_faces_config_composes_into_the_demo(tmp_path):
    from experiments.digits_demo import DemoConfig
    from lab.core.config import load_config

    conf_dir = Path(__file__).resolve().parents[2] / "experiments" / "conf"
    config = load_config(conf_dir, "demo", DemoConfig, ["data=lfw_faces", f"root={tmp_path}"])
    assert config.data.name == "lfw_faces" and config.data.test_size == 100
