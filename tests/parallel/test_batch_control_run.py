"""The batch-control recipe as a training run: the per-step log follows the schedule exactly (global batch,
accumulation, learning rate), resume is exact, ring and torus give the same loss curve on two gloo ranks,
and bad configs fail before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from experiments.batch_control import RecipeRunConfig, load_run_config, run_recipe, validate
from lab.stages.batch_control import BatchControlJob, run_batch_control
from lab.core.config import ConfigError
from lab.data.real import REAL_DATASETS
from lab.core.distributed import DistributedContext
from lab.models import create_model
from lab.parallel import BatchPhase, BatchSchedule, BatchScheduleConfig, lr_for
from lab.train.batch_control import ScheduleMismatchError, train_on_schedule
from lab.parallel.hooks import TorusHookState, torus_hook
from ranks import run_ranks

SMALL = ["recipe.batch.dataset_size=128", "recipe.batch.phases=[{start_epoch:0,global_batch:16},"
         "{start_epoch:2,global_batch:32}]", "recipe.batch.max_rank_batch=8", "recipe.lr.base_batch=16",
         "data.test_size=200", "image_size=12"]


def toy(tmp_path: Path, *overrides: str) -> RecipeRunConfig:
    """The CPU toy recipe, halved: 128 images, global batch 16 for two epochs then 32, at most 8 per pass."""
    return load_run_config([f"root={tmp_path}", "recipe.launcher.name=debug", *SMALL, *overrides])


def job_of(config: RecipeRunConfig) -> BatchControlJob:
    job = config.job()
    job.threads = 1
    return job


def train_log(job: BatchControlJob) -> list[dict]:
    lines = [json.loads(line) for line in job.run_dir().metrics_path.read_text().splitlines()]
    return [line for line in lines if line["stage"] == "train"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[BatchControlJob, dict]:
    """One uninterrupted single-rank run with the square-root scaling rule."""
    job = job_of(toy(tmp_path_factory.mktemp("reference"), "recipe.lr.scaling=sqrt"))
    return job, run_batch_control(job)


def test_every_step_follows_the_schedule_and_the_lr_rule(reference):
    job, result = reference
    schedule = BatchSchedule(job.recipe.batch, 1)
    log = train_log(job)
    assert [line["step"] for line in log] == list(range(schedule.total_steps)) == list(range(8 + 8 + 4 + 4))
    for line in log:
        plan = schedule.plan(line["step"])
        assert (line["epoch"], line["position"], line["global_batch"]) == (plan.epoch, plan.position, plan.global_batch)
        assert line["rank_samples"] == plan.global_batch  # one rank sees the whole global batch...
        assert (line["accumulation"], line["micro_batch"]) == (plan.accumulation, 8)  # ...8 at a time
        assert line["lr"] == pytest.approx(lr_for(plan, job.recipe.lr, schedule), rel=1e-12)
    assert [line["accumulation"] for line in log] == [2] * 16 + [4] * 8
    warm = [line["lr"] for line in log[:8]]
    assert warm == pytest.approx([0.1 * (k + 1) / 8 for k in range(8)])  # warm-up over epoch 0 at batch 16
    assert log[16]["lr"] == pytest.approx(0.1 * 2 ** 0.5 * (1 - (2 + 1 / 4 - 1) / 3) ** 2)  # sqrt rule, poly decay
    assert result["global_batches"] == [16, 16, 32, 32] and result["resumed_from_step"] == 0
    assert log[-1]["loss"] < log[0]["loss"] and result["metrics"]["top1"] > 0.3  # it learns (chance: 0.1)


def test_an_interrupted_run_resumes_exactly(reference, tmp_path):
    job, result = reference
    interrupted = job_of(toy(tmp_path, "recipe.lr.scaling=sqrt", "checkpoint_every=5"))

    class Preempted(Exception):
        pass

    original, calls = torch.optim.SGD.step, {"n": 0}

    def step_then_die(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 13:
            raise Preempted
        return original(self, *args, **kwargs)

    torch.optim.SGD.step = step_then_die
    try:
        with pytest.raises(Preempted):
            run_batch_control(interrupted)
    finally:
        torch.optim.SGD.step = original
    resumed = run_batch_control(interrupted)
    assert resumed["resumed_from_step"] == 10  # the last checkpoint: step 10, epoch 1 position 2
    assert resumed["metrics"] == result["metrics"]
    reference_log = {line["step"]: line for line in train_log(job)}
    for line in train_log(interrupted)[-(24 - 10):]:
        assert line == reference_log[line["step"]]

    # the same checkpoint under another schedule (the batch doubles one epoch earlier) is refused
    other = BatchSchedule(BatchScheduleConfig(epochs=4, dataset_size=128, max_rank_batch=8,
                                              phases=[BatchPhase(0, 16), BatchPhase(1, 32)]), 1)
    model = create_model(job.recipe.model, num_classes=10)
    with pytest.raises(ScheduleMismatchError, match="batch schedule puts step"):
        train_on_schedule(model, torch.zeros(128, 1, 12, 12), torch.zeros(128, dtype=torch.long), other,
                          job.recipe.lr, torch.optim.SGD(model.parameters(), lr=0.1), DistributedContext(),
                          run=interrupted.run_dir())


def _two_rank_run(context, kind: str, root: str) -> dict:
    config = load_run_config([f"root={root}", "recipe.launcher.name=local", "recipe.launcher.tasks_per_node=2",
                              f"recipe.allreduce.kind={kind}", "recipe.allreduce.grid_x=2", *SMALL])
    job = job_of(config)
    return {"result": run_batch_control(job), "log": train_log(job) if context.is_main else []}


def test_two_ranks_follow_the_schedule_and_torus_matches_ring(tmp_path):
    REAL_DATASETS.get("mnist")()  # cached before the fork: the ranks inherit it
    ring = run_ranks(_two_rank_run, 2, tmp_path / "ring", "ring", str(tmp_path / "runs"))
    torus = run_ranks(_two_rank_run, 2, tmp_path / "torus", "torus2d", str(tmp_path / "runs"))
    assert torus[0]["result"]["grid"] == "2x1" and ring[0]["result"]["grid"] is None
    assert torus[0]["result"]["run_hash"] != ring[0]["result"]["run_hash"]
    ring_log, torus_log = ring[0]["log"], torus[0]["log"]
    assert [line["accumulation"] for line in ring_log] == [1] * 16 + [2] * 8  # 8 per rank, then 16 in two passes
    assert all(line["rank_samples"] * 2 == line["global_batch"] for line in ring_log)
    assert [line["lr"] for line in torus_log] == [line["lr"] for line in ring_log]
    assert ring_log[16]["lr"] == pytest.approx(0.1 * 2 * (1 - (2 + 1 / 4 - 1) / 3) ** 2)  # linear rule at batch 32
    assert [line["loss"] for line in torus_log] == pytest.approx([line["loss"] for line in ring_log], rel=1e-5)
    assert torus[0]["result"]["metrics"]["loss"] == pytest.approx(ring[0]["result"]["metrics"]["loss"], rel=1e-4)


@pytest.mark.parametrize("overrides, message", [
    (["recipe.batch.dataset_size=5000"], "holds 4800 training images"),
    (["recipe.launcher.tasks_per_node=2"], "debug runs one process"),
    (["recipe.batch.phases=[{start_epoch:0,global_batch:30}]", "recipe.launcher.name=local",
      "recipe.launcher.tasks_per_node=4"], "multiple of the 4 ranks"),
    (["recipe.allreduce.kind=torus2d", "recipe.allreduce.grid_x=3", "recipe.launcher.name=local",
      "recipe.launcher.tasks_per_node=2"], "does not divide the world size 2"),
    (["recipe.model.name=resnet_50"], "unknown model"),
    (["recipe.mixed_precision=fp8"], "mixed_precision"),
])
def test_bad_configs_fail_before_any_work(tmp_path, overrides, message):
    with pytest.raises(Exception, match=message):
        validate(toy(tmp_path, *overrides))
    assert not (tmp_path / "batch_control").exists()


def test_unknown_keys_and_recipes_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="max_rank_batc"):
        toy(tmp_path, "recipe.batch.max_rank_batc=4")
    with pytest.raises(ConfigError, match="batch_control_toy"):
        toy(tmp_path, "recipe=no_such_recipe")


def test_the_resnet50_recipe_composes_for_the_cluster(tmp_path):
    config = load_run_config(["recipe=resnet50_batch_control"])
    assert config.recipe.model.name == "resnet50" and config.recipe.world_size == 2176
    assert config.recipe.launcher.name == "slurm" and config.recipe.allreduce.kind == "hierarchical"


def test_the_torus_hook_hands_ddp_a_future():
    """DDP overlaps a bucket's communication with the rest of backward only while the hook's future is
    pending; the torus hook does its work before returning, so its future is already complete (no overlap)."""
    assert torus_hook.__annotations__["return"] == torch.futures.Future[torch.Tensor]

    class Bucket:
        def buffer(self) -> torch.Tensor:
            return torch.ones(6)

    class OneRank:  # a 1x1 grid: the all-reduce is the identity, no process group needed
        grid = type("Grid", (), {"x": 1, "y": 1})()

    future = torus_hook(TorusHookState(OneRank(), 1, None), Bucket())
    assert isinstance(future, torch.futures.Future) and future.done()
    assert torch.equal(future.value(), torch.ones(6))


@pytest.mark.slow
def test_lab_train_runs_two_local_tasks_end_to_end(tmp_path):
    """The whole path of `lab train`: the local executor starts two processes that meet over gloo."""
    config = load_run_config([f"root={tmp_path}", "recipe.launcher.tasks_per_node=2", "recipe.allreduce.kind=torus2d",
                              *SMALL])
    result = run_recipe(config)
    assert (result["world_size"], result["grid"], result["steps"]) == (2, "2x1", 24)
    assert len(train_log(config.job())) == 24
