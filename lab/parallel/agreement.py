"""Check, on a live process group, that the torus all-reduce sums what the backend's all-reduce sums.

Used by the multi-process tests and sent as the job of the Slurm test (a job's Python can import `lab` but
not the test modules).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from lab.core.distributed import DistributedContext, init_distributed
from lab.parallel.config import AllReduceConfig
from lab.parallel.grid import processes_per_node, resolve_grid
from lab.parallel.groups import TorusGroups
from lab.parallel.torus import torus_allreduce_


@dataclass(frozen=True)
class Agreement:
    rank: int
    world_size: int
    grid: str
    local_size: int | None
    max_abs_error: float  # against dist.all_reduce
    checksum: float  # equal on every rank when the ranks agree


def compare_with_allreduce(config: AllReduceConfig, world: DistributedContext, numel: int = 1001,
                           local_size: int | None = None, seed: int = 0) -> Agreement:
    """Torus-sum and all_reduce-sum a rank-dependent random vector of odd length (so padding is exercised)."""
    local_size = processes_per_node() if local_size is None else local_size
    grid = resolve_grid(config, world.world_size, local_size)
    groups = TorusGroups.build(grid)
    values = torch.randn(numel, generator=torch.Generator().manual_seed(seed * 7_919 + world.rank))
    expected = values.clone()
    dist.all_reduce(expected)
    torus_allreduce_(values, groups, config.compression_dtype)
    return Agreement(world.rank, world.world_size, str(grid), local_size,
                     float((values - expected).abs().max()), float(values.double().sum()))


def slurm_agreement_job(configs: list[AllReduceConfig]) -> list[list[Agreement]]:
    """The body of a multi-task Slurm job: join the job's process group (submitit's environment), compare, and
    return every rank's agreements (submitit keeps only task 0's return value, so rank 0 gathers them)."""
    world = init_distributed()
    try:
        mine = [compare_with_allreduce(config, world) for config in configs]
        everyone: list[list[Agreement]] = [[] for _ in range(world.world_size)]
        dist.all_gather_object(everyone, mine)
        return everyone
    finally:
        dist.destroy_process_group()
