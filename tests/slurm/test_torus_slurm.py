"""The 2D-torus all-reduce inside a real 2-task Slurm job: ranks, world size and processes per node come from
Slurm through submitit's TorchDistributedEnvironment (via lab.core.distributed.init_distributed)."""

from __future__ import annotations

import time

import pytest
import submitit

from lab.parallel import AllReduceConfig
from lab.parallel.agreement import slurm_agreement_job

pytestmark = pytest.mark.slurm

QUEUE_WAIT_S = 1200  # the one-node cluster is shared: other people's sweeps may be ahead in the queue
RUN_WAIT_S = 240


def test_torus_matches_allreduce_in_a_two_task_slurm_job(slurm_partition, tmp_path):
    executor = submitit.SlurmExecutor(folder=tmp_path / "jobs")
    # >= 5 min: submitit asks for SIGUSR2 90 s before the limit and Slurm may send it up to 60 s early
    executor.update_parameters(partition=slurm_partition, nodes=1, ntasks_per_node=2, cpus_per_task=1,
                               time=5, mem="3GB", job_name="torus-allreduce-test")
    configs = [AllReduceConfig("hierarchical"),  # X from Slurm's tasks per node: a 2x1 grid, the row phases
               AllReduceConfig("torus2d", grid_x=1),  # a 1x2 grid: the column phase
               AllReduceConfig("hierarchical", compression="bf16")]
    job = executor.submit(slurm_agreement_job, configs)
    deadline = time.time() + QUEUE_WAIT_S
    while job.state in ("UNKNOWN", "PENDING") and time.time() < deadline:
        time.sleep(2)
    deadline = min(deadline, time.time()) + RUN_WAIT_S
    while not job.done() and time.time() < deadline:
        time.sleep(2)
    if not job.done():
        job.cancel(check=False)
        pytest.fail(f"Slurm job {job.job_id} did not finish (state {job.state}); queue: waited up to "
                    f"{QUEUE_WAIT_S} s, then {RUN_WAIT_S} s to run")
    per_task = job.task(0).result()  # submitit keeps task 0's result only; it gathers every rank's
    assert [[a.rank for a in task] for task in per_task] == [[0, 0, 0], [1, 1, 1]]
    for task in per_task:
        hierarchical, column, compressed = task
        assert (hierarchical.world_size, hierarchical.local_size, hierarchical.grid) == (2, 2, "2x1")
        assert column.grid == "1x2"
        assert hierarchical.max_abs_error < 1e-5 and column.max_abs_error < 1e-5 and compressed.max_abs_error < 0.1
    for index in range(3):
        assert per_task[0][index].checksum == per_task[1][index].checksum
