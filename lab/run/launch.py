"""Executors by name: where one stage job runs.

Every job goes through a submitit executor, so the same code runs in-process (`debug`), as local
subprocesses (`local`, the default) and, once the Slurm launcher is configured, on a cluster. What runs
through them is always a plan of tasks (`lab.run.sweep`): launched, waited for and collected the same way for
every study and every executor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import submitit

from lab.core.launcher import LauncherConfig
from lab.core.registry import Registry

EXECUTORS: Registry[Callable[[Path, "LauncherConfig"], submitit.Executor]] = Registry("executor")


def validate_launcher(config: LauncherConfig) -> None:
    """The launcher's sizes, and an executor of its name (before anything is rendered or submitted)."""
    EXECUTORS.get(config.name)
    config.validate()


@EXECUTORS.register("local")
def local_executor(folder: Path, config: LauncherConfig) -> submitit.Executor:
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=config.timeout_min, tasks_per_node=config.tasks_per_node)  # > 1: DDP
    return executor


@EXECUTORS.register("debug")
def debug_executor(folder: Path, config: LauncherConfig) -> submitit.Executor:
    """In the calling process, one job at a time: for tests and pdb."""
    return submitit.DebugExecutor(folder=folder)


@EXECUTORS.register("slurm")
def slurm_executor(folder: Path, config: LauncherConfig) -> submitit.Executor:
    """A Slurm executor, after checking that the partition can run such jobs at all: what the named fields ask
    for, with the resource options of `extra_sbatch` (which win in the batch script) read the same way."""
    from lab.run.slurm import check_request, default_partition

    config.validate()  # extra_sbatch goes into the batch script: never unchecked
    request = config.slurm_request()
    partition = request.pop("partition") or default_partition()
    check_request(partition, **request)
    executor = submitit.SlurmExecutor(folder=folder)
    executor.update_parameters(
        partition=partition, time=config.timeout_min, nodes=config.nodes, ntasks_per_node=config.tasks_per_node,
        cpus_per_task=config.cpus_per_task, mem=f"{int(config.mem_gb * 1024)}MB",
        array_parallelism=config.array_parallelism, signal_delay_s=config.signal_delay_s,
        additional_parameters=dict(config.extra_sbatch),
    )
    if config.gpus_per_node:
        executor.update_parameters(gpus_per_node=config.gpus_per_node)
    return executor


@dataclass
class JobOutcome:
    config: Any
    result: Any = None
    error: str | None = None
    job_id: str = ""
    log: str = ""
    seconds: float = 0.0  # from submission to the job found finished

    @property
    def ok(self) -> bool:
        return self.error is None


_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")


def error_line(text: str) -> str:
    """The line of a job log or traceback that names the actual error (its last 'SomeError: ...')."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    named = [line for line in lines if _ERROR_LINE.match(line)]
    if named:
        return named[-1]
    return lines[-1] if lines else ""


def first_error_line(error: BaseException) -> str:
    """One line for a failed job: from the job's traceback (subprocess jobs) or the exception itself."""
    if isinstance(error, submitit.core.utils.FailedJobError):
        return error_line(str(error)) or type(error).__name__
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")


def run_jobs(fn: Callable[[Any], Any], configs: Sequence[Any], launcher: LauncherConfig, folder: Path | str,
             desc: str = "jobs", poll_seconds: float = 0.5) -> list[JobOutcome]:
    """Deprecated (kept for one release): `fn(config)` for every config, as independent tasks of the one
    orchestrator's runner (`lab.run.sweep.run_tasks`); outcomes keep the input order."""
    import warnings

    from lab.run.sweep import Task, run_tasks

    warnings.warn("lab.run.launch.run_jobs is deprecated: plan the work as a lab.run.sweep.Plan and run it with "
                  "lab.run.sweep.run_to_completion (or lab.run.sweep.run_tasks)", DeprecationWarning, stacklevel=2)
    tasks = [Task(key=str(i), stage=desc, fn=fn, job=config, outputs=[]) for i, config in enumerate(configs)]
    outcomes = run_tasks(tasks, launcher, folder, desc=desc, poll_seconds=poll_seconds)
    return [outcomes[task.key] for task in tasks]
