"""The toy batch-control recipe as real 2-task Slurm jobs: ranks come from Slurm, the schedule is followed
step by step, and the hierarchical (2D-torus, rows on nodes) all-reduce traces the ring's loss curve."""

from __future__ import annotations

import json
import time

import pytest

from experiments.batch_control import load_run_config, validate
from lab.stages.batch_control import run_batch_control
from lab.run.launch import EXECUTORS

pytestmark = pytest.mark.slurm

QUEUE_WAIT_S = 1200  # the one-node cluster is shared: other people's sweeps may be ahead in the queue
RUN_WAIT_S = 300


def _train_log(job) -> list[dict]:
    lines = [json.loads(line) for line in job.run_dir().metrics_path.read_text().splitlines()]
    return [line for line in lines if line["stage"] == "train"]


def test_the_toy_recipe_runs_as_a_two_task_slurm_job(slurm_partition, tmp_path):
    jobs, submitted = {}, {}
    for kind in ("ring", "hierarchical"):
        config = load_run_config([
            f"root={tmp_path / 'runs'}", "recipe.launcher.name=slurm", f"recipe.launcher.partition={slurm_partition}",
            "recipe.launcher.tasks_per_node=2", "recipe.launcher.cpus_per_task=1", "recipe.launcher.mem_gb=3",
            "recipe.launcher.timeout_min=5", f"recipe.allreduce.kind={kind}", "recipe.batch.dataset_size=128",
            "recipe.batch.phases=[{start_epoch:0,global_batch:16},{start_epoch:2,global_batch:32}]",
            "recipe.batch.max_rank_batch=8", "recipe.lr.base_batch=16", "data.test_size=200", "image_size=12"])
        validate(config)  # includes the launcher's timeout check (>= signal delay + 60 s)
        executor = EXECUTORS.get("slurm")(tmp_path / "jobs", config.recipe.launcher)
        jobs[kind] = config.job()
        submitted[kind] = executor.submit(run_batch_control, jobs[kind])
    deadline = time.time() + QUEUE_WAIT_S
    while any(j.state in ("UNKNOWN", "PENDING") for j in submitted.values()) and time.time() < deadline:
        time.sleep(2)
    deadline = min(deadline, time.time()) + 2 * RUN_WAIT_S
    while not all(j.done() for j in submitted.values()) and time.time() < deadline:
        time.sleep(2)
    if not all(j.done() for j in submitted.values()):
        for job in submitted.values():
            job.cancel(check=False)
        pytest.fail(f"Slurm jobs {[j.job_id for j in submitted.values()]} did not finish "
                    f"(states {[j.state for j in submitted.values()]})")
    results = {kind: job.results() for kind, job in submitted.items()}  # raises with the job's log on failure
    for kind, per_task in results.items():
        assert [r["world_size"] for r in per_task] == [2, 2] and per_task[0]["run_hash"] == per_task[1]["run_hash"]
    assert results["hierarchical"][0]["grid"] == "2x1"  # X = Slurm's tasks per node
    ring, torus = _train_log(jobs["ring"]), _train_log(jobs["hierarchical"])
    assert [line["global_batch"] for line in ring] == [16] * 16 + [32] * 8
    assert [line["accumulation"] for line in ring] == [1] * 16 + [2] * 8  # 8 per rank per pass
    assert all(line["rank_samples"] * 2 == line["global_batch"] for line in ring)
    assert [line["lr"] for line in torus] == [line["lr"] for line in ring]
    assert [line["loss"] for line in torus] == pytest.approx([line["loss"] for line in ring], rel=1e-5)
