"""The cluster configs compose into the task schema with the paper's sizes, and the entry point runs a point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.task_finetune import load_task_config, main
from lab.core.config import ConfigError, load_config

CONF_DIR = Path(__file__).resolve().parents[2] / "experiments" / "conf"


@pytest.mark.parametrize("experiment, task, data, image_size", [
    ("imagenet_r50", "classification", "imagefolder", 224),
    ("coco_r50", "detection", "coco", 800),
    ("ade20k_r50", "segmentation", "ade20k", 512),
])
def test_paper_experiments_compose(experiment, task, data, image_size):
    config = load_task_config([f"+experiment={experiment}", "data.root=/data/x"])
    assert (config.task, config.data.name, config.data.image_size) == (task, data, image_size)
    assert config.backbone == "resnet50" and config.s == 0 and config.s_fraction == 0.01
    assert config.experiment == experiment and config.data.root == "/data/x"


def test_unknown_key_is_rejected_with_the_valid_ones():
    with pytest.raises(ConfigError, match="train.lrr"):
        load_task_config(["+experiment=coco_r50", "train.lrr=0.1"])


def test_imagenet_folder_config_also_feeds_the_digits_demo(tmp_path, folder):
    from experiments.digits_demo import DemoConfig, validate

    config = load_config(CONF_DIR, "demo", DemoConfig, ["data=imagenet_folder", f"data.root={folder}", "s=[4]",
                                                       "data.val_size=4"])
    assert config.data.name == "imagefolder" and config.data.test_size == 0
    validate(config)


def test_entry_point_runs_one_point(tmp_path, folder, capsys):
    assert main(["task=classification", "backbone=resnet18", f"data.root={folder}", "data.image_size=32", "s=4",
                 "train.steps=1", "train.batch_size=2", "train.workers=0", f"root={tmp_path}", "device=cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["s"] == 4 and 0.0 <= printed["metrics"]["error"] <= 1.0


def test_s_larger_than_the_pool_is_an_error_before_training(tmp_path, folder):
    from lab.stages.task_finetune import run_task_finetune

    config = load_task_config(["task=classification", f"data.root={folder}", "s=13", f"root={tmp_path}"])
    with pytest.raises(ValueError, match="pool at .* holds 12"):
        run_task_finetune(config)
    assert not list(tmp_path.rglob("*.jsonl"))
