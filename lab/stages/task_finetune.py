"""The task fine-tune stage: one point of a user's dataset (classification, detection, segmentation) fine-tuned
from a pre-trained backbone or from scratch, evaluated on its test split, stored once per run directory."""

from __future__ import annotations

from typing import Any

from lab.core.distributed import DistributedContext
from lab.core.rundir import RunDir
from lab.stages.skeleton import run_stage
from lab.tasks.finetune import TaskFinetuneConfig, fine_tune, identity, open_task, resolve_s


def run_task_finetune(config: TaskFinetuneConfig) -> dict[str, Any]:
    """Fine-tune and evaluate one point, or return its stored result."""
    task, data = open_task(config)
    s = resolve_s(config, len(data.train))
    run = RunDir.for_config(config.root, config.experiment, f"finetune_{config.task}", identity(config, s))

    def work(context: DistributedContext) -> dict[str, Any]:
        run.write_config({**identity(config, s), "pretrained": config.pretrained, "root": config.data.root})
        return fine_tune(config, task, data, s, run)

    return run_stage(run, work)
