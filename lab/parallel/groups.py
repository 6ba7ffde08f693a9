"""Row and column process groups of a torus grid, built once per run.

`torch.distributed.new_group` is itself a collective over the whole world: every rank must create every
group, in the same order, even the groups it is not a member of. Building them all here, rows then columns,
in one fixed order, is what keeps ranks from deadlocking on a mismatched creation sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist

from lab.parallel.grid import TorusGrid


@dataclass(frozen=True)
class TorusGroups:
    grid: TorusGrid
    rank: int
    row: dist.ProcessGroup  # this rank's row (size X)
    column: dist.ProcessGroup  # this rank's column (size Y)
    row_ranks: tuple[int, ...]  # global ranks of the row, in column order

    @property
    def position(self) -> int:
        """This rank's index within its row: it owns shard `position` after the reduce-scatter."""
        return self.grid.column_of(self.rank)

    @classmethod
    def build(cls, grid: TorusGrid) -> "TorusGroups":
        rank = dist.get_rank()
        rows = [dist.new_group(grid.row_ranks(r)) for r in range(grid.y)]
        columns = [dist.new_group(grid.column_ranks(c)) for c in range(grid.x)]
        row = grid.row_of(rank)
        return cls(grid, rank, rows[row], columns[grid.column_of(rank)], tuple(grid.row_ranks(row)))
