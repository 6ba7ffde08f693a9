"""Entry point: fine-tune one ResNet on a user's real dataset (classification, detection or segmentation).

    python -m experiments.task_finetune +experiment=coco_r50 data.root=/data/coco pretrained=runs/.../model.pt

Prints the run's result (error = 1 - metric at the last evaluation); a finished point is reused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

from lab.core.config import load_config, to_yaml
from lab.tasks import TaskFinetuneConfig
from lab.stages.task_finetune import run_task_finetune

CONF_DIR = Path(__file__).resolve().parent / "conf"


def load_task_config(overrides: Sequence[str]) -> TaskFinetuneConfig:
    return load_config(CONF_DIR, "task_finetune", TaskFinetuneConfig, overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    show = "--show-config" in args
    config = load_task_config([a for a in args if a != "--show-config"])
    if show:
        print(to_yaml(config), end="")
        return 0
    result = run_task_finetune(config)
    print(json.dumps({k: result[k] for k in ("run_hash", "task", "backbone", "data", "s", "seed", "metrics")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
