"""Fixtures for tests that need the real one-node Slurm cluster of scripts/slurm-local.sh."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

START_HINT = (
    "Start it (as root) with: bash scripts/slurm-local.sh start   (check: bash scripts/slurm-local.sh status)"
)


# "planned" is an idle node that the backfill scheduler has reserved for a pending job: up and usable.
USABLE_NODE_STATES = {"idle", "mixed", "allocated", "completing", "planned"}
# A node passes through transient states (e.g. after a test cancelled a job); wait this long before giving up.
NODE_WAIT_S = 60.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slurm: needs the local Slurm cluster from scripts/slurm-local.sh")


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=15, check=False)


def _why_unusable(partition: str) -> str | None:
    """Return why the cluster cannot be used, or None when sinfo and sacct both answer."""
    for tool in ("sinfo", "sacct", "sbatch"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed"
    try:
        sinfo = _run("sinfo", "-h", "-o", "%P %a")
        if sinfo.returncode != 0:
            return f"sinfo failed: {sinfo.stderr.strip()}"
        partitions = {line.split()[0].rstrip("*") for line in sinfo.stdout.splitlines() if line.strip()}
        if partition not in partitions:
            return f"partition '{partition}' not found (sinfo lists {sorted(partitions)})"
        deadline = time.monotonic() + NODE_WAIT_S
        states = set(_run("sinfo", "-h", "-p", partition, "-o", "%T").stdout.split())
        while not states & USABLE_NODE_STATES and time.monotonic() < deadline:
            time.sleep(1.0)
            states = set(_run("sinfo", "-h", "-p", partition, "-o", "%T").stdout.split())
        if not states & USABLE_NODE_STATES:
            return f"no usable node in partition '{partition}' (node states: {sorted(states)})"
        sacct = _run("sacct", "-n", "-X", "-S", "now-1hours", "-o", "JobID")
        if sacct.returncode != 0:
            return f"sacct failed (no accounting?): {sacct.stderr.strip()}"
    except subprocess.TimeoutExpired as exc:
        return f"'{' '.join(exc.cmd)}' timed out"
    return None


@pytest.fixture(scope="module")
def slurm_partition() -> str:
    """Detects the local cluster and returns the partition to submit to.

    Without a usable cluster the tests are skipped, except on CI (CI=true) where they fail loudly.
    """
    partition = os.environ.get("SLURM_LOCAL_PARTITION", "debug")
    reason = _why_unusable(partition)
    if reason is not None:
        message = f"No usable local Slurm cluster: {reason}. {START_HINT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return partition
