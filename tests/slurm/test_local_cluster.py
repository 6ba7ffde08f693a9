"""submitit against a real Slurm cluster (scripts/slurm-local.sh): results, arrays, cancel, errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import pytest
import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError
from submitit.slurm.slurm import SlurmJob

# The jobs unpickle our functions in a fresh interpreter that cannot import this test module,
# so ship the functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

WAIT_S = 60


def where_am_i(x: int) -> tuple[int, str, str]:
    return x * 10, os.environ["SLURM_JOB_ID"], os.environ["SLURM_JOB_PARTITION"]


def square(x: int) -> int:
    return x * x


def sleep_long() -> str:
    time.sleep(120)
    return "should have been cancelled"


def explode() -> None:
    raise ValueError("boom from the job")


def make_executor(folder: Path, partition: str) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(
        name="slurm-local-test",
        slurm_partition=partition,
        # Not shorter: submitit asks for SIGUSR2 90 s before the time limit and Slurm may send
        # it up to 60 s early (sbatch --signal), so a 2-minute job gets it right at start.
        timeout_min=5,
        cpus_per_task=1,
        slurm_mem="256M",
    )
    return executor


def sacct_states(job_id: str) -> dict[str, str]:
    """JobID -> State from accounting, one line per job or array task (no steps)."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobID,State"],
        capture_output=True, text=True, timeout=15, check=True,
    ).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if line)


def wait_until(predicate: Callable[[], bool], what: Callable[[], str], timeout_s: float = WAIT_S) -> None:
    """Poll predicate; on timeout fail with what() (evaluated then, so it shows the final state)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what()}")
        time.sleep(0.3)


def wait_done(job: SlurmJob) -> None:
    """Like job.wait(), but asks sacct every time and gives up instead of hanging."""
    wait_until(
        lambda: job.done(force_check=True),
        lambda: f"job {job.job_id} to finish (state {job.state}, log {job.paths.stderr})",
    )


@pytest.mark.slurm
def test_job_returns_its_result(slurm_partition: str, tmp_path: Path) -> None:
    job = make_executor(tmp_path, slurm_partition).submit(where_am_i, 4)
    assert isinstance(job, SlurmJob)
    wait_done(job)
    value, job_id, partition = job.result()
    assert value == 40
    assert job_id == job.job_id
    assert partition == slurm_partition


@pytest.mark.slurm
def test_map_array_of_three(slurm_partition: str, tmp_path: Path) -> None:
    jobs = make_executor(tmp_path, slurm_partition).map_array(square, [1, 2, 3])
    array_ids = {job.job_id.split("_")[0] for job in jobs}
    assert len(array_ids) == 1, f"expected one array job, got {[job.job_id for job in jobs]}"
    assert sorted(job.job_id.split("_")[1] for job in jobs) == ["0", "1", "2"]
    for job in jobs:
        wait_done(job)
    assert [job.result() for job in jobs] == [1, 4, 9]
    (array_id,) = array_ids
    # The result files appear just before the tasks end; accounting catches up within seconds.
    wait_until(
        lambda: sorted(sacct_states(array_id).values()) == ["COMPLETED"] * 3,
        lambda: f"sacct to show 3 COMPLETED tasks of array {array_id} (now {sacct_states(array_id)})",
    )


@pytest.mark.slurm
def test_cancelled_job_is_cancelled(slurm_partition: str, tmp_path: Path) -> None:
    job = make_executor(tmp_path, slurm_partition).submit(sleep_long)
    wait_until(
        lambda: job.get_info(mode="force").get("State") == "RUNNING",
        lambda: f"job {job.job_id} to run (state {job.state})",
    )
    job.cancel()
    wait_done(job)
    # submitit reports sacct's state verbatim, e.g. "CANCELLED by 0".
    assert job.state.startswith("CANCELLED"), f"state {job.state!r}, sacct {sacct_states(job.job_id)}"
    assert sacct_states(job.job_id)[job.job_id].startswith("CANCELLED")
    # result() must raise instead of hanging; it first waits for a result file that never
    # comes (15 s by default), so shorten that wait for this one job.
    job._results_timeout_s = 1
    with pytest.raises(UncompletedJobError):
        job.result()


@pytest.mark.slurm
def test_failing_job_raises_its_error(slurm_partition: str, tmp_path: Path) -> None:
    job = make_executor(tmp_path, slurm_partition).submit(explode)
    wait_done(job)
    with pytest.raises(FailedJobError, match="boom from the job"):
        job.result()
    assert "ValueError" in str(job.exception())
    wait_until(
        lambda: sacct_states(job.job_id).get(job.job_id) == "FAILED",
        lambda: f"sacct to show job {job.job_id} FAILED (now {sacct_states(job.job_id)})",
    )
