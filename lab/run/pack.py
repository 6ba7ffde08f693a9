"""Packs: several stage runs in one job process, one after another, each still a point of its own.

A fresh job pays Python, torch and the lab's imports (~7 s here) before its first step; a toy fine-tune takes less
than that. So the orchestrator packs tasks: `form_packs` groups a plan's tasks into packs of at most
`launcher.tasks_per_job`, keeping a task together with the dependents that wait only on it (a pre-training and its
fine-tunes), and a `PackCall` runs one pack in one job.

Inside a pack every task keeps what it would have as a job of its own: its run directory and result.json (written by
the stage itself), a record `<jobs>/points/<key>.json` (state, job, start, seconds, error) and a log
`<jobs>/points/<key>.log` of its own output. A task whose outputs exist is skipped, so a requeued pack resumes at
its first unfinished task (and that task from its checkpoint). A task that fails is recorded as failed and the pack
goes on; a task whose parent's outputs are missing is recorded as cancelled. On Slurm the job then fails (after every
task had its turn), so that the jobs waiting on it are cancelled by the scheduler rather than started.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import submitit
from submitit.core.utils import UncompletedJobError

from lab.core.rundir import atomic_write_json, load_result, result_done

POINTS_DIR = "points"  # under an executor's folder (a sweep's jobs/): one record and one log per task
PARENT_FAILED = "a task it depends on failed"
DEFAULT_TASKS_PER_JOB = {"slurm": 16}  # launcher.tasks_per_job = 0: this many; 1 elsewhere (warm workers start once)


def tasks_per_job(launcher: Any) -> int:
    """The pack size a launcher asks for: its `tasks_per_job`, or for 0 the executor's default (16 on Slurm,
    where each job pays the start-up; 1 locally, where warm workers pay it once). A multi-process (DDP) job runs
    one task: a second stage in the same processes would set up its process group on the port still held."""
    if launcher.tasks_per_node > 1 or launcher.nodes > 1:  # DDP: a process group (and its port) per job
        return 1
    return launcher.tasks_per_job or DEFAULT_TASKS_PER_JOB.get(launcher.name, 1)


def outputs_done(outputs: Sequence[str]) -> bool:
    """Task.done's test: every output exists, a result.json only when valid."""
    return all(result_done(p) if Path(p).name == "result.json" else Path(p).exists() for p in outputs)


def point_file(folder: Path | str, key: str, suffix: str) -> Path:
    """`<folder>/points/<readable key>-<hash>.<suffix>`: a task key may hold '/' or '=' and need not be unique once
    made a file name, so a short hash of the key keeps it one file per task."""
    readable = re.sub(r"[^A-Za-z0-9_.=-]+", "_", key)[:80]
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return Path(folder) / POINTS_DIR / f"{readable}-{digest}.{suffix}"


def read_point_record(folder: Path | str, key: str) -> dict[str, Any] | None:
    """The task's latest record written by a pack (None when there is none or it cannot be read)."""
    path = point_file(folder, key, "json")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


class PackFailedError(RuntimeError):
    """A job whose pack ran every task it could, and some failed."""


@dataclass
class PackEntry:
    """One task as a job runs it: `fn(job)`, done when `outputs` exist, cancelled when one of `needs` (its
    parents' outputs) is missing or a parent in its pack failed."""

    key: str
    stage: str
    fn: Callable[[Any], Any]
    job: Any
    outputs: list[str]
    needs: list[str]
    parents: list[str] = field(default_factory=list)  # the keys of its parents (those in its pack count here)


def current_job_id() -> str:
    """The scheduler's id of the job running this code (an array task's as '12_3'); the process id elsewhere."""
    try:
        return str(submitit.JobEnvironment().job_id)
    except RuntimeError:  # not inside a submitit job (a warm worker or the calling process)
        return f"pid{os.getpid()}"


@contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send this process's output to `path` while the block runs, then back: file descriptors 1 and 2 (so
    subprocesses and C code too) and sys.stdout / sys.stderr (whatever they were replaced by)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds, saved_streams = (os.dup(1), os.dup(2)), (sys.stdout, sys.stderr)
    stream = open(path, "a", buffering=1, errors="replace")  # the umask decides who may read it
    try:
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
        sys.stdout = sys.stderr = stream
        yield
    finally:
        stream.flush()
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        stream.close()


