"""The one orchestrator: a plan of stage tasks with dependencies, launched through an executor, waited for, collected.

Every study (the demo, the digits sweeps, Figure 1, the text study, the paper's studies, a `lab train` recipe)
plans its work once as a `Plan`: `Task`s (render slices, pre-trainings, fine-tunes, ...) in dependency order,
plus the `points` of the study (the swept values of each fine-tune). `launch` submits what is missing, `status`
tells where each point is (and `stage_progress` where each stage is, with an ETA), `collect` writes the tidy
results table; `run_to_completion` is the three in a row.
Tasks run in packs (`lab.run.pack`): up to `launcher.tasks_per_job` stage runs in one job, a pre-training with
its fine-tunes, each still with its own run directory, record, log and status row, since every job start pays
Python + torch imports. On Slurm, packs of the same stages that share their parents and their dependents become
one job array, submitted with `afterok` on the parents' jobs, so one pre-training serves all the fine-tunes that
use it, and each fine-tune waits only for its own pre-training. Locally (`local`, `debug`), a runner executes the
same plan (`run_tasks`): at most `max_parallel` jobs at once on warm worker processes that are started once
(`lab.run.workers`), each pack as soon as what it waits on is done. Tasks whose outputs exist are never submitted again, nor are tasks still queued or running: re-launching
submits only what is missing or failed. Every job is checkpointable: a preemption or time limit requeues it and
the stage resumes from its last checkpoint.

A launched sweep's folder (`<root>/<name>/sweep`) records the plan as data, never as code: `plan.json` holds the
task keys, stages, outputs (relative to `<root>/<name>`, so a moved or copied sweep reads its own results),
dependencies and points, and is all that `status` and `collect` read; `state.json` records every submission as
it happens. The runnable tasks reach the local runner through a pipe, not a file anyone could replace. One launch
of a sweep runs at a time (`launch.lock`): a second waits, then submits only what the first did not.
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from itertools import groupby
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator, Sequence

import pandas as pd
import submitit
from submitit.core.utils import FailedJobError, JobPaths, UncompletedJobError
from tqdm.auto import tqdm

from lab.core.config import ConfigError
from lab.core.launcher import plain_dict
from lab.core.progress import read_progress
from lab.run.launch import EXECUTORS, JobOutcome, LauncherConfig, error_line, first_error_line, validate_launcher
from lab.run.pack import (  # noqa: F401 (PARENT_FAILED: callers read it here)
    PARENT_FAILED, PackCall, PackEntry, form_packs, outputs_done, read_point_record, tasks_per_job,
)
from lab.run.workers import WarmJob, WarmWorkers
from lab.core.results import results_table, write_table
from lab.core.rundir import RunDir, atomic_write_json, load_result, read_jsonl

STATE_FILE = "state.json"
PLAN_FILE = "plan.json"  # what status and collect read: data only (PLAN_FORMAT)
LEGACY_PLAN_FILE = "plan.pkl"  # sweeps launched before issue 18; never unpickled (it could run code), see load_plan
PLAN_FORMAT = 1
LAUNCH_LOCK_FILE = "launch.lock"
LOCAL_STATUS_FILE = "local_runner.json"
LOCAL_PID_FILE = "local_runner.pid"  # the detached runner's process: when it is gone, its unfinished tasks are lost
ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED"}
FAILED_STATES = {"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
# The most synthetic samples (or tokens) one study point may use: 60,000x the largest image study configured here
# and 4x the largest text one (text_gpu: 2.7e8 tokens). Far larger values are typos that would only spin (planning
# 1e12 samples lists a billion shards); a study that needs more passes its own n_max.
MAX_N = 10**9
MAX_SEED = 2**32 - 1  # numpy's and torch's seeds are 0 ... 2**32 - 1


def check_axes(n: Sequence[int], s: Sequence[int], seeds: Sequence[int], prefix: str = "",
               n_unit: str = "synthetic pre-training samples", s_unit: str = "real fine-tuning samples",
               n_max: int = MAX_N) -> None:
    """The axes every study sweeps, checked in one place: 0 <= n <= n_max (0 = from scratch), s > 0, seeds in
    0 ... 2**32 - 1, a value at least on each."""
    if not n or not s or not seeds:
        raise ConfigError(f"{prefix}n, {prefix}s and {prefix}seeds must each list at least one value")
    if any(value < 0 for value in n):
        raise ConfigError(f"{prefix}n must be >= 0 ({n_unit}; 0 = from scratch), got {list(n)}")
    if any(value > n_max for value in n):
        raise ConfigError(f"{prefix}n={max(n)} is more than {n_max:,} {n_unit}, the most one study point may use "
                          f"here (rendering or training on it would not finish); got {list(n)}")
    if any(value <= 0 for value in s):
        raise ConfigError(f"{prefix}s must be positive ({s_unit}), got {list(s)}")
    if any(not 0 <= value <= MAX_SEED for value in seeds):
        raise ConfigError(f"{prefix}seeds must be between 0 and {MAX_SEED} (random generators take no negative "
                          f"seed), got {list(seeds)}")


class PlanFileError(ConfigError):
    """A sweep folder whose plan record cannot be read: missing, from before plan.json, or not a valid record."""


@dataclass
class Task:
    """One stage run: `fn(job)`; done when every path in `outputs` exists, a result.json only when it is valid (an
    invalid one is named and set aside, so the stage runs again: lab.core.rundir.result_done)."""

    key: str
    stage: str
    fn: Callable[[Any], Any]
    job: Any
    outputs: list[str]
    depends: list[str] = field(default_factory=list)

    def done(self) -> bool:
        return outputs_done(self.outputs)


@dataclass
class Plan:
    name: str
    root: str
    tasks: list[Task]
    points: list[dict[str, Any]]  # swept values + "task": the key of the point's fine-tune

    @property
    def folder(self) -> Path:
        return Path(self.root) / self.name / "sweep"

    def task(self, key: str) -> Task:
        return self.by_key[key]

    @cached_property
    def by_key(self) -> dict[str, Task]:
        return {t.key: t for t in self.tasks}

    def ancestors(self, key: str) -> list[Task]:
        """The task and everything it depends on, nearest first."""
        by_key, order, todo = self.by_key, [], [key]
        while todo:
            task = by_key[todo.pop(0)]
            if task not in order:
                order.append(task)
                todo.extend(task.depends)
        return order


def in_stage_order(tasks: Iterable[Task], stages: Sequence[str]) -> list[Task]:
    """Tasks sorted by their stage's place in `stages` (a plan lists parents before children), stable within one."""
    rank = {stage: i for i, stage in enumerate(stages)}
    return sorted(tasks, key=lambda t: rank[t.stage])


