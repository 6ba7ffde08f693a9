"""What the Slurm cluster offers, asked before anything is submitted.

A sweep with an unknown partition or resources no node has would otherwise sit in the queue forever
(or be rejected job by job); `check_request` turns that into one clear error up front.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache

from lab.core.launcher import parse_slurm_time


class SlurmError(RuntimeError):
    """The cluster is unreachable or cannot run what was asked for."""


def _run(*command: str) -> str:
    if shutil.which(command[0]) is None:
        raise SlurmError(f"{command[0]} not found: is Slurm installed? (try: bash scripts/slurm-local.sh start)")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise SlurmError(f"{' '.join(command)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Partition:
    name: str
    max_cpus: int  # the most CPUs of one node
    max_memory_mb: int
    max_gpus: int
    max_time_min: int | None  # None = unlimited
    nodes: int


_parse_time = parse_slurm_time  # [days-]hours:minutes:seconds -> minutes; None for UNLIMITED


def partitions() -> dict[str, Partition]:
    out = _run("sinfo", "-h", "-N", "-o", "%P|%c|%m|%G|%l")
    found: dict[str, Partition] = {}
    for line in out.splitlines():
        name, cpus, memory, gres, limit = line.strip().split("|")
        name = name.rstrip("*")
        gpus = sum(int(m) for m in re.findall(r"gpu(?::[^:,()]+)?:(\d+)", gres))
        previous = found.get(name)
        node = Partition(name, int(cpus), int(re.sub(r"\D", "", memory) or 0), gpus, _parse_time(limit), 1)
        if previous:
            node = Partition(name, max(previous.max_cpus, node.max_cpus),
                             max(previous.max_memory_mb, node.max_memory_mb), max(previous.max_gpus, node.max_gpus),
                             node.max_time_min, previous.nodes + 1)
        found[name] = node
    return found


@lru_cache(maxsize=1)
def max_array_size() -> int:
    """Slurm's MaxArraySize: array task ids must stay below it, so larger arrays are split."""
    match = re.search(r"MaxArraySize\s*=\s*(\d+)", _run("scontrol", "show", "config"))
    return int(match.group(1)) if match else 1001


def default_partition() -> str:
    for line in _run("sinfo", "-h", "-o", "%P").split():
        if line.endswith("*"):
            return line.rstrip("*")
    raise SlurmError("the cluster has no default partition; set launcher.partition")


def check_request(partition: str, *, cpus_per_task: int, tasks_per_node: int, nodes: int, mem_gb: float,
                  gpus_per_node: int, time_min: int | None) -> None:
    """Raise SlurmError naming the problem if no node of `partition` can ever run such a job (time_min None:
    no time limit asked for)."""
    available = partitions()
    if partition not in available:
        raise SlurmError(f"unknown partition {partition!r}; valid partitions: {', '.join(sorted(available))}")
    part = available[partition]
    problems = []
    if cpus_per_task * tasks_per_node > part.max_cpus:
        problems.append(f"{cpus_per_task * tasks_per_node} CPUs per node requested, nodes have at most {part.max_cpus}")
    if mem_gb * 1024 > part.max_memory_mb:
        problems.append(f"{mem_gb} GB per node requested, nodes have at most {part.max_memory_mb / 1024:.1f} GB")
    if gpus_per_node > part.max_gpus:
        problems.append(f"{gpus_per_node} GPUs per node requested, nodes have {part.max_gpus}")
    if nodes > part.nodes:
        problems.append(f"{nodes} nodes requested, the partition has {part.nodes}")
    if part.max_time_min is not None and (time_min is None or time_min > part.max_time_min):
        asked = "no time limit" if time_min is None else f"{time_min} min"
        problems.append(f"{asked} requested, the partition allows {part.max_time_min} min")
    if problems:
        raise SlurmError(f"partition {partition!r} cannot run these jobs: " + "; ".join(problems))


def job_states(job_ids: list[str]) -> dict[str, str]:
    """Slurm state of each job or array task id (e.g. '12' or '12_3'): the controller's (squeue) for jobs still
    queued or running, since accounting lags behind it and lists a pending array's tasks not at all; accounting's
    (sacct) for finished ones; 'UNKNOWN' for ids neither knows."""
    if not job_ids:
        return {}
    arrays = ",".join(sorted({j.split("_")[0] for j in job_ids}))
    out = _run("sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", arrays)
    states: dict[str, str] = {}
    for line in out.splitlines():
        job_id, state = line.split("|")[:2]
        states[job_id] = state.split()[0]  # "CANCELLED by 0" -> "CANCELLED"
    queued = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", arrays], capture_output=True, text=True,
                            timeout=60)
    if queued.returncode == 0:  # non-zero: none of the jobs is in the queue any more ("Invalid job id")
        for line in queued.stdout.splitlines():
            if "|" in line:
                job_id, state = line.strip().split("|")[:2]
                states[job_id] = state
    return {j: states.get(j, "UNKNOWN") for j in job_ids}
