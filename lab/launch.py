"""Executors by name and a small scheduler that runs many stage jobs through them.

Every job goes through a submitit executor, so the same code runs in-process (`debug`), as local
subprocesses (`local`, the default) and, once the Slurm launcher is configured, on a cluster. The scheduler
keeps at most `max_parallel` jobs in flight (a laptop has few cores), shows progress, lets every job finish
even when some fail, and cancels what is running on Ctrl-C so a re-run resumes cleanly.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import submitit
from tqdm.auto import tqdm

from lab.registry import Registry

EXECUTORS: Registry[Callable[[Path, "LauncherConfig"], submitit.Executor]] = Registry("executor")


@dataclass
class LauncherConfig:
    name: str = "local"
    max_parallel: int = 2
    timeout_min: int = 120
    threads_per_job: int = 0  # 0: the machine's cores shared evenly between parallel jobs

    def validate(self) -> None:
        EXECUTORS.get(self.name)
        if self.max_parallel <= 0:
            raise ValueError(f"launcher.max_parallel must be positive, got {self.max_parallel}")

    def threads(self) -> int:
        if self.threads_per_job > 0:
            return self.threads_per_job
        return max(1, (os.cpu_count() or 1) // self.max_parallel)


@EXECUTORS.register("local")
def local_executor(folder: Path, config: LauncherConfig) -> submitit.Executor:
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=config.timeout_min)
    return executor


@EXECUTORS.register("debug")
def debug_executor(folder: Path, config: LauncherConfig) -> submitit.Executor:
    """In the calling process, one job at a time: for tests and pdb."""
    return submitit.DebugExecutor(folder=folder)


@dataclass
class JobOutcome:
    config: Any
    result: Any = None
    error: str | None = None
    job_id: str = ""
    log: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")


def first_error_line(error: BaseException) -> str:
    """The line that names the job's actual error (the last 'SomeError: ...' of its traceback)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if _ERROR_LINE.match(line)]
    if named:
        return named[-1]
    return lines[-1] if lines else type(error).__name__


def _finished(job: submitit.Job) -> bool:
    try:
        return job.done()
    except Exception:  # the debug executor runs the job inside done() and re-raises its failure
        return True


def run_jobs(fn: Callable[[Any], Any], configs: Sequence[Any], launcher: LauncherConfig, folder: Path | str,
             desc: str = "jobs", poll_seconds: float = 0.5) -> list[JobOutcome]:
    """Run `fn(config)` for every config through the launcher's executor; outcomes keep the input order."""
    executor = EXECUTORS.get(launcher.name)(Path(folder), launcher)
    outcomes = [JobOutcome(config) for config in configs]
    waiting = list(range(len(configs)))
    running: dict[int, submitit.Job] = {}
    bar = tqdm(total=len(configs), desc=desc, unit="job")
    try:
        while waiting or running:
            while waiting and len(running) < launcher.max_parallel:
                index = waiting.pop(0)
                running[index] = executor.submit(fn, configs[index])
            for index, job in list(running.items()):
                if not _finished(job):
                    continue
                outcome = outcomes[index]
                outcome.job_id = str(job.job_id)
                outcome.log = str(job.paths.stderr)
                try:
                    outcome.result = job.result()
                except Exception as error:  # a failed point must not lose the others
                    outcome.error = first_error_line(error)
                del running[index]
                bar.update()
                bar.set_postfix(failed=sum(not o.ok for o in outcomes))
            if running:
                time.sleep(poll_seconds)
    except KeyboardInterrupt:
        for job in running.values():
            job.cancel(check=False)
        raise KeyboardInterrupt("interrupted: finished points are kept; run the same command again to resume")
    finally:
        bar.close()
    return outcomes