class StageCall(submitit.helpers.Checkpointable):
    """Runs a stage function; on preemption or time-out submitit requeues the same call (it resumes)."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def __call__(self, job: Any) -> Any:
        return self.fn(job)


class StageChain(submitit.helpers.Checkpointable):
    """Stage calls run one after the other in one job (a task and the only task waiting on it, as a pre-training
    and its one fine-tune): one process start instead of several. A requeued chain starts over; the stages that
    finished return their stored results."""

    def __init__(self, calls: list[tuple[Callable[[Any], Any], Any]]) -> None:
        self.calls = calls

    def __call__(self) -> list[Any]:
        return [fn(job) for fn, job in self.calls]


def load_state(folder: Path) -> dict[str, Any]:
    path = folder / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {"tasks": {}, "launches": []}


def _active_keys(folder: Path, state: dict[str, Any], executor: str) -> set[str]:
    """Tasks whose latest job is still queued or running (they must not be submitted twice)."""
    latest = {key: info["job_ids"][-1] for key, info in state["tasks"].items() if info.get("job_ids")}
    states = job_states(folder, latest, executor)
    return {key for key, job_state in states.items() if job_state in ACTIVE_STATES}


def job_states(folder: Path | Plan, latest: dict[str, str], executor: str) -> dict[str, str]:
    """Scheduler state of each task's latest job ('COMPLETED', 'FAILED', 'RUNNING', ...); `folder`: the sweep's."""
    folder = folder.folder if isinstance(folder, Plan) else Path(folder)
    if executor == "slurm":
        from lab.run.slurm import job_states as slurm_states

        by_job = slurm_states(list(latest.values()))
        return {key: by_job[job_id] for key, job_id in latest.items()}
    local = folder / LOCAL_STATUS_FILE
    runner = json.loads(local.read_text()) if local.exists() else {}
    states = {key: runner.get(key, {}).get("state", "PENDING") for key in latest}
    if not _local_runner_alive(folder):  # killed or crashed: nothing will move its tasks on, so resubmit them
        states = {key: "LOST" if state in ACTIVE_STATES else state for key, state in states.items()}
    return states


def _local_runner_alive(folder: Path) -> bool:
    """Whether the detached local runner is still running (True when no pid was recorded: older sweeps)."""
    pid_file = folder / LOCAL_PID_FILE
    if not pid_file.exists():
        return True
    pid = int(pid_file.read_text())
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child, exited (and now reaped, not a zombie)
            return False
    except ChildProcessError:  # started by another process
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def launch_lock(folder: Path) -> Iterator[None]:
    """Hold the sweep's launch lock: one launch at a time reads state.json, submits and records; a second launch
    of the same sweep waits here (saying so), then finds the first one's tasks done, queued or running."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LAUNCH_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    with os.fdopen(fd, "r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "another process"
            print(f"{folder}: waiting for the launch of this sweep by {holder} to finish", file=sys.stderr,
                  flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def launch(plan: Plan, launcher: LauncherConfig) -> dict[str, Any]:
    """Submit every task not done and not in flight; returns at once except with the debug executor.

    Under the sweep's launch lock: writes plan.json, then records each submission in state.json as it happens, so
    a launch that fails part-way (an sbatch error) leaves every job it did submit tracked, and launching again
    submits only the rest. The failed launch's record says what went wrong."""
    validate_launcher(launcher)
    folder = plan.folder
    record = plan_record(plan)  # a task writing outside the sweep's folder fails before anything is submitted
    with launch_lock(folder):
        state = load_state(folder)
        active = _active_keys(folder, state, launcher.name) if state["tasks"] else set()
        todo = [t for t in plan.tasks if not t.done() and t.key not in active]
        atomic_write_json(folder / PLAN_FILE, record)
        (folder / LEGACY_PLAN_FILE).unlink(missing_ok=True)  # never read again; plan.json replaces it
        entry = {"time": time.time(), "executor": launcher.name, "max_parallel": launcher.max_parallel,
                 "submitted": 0, "skipped_done": sum(t.done() for t in plan.tasks), "skipped_active": len(active)}
        state.update(name=plan.name, points=plan.points)
        state["launches"].append(entry)

        def submitted(jobs: dict[str, str]) -> None:
            """Record jobs the moment they are submitted (state.json is rewritten atomically each time)."""
            for key, job_id in jobs.items():
                state["tasks"].setdefault(key, {"stage": plan.task(key).stage, "job_ids": []})["job_ids"].append(job_id)
            entry["submitted"] += len(jobs)
            if jobs:
                state["executor"] = launcher.name  # the scheduler that status asks about the latest jobs
            atomic_write_json(folder / STATE_FILE, state)

        try:
            if todo and launcher.name == "slurm":
                _submit_slurm(todo, plan, launcher, folder, state, submitted)
            else:
                submitted({t.key: "local" for t in todo})
        except BaseException as error:
            entry["error"] = first_error_line(error)
            atomic_write_json(folder / STATE_FILE, state)
            raise
        if todo and launcher.name != "slurm":
            _start_local_runner(folder, launcher, [t.key for t in todo], plan)
        return entry


def _dependency(parent_jobs: set[str], arrays: dict[str, set[str]]) -> list[str]:
    """The job ids a job waits on: each parent's own job or array task ('12_3', never all of array 12 for one of
    its tasks); an array this launch submitted whose every task is a parent is named once ('12')."""
    ids: set[str] = set()
    for job_id in parent_jobs:
        array = job_id.split("_")[0]
        ids.add(array if array in arrays and arrays[array] <= parent_jobs else job_id)
    return sorted(ids, key=lambda j: [int(part) if part.isdigit() else part for part in j.split("_")])


def _submit_slurm(todo: list[Task], plan: Plan, launcher: LauncherConfig, folder: Path, state: dict[str, Any],
                  record: Callable[[dict[str, str]], None]) -> None:
    """Packs (`lab.run.pack.form_packs`: up to `launcher.tasks_per_job` tasks each) of the same stages with the
    same parents and the same dependents outside them -> one array (split at MaxArraySize), afterok on the
    parents' jobs; `record` gets each array's jobs as soon as sbatch accepted it.

    A task keeps its pre-training's fine-tunes with it in one pack when they fit, so a fine-tune waits only for its
    own pre-training, and cancelling or failing one pre-training's job cancels only the fine-tunes that wait on it.
    With tasks_per_job=1 each pre-training is a job of its own and its fine-tunes one array. (A dependency on one
    task of a pre-training array would say the same, but Slurm counts a still-pending array task that is cancelled
    as a satisfied dependency, and would start its fine-tunes.)"""
    from lab.run.slurm import SlurmError, max_array_size

    executor = EXECUTORS.get("slurm")(folder / "jobs", launcher)
    job_of = {key: info["job_ids"][-1] for key, info in state["tasks"].items() if info.get("job_ids")}
    done = {key: plan.task(key).done() for t in todo for key in t.depends}  # each output checked once
    packs = form_packs(todo, tasks_per_job(launcher))
    rank = {stage: i for i, stage in enumerate(dict.fromkeys(t.stage for t in plan.tasks))}
    children: dict[str, set[str]] = {t.key: set() for t in plan.tasks}
    for task in plan.tasks:
        for parent in task.depends:
            children[parent].add(task.key)

    def outside(pack: list[Task]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The unfinished tasks a pack waits on and the tasks that wait on it, both outside it."""
        inside = {t.key for t in pack}
        parents = sorted({d for t in pack for d in t.depends if d not in inside and not done[d]})
        dependents = sorted({c for t in pack for c in children[t.key] if c not in inside})
        return tuple(parents), tuple(dependents)

    def entry(task: Task) -> PackEntry:
        return PackEntry(task.key, task.stage, task.fn, task.job, list(task.outputs),
                         needs=[o for d in task.depends for o in plan.task(d).outputs], parents=list(task.depends))

    submitted: dict[str, str] = {}
    arrays: dict[str, set[str]] = {}  # array job id -> its task ids, for the arrays this launch submitted
    signature = {i: (tuple(dict.fromkeys(t.stage for t in pack)), *outside(pack)) for i, pack in enumerate(packs)}
    ordered = sorted(range(len(packs)), key=lambda i: (rank[packs[i][0].stage], signature[i]))
    for (stages, parents, _), group in groupby(ordered, key=signature.__getitem__):
        group = [packs[i] for i in group]
        parent_jobs = _dependency({submitted.get(p) or job_of[p] for p in parents}, arrays)
        # kill-on-invalid-dep: a job whose parent failed is cancelled instead of pending forever
        extra = {**launcher.extra_sbatch, **({"kill-on-invalid-dep": "yes"} if parent_jobs else {})}
        executor.update_parameters(dependency=f"afterok:{':'.join(parent_jobs)}" if parent_jobs else None,
                                   job_name=f"{plan.name}-{'+'.join(stages)}", additional_parameters=extra)
        limit = max_array_size() - 1
        for start in range(0, len(group), limit):
            chunk = group[start : start + limit]
            calls = [PackCall([entry(t) for t in pack], str(folder / "jobs"), fail_job=True) for pack in chunk]
            try:
                jobs = executor.submit_array(calls)  # one pack: a plain job
            except Exception as error:
                count = sum(map(len, chunk))
                raise SlurmError(
                    f"sbatch failed for {count} {'+'.join(stages)} task(s) after {len(submitted)} of {len(todo)} "
                    f"were submitted; those are recorded in {folder / STATE_FILE}, so launching again submits only "
                    f"the rest: {error_line(str(error)) or type(error).__name__}") from error
            ids = {t.key: str(j.job_id) for pack, j in zip(chunk, jobs) for t in pack}
            submitted.update(ids)
            arrays[str(jobs[0].job_id).split("_")[0]] = set(ids.values())
            record(ids)
    executor.update_parameters(dependency=None)


def launcher_json(launcher: LauncherConfig) -> str:
    return json.dumps({**launcher.__dict__, "extra_sbatch": plain_dict(launcher.extra_sbatch)})


def update_local_status(folder: Path, changes: dict[str, dict[str, Any]]) -> None:
    """Merge `changes` (task key -> record) into the local runners' status file under its lock: runners of
    several launches of one sweep share the file, and each task's record stays until that task runs again (so its
    duration outlives a later launch)."""
    path = folder / LOCAL_STATUS_FILE
    with open(folder / (LOCAL_STATUS_FILE + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            status = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:  # unreadable: the records of the runs are in their run directories anyway
            status = {}
        status.update(changes)
        atomic_write_json(path, status)


def _start_local_runner(folder: Path, launcher: LauncherConfig, keys: list[str], plan: Plan) -> None:
    """Run `keys` of the plan: in this process (debug), else in a detached runner that gets the pickled plan and
    its keys through its stdin (no plan pickle on disk for anyone to replace)."""
    update_local_status(folder, {k: {"state": "PENDING"} for k in keys})
    if launcher.name == "debug":
        run_plan_locally(folder, launcher, plan, keys)
        return
    payload = pickle.dumps((plan, keys))
    with open(folder / "local_runner.log", "a") as log:
        runner = subprocess.Popen([sys.executable, "-m", "lab.run.sweep", str(folder), launcher_json(launcher)],
                                  stdout=log, stderr=log, stdin=subprocess.PIPE, start_new_session=True)
    (folder / LOCAL_PID_FILE).write_text(str(runner.pid))
    try:
        assert runner.stdin is not None
        runner.stdin.write(payload)
        runner.stdin.close()
    except BrokenPipeError:  # the runner died before reading the plan: its log says why, status shows LOST
        pass


def run_plan_locally(folder: Path, launcher: LauncherConfig, plan: Plan, keys: Sequence[str]) -> None:
    """The local runner: execute the tasks `keys` of `plan`, recording each one's state in the status file."""
    mine = set(keys)
    states: dict[str, str] = {key: "PENDING" for key in mine}

    def record(task: Task, outcome: JobOutcome | None) -> None:
        if outcome is None:
            change = {"state": "RUNNING", "started": time.time()}  # status's ETA counts from here
        else:
            state = "COMPLETED" if outcome.ok else "CANCELLED" if outcome.error == PARENT_FAILED else "FAILED"
            change = {"state": state, "job_id": outcome.job_id, "error": outcome.error, "log": outcome.log,
                      "seconds": outcome.seconds}
        states[task.key] = change["state"]
        update_local_status(folder, {task.key: change})

    try:
        run_tasks([t for t in plan.tasks if t.key in mine and not t.done()], launcher, folder / "jobs",
                  desc=plan.name, on_change=record)
    except KeyboardInterrupt:
        update_local_status(folder, {key: {"state": "CANCELLED", "error": "interrupted"}
                                     for key, state in states.items() if state in ("PENDING", "RUNNING")})
        raise


def _finished(job: submitit.Job) -> bool:
    try:
        return job.done()
    except Exception:  # the debug executor runs the job inside done() and re-raises its failure
        return True


def job_failure(error: BaseException) -> str:
    """Why a job failed, on one line. A job that ended without a result (killed: out of memory, a signal) says
    so with its state and the last line of its error stream, not submitit's first line ('UncompletedJobError: Job
    28903 (task: 0) with path ...'), which names neither."""
    if not isinstance(error, UncompletedJobError) or isinstance(error, FailedJobError):
        return first_error_line(error)
    text = str(error)
    state = re.search(r"has not produced any output \(state: ([^)]*)\)", text)
    stream = text.partition("Error stream produced:")[2]  # not the stdout tail submitit falls back on
    reason = f"the job ended without a result (state: {state.group(1) if state else 'unknown'})"
    last = error_line(stream)
    return f"{reason}: {last}" if last else reason


def stage_totals(tasks: Sequence[Task]) -> dict[str, int]:
    """The number of tasks of each stage, in the plan's order."""
    return {stage: sum(t.stage == stage for t in tasks) for stage in dict.fromkeys(t.stage for t in tasks)}


def stage_counts(done: dict[str, int], totals: dict[str, int]) -> str:
    """'render 3/3, pretrain 1/2, finetune 0/6': the finished tasks of each stage, in the plan's order."""
    return ", ".join(f"{stage} {done.get(stage, 0)}/{total}" for stage, total in totals.items())


class SubmititJobs:
    """Jobs through a submitit executor (debug: in this process; local with tasks_per_node > 1: fresh processes,
    as DDP needs), behind the interface of `lab.run.workers.WarmWorkers`: free, submit, poll, cancel, close."""

    def __init__(self, executor: submitit.Executor, size: int) -> None:
        self.executor, self.size, self.running = executor, size, []

    def free(self) -> bool:
        return len(self.running) < self.size

    def submit(self, call: Any) -> WarmJob:
        job = self.executor.submit(call)
        handle = WarmJob(job_id=str(job.job_id), log=str(job.paths.stderr))
        self.running.append((handle, job))
        return handle

    def poll(self) -> None:
        for handle, job in [entry for entry in self.running if _finished(entry[1])]:
            self.running.remove((handle, job))
            try:
                handle.outcome = ("ok", job.results()[0])  # task 0's: a multi-task (DDP) job's ranks agree
            except Exception as error:
                handle.outcome = ("error", job_failure(error))

    def cancel(self, handle: WarmJob) -> None:
        for entry in [entry for entry in self.running if entry[0] is handle]:
            entry[1].cancel(check=False)
            self.running.remove(entry)

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        for handle, _ in list(self.running):
            self.cancel(handle)


def job_runner(launcher: LauncherConfig, folder: Path) -> SubmititJobs | WarmWorkers:
    """Where run_tasks' jobs run: warm workers for the local executor (unless `launcher.warm_workers` is off;
    the processes of a DDP job are always fresh), the executor itself otherwise."""
    if launcher.name == "local" and launcher.tasks_per_node == 1 and launcher.warm_workers:
        return WarmWorkers(launcher.max_parallel, launcher.threads(), launcher.timeout_min * 60)
    return SubmititJobs(EXECUTORS.get(launcher.name)(folder, launcher), launcher.max_parallel)


def run_tasks(tasks: Sequence[Task], launcher: LauncherConfig, folder: Path | str, desc: str = "tasks",
              poll_seconds: float = 0.5,
              on_change: Callable[[Task, JobOutcome | None], None] | None = None) -> dict[str, JobOutcome]:
    """Run tasks (in dependency order) as packs (`lab.run.pack.form_packs`, `launcher.tasks_per_job` tasks at
    most), `max_parallel` jobs at a time: on warm workers for the local executor (`lab.run.workers`), through the
    executor otherwise. A bar names the stages of the job started last and counts each stage's finished tasks.

    A pack starts once the tasks outside it that it waits on have finished; a task whose parent failed is
    cancelled, and a failure never stops the others, in its pack or elsewhere. Each task's outcome carries its own
    log (`<folder>/points/`) and seconds. `on_change(task, None)` reports a start (read from the task's record as
    its pack reaches it), `on_change(task, outcome)` an end. Ctrl-C stops the running jobs: what finished is kept,
    and the same call again resumes.
    """
    folder = Path(folder)
    keys = {t.key for t in tasks}
    by_key = {t.key: t for t in tasks}
    packs = form_packs(tasks, tasks_per_job(launcher))
    jobs = job_runner(launcher, folder)
    outcomes: dict[str, JobOutcome] = {}
    announced: set[str] = set()
    waiting = list(packs)
    running: list[tuple[list[Task], WarmJob]] = []
    bar = tqdm(total=len(tasks), desc=desc, unit="task")
    totals = stage_totals(tasks)
    finished: dict[str, int] = {}
    bar.set_postfix_str(stage_counts(finished, totals), refresh=False)

    def finish(task: Task, outcome: JobOutcome) -> None:
        outcomes[task.key] = outcome
        finished[task.stage] = finished.get(task.stage, 0) + outcome.ok
        bar.set_postfix_str(f"{stage_counts(finished, totals)}, failed {sum(not o.ok for o in outcomes.values())}",
                            refresh=False)
        bar.update()
        if on_change:
            on_change(task, outcome)

    def start(pack: list[Task]) -> None:
        runnable = []
        cancelled: set[str] = set()
        for task in pack:  # a parent that failed before (or is cancelled here): cancelled, never sent to a job
            if any(d in cancelled or d in outcomes and not outcomes[d].ok for d in task.depends):
                cancelled.add(task.key)
                finish(task, JobOutcome(task.job, error=PARENT_FAILED))
            else:
                runnable.append(task)
        if not runnable:
            return
        entries = [PackEntry(t.key, t.stage, t.fn, t.job, list(t.outputs),
                             needs=[o for d in t.depends if d in keys for o in by_key[d].outputs],
                             parents=list(t.depends)) for t in runnable]
        bar.set_description(f"{desc} {'+'.join(dict.fromkeys(t.stage for t in runnable))}")  # started last
        call = PackCall(entries, str(folder), own_logs=launcher.name != "debug")
        running.append((runnable, jobs.submit(call)))

    def announce(pack: list[Task], job: WarmJob) -> None:
        """Report the tasks of a running pack that its job has reached (their records say RUNNING)."""
        for task in pack:
            if task.key in announced or not on_change:
                continue
            record = read_point_record(folder, task.key)
            if record and record.get("job_id") == job.job_id:
                announced.add(task.key)
                on_change(task, None)

    def collect(pack: list[Task], job: WarmJob) -> None:
        assert job.outcome is not None
        kind, value = job.outcome
        if kind == "ok":
            for task, result in zip(pack, value):
                finish(task, JobOutcome(task.job, result=result["result"], error=result["error"],
                                        job_id=result["job_id"] if result["error"] != PARENT_FAILED or
                                        result["seconds"] else "", log=result["log"] or job.log,
                                        seconds=result["seconds"]))
            return
        for task in pack:  # the whole job failed (died, timed out): what finished in it stays finished
            ok = bool(task.outputs) and task.done()
            record = read_point_record(folder, task.key) or {}
            ran = record.get("job_id") == job.job_id
            finish(task, JobOutcome(task.job, error=None if ok else value, job_id=job.job_id,
                                    log=record.get("log") or job.log if ran else job.log,
                                    seconds=float(record.get("seconds") or 0.0) if ran else 0.0))

    try:
        while waiting or running:
            for pack in list(waiting):
                inside = {t.key for t in pack}
                external = {d for t in pack for d in t.depends if d in keys and d not in inside}
                if all(d in outcomes for d in external) and jobs.free():
                    waiting.remove(pack)
                    start(pack)
            jobs.poll()
            for pack, job in list(running):
                announce(pack, job)
                if job.done():
                    running.remove((pack, job))
                    collect(pack, job)
            if running:
                jobs.wait(poll_seconds)
    except KeyboardInterrupt:
        for _, job in running:
            jobs.cancel(job)
        raise KeyboardInterrupt("interrupted: finished points are kept; run the same command again to resume")
    finally:
        jobs.close()
        bar.close()
    return outcomes


def plan_record(plan: Plan) -> dict[str, Any]:
    """What status and collect need of a plan, as JSON data: task keys, stages, outputs relative to the sweep's
    own folder (`<root>/<name>`), dependencies, points. Raises ValueError for an output outside that folder."""
    base = Path(os.path.abspath(plan.folder.parent))

    def relative(task: Task, output: str) -> str:
        try:
            return Path(os.path.abspath(output)).relative_to(base).as_posix()
        except ValueError:
            raise ValueError(f"task {task.key}: its output {output} lies outside the sweep's folder {base}; a plan's "
                             f"outputs must lie in it, so that a moved or copied sweep reads its own") from None

    return {"format": PLAN_FORMAT, "name": plan.name, "points": plan.points,
            "tasks": [{"key": t.key, "stage": t.stage, "outputs": [relative(t, o) for o in t.outputs],
                       "depends": list(t.depends)} for t in plan.tasks]}


def _record_problem(record: Any) -> str | None:
    """What makes `record` not a plan.json that plan_record wrote (None when nothing does)."""
    if not isinstance(record, dict) or record.get("format") != PLAN_FORMAT:
        return f"not a plan record of format {PLAN_FORMAT}"
    tasks, points = record.get("tasks"), record.get("points")
    if not isinstance(tasks, list) or not isinstance(points, list):
        return "'tasks' and 'points' must be lists"
    keys: set[Any] = set()
    for task in tasks:
        if not isinstance(task, dict) or set(task) != {"key", "stage", "outputs", "depends"}:
            return f"a task must hold exactly key, stage, outputs and depends: {str(task)[:200]}"
        if not isinstance(task["key"], str) or not isinstance(task["stage"], str) or task["key"] in keys:
            return f"task key {task['key']!r}: keys and stages are strings, each key appears once"
        keys.add(task["key"])
    for task in tasks:
        for output in task["outputs"] if isinstance(task["outputs"], list) else [None]:
            path = PurePosixPath(output) if isinstance(output, str) else None
            if path is None or not output or path.is_absolute() or ".." in path.parts or "\\" in output:
                return (f"task {task['key']}: output {output!r} is not a path inside the sweep's folder (relative, "
                        f"without '..')")
        if not isinstance(task["depends"], list) or any(not isinstance(d, str) or d not in keys
                                                        for d in task["depends"]):
            return f"task {task['key']}: depends on {task['depends']!r}, not only on tasks of the plan"
    for point in points:
        if not isinstance(point, dict) or not isinstance(point.get("task"), str) or point["task"] not in keys:
            return f"point {str(point)[:200]} does not name a task of the plan"
    return None


def load_plan(folder: Path) -> Plan:
    """The launched plan of the sweep in `folder`, from its plan.json (data only, never code): tasks without their
    jobs (fn and job are None), their outputs under this folder's parent, wherever the sweep was launched; so a
    moved or copied sweep reports its own results. A folder with only a plan.pkl (launched before plan.json) is
    refused: unpickling a file from a shared folder could run anyone's code."""
    folder = Path(os.path.abspath(folder))
    path = folder / PLAN_FILE
    relaunch = ("run `lab sweep launch` again with the sweep's overrides to write it (it submits nothing that is "
                "done, queued or running)")
    if not path.exists():
        if (folder / LEGACY_PLAN_FILE).exists():
            raise PlanFileError(f"{folder} was launched before plan.json existed: its {LEGACY_PLAN_FILE} is not "
                                f"read, since unpickling a file from a shared folder could run code; {relaunch}")
        raise PlanFileError(f"no sweep launched at {folder} (no {PLAN_FILE})")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PlanFileError(f"{path} is not valid JSON ({error}); {relaunch}") from None
    problem = _record_problem(record)
    if problem:
        raise PlanFileError(f"{path}: {problem}; {relaunch}")
    base = folder.parent
    tasks = [Task(key=t["key"], stage=t["stage"], fn=None, job=None,  # type: ignore[arg-type]
                  outputs=[str(base / output) for output in t["outputs"]], depends=list(t["depends"]))
             for t in record["tasks"]]
    return Plan(name=base.name, root=str(base.parent), tasks=tasks, points=record["points"])


@dataclass
class SweepView:
    """One reading of a launched sweep, shared by `status` and `stage_progress`: its plan, state.json, which tasks
    are done (each output checked once), the scheduler's state of each task's latest job, the local runner's
    records."""

    folder: Path
    plan: Plan
    state: dict[str, Any]
    executor: str
    latest: dict[str, str]  # task key -> its latest job id
    scheduler: dict[str, str]  # task key -> its latest job's state
    local: dict[str, Any]  # the local runner's record of each task it was given
    done: dict[str, bool]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # packs' records of tasks, read when asked

    @classmethod
    def read(cls, folder: Path) -> SweepView:
        folder = Path(folder)
        plan, state = load_plan(folder), load_state(folder)
        executor = state.get("executor", "local")
        latest = {key: info["job_ids"][-1] for key, info in state["tasks"].items() if info.get("job_ids")}
        local_path = folder / LOCAL_STATUS_FILE
        local = json.loads(local_path.read_text()) if local_path.exists() else {}
        return cls(folder, plan, state, executor, latest, job_states(folder, latest, executor), local,
                   {t.key: t.done() for t in plan.tasks})

    def record(self, task: Task) -> dict[str, Any]:
        """The record its pack wrote of the task (lab.run.pack) in the task's latest job ({} when none did)."""
        if task.key not in self.latest:
            return {}
        if task.key not in self.records:
            record = read_point_record(self.folder / "jobs", task.key) or {}
            ours = record.get("job_id") == self.latest[task.key] or self.executor != "slurm"
            self.records[task.key] = record if ours else {}
        return self.records[task.key]

    def task_state(self, task: Task) -> str:
        """done, running, pending (queued, waiting for its parents, or in a running pack that has not reached it),
        failed, cancelled or not launched."""
        if self.done[task.key]:
            return "done"
        if task.key not in self.latest:
            return "not launched"
        job_state = self.scheduler.get(task.key, "UNKNOWN")
        if job_state == "CANCELLED":
            return "cancelled"
        if self.executor == "slurm" and job_state in ("RUNNING", "COMPLETED", "FAILED"):
            recorded = self.record(task).get("state")  # its pack went on after it failed: the task's own word
            if recorded in ("FAILED", "CANCELLED"):
                return recorded.lower()
            if job_state == "RUNNING":  # a pack runs one task at a time; a job of one task is that task
                alone = sum(job == self.latest[task.key] for job in self.latest.values()) == 1
                return "running" if recorded == "RUNNING" or alone and not recorded else "pending"
        if job_state in FAILED_STATES or job_state in ("LOST", "COMPLETED"):  # completed without its outputs
            return "failed"
        return "running" if job_state == "RUNNING" else "pending"

    def error(self, task: Task) -> str:
        """Why the task failed: its pack's record of it, else the last error line of its job's log on Slurm, the
        local runner's record (lab.run.sweep.job_failure) otherwise; the job's state when none says."""
        if self.executor == "slurm":
            reason = self.record(task).get("error") or ""
            log = self.log(task)
            if not reason and log:
                reason = error_line(Path(log).read_text(errors="replace")[-20000:])
        else:
            reason = self.local.get(task.key, {}).get("error") or ""
        return reason or self.scheduler.get(task.key, "UNKNOWN")

    def log(self, task: Task) -> str:
        """The path of the task's own log (lab.run.pack) or else its latest job's error log ('' when none)."""
        if task.key not in self.latest:
            return ""
        if self.executor == "slurm":
            log = self.record(task).get("log") or str(
                JobPaths(self.folder / "jobs", job_id=self.latest[task.key], task_id=0).stderr)
        else:
            log = self.local.get(task.key, {}).get("log") or ""
        return log if log and Path(log).exists() else ""

    def seconds(self, task: Task) -> float | None:
        """How long the finished task took: the local runner's or its pack's record, else its run directory's
        first attempt to its result.json (None when none is there)."""
        info = self.local.get(task.key, {})
        if info.get("state") == "COMPLETED" and "seconds" in info:
            return float(info["seconds"])
        record = self.record(task) if self.executor == "slurm" else {}
        if record.get("state") == "COMPLETED" and "seconds" in record:
            return float(record["seconds"])
        result, attempts = _attempts(task)
        if result is None or not attempts or "time" not in attempts[0]:
            return None
        return max(0.0, result.stat().st_mtime - float(attempts[0]["time"]))

    def started(self, task: Task) -> float | None:
        """When the running task started (the local runner's or its pack's record, else its run's latest
        attempt)."""
        if "started" in self.local.get(task.key, {}):
            return float(self.local[task.key]["started"])
        record = self.record(task) if self.executor == "slurm" else {}
        if "started" in record:
            return float(record["started"])
        _, attempts = _attempts(task)
        return float(attempts[-1]["time"]) if attempts and "time" in attempts[-1] else None


def _attempts(task: Task) -> tuple[Path | None, list[dict[str, Any]]]:
    """The task's result.json path (None for a task without one, such as a render) and its run's attempts."""
    result = next((Path(p) for p in task.outputs if Path(p).name == "result.json"), None)
    return result, read_jsonl(RunDir(result.parent).attempts_path) if result is not None else []


def status(folder: Path | SweepView) -> pd.DataFrame:
    """One row per point: state (done / running / pending / failed / cancelled / not launched), error (the stage
    and the whole reason), log (the failed job's log file), requeues, job_id. `folder`: the sweep's, or one
    reading of it shared with `stage_progress`."""
    view = folder if isinstance(folder, SweepView) else SweepView.read(folder)
    rows = []
    for point in view.plan.points:
        chain = view.plan.ancestors(point["task"])
        values = {k: v for k, v in point.items() if k != "task"}
        requeues = sum(max(0, RunDir(Path(p).parent).attempts() - 1) for t in chain[:2] for p in t.outputs
                       if p.endswith("result.json"))
        row = {**values, "state": "done", "error": "", "log": "", "requeues": requeues,
               "job_id": view.latest.get(point["task"], "")}
        if not view.done[chain[0].key]:
            row["state"] = "not launched"
            for task in reversed(chain):  # the furthest-upstream problem explains the point
                task_state = view.task_state(task)
                if task_state in ("done", "not launched"):
                    continue
                if task_state in ("failed", "cancelled"):
                    row.update(state=task_state, error=f"{task.stage}: {view.error(task)}", log=view.log(task))
                    break
                row["state"] = "running" if task_state == "running" and task is chain[0] else "pending"
        rows.append(row)
    return pd.DataFrame(rows)


STAGE_COUNTS = ("done", "running", "pending", "failed", "cancelled", "not launched")


@dataclass
class SweepProgress:
    """Where each stage of a launched sweep stands (`stage_progress`); `format_progress` prints it."""

    stages: pd.DataFrame  # per stage, in plan order: STAGE_COUNTS, total, task_seconds, left_seconds
    elapsed_seconds: float | None  # since the first launch, or to its last output once nothing is left to run
    eta_seconds: float | None  # None when nothing is left, or a stage with work left has no finished task yet
    parallel: int  # the tasks the ETA assumes run at once

    @property
    def active(self) -> int:
        """Tasks running or waiting to run."""
        return int(self.stages.running.sum() + self.stages.pending.sum())


def stage_progress(folder: Path | SweepView, now: float | None = None) -> SweepProgress:
    """Per stage (render, pretrain, finetune, ... as the plan names them): how many tasks are done, running,
    pending, failed, cancelled or not launched; the mean duration of its finished tasks (`task_seconds`) and the
    job-seconds its running and pending tasks still need at that mean (`left_seconds`, NaN when none finished).
    The ETA spreads the work left over `parallel` jobs at once: the local runner's max_parallel, on Slurm the
    tasks running now (at least one)."""
    view = folder if isinstance(folder, SweepView) else SweepView.read(folder)
    now = time.time() if now is None else now
    rows: dict[str, dict[str, Any]] = {}
    for task in view.plan.tasks:
        row = rows.setdefault(task.stage, {**dict.fromkeys(STAGE_COUNTS, 0), "seconds": [], "running_for": []})
        task_state = view.task_state(task)
        row[task_state] += 1
        if task_state == "done" and (seconds := view.seconds(task)) is not None:
            row["seconds"].append(seconds)
        elif task_state == "running":
            started = view.started(task)
            row["running_for"].append(now - started if started is not None else 0.0)
    records = []
    for stage, row in rows.items():
        mean = sum(row["seconds"]) / len(row["seconds"]) if row["seconds"] else float("nan")
        left = row["pending"] * mean + sum(max(mean - ran, 0.0) for ran in row["running_for"])
        records.append({"stage": stage, **{k: row[k] for k in STAGE_COUNTS},
                        "total": sum(row[k] for k in STAGE_COUNTS), "task_seconds": mean,
                        "left_seconds": left if row["pending"] + row["running"] else 0.0})
    stages = pd.DataFrame(records).set_index("stage")
    launches = view.state.get("launches", [])
    last = launches[-1] if launches else {}
    # a local job may run a chain of tasks, so its max_parallel, not the tasks running, bounds the jobs at once
    parallel = max(int(stages.running.sum()) if view.executor == "slurm" else int(last.get("max_parallel", 1)), 1)
    active = int(stages.running.sum() + stages.pending.sum())
    eta = stages.left_seconds.sum() / parallel if active and stages.left_seconds.notna().all() else None
    end = now
    if not active:  # stopped: count to the newest output, not to now
        written = [Path(p).stat().st_mtime for t in view.plan.tasks if view.done[t.key] for p in t.outputs]
        end = max(written, default=now)
    elapsed = max(end - launches[0]["time"], 0.0) if launches else None
    return SweepProgress(stages, elapsed, eta, parallel)


def format_duration(seconds: float | None) -> str:
    """45s, 12m05s, 3h12m, 2d04h; '-' when unknown."""
    if seconds is None or seconds != seconds:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def format_progress(progress: SweepProgress) -> str:
    """The stage table (counts, mean task, work left) and a line with the elapsed time and the ETA."""
    stages = progress.stages
    shown = [c for c in STAGE_COUNTS if c not in ("cancelled", "not launched") or stages[c].any()]
    table = stages[[*shown, "total"]].copy()
    table["mean task"] = stages.task_seconds.map(format_duration)
    table["work left"] = stages.left_seconds.map(format_duration)
    parts = []
    if progress.elapsed_seconds is not None:
        parts.append(f"elapsed {format_duration(progress.elapsed_seconds)} since the first launch" if progress.active
                     else f"ran {format_duration(progress.elapsed_seconds)} from the first launch to the last output")
    unfinished = int(stages.failed.sum() + stages.cancelled.sum())
    if not progress.active:
        parts.append("nothing running or queued" + (f"; launching again reruns the {unfinished} failed or "
                                                     f"cancelled tasks" if unfinished else ""))
    elif progress.eta_seconds is not None:
        parts.append(f"ETA ~{format_duration(progress.eta_seconds)} ({progress.parallel} at a time, each task "
                     f"as long as its stage's finished ones)")
    else:
        waiting = [s for s in stages.index if stages.left_seconds.isna()[s]]
        parts.append(f"ETA once a {waiting[0]} task has finished" if len(waiting) == 1 else
                     f"ETA once a task of each of {', '.join(waiting)} has finished")
    return table.reset_index().to_string(index=False) + "\n" + "; ".join(parts)


def collect(folder: Path, experiment: str, out: Path) -> pd.DataFrame:
    """The tidy results table of every finished point, with the swept values as columns."""
    plan = load_plan(folder)
    loaded = [(p, load_result(plan.task(p["task"]).outputs[0], required=["metrics"]))
              for p in plan.points if plan.task(p["task"]).done()]  # an invalid result is named and set aside
    finished = [p for p, result in loaded if result is not None]
    results = [result for _, result in loaded if result is not None]
    swept = [{k: v for k, v in p.items() if k not in ("task", "n", "s", "seed", "model", "data")} for p in finished]
    table = results_table(results, experiment, swept)
    if out.suffix == ".parquet":
        try:
            table.to_parquet(out)
        except ImportError as error:
            raise ValueError(f"writing {out.name} needs pyarrow ({error}); collect to a .csv instead") from None
    else:
        write_table(table, out)
    return table


def stage_seconds(plan: Plan) -> dict[str, float]:
    """Job seconds per stage, summed over the tasks the latest local runner ran (local and debug executors);
    a stage it did not run is absent."""
    path = plan.folder / LOCAL_STATUS_FILE
    runner = json.loads(path.read_text()) if path.exists() else {}
    seconds: dict[str, float] = {}
    for key, info in runner.items():
        if key in plan.by_key and "seconds" in info:
            stage = plan.task(key).stage
            seconds[stage] = seconds.get(stage, 0.0) + info["seconds"]
    return seconds


MAX_STEP_BARS = 4  # running trainings shown with their steps at once while waiting


class WaitBars:
    """What `wait_for` shows: a bar over the plan's tasks, named by the stage at work and counting each stage's
    finished tasks, and a step bar under it for each running training that records its steps
    (lab.core.progress: every `lab.train.engine.run_steps` given a run directory)."""

    def __init__(self, plan: Plan) -> None:
        self.name = plan.name
        self.tasks = tqdm(total=len(plan.tasks), desc=plan.name, unit="task")
        self.steps: dict[str, Any] = {}  # task key -> its step bar
        self.shown: tuple[str, str, int] | None = None  # a bar redraws only when it changed (logs stay short)

    def show(self, view: SweepView) -> None:
        tasks = view.plan.tasks
        states = {t.key: view.task_state(t) for t in tasks}
        at_work = next((t.stage for t in tasks if states[t.key] == "running"), None) or next(
            (t.stage for t in tasks if states[t.key] == "pending"), None)
        totals = stage_totals(tasks)
        done: dict[str, int] = {}
        for task in tasks:
            done[task.stage] = done.get(task.stage, 0) + (states[task.key] == "done")
        failed = sum(state in ("failed", "cancelled") for state in states.values())
        shown = (f"{self.name} {at_work}" if at_work else self.name,
                 stage_counts(done, totals) + (f", failed {failed}" if failed else ""), sum(done.values()))
        if shown != self.shown:
            self.tasks.set_description(shown[0], refresh=False)
            self.tasks.set_postfix_str(shown[1], refresh=False)
            self.tasks.n = shown[2]
            self.tasks.refresh()
            self.shown = shown
        running = set()
        for task in tasks:
            if states[task.key] != "running" or (task.key not in self.steps and len(self.steps) >= MAX_STEP_BARS):
                continue
            record = next(filter(None, (read_progress(Path(output).parent) for output in task.outputs)), None)
            if record is None:
                continue
            if task.key not in self.steps:
                self.steps[task.key] = tqdm(total=record["steps"], desc=f"  {task.stage} {record.get('desc', '')}",
                                            unit="step", leave=False)
            bar = self.steps[task.key]
            if (bar.n, bar.total) != (record["step"], record["steps"]):
                bar.total, bar.n = record["steps"], record["step"]
                bar.refresh()
            running.add(task.key)
        for key in set(self.steps) - running:
            self.steps.pop(key).close()

    def close(self) -> None:
        for bar in self.steps.values():
            bar.close()
        self.tasks.close()


def wait_for(plan: Plan, poll_seconds: float = 2.0) -> pd.DataFrame:
    """Block until no point of a launched plan is pending or running; returns the final status. Meanwhile
    `WaitBars` shows the stage at work, each stage's finished tasks and the steps of the running trainings."""
    view = SweepView.read(plan.folder)
    table = status(view)
    if not table.state.isin(["pending", "running"]).any():
        return table
    bars = WaitBars(plan)
    try:
        while table.state.isin(["pending", "running"]).any():
            bars.show(view)
            time.sleep(poll_seconds)
            view = SweepView.read(plan.folder)
            table = status(view)
        bars.show(view)
    finally:
        bars.close()
    return table


def stop_local_runner(folder: Path, timeout_s: float = 60.0) -> None:
    """Interrupt the detached local runner (it cancels its running jobs and marks its tasks cancelled)."""
    pid_file = folder / LOCAL_PID_FILE
    if not pid_file.exists() or not _local_runner_alive(folder):
        return
    os.kill(int(pid_file.read_text()), signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    while _local_runner_alive(folder) and time.monotonic() < deadline:
        time.sleep(0.2)


def execute(plan: Plan, launcher: LauncherConfig, poll_seconds: float = 2.0) -> tuple[dict[str, Any], pd.DataFrame]:
    """Launch (or resume) a plan and wait for it: (launch summary, final status). Ctrl-C stops the local runner
    this call started (Slurm jobs stay queued; the same call again waits for them) and keeps what finished."""
    launched = launch(plan, launcher)
    try:
        return launched, wait_for(plan, poll_seconds)
    except KeyboardInterrupt:
        if launcher.name == "local" and launched["submitted"]:
            stop_local_runner(plan.folder)
        raise KeyboardInterrupt("interrupted: finished points are kept; run the same command again to resume") \
            from None


def unfinished_error(final: pd.DataFrame) -> RuntimeError | None:
    """The error naming every point of a final status that did not finish (None when all did)."""
    failed = final[final.state != "done"]
    if not len(failed):
        return None
    return RuntimeError(f"{len(failed)} of {len(final)} points did not finish (finished ones are kept):\n"
                        + failed.to_string(index=False))


def run_to_completion(
    plan: Plan, launcher: LauncherConfig, experiment: str, results: Path
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Launch (or resume) a plan, wait for it and collect its tidy table into `results`.

    Returns (launch summary, table). Points that did not finish are an error listing them; finished ones are kept.
    """
    launched, final = execute(plan, launcher)
    table = collect(plan.folder, experiment, results)
    error = unfinished_error(final)
    if error:
        raise error
    return launched, table


if __name__ == "__main__":  # the detached local runner: python -m lab.run.sweep SWEEP_DIR LAUNCHER_JSON
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    signal.signal(signal.SIGINT, signal.default_int_handler)  # stop_local_runner's signal, even if inherited ignored
    from lab.run.sweep import run_plan_locally as runner  # the importable module's (not __main__): jobs pickle its classes

    runner(Path(sys.argv[1]), LauncherConfig(**json.loads(sys.argv[2])), *pickle.load(sys.stdin.buffer))
