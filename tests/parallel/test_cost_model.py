"""The alpha-beta cost model reproduces the paper's step and byte counts."""

from __future__ import annotations

import pytest

from lab.parallel.cost_model import COST_MODELS, cost_table, format_cost_table, plot_costs

M = 100e6


@pytest.mark.parametrize("x, y", [(1, 4), (2, 2), (2, 3), (4, 1), (4, 544), (8, 16)])
def test_torus_moves_the_rings_bytes_in_fewer_steps(x, y):
    n = x * y
    ring, torus = COST_MODELS.get("ring")(M, x, y), COST_MODELS.get("torus2d")(M, x, y)
    assert torus.bytes_per_rank == pytest.approx(ring.bytes_per_rank) == pytest.approx(2 * (n - 1) / n * M)
    assert (ring.steps, torus.steps) == (2 * (n - 1), 2 * (x - 1) + 2 * (y - 1))


def test_a_flat_grid_is_a_ring_and_the_leader_scheme_moves_more_bytes():
    assert COST_MODELS.get("torus2d")(M, 1, 8) == COST_MODELS.get("ring")(M, 1, 8)
    assert COST_MODELS.get("torus2d")(M, 8, 1) == COST_MODELS.get("ring")(M, 8, 1)
    hierarchical, torus = COST_MODELS.get("hierarchical")(M, 4, 16), COST_MODELS.get("torus2d")(M, 4, 16)
    assert hierarchical.steps == torus.steps and hierarchical.bytes_per_rank > torus.bytes_per_rank
    assert COST_MODELS.get("tree")(M, 4, 4).steps == 8


def test_table_and_plot(tmp_path):
    rows = cost_table(M, [(2, 2), (4, 544)], alpha=5e-6, beta=1e-10)
    assert len(rows) == 2 * len(COST_MODELS.names())
    text = format_cost_table(rows)
    assert "torus2d" in text and "4x544" in text
    plot_costs(M, 4, [1, 4, 16, 64], 5e-6, 1e-10, tmp_path / "costs.png")
    assert (tmp_path / "costs.png").stat().st_size > 0
