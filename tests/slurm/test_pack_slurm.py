"""Packed sweeps on the real local Slurm cluster (issue 20): several points in one job, each still a point of its own.

A pack interrupted by a preemption resumes at its first unfinished point (and that point from its checkpoint) with
the metrics of an uninterrupted run; a failing point is that point's failure while the others finish; a relaunch
after a kill submits exactly the unfinished points.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from experiments.sweep import SweepConfig, plan_sweep
from lab.core.config import load_config
from lab.run import sweep
from lab.run.pack import read_point_record
from lab.run.slurm import job_states
from tests.conftest import CONF_DIR
from tests.slurm.test_sweep_slurm import slurm_sweep, wait_until_settled

pytestmark = pytest.mark.slurm

# four fine-tunes from scratch: one pack (tasks_per_job defaults to 16 on Slurm), long enough to interrupt
FOUR_POINTS = ["study.n=[0]", "study.s=[10,20,30,40]", "study.finetune.steps=150", "study.finetune.checkpoint_every=20",
               "launcher.threads_per_job=1"]


def finetunes(plan: sweep.Plan) -> list[sweep.Task]:
    return [plan.task(point["task"]) for point in plan.points]


def wait_for(condition, timeout_s: float = 180.0, what: str = "") -> None:
    deadline = time.time() + timeout_s
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def attempts(task: sweep.Task) -> int:
    return len((Path(task.outputs[0]).parent / "attempts.jsonl").read_text().splitlines())


def test_a_preempted_pack_resumes_at_its_first_unfinished_point_with_the_metrics_of_an_uninterrupted_run(
        slurm_partition, tmp_path):
    import submitit

    config = slurm_sweep(tmp_path / "slurm", slurm_partition, *FOUR_POINTS)
    plan = plan_sweep(config)
    sweep.launch(plan, config.launcher)
    state = sweep.load_state(plan.folder)
    tasks = finetunes(plan)
    jobs = {state["tasks"][t.key]["job_ids"][-1] for t in tasks}
    assert len(jobs) == 1  # one job runs the four points
    first, second = tasks[0], tasks[1]
    wait_for(lambda: first.done() and any(Path(second.outputs[0]).parent.glob("**/last.pt")),
             what="the first point to finish and the second to checkpoint")
    first_written = Path(first.outputs[0]).stat().st_mtime_ns
    job = submitit.SlurmJob(plan.folder / "jobs", jobs.pop())
    try:
        job._interrupt()  # a preemption: USR2, submitit checkpoints the pack and requeues it
    except subprocess.CalledProcessError:
        pass  # the requeue can win the race against submitit's second scancel (see environment.md)

    table = wait_until_settled(plan.folder, timeout_s=300)
    assert table.state.tolist() == ["done"] * 4, table.to_string()
    assert Path(first.outputs[0]).stat().st_mtime_ns == first_written and attempts(first) == 1  # not run again
    assert attempts(second) == 2  # started twice ...
    resumed = [json.loads(path.read_text()).get("resumed_from_step", 0)  # its runs (learning-rate search included)
               for path in Path(second.outputs[0]).parent.glob("**/result.json")]
    assert max(resumed) > 0  # ... and resumed from its checkpoint
    assert all(attempts(t) == 1 for t in tasks[2:])

    reference = load_config(CONF_DIR, "sweep", SweepConfig, ["+experiment=sweep_toy", f"root={tmp_path / 'ref'}",
                                                                "launcher=debug", *FOUR_POINTS])
    reference_plan = plan_sweep(reference)
    sweep.launch(reference_plan, reference.launcher)
    for got, want in zip(tasks, finetunes(reference_plan)):
        assert json.loads(Path(got.outputs[0]).read_text())["metrics"] == \
            json.loads(Path(want.outputs[0]).read_text())["metrics"]


def test_a_failing_point_fails_alone_and_the_rest_of_its_pack_finishes(slurm_partition, tmp_path):
    config = slurm_sweep(tmp_path, slurm_partition, "study.n=[0]", "study.s=[10,20,30]", "study.finetune.steps=4")
    plan = plan_sweep(config)
    tasks = finetunes(plan)
    blocked = Path(tasks[1].outputs[0]).parent
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where the point's run directory should be\n")  # its stage cannot write anything
    sweep.launch(plan, config.launcher)
    assert len({sweep.load_state(plan.folder)["tasks"][t.key]["job_ids"][-1] for t in tasks}) == 1  # one pack

    table = wait_until_settled(plan.folder)
    assert table.state.tolist() == ["done", "failed", "done"], table.to_string()
    failed = table.iloc[1]
    assert "Error" in failed.error and str(blocked) in failed.error, failed.error
    assert failed.log == read_point_record(plan.folder / "jobs", tasks[1].key)["log"]  # the point's own log ...
    assert "Traceback" in Path(failed.log).read_text()  # ... with its traceback, and no other point's output
    assert tasks[0].key not in Path(failed.log).read_text()
    job = sweep.load_state(plan.folder)["tasks"][tasks[1].key]["job_ids"][-1]
    wait_for(lambda: job_states([job])[job] not in sweep.ACTIVE_STATES, timeout_s=60, what="the job to end")
    assert job_states([job])[job] == "FAILED"  # so Slurm would cancel what waits on this job

    blocked.unlink()
    relaunched = sweep.launch(plan, config.launcher)
    assert relaunched["submitted"] == 1 and relaunched["skipped_done"] == len(plan.tasks) - 1
    assert wait_until_settled(plan.folder).state.tolist() == ["done"] * 3


def test_a_relaunch_after_a_kill_submits_exactly_the_unfinished_points(slurm_partition, tmp_path):
    config = slurm_sweep(tmp_path, slurm_partition, *FOUR_POINTS)
    plan = plan_sweep(config)
    sweep.launch(plan, config.launcher)
    tasks = finetunes(plan)
    job = sweep.load_state(plan.folder)["tasks"][tasks[0].key]["job_ids"][-1]
    wait_for(lambda: tasks[0].done(), what="the first point to finish")
    subprocess.run(["scancel", job.split("_")[0]], check=True)
    wait_for(lambda: job_states([job])[job] == "CANCELLED", timeout_s=60, what="the job to be cancelled")
    table = sweep.status(plan.folder)
    finished = [t for t in tasks if t.done()]
    assert table.state.tolist() == ["done" if t.done() else "cancelled" for t in tasks], table.to_string()
    assert 1 <= len(finished) < 4

    relaunched = sweep.launch(plan, config.launcher)
    assert relaunched["submitted"] == 4 - len(finished) and relaunched["skipped_done"] == len(finished)
    state = sweep.load_state(plan.folder)
    assert all(len(state["tasks"][t.key]["job_ids"]) == 1 for t in finished)  # never submitted again
    assert wait_until_settled(plan.folder, timeout_s=300).state.tolist() == ["done"] * 4
    assert all(attempts(t) == 1 for t in finished)
