"""`lab task-finetune`: fine-tune one ResNet on a user's real dataset (classification, detection or segmentation).

    lab task-finetune +experiment=coco_r50 data.root=/data/coco pretrained=runs/.../model.pt
    (also: python -m experiments.task_finetune ...)

Prints the run's result (error = 1 - metric at the last evaluation); a finished point is reused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the task and stage modules import torch: only a run needs them, not --help
    from lab.tasks import TaskFinetuneConfig

CONF_DIR = Path(__file__).resolve().parent / "conf"


def load_task_config(overrides: Sequence[str]) -> "TaskFinetuneConfig":
    from lab.core.config import load_config
    from lab.tasks import TaskFinetuneConfig

    return load_config(CONF_DIR, "task_finetune", TaskFinetuneConfig, overrides)


DESCRIPTION = ("Fine-tune a ResNet (timm) from a pre-trained backbone (pretrained=PATH to a lab model.pt) or from "
               "scratch on your own data: ImageFolder classification, COCO detection or ADE20K segmentation "
               "(experiments/conf/experiment/{imagenet,coco,ade20k}_r50.yaml), evaluate on its validation split "
               "and print the result; a finished point is reused, an interrupted one resumes. Example: lab "
               "task-finetune +experiment=coco_r50 data.root=/data/coco pretrained=runs/x/pretrain/abc/model.pt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides: +experiment=NAME, data.root=, pretrained=, "
                        "backbone=, s=, seed=, train.* (see --show-config)")


def run_cli(args: argparse.Namespace) -> int:
    from lab.core.config import to_yaml
    from lab.stages.task_finetune import run_task_finetune

    config = load_task_config(args.overrides)
    if args.show_config:
        print(to_yaml(config), end="")
        return 0
    result = run_task_finetune(config)
    print(json.dumps({k: result[k] for k in ("run_hash", "task", "backbone", "data", "s", "seed", "metrics")}, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.task_finetune", description=DESCRIPTION)
    add_arguments(parser)
    return run_cli(parser.parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    raise SystemExit(main())
