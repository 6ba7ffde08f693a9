"""Overhead of running a sweep as Slurm jobs, against the same points in one process.

    bash scripts/slurm-local.sh start
    python benchmarks/bench_sweep.py            # 100 toy points: 4 n x 25 seeds, s = 20

Reports, per job, the queue wait (Slurm submit -> start) and the start-up (job start -> the stage starts
real work: Python, torch and the lab imported, data loaded), the wall time of the whole sweep on the local
cluster, the wall time of the same points run one after another in this process, and their ratio.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments.sweep import SweepConfig, plan_sweep  # noqa: E402
from lab import sweep  # noqa: E402
from lab.config import load_config  # noqa: E402
from machine import RESULTS, cpu_name, slug  # noqa: E402

POINTS = ["study.n=[0,50,100,200]", f"study.seeds=[{','.join(map(str, range(25)))}]", "study.s=[20]"]


def sacct_times(job_ids: list[str]) -> dict[str, tuple[float, float]]:
    """job id -> (submit, start) as epoch seconds."""
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,Submit,Start", "-j",
                          ",".join(sorted({j.split("_")[0] for j in job_ids}))], capture_output=True, text=True).stdout
    times = {}
    for line in out.splitlines():
        job, submit, start = line.split("|")
        if start not in ("Unknown", "None"):
            times[job] = (datetime.fromisoformat(submit).timestamp(), datetime.fromisoformat(start).timestamp())
    return times


def run_on_slurm(root: Path) -> tuple[float, list[float], list[float], int]:
    config = load_config(REPO / "experiments" / "conf", "sweep", SweepConfig,
                         ["+experiment=sweep_toy", f"root={root}", "launcher=slurm", "launcher.timeout_min=30", *POINTS])
    plan = plan_sweep(config)
    started = time.time()
    sweep.launch(plan, config.launcher)
    while not all(plan.task(p["task"]).done() for p in plan.points):
        failed = sweep.status(plan.folder).state.isin(["failed", "cancelled"])
        if failed.any():
            raise RuntimeError(f"{failed.sum()} points failed; see lab sweep status")
        time.sleep(2)
    wall = time.time() - started
    state = sweep.load_state(plan.folder)
    job_of = {key: info["job_ids"][-1] for key, info in state["tasks"].items()}
    times = sacct_times(list(job_of.values()))
    waits, startups = [], []
    for task in plan.tasks:
        if task.stage != "finetune":
            continue
        submit, start = times[job_of[task.key]]
        attempts = (Path(task.outputs[0]).parent / "attempts.jsonl").read_text().splitlines()
        waits.append(start - submit)
        startups.append(json.loads(attempts[0])["time"] - start)
    return wall, waits, startups, len(plan.tasks)


def run_in_process(root: Path) -> float:
    config = load_config(REPO / "experiments" / "conf", "sweep", SweepConfig,
                         ["+experiment=sweep_toy", f"root={root}", "launcher=debug", *POINTS])
    plan = plan_sweep(config)
    started = time.time()
    for task in plan.tasks:
        task.fn(task.job)
    return time.time() - started


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench_sweep_", dir=REPO / "runs" if (REPO / "runs").exists() else None) as tmp:
        slurm_wall, waits, startups, jobs = run_on_slurm(Path(tmp) / "slurm")
        local_wall = run_in_process(Path(tmp) / "inprocess")
    rows = [
        ("jobs (render + pre-train + fine-tune)", jobs),
        ("queue wait per fine-tune job, median s", statistics.median(waits)),
        ("start-up per fine-tune job, median s", statistics.median(startups)),
        ("sweep wall on local Slurm (2 CPUs), s", slurm_wall),
        ("same points in one process, s", local_wall),
        ("ratio Slurm / one process", slurm_wall / local_wall),
    ]
    print(f"\n# {cpu_name()} | {os.cpu_count()} CPUs | torch {torch.__version__}")
    for name, value in rows:
        print(f"{name:<42}{value:>10.2f}")
    out = RESULTS / f"sweep_{slug(cpu_name())}_{os.cpu_count()}cpu.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        csv.writer(handle).writerows([("measure", "value"), *rows])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
