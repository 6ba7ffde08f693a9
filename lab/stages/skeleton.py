"""The one stage skeleton: every stage is `run_stage(job, run_dir, work)`.

It sets the job's torch threads, joins the job's process group (one task or many: DDP), and runs `work` only
when the run directory holds no result yet, under its lock on rank 0, recording the attempt and writing the
result atomically. Resuming inside `work` is the training engine's job (its checkpoints live in the run dir).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch

from lab.core.distributed import DistributedContext, init_distributed
from lab.core.rundir import RunDir

Work = Callable[[DistributedContext], dict[str, Any]]


def run_once(run: RunDir, context: DistributedContext, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`work()` unless `run` is done. Rank 0 holds the run's lock and writes; all ranks agree on 'done'."""
    with run.lock() if context.is_main else contextlib.nullcontext():
        if context.broadcast_flag(run.done):
            return run.read_result()
        if context.is_main:
            run.record_attempt()
        result = work()
        if context.is_main:
            run.write_result(result)
    context.barrier()
    return result


def set_threads(count: int) -> None:
    """torch's intra-op threads for this process; 0 leaves torch's default. A stage that runs its parents
    inline sets them first, so a parent computes with the same threads wherever it runs."""
    if count > 0:
        torch.set_num_threads(count)


def run_stage(run: RunDir | Callable[[DistributedContext], RunDir], work: Work, *, threads: int = 0) -> dict[str, Any]:
    """Threads, process group, then `work(context)` once per run directory (`run` may depend on the context)."""
    set_threads(threads)
    context = init_distributed()
    run_dir = run(context) if callable(run) else run
    return run_once(run_dir, context, lambda: work(context))
