"""Batch-size control: the schedule, accumulation, learning rate and label smoothing follow the config exactly."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lab.parallel import BatchPhase, BatchSchedule, BatchScheduleConfig, LRScheduleConfig, load_recipe, lr_for
from lab.parallel import peak_lr, smoothed_cross_entropy
from lab.parallel.batch_schedule import accumulation_for

RECIPE = Path(__file__).resolve().parents[2] / "experiments" / "conf" / "recipe" / "resnet50_batch_control.yaml"


def small_schedule(world: int = 4, max_rank_batch: int = 4) -> BatchSchedule:
    """The paper's shape scaled down: batch 16 for two epochs, then 32, on 100 samples."""
    config = BatchScheduleConfig(epochs=4, dataset_size=100, max_rank_batch=max_rank_batch,
                                 phases=[BatchPhase(0, 16), BatchPhase(2, 32)])
    return BatchSchedule(config, world)


def test_global_batch_and_steps_follow_the_phases():
    schedule = small_schedule()
    assert [schedule.global_batch(e) for e in range(4)] == [16, 16, 32, 32]
    assert schedule.total_steps == 6 + 6 + 3 + 3  # 100 // 16, then 100 // 32 (drop last)
    plans = [schedule.plan(s) for s in range(schedule.total_steps)]
    assert [p.epoch for p in plans] == [0] * 6 + [1] * 6 + [2] * 3 + [3] * 3
    assert [p.position for p in plans[:7]] == [0, 1, 2, 3, 4, 5, 0]
    assert {(p.global_batch, p.rank_batch, p.accumulation, p.micro_batch) for p in plans[:12]} == {(16, 4, 1, 4)}
    assert {(p.global_batch, p.rank_batch, p.accumulation, p.micro_batch) for p in plans[12:]} == {(32, 8, 2, 4)}
    with pytest.raises(IndexError):
        schedule.plan(schedule.total_steps)


def test_ranks_and_micro_batches_cover_each_global_batch_exactly_once():
    schedule = small_schedule()
    for step in range(schedule.total_steps):
        plan = schedule.plan(step)
        parts = [mb for rank in range(4) for mb in schedule.micro_batches(step, rank)]
        assert len(parts) == 4 * plan.accumulation and all(len(mb) == plan.micro_batch for mb in parts)
        assert torch.equal(torch.cat(parts), schedule.global_indices(step))
    for epoch in range(4):  # within an epoch no sample repeats
        steps = [s for s in range(schedule.total_steps) if schedule.plan(s).epoch == epoch]
        seen = torch.cat([schedule.global_indices(s) for s in steps])
        assert len(set(seen.tolist())) == len(seen) == len(steps) * schedule.global_batch(epoch)


@pytest.mark.parametrize("rank_batch, limit, expected", [(8, 8, 1), (16, 8, 2), (12, 8, 2), (34, 16, 17), (5, 4, 5)])
def test_accumulation_is_the_fewest_equal_micro_batches_that_fit(rank_batch, limit, expected):
    assert accumulation_for(rank_batch, limit) == expected


@pytest.mark.parametrize("phases, message", [
    ([BatchPhase(1, 16)], "start at epoch 0"),
    ([BatchPhase(0, 18)], "multiple of the 4 ranks"),
    ([BatchPhase(0, 16), BatchPhase(0, 32)], "increasing"),
    ([BatchPhase(0, 400)], "exceeds the dataset"),
])
def test_bad_schedules_are_rejected(phases, message):
    with pytest.raises(ValueError, match=message):
        BatchSchedule(BatchScheduleConfig(epochs=4, dataset_size=100, phases=phases), 4)


def test_warm_up_then_scaled_peak_then_decay():
    schedule = small_schedule()
    config = LRScheduleConfig(base_lr=0.1, base_batch=16, scaling="linear", warmup_epochs=1, decay="none")
    lrs = [lr_for(schedule.plan(s), config, schedule) for s in range(schedule.total_steps)]
    assert lrs[:6] == pytest.approx([0.1 * (k + 1) / 6 for k in range(6)])  # linear warm-up over epoch 0
    assert lrs[6:12] == pytest.approx([0.1] * 6)
    assert lrs[12:] == pytest.approx([0.2] * 6)  # batch doubled -> linear rule doubles the peak
    fixed = LRScheduleConfig(base_lr=0.1, base_batch=16, warmup_epochs=1, decay="none", rescale_on_batch_change=False)
    assert lr_for(schedule.plan(15), fixed, schedule) == pytest.approx(0.1)
    cosine = LRScheduleConfig(base_lr=0.1, base_batch=16, warmup_epochs=1, decay="cosine")
    assert lr_for(schedule.plan(schedule.total_steps - 1), cosine, schedule) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("rule, expected", [("linear", 0.1 * 64), ("sqrt", 0.1 * 8), ("none", 0.1)])
def test_scaling_rules(rule, expected):
    assert peak_lr(LRScheduleConfig(base_lr=0.1, base_batch=256, scaling=rule), 256 * 64) == pytest.approx(expected)


def test_label_smoothing_matches_its_definition():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 3, 1, 1, 2])
    log_p = F.log_softmax(logits, 1)
    expected = (0.9 * -log_p[torch.arange(5), targets] + 0.1 * -log_p.mean(1)).mean()
    assert smoothed_cross_entropy(logits, targets, 0.1).item() == pytest.approx(expected.item(), rel=1e-6)
    assert smoothed_cross_entropy(logits, targets).item() == pytest.approx(F.cross_entropy(logits, targets).item())
    with pytest.raises(ValueError):
        smoothed_cross_entropy(logits, targets, 1.0)


def test_the_resnet50_recipe_loads_and_its_schedule_is_the_papers():
    recipe = load_recipe(RECIPE)
    recipe.validate(recipe.world_size)
    assert recipe.world_size == 2176 and recipe.allreduce.kind == "hierarchical"
    schedule = BatchSchedule(recipe.batch, recipe.world_size)
    assert (schedule.global_batch(0), schedule.global_batch(89)) == (34816, 69632)
    assert schedule.plan(0).accumulation == 1 and schedule.plan(schedule.total_steps - 1).accumulation == 1
    assert lr_for(schedule.plan(0), recipe.lr, schedule) < lr_for(schedule.plan(200), recipe.lr, schedule)
    half = BatchSchedule(recipe.batch, recipe.world_size // 4)  # a quarter of the GPUs: accumulate instead
    assert half.plan(half.total_steps - 1).accumulation == 4
    assert math.isclose(peak_lr(recipe.lr, 34816), 0.1 * 34816 / 256)


def test_unknown_recipe_keys_are_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch:\n  max_rank_batc: 16\n")
    with pytest.raises(Exception, match="max_rank_batc"):
        load_recipe(bad)