class PackCall(submitit.helpers.Checkpointable):
    """Runs a pack's tasks in order in this process (see the module docstring); returns one outcome per task:
    {"key", "ok", "error", "result", "seconds", "log", "job_id"}. On preemption or time-out submitit requeues the
    same call, which skips the finished tasks."""

    def __init__(self, entries: list[PackEntry], folder: str, own_logs: bool = True,
                 fail_job: bool = False) -> None:
        self.entries = entries
        self.folder = folder  # the executor's folder: records and logs go to its points/
        self.own_logs = own_logs  # False in the calling process (debug): its output stays where it is
        # on Slurm: once every task had its turn, a failure fails the job, so that the scheduler cancels the jobs
        # waiting on it (afterok) instead of starting them
        self.fail_job = fail_job

    def __call__(self, job_id: str | None = None) -> list[dict[str, Any]]:
        job_id = job_id or current_job_id()
        (Path(self.folder) / POINTS_DIR).mkdir(parents=True, exist_ok=True)
        outcomes, failed = [], set()
        for entry in self.entries:
            outcome = self.run_one(entry, job_id, parent_failed=any(p in failed for p in entry.parents))
            if not outcome["ok"]:
                failed.add(entry.key)
            outcomes.append(outcome)
        if self.fail_job and failed:
            raise PackFailedError(f"{len(failed)} of {len(self.entries)} tasks of this job failed (each one's record "
                                  f"and log are in {Path(self.folder) / POINTS_DIR}): " + "; ".join(
                                      f"{o['key']}: {o['error']}" for o in outcomes if not o["ok"]))
        return outcomes

    def record(self, entry: PackEntry, **fields: Any) -> None:
        atomic_write_json(point_file(self.folder, entry.key, "json"), {"key": entry.key, "stage": entry.stage,
                                                                        **fields})

    def run_one(self, entry: PackEntry, job_id: str, parent_failed: bool = False) -> dict[str, Any]:
        log = point_file(self.folder, entry.key, "log")
        outcome: dict[str, Any] = {"key": entry.key, "ok": True, "error": None, "result": None, "seconds": 0.0,
                                   "log": str(log) if self.own_logs else "", "job_id": job_id}
        if entry.outputs and outputs_done(entry.outputs):  # finished before a requeue, or by another job: never run twice
            outcome["result"] = next((load_result(p) for p in entry.outputs if Path(p).name == "result.json"), None)
            return outcome
        started = time.time()
        if parent_failed or not outputs_done(entry.needs):
            outcome.update(ok=False, error=PARENT_FAILED)
            self.record(entry, state="CANCELLED", job_id=job_id, error=PARENT_FAILED, started=started, seconds=0.0)
            return outcome
        self.record(entry, state="RUNNING", job_id=job_id, started=started, log=outcome["log"])
        print(f"[{time.strftime('%H:%M:%S')}] {entry.stage} {entry.key}: started"
              + (f", output in {log}" if self.own_logs else ""), flush=True)
        try:
            if self.own_logs:
                with output_to(log):
                    outcome["result"] = self.call(entry)
            else:
                outcome["result"] = self.call(entry)
        except UncompletedJobError:  # submitit's own end of the job (time-out without requeue): not this task's
            raise
        except subprocess.CalledProcessError as error:
            if list(error.cmd)[:2] == ["scontrol", "requeue"]:  # submitit's requeue, raced by Slurm's SIGTERM
                raise
            from lab.run.launch import first_error_line

            outcome.update(ok=False, error=first_error_line(error))
        except Exception as error:  # one task's failure must not stop the rest of the pack
            from lab.run.launch import first_error_line

            outcome.update(ok=False, error=first_error_line(error))
        outcome["seconds"] = time.time() - started
        state = "COMPLETED" if outcome["ok"] else "FAILED"
        self.record(entry, state=state, job_id=job_id, started=started, seconds=outcome["seconds"],
                    error=outcome["error"], log=outcome["log"])
        print(f"[{time.strftime('%H:%M:%S')}] {entry.stage} {entry.key}: {state.lower()} in "
              f"{outcome['seconds']:.1f}s" + (f" ({outcome['error']})" if outcome["error"] else ""), flush=True)
        return outcome

    @staticmethod
    def call(entry: PackEntry) -> Any:
        try:
            return entry.fn(entry.job)
        except Exception:
            traceback.print_exc()  # into the task's own log; the outcome keeps the one line that names the error
            sys.stderr.flush()
            raise


def form_packs(tasks: Sequence[Any], limit: int) -> list[list[Any]]:
    """Tasks (in the plan's order: parents first) grouped into packs of at most `limit`, each pack in run order.

    First each task is kept together with the dependents that wait only on tasks already with it (a pre-training
    and its fine-tunes: a unit) when that whole group fits in `limit`; otherwise it stands alone and its dependents
    form units of their own. Then units of the same stages that wait on the same tasks outside them are filled
    into packs, in order. So no pack waits on a pack that waits on it, a fine-tune never waits on someone else's
    pre-training, and `limit = 1` gives one task per pack."""
    by_key = {t.key: t for t in tasks}
    order = {t.key: i for i, t in enumerate(tasks)}
    parents = {t.key: [d for d in t.depends if d in by_key] for t in tasks}
    children: dict[str, list[str]] = {t.key: [] for t in tasks}
    for task in tasks:
        for parent in parents[task.key]:
            children[parent].append(task.key)

    def unit_from(key: str, assigned: set[str]) -> list[str]:
        members, frontier = {key}, [key]
        while frontier:
            for child in children[frontier.pop()]:
                if child not in members and child not in assigned and all(p in members for p in parents[child]):
                    members.add(child)
                    frontier.append(child)
                    if len(members) > limit:
                        return [key]
        return sorted(members, key=order.__getitem__)

    units: list[list[str]] = []
    assigned: set[str] = set()
    for task in tasks:
        if task.key not in assigned:
            unit = unit_from(task.key, assigned)
            assigned.update(unit)
            units.append(unit)

    groups: dict[tuple[Any, ...], list[list[str]]] = {}
    for unit in units:
        inside = set(unit)
        waits_on = tuple(sorted({p for key in unit for p in parents[key] if p not in inside}))
        stages = tuple(dict.fromkeys(by_key[key].stage for key in unit))
        groups.setdefault((waits_on, stages), []).append(unit)
    packs: list[list[str]] = []
    for group in groups.values():
        current: list[str] = []
        for unit in group:
            if current and len(current) + len(unit) > limit:
                packs.append(current)
                current = []
            current = current + unit
        packs.append(current)
    packs.sort(key=lambda pack: order[pack[0]])
    return [[by_key[key] for key in sorted(pack, key=order.__getitem__)] for pack in packs]
