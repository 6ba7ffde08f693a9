"""The torus all-reduce against the backend's all-reduce on real gloo ranks (forked, loopback rendezvous)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from lab.core.distributed import DistributedContext
from lab.parallel import AllReduceConfig, BatchPhase, BatchSchedule, BatchScheduleConfig, GridError, LRScheduleConfig
from lab.parallel import register_allreduce
from lab.parallel.agreement import compare_with_allreduce
from lab.train.batch_control import train_batch_controlled
from ranks import run_ranks

GRIDS_OF_4 = [(1, 4), (2, 2), (4, 1)]


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


def _ddp_gradients(world: DistributedContext, config: AllReduceConfig) -> list[torch.Tensor]:
    model = DistributedDataParallel(_tiny_model(), bucket_cap_mb=0.0001)  # several buckets
    register_allreduce(model, config, world)
    x = torch.randn(4, 7, generator=torch.Generator().manual_seed(world.rank))
    model(x).pow(2).sum().backward()
    return [p.grad.clone() for p in model.parameters()]


def _agreement_on_grids(world: DistributedContext, grids: list[tuple[int, int]], local_size: int | None):
    results = {}
    for x, y in grids:
        for compression in ("none", "bf16"):
            config = AllReduceConfig("torus2d", grid_x=x, grid_y=y, compression=compression)
            results[(x, y, compression)] = compare_with_allreduce(config, world, local_size=local_size)
    hierarchical = compare_with_allreduce(AllReduceConfig("hierarchical"), world, local_size=local_size)
    ring = _ddp_gradients(world, AllReduceConfig("ring"))
    torus = {grid: _ddp_gradients(world, AllReduceConfig("torus2d", grid_x=grid[0])) for grid in grids}
    torus["torus2d bf16"] = _ddp_gradients(world, AllReduceConfig("torus2d", grid_x=grids[0][0], compression="bf16"))
    torus["ring bf16"] = _ddp_gradients(world, AllReduceConfig("ring", compression="bf16"))
    gaps = {grid: max(float((a - b).abs().max()) for a, b in zip(ring, grads)) for grid, grads in torus.items()}
    return results, hierarchical, gaps, [g.flatten() for g in torus[grids[0]]]


@pytest.mark.parametrize("world, grids, local_size", [(4, GRIDS_OF_4, 2), (6, [(2, 3), (3, 2)], 3)])
def test_torus_sums_and_ddp_gradients_match_the_standard_allreduce(tmp_path, world, grids, local_size):
    per_rank = run_ranks(_agreement_on_grids, world, tmp_path, grids, local_size)
    for results, hierarchical, gaps, _ in per_rank:
        for (x, y, compression), agreement in results.items():
            assert agreement.grid == f"{x}x{y}"
            tolerance = 1e-5 if compression == "none" else 0.1  # bf16 keeps ~3 significant digits of sums ~ 2
            assert agreement.max_abs_error < tolerance, (x, y, compression, agreement)
        assert hierarchical.grid == f"{local_size}x{world // local_size}" and hierarchical.max_abs_error < 1e-5
        assert max(gap for grid, gap in gaps.items() if "bf16" not in grid) < 1e-6, gaps
        assert 0 < gaps["torus2d bf16"] < 0.05 and gaps["ring bf16"] < 0.05, gaps
    for key in per_rank[0][0]:  # the shards are summed once and copied: every rank holds the same numbers
        assert len({results[key].checksum for results, *_ in per_rank}) == 1
    first_grads = [torch.cat(rank[3]) for rank in per_rank]
    assert all(torch.equal(first_grads[0], g) for g in first_grads)


def _start_up_errors(world: DistributedContext) -> list[str]:
    messages = []
    for config, local_size in [(AllReduceConfig("torus2d", grid_x=2, grid_y=3), None),
                               (AllReduceConfig("hierarchical", grid_x=3), 4)]:
        model = DistributedDataParallel(_tiny_model())
        try:
            register_allreduce(model, config, world, local_size=local_size)
        except GridError as error:
            messages.append(str(error))
    dist.barrier()  # every rank got here: nobody hung in a half-built group
    return messages


def test_a_grid_that_does_not_fit_fails_on_every_rank_at_start_up(tmp_path):
    per_rank = run_ranks(_start_up_errors, 4, tmp_path)
    for messages in per_rank:
        assert len(messages) == 2
        assert "2x3 has 6 ranks but the job has 4" in messages[0]
        assert "does not divide the 4 processes per node" in messages[1]


def _loss_curve(world: DistributedContext, kind: str) -> list[float]:
    inputs = torch.randn(96, 7, generator=torch.Generator().manual_seed(1))
    targets = torch.randint(0, 3, (96,), generator=torch.Generator().manual_seed(2))
    schedule = BatchSchedule(BatchScheduleConfig(epochs=4, dataset_size=96, max_rank_batch=4,
                                                 phases=[BatchPhase(0, 16), BatchPhase(2, 32)]), world.world_size)
    model = DistributedDataParallel(_tiny_model())
    register_allreduce(model, AllReduceConfig(kind, grid_x=2), world)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    lr = LRScheduleConfig(base_lr=0.05, base_batch=16, warmup_epochs=1, decay="cosine")
    return train_batch_controlled(model, inputs, targets, schedule, lr, optimizer, world, label_smoothing=0.1)


def test_training_follows_the_same_loss_curve_with_ring_and_torus(tmp_path):
    ring = run_ranks(_loss_curve, 4, tmp_path / "ring", "ring")
    torus = run_ranks(_loss_curve, 4, tmp_path / "torus", "torus2d")
    assert len(ring[0]) == 6 * 2 + 3 * 2  # 96/16 steps per epoch, then 96/32: accumulation 1 then 2
    for rank in range(4):
        assert torus[rank] == pytest.approx(ring[rank], rel=1e-5, abs=1e-6)
    assert ring[0][-1] < ring[0][0]
