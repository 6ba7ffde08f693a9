"""What a job asks of its executor: the launcher section of every study config.

A plain dataclass, so a recipe or study config can hold it without importing the executors; the executors
themselves (local, debug, slurm) and the check that the name is one of them live in lab.run.launch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class LauncherConfig:
    """Where jobs run. The Slurm fields are ignored by the local and debug executors (local runs tasks_per_node
    processes per job, debug one)."""

    name: str = "local"  # local | debug | slurm
    max_parallel: int = 2  # local: jobs at once
    timeout_min: int = 120
    threads_per_job: int = 0  # 0: local: the machine's cores shared between parallel jobs; slurm: cpus_per_task
    partition: str = ""  # "" = the cluster's default partition
    cpus_per_task: int = 1
    tasks_per_node: int = 1  # > 1: one DDP process per task
    nodes: int = 1
    mem_gb: float = 2.0
    gpus_per_node: int = 0
    array_parallelism: int = 64
    signal_delay_s: int = 90  # submitit asks for SIGUSR2 this long before the time limit, to requeue
    extra_sbatch: dict[str, str] = field(default_factory=dict)  # e.g. {account: myproj, qos: high}

    def validate(self) -> None:
        for key in ("max_parallel", "timeout_min", "cpus_per_task", "tasks_per_node", "nodes", "array_parallelism"):
            if getattr(self, key) <= 0:
                raise ValueError(f"launcher.{key} must be positive, got {getattr(self, key)}")
        if self.mem_gb <= 0 or self.gpus_per_node < 0:
            raise ValueError("launcher.mem_gb must be positive and launcher.gpus_per_node >= 0")
        if self.name == "slurm" and self.timeout_min * 60 <= self.signal_delay_s + 60:
            # Slurm may signal up to 60 s early: the job would be told to requeue the moment it starts
            raise ValueError(f"launcher.timeout_min={self.timeout_min} leaves no time before the requeue signal "
                             f"(signal_delay_s={self.signal_delay_s}); raise it or lower signal_delay_s")

    def threads(self) -> int:
        if self.threads_per_job > 0:
            return self.threads_per_job
        if self.name == "slurm":
            return self.cpus_per_task
        return max(1, (os.cpu_count() or 1) // self.max_parallel)
