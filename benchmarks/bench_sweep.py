"""Overhead of running a sweep as jobs, against the same points in one process; packing off and on (issue 20).

    bash scripts/slurm-local.sh start
    python benchmarks/bench_sweep.py            # 100 toy points: n in {0, 100} x 25 seeds x s in {10, 20}
    python benchmarks/bench_sweep.py --only on  # packing on only (skips the ~10 minutes of the unpacked runs)

Reports the per-job overhead of a lone job on an idle cluster (Slurm submit -> start, and start -> the stage
starts real work: Python, torch and the lab imported); the wall time of the same stage runs one after another in
this process; and the wall time of the whole sweep, with its ratio to the one-process time, for
  - Slurm, packing off (launcher.tasks_per_job=1: a job per task) and on (the default, 16 tasks per job);
  - the local executor, packing off (a fresh interpreter per task: launcher.warm_workers=false) and on (warm
    workers, the default).
Both executors run two jobs at a time (the local cluster has 2 CPUs), so a ratio below 1 is possible. Run it on an
otherwise idle machine: other load inflates the subprocess side most.
"""

from __future__ import annotations

import argparse
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
from lab.run import sweep  # noqa: E402
from lab.core.config import load_config  # noqa: E402
from machine import RESULTS, cpu_name, slug  # noqa: E402

POINTS = ["study.n=[0,100]", f"study.seeds=[{','.join(map(str, range(25)))}]", "study.s=[10,20]"]


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


def slurm_sweep(root: Path, points: list[str], *launcher: str):
    config = load_config(REPO / "experiments" / "conf", "sweep", SweepConfig,
                         ["+experiment=sweep_toy", f"root={root}", "launcher=slurm", "launcher.timeout_min=30", *points,
                          *launcher])
    return config, plan_sweep(config)


def run_to_completion(config, plan) -> float:
    started = time.time()
    sweep.launch(plan, config.launcher)
    while not all(plan.task(p["task"]).done() for p in plan.points):
        failed = sweep.status(plan.folder).state.isin(["failed", "cancelled"])
        if failed.any():
            raise RuntimeError(f"{failed.sum()} points failed; see lab sweep status")
        time.sleep(0.5)
    return time.time() - started


def lone_job_overhead(root: Path, repeats: int = 3) -> tuple[list[float], list[float]]:
    """Queue wait and start-up of single fine-tune jobs submitted to an idle cluster, one after another."""
    waits, startups = [], []
    for k in range(repeats):
        config, plan = slurm_sweep(root / f"probe{k}", ["study.n=[0]", f"study.seeds=[{k}]", "study.s=[10]"],
                                   "launcher.tasks_per_job=1")
        run_to_completion(config, plan)
        task = plan.task(plan.points[0]["task"])
        job_id = sweep.load_state(plan.folder)["tasks"][task.key]["job_ids"][-1]
        submit, start = sacct_times([job_id])[job_id.split("_")[0]]
        attempt = json.loads((Path(task.outputs[0]).parent / "attempts.jsonl").read_text().splitlines()[0])
        waits.append(start - submit)
        startups.append(attempt["time"] - start)
    return waits, startups


def run_on_slurm(root: Path, *launcher: str) -> tuple[float, int, int]:
    """Wall seconds, tasks and jobs of the sweep on the local cluster."""
    config, plan = slurm_sweep(root, POINTS, *launcher)
    wall = run_to_completion(config, plan)
    state = sweep.load_state(plan.folder)
    return wall, len(plan.tasks), len({info["job_ids"][-1] for info in state["tasks"].values()})


def run_locally(root: Path, *launcher: str) -> float:
    """Wall seconds of the sweep on the local executor (two jobs at a time), from launch to the last point."""
    config = load_config(REPO / "experiments" / "conf", "sweep", SweepConfig,
                         ["+experiment=sweep_toy", f"root={root}", "launcher=local", "launcher.max_parallel=2",
                          "launcher.timeout_min=30", *POINTS, *launcher])
    return run_to_completion(config, plan_sweep(config))


def run_in_process(root: Path) -> float:
    config = load_config(REPO / "experiments" / "conf", "sweep", SweepConfig,
                         ["+experiment=sweep_toy", f"root={root}", "launcher=debug", *POINTS])
    plan = plan_sweep(config)
    started = time.time()
    for task in plan.tasks:
        task.fn(task.job)
    return time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["on", "off"], help="measure packing on or off only (default: both)")
    args = parser.parse_args()
    modes = [args.only] if args.only else ["off", "on"]
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench_sweep_", dir=REPO / "runs" if (REPO / "runs").exists() else None) as tmp:
        waits, startups = lone_job_overhead(Path(tmp) / "probes")
        one_process = run_in_process(Path(tmp) / "inprocess")
        rows += [("lone job: submit -> start, median s", statistics.median(waits)),
                 ("lone job: start -> first step, median s", statistics.median(startups)),
                 ("same points in one process, s", one_process)]
        for mode in modes:
            packing = [] if mode == "on" else ["launcher.tasks_per_job=1"]
            wall, tasks, jobs = run_on_slurm(Path(tmp) / f"slurm_{mode}", *packing)
            rows += [(f"Slurm, packing {mode}: tasks / jobs", f"{tasks} / {jobs}"),
                     (f"Slurm, packing {mode}: sweep wall (2 CPUs), s", wall),
                     (f"Slurm, packing {mode}: ratio to one process", wall / one_process)]
            warm = [] if mode == "on" else ["launcher.warm_workers=false"]
            wall = run_locally(Path(tmp) / f"local_{mode}", *warm)
            rows += [(f"local, packing {mode}: sweep wall (2 jobs at once), s", wall),
                     (f"local, packing {mode}: ratio to one process", wall / one_process)]
    print(f"\n# {cpu_name()} | {os.cpu_count()} CPUs | torch {torch.__version__}")
    for name, value in rows:
        print(f"{name:<52}{value:>10.2f}" if isinstance(value, float) else f"{name:<52}{value:>10}")
    out = RESULTS / f"sweep_{slug(cpu_name())}_{os.cpu_count()}cpu.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        csv.writer(handle).writerows([("measure", "value"), *rows])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
