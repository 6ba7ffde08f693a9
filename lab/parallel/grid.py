"""The X x Y layout of ranks for the 2D-torus all-reduce, and the start-up checks that make a bad one loud.

Rank r sits in row r // X at column r % X. Launchers place consecutive ranks on the same node (Slurm's
default block distribution), so when X divides the processes per node every row stays inside one node: the
row phases use the fast intra-node links and only the column all-reduce crosses the network.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from lab.parallel.config import AllReduceConfig


class GridError(ValueError):
    """The requested grid cannot be laid over this job's ranks; raised on every rank before any group exists."""


@dataclass(frozen=True)
class TorusGrid:
    x: int  # ranks per row (reduce-scatter / all-gather)
    y: int  # ranks per column (all-reduce of shards)

    @property
    def size(self) -> int:
        return self.x * self.y

    def row_of(self, rank: int) -> int:
        return rank // self.x

    def column_of(self, rank: int) -> int:
        return rank % self.x

    def row_ranks(self, row: int) -> list[int]:
        return [row * self.x + c for c in range(self.x)]

    def column_ranks(self, column: int) -> list[int]:
        return [r * self.x + column for r in range(self.y)]

    def __str__(self) -> str:
        return f"{self.x}x{self.y}"


_SLURM_TASKS = re.compile(r"^(\d+)")


def processes_per_node(environ: dict[str, str] | None = None) -> int | None:
    """Processes on this node as the launcher tells it (torchrun/submitit, then Slurm); None if nobody says."""
    env = os.environ if environ is None else environ
    for name in ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE", "SUBMITIT_LOCAL_NTASKS"):
        match = _SLURM_TASKS.match(env.get(name, ""))  # SLURM_TASKS_PER_NODE looks like "4(x2)"
        if match:
            return int(match.group(1))
    return None


def resolve_grid(config: AllReduceConfig, world_size: int, local_size: int | None) -> TorusGrid:
    """The grid `config` asks for on `world_size` ranks, or a GridError saying what does not fit."""
    config.validate()
    if config.kind == "hierarchical" and local_size is None:
        raise GridError("allreduce.kind=hierarchical needs the processes per node, but none of LOCAL_WORLD_SIZE, "
                        "SLURM_NTASKS_PER_NODE, SLURM_TASKS_PER_NODE is set; launch through Slurm/submitit "
                        "or use kind=torus2d with an explicit grid_x")
    x = config.grid_x or local_size
    if x is None:
        raise GridError("allreduce.grid_x=0 means 'processes per node', but the launcher did not say how many; "
                        "set allreduce.grid_x")
    if config.kind == "hierarchical" and local_size % x:
        raise GridError(f"allreduce.kind=hierarchical: grid_x={x} does not divide the {local_size} processes per "
                        f"node, so a row would span two nodes; use a divisor of {local_size}")
    if world_size % x:
        raise GridError(f"allreduce grid_x={x} does not divide the world size {world_size}")
    y = config.grid_y or world_size // x
    if x * y != world_size:
        raise GridError(f"allreduce grid {x}x{y} has {x * y} ranks but the job has {world_size}; "
                        f"use grid_y={world_size // x} or grid_y=0")
    return TorusGrid(x, y)
