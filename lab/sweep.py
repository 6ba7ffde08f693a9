"""Sweeps: a plan of stage tasks with dependencies, launched through an executor, watched, collected.

A plan is a list of `Task`s (render slices, pre-trainings, fine-tunes) in dependency order, plus the
`points` of the sweep (the swept values of each fine-tune). On Slurm, tasks of one stage that share their
parents become one job array, submitted with `afterok` on the parents' jobs, so one pre-training serves all
the fine-tunes that use it. Locally, a detached runner executes the same plan stage by stage. Tasks whose
outputs exist are never submitted again, nor are tasks still queued or running: re-launching a sweep submits
only what is missing or failed. Every job is checkpointable: a preemption or time limit requeues it and the
stage resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property
from itertools import groupby
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import submitit
from submitit.core.utils import JobPaths

from lab.launch import EXECUTORS, LauncherConfig, error_line, run_jobs
from lab.results import results_table, write_table
from lab.rundir import RunDir, atomic_write_json

STATE_FILE = "state.json"
PLAN_FILE = "plan.pkl"
LOCAL_STATUS_FILE = "local_runner.json"
LOCAL_PID_FILE = "local_runner.pid"  # the detached runner's process: when it is gone, its unfinished tasks are lost
ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED"}
FAILED_STATES = {"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


@dataclass
class Task:
    """One stage run: `fn(job)`; done when every path in `outputs` exists."""

    key: str
    stage: str
    fn: Callable[[Any], Any]
    job: Any
    outputs: list[str]
    depends: list[str] = field(default_factory=list)

    def done(self) -> bool:
        return all(Path(p).exists() for p in self.outputs)


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


class StageCall(submitit.helpers.Checkpointable):
    """Runs a stage function; on preemption or time-out submitit requeues the same call (it resumes)."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def __call__(self, job: Any) -> Any:
        return self.fn(job)


def load_state(folder: Path) -> dict[str, Any]:
    path = folder / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {"tasks": {}, "launches": []}


def _active_keys(plan: Plan, state: dict[str, Any], executor: str) -> set[str]:
    """Tasks whose latest job is still queued or running (they must not be submitted twice)."""
    latest = {key: info["job_ids"][-1] for key, info in state["tasks"].items() if info.get("job_ids")}
    states = job_states(plan, latest, executor)
    return {key for key, job_state in states.items() if job_state in ACTIVE_STATES}


def job_states(plan: Plan, latest: dict[str, str], executor: str) -> dict[str, str]:
    """Scheduler state of each task's latest job ('COMPLETED', 'FAILED', 'RUNNING', ...)."""
    if executor == "slurm":
        from lab.slurm import job_states as slurm_states

        by_job = slurm_states(list(latest.values()))
        return {key: by_job[job_id] for key, job_id in latest.items()}
    local = plan.folder / LOCAL_STATUS_FILE
    runner = json.loads(local.read_text()) if local.exists() else {}
    states = {key: runner.get(key, {}).get("state", "PENDING") for key in latest}
    if not _local_runner_alive(plan.folder):  # killed or crashed: nothing will move its tasks on, so resubmit them
        states = {key: "LOST" if state in ACTIVE_STATES else state for key, state in states.items()}
    return states


