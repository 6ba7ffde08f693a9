"""Grid layout and the start-up errors of a grid that does not fit (single process, no groups)."""

from __future__ import annotations

import pytest

from lab.parallel import AllReduceConfig, GridError, TorusGrid, processes_per_node, resolve_grid
from lab.parallel.torus import padded_length


@pytest.mark.parametrize("x, y", [(1, 4), (2, 2), (2, 3), (4, 1)])
def test_rows_and_columns_partition_the_ranks(x, y):
    grid = resolve_grid(AllReduceConfig("torus2d", grid_x=x), x * y, None)
    assert (grid.x, grid.y) == (x, y)
    rows = sorted(r for row in range(y) for r in grid.row_ranks(row))
    columns = sorted(r for column in range(x) for r in grid.column_ranks(column))
    assert rows == columns == list(range(x * y))
    assert all(grid.row_of(r) == r // x and r in grid.row_ranks(grid.row_of(r)) for r in range(x * y))


def test_grid_x_zero_means_processes_per_node():
    assert resolve_grid(AllReduceConfig("hierarchical"), 8, 4) == TorusGrid(4, 2)
    assert resolve_grid(AllReduceConfig("hierarchical", grid_x=2), 8, 4) == TorusGrid(2, 4)


@pytest.mark.parametrize("config, world, local, message", [
    (AllReduceConfig("torus2d", grid_x=3), 4, None, "does not divide the world size 4"),
    (AllReduceConfig("torus2d", grid_x=2, grid_y=3), 4, None, "2x3 has 6 ranks but the job has 4"),
    (AllReduceConfig("hierarchical", grid_x=3), 12, 4, "does not divide the 4 processes per node"),
    (AllReduceConfig("hierarchical"), 4, None, "needs the processes per node"),
    (AllReduceConfig("torus2d"), 4, None, "set allreduce.grid_x"),
])
def test_bad_grids_are_clear_errors(config, world, local, message):
    with pytest.raises(GridError, match=message):
        resolve_grid(config, world, local)


@pytest.mark.parametrize("field, value", [("kind", "butterfly"), ("compression", "int8"), ("grid_x", -1)])
def test_bad_config_values_name_the_valid_ones(field, value):
    config = AllReduceConfig("torus2d", grid_x=2)
    setattr(config, field, value)
    with pytest.raises(ValueError, match=field):
        config.validate()


@pytest.mark.parametrize("environ, expected", [
    ({"LOCAL_WORLD_SIZE": "4", "SLURM_NTASKS_PER_NODE": "8"}, 4),
    ({"SLURM_NTASKS_PER_NODE": "2"}, 2),
    ({"SLURM_TASKS_PER_NODE": "4(x3)"}, 4),
    ({}, None),
])
def test_processes_per_node_from_the_launcher(environ, expected):
    assert processes_per_node(environ) == expected


@pytest.mark.parametrize("numel, x, expected", [(10, 4, 12), (12, 4, 12), (1, 3, 3), (7, 1, 7)])
def test_padding_to_a_multiple_of_x(numel, x, expected):
    assert padded_length(numel, x) == expected