def _local_runner_alive(folder: Path) -> bool:
    """Whether the detached local runner is still running (True when no pid was recorded: older sweeps)."""
    pid_file = folder / LOCAL_PID_FILE
    if not pid_file.exists():
        return True
    try:
        os.kill(int(pid_file.read_text()), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def launch(plan: Plan, launcher: LauncherConfig) -> dict[str, Any]:
    """Submit every task not done and not in flight; returns at once except with the debug executor."""
    launcher.validate()
    folder = plan.folder
    folder.mkdir(parents=True, exist_ok=True)
    state = load_state(folder)
    active = _active_keys(plan, state, launcher.name) if state["tasks"] else set()
    todo = [t for t in plan.tasks if not t.done() and t.key not in active]
    with open(folder / PLAN_FILE, "wb") as handle:
        pickle.dump(plan, handle)
    submitted: dict[str, str] = {}
    if todo and launcher.name == "slurm":
        submitted = _submit_slurm(todo, plan, launcher, folder, state)
    elif todo:
        submitted = {t.key: "local" for t in todo}
    for key, job_id in submitted.items():
        state["tasks"].setdefault(key, {"stage": plan.task(key).stage, "job_ids": []})["job_ids"].append(job_id)
    state.update(name=plan.name, executor=launcher.name, points=plan.points)
    state["launches"].append({"time": time.time(), "executor": launcher.name, "submitted": len(submitted),
                              "skipped_done": sum(t.done() for t in plan.tasks), "skipped_active": len(active)})
    atomic_write_json(folder / STATE_FILE, state)
    if todo and launcher.name != "slurm":
        _start_local_runner(folder, launcher, [t.key for t in todo])
    return state["launches"][-1]


def _submit_slurm(todo: list[Task], plan: Plan, launcher: LauncherConfig, folder: Path,
                  state: dict[str, Any]) -> dict[str, str]:
    """Tasks of one stage with the same parents -> one array (split at MaxArraySize), afterok on the parents."""
    from lab.slurm import max_array_size

    executor = EXECUTORS.get("slurm")(folder / "jobs", launcher)
    job_of = {key: info["job_ids"][-1] for key, info in state["tasks"].items() if info.get("job_ids")}
    rank = {stage: i for i, stage in enumerate(dict.fromkeys(t.stage for t in plan.tasks))}

    done = {key: plan.task(key).done() for t in todo for key in t.depends}  # each output checked once
    parents_of = {t.key: tuple(sorted(d for d in t.depends if not done[d])) for t in todo}

    submitted: dict[str, str] = {}
    ordered = sorted(todo, key=lambda t: (rank[t.stage], parents_of[t.key]))
    for (_, fn, parents), tasks in groupby(ordered, key=lambda t: (t.stage, t.fn, parents_of[t.key])):
        tasks = list(tasks)
        parent_jobs = sorted({(submitted.get(p) or job_of[p]).split("_")[0] for p in parents})
        # kill-on-invalid-dep: a job whose parent failed is cancelled instead of pending forever
        extra = {**launcher.extra_sbatch, **({"kill-on-invalid-dep": "yes"} if parent_jobs else {})}
        executor.update_parameters(dependency=f"afterok:{':'.join(parent_jobs)}" if parent_jobs else None,
                                   job_name=f"{plan.name}-{tasks[0].stage}", additional_parameters=extra)
        limit = max_array_size() - 1
        for start in range(0, len(tasks), limit):
            chunk = tasks[start : start + limit]
            jobs = executor.map_array(StageCall(fn), [t.job for t in chunk])
            submitted.update({t.key: str(j.job_id) for t, j in zip(chunk, jobs)})
    executor.update_parameters(dependency=None)
    return submitted


def _start_local_runner(folder: Path, launcher: LauncherConfig, keys: list[str]) -> None:
    atomic_write_json(folder / LOCAL_STATUS_FILE, {k: {"state": "PENDING"} for k in keys})
    if launcher.name == "debug":
        run_plan_locally(folder, launcher)
        return
    log = open(folder / "local_runner.log", "a")
    runner = subprocess.Popen([sys.executable, "-m", "lab.sweep", str(folder), json.dumps(launcher.__dict__)],
                              stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    (folder / LOCAL_PID_FILE).write_text(str(runner.pid))


def run_plan_locally(folder: Path, launcher: LauncherConfig) -> None:
    """Execute the pending tasks of a plan stage by stage (a stage waits for the one before)."""
    with open(folder / PLAN_FILE, "rb") as handle:
        plan: Plan = pickle.load(handle)
    status_path = folder / LOCAL_STATUS_FILE
    status = json.loads(status_path.read_text())
    todo = [t for t in plan.tasks if t.key in status and not t.done()]
    failed: set[str] = set()
    for stage, tasks in groupby(todo, key=lambda t: t.stage):
        tasks = list(tasks)
        runnable = [t for t in tasks if not any(a.key in failed for a in plan.ancestors(t.key)[1:])]
        for t in tasks:
            if t not in runnable:
                failed.add(t.key)
                status[t.key] = {"state": "CANCELLED", "error": "a task it depends on failed"}
            else:
                status[t.key] = {"state": "RUNNING"}
        atomic_write_json(status_path, status)
        if not runnable:
            continue
        outcomes = run_jobs(StageCall(runnable[0].fn), [t.job for t in runnable], launcher, folder / "jobs",
                            desc=f"{plan.name} {stage}")
        for task, outcome in zip(runnable, outcomes):
            status[task.key] = {"state": "COMPLETED" if outcome.ok else "FAILED", "job_id": outcome.job_id,
                                "error": outcome.error, "log": outcome.log}
            if not outcome.ok:
                failed.add(task.key)
        atomic_write_json(status_path, status)


def load_plan(folder: Path) -> Plan:
    with open(folder / PLAN_FILE, "rb") as handle:
        return pickle.load(handle)


def _error_line(folder: Path, job_id: str, executor: str, local: dict[str, Any], key: str) -> str:
    if executor != "slurm":
        return local.get(key, {}).get("error") or ""
    log = JobPaths(folder / "jobs", job_id=job_id, task_id=0).stderr
    if not log.exists():
        return ""
    return error_line(log.read_text(errors="replace")[-20000:])


def status(folder: Path) -> pd.DataFrame:
    """One row per point: state (done / running / pending / failed / cancelled / not launched), error, requeues."""
    plan, state = load_plan(folder), load_state(folder)
    executor = state.get("executor", "local")
    latest = {key: info["job_ids"][-1] for key, info in state["tasks"].items() if info.get("job_ids")}
    scheduler = job_states(plan, latest, executor)
    local_path = folder / LOCAL_STATUS_FILE
    local = json.loads(local_path.read_text()) if local_path.exists() else {}
    rows = []
    for point in plan.points:
        chain = plan.ancestors(point["task"])
        values = {k: v for k, v in point.items() if k != "task"}
        requeues = sum(max(0, RunDir(Path(p).parent).attempts() - 1) for t in chain[:2] for p in t.outputs
                       if p.endswith("result.json"))
        row = {**values, "state": "done", "error": "", "requeues": requeues, "job_id": latest.get(point["task"], "")}
        if not chain[0].done():
            row["state"] = "not launched"
            for task in reversed(chain):  # the furthest-upstream problem explains the point
                if task.done() or task.key not in latest:
                    continue
                job_state = scheduler.get(task.key, "UNKNOWN")
                if job_state in FAILED_STATES or job_state in ("CANCELLED", "LOST") or (
                        job_state == "COMPLETED" and not task.done()):
                    row["state"] = "cancelled" if job_state == "CANCELLED" else "failed"
                    row["error"] = f"{task.stage}: " + (_error_line(folder, latest[task.key], executor, local, task.key)
                                                        or job_state)
                    break
                row["state"] = "running" if job_state == "RUNNING" and task is chain[0] else "pending"
        rows.append(row)
    return pd.DataFrame(rows)


def collect(folder: Path, experiment: str, out: Path) -> pd.DataFrame:
    """The tidy results table of every finished point, with the swept values as columns."""
    plan = load_plan(folder)
    finished = [p for p in plan.points if plan.task(p["task"]).done()]
    results = [json.loads(Path(plan.task(p["task"]).outputs[0]).read_text()) for p in finished]
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


if __name__ == "__main__":  # the detached local runner: python -m lab.sweep SWEEP_DIR LAUNCHER_JSON
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run_plan_locally(Path(sys.argv[1]), LauncherConfig(**json.loads(sys.argv[2])))


def wait_for(plan: Plan, poll_seconds: float = 2.0) -> pd.DataFrame:
    """Block until no point of a launched plan is pending or running; returns the final status."""
    while True:
        table = status(plan.folder)
        if not table.state.isin(["pending", "running"]).any():
            return table
        time.sleep(poll_seconds)


def run_to_completion(
    plan: Plan, launcher: LauncherConfig, experiment: str, results: Path
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Launch (or resume) a plan, wait for it and collect its tidy table into `results`.

    Returns (launch summary, table). Points that did not finish are an error listing them; finished ones are kept.
    """
    launched = launch(plan, launcher)
    final = wait_for(plan)
    table = collect(plan.folder, experiment, results)
    failed = final[final.state != "done"]
    if len(failed):
        raise RuntimeError(f"{len(failed)} of {len(final)} points did not finish (finished ones are kept):\n"
                           + failed.to_string(index=False))
    return launched, table
