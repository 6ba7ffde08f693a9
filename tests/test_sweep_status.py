"""Watching a sweep (issue 19): per-stage counts, elapsed and ETA below the point table, whole failure reasons."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from submitit.core.utils import FailedJobError, UncompletedJobError

from experiments.cli import main
from lab.run import sweep
from lab.run.launch import LauncherConfig
from tests.test_sweep import fake_slurm, toy_sweep  # noqa: F401 (a fixture)


def runner_states(plan: sweep.Plan) -> dict[str, str]:
    path = plan.folder / sweep.LOCAL_STATUS_FILE
    return {key: info["state"] for key, info in json.loads(path.read_text()).items()} if path.exists() else {}


def wait_until(condition, timeout_s: float = 180.0) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        assert time.time() < deadline, "the local runner did not get there in time"
        time.sleep(0.3)


def staged_plan(root: Path) -> tuple[sweep.Plan, Path]:
    """render -> pretrain -> finetune with stdlib callables (the job subprocesses unpickle them): one pre-training
    waits for a `go` file, one fine-tune reads a missing file, one dies without a result."""
    out, go = root / "staged" / "out", root / "go"
    (out / "slow").mkdir(parents=True)  # the slow pre-training's own folder, as a run directory would be

    def task(key: str, stage: str, fn, job, depends: list[str] = (), output: str | None = None) -> sweep.Task:
        return sweep.Task(key=key, stage=stage, fn=fn, job=job, outputs=[str(out / (output or key))],
                          depends=list(depends))

    missing = out / ("an_input_whose_name_is_long_enough_to_be_cut_in_a_table_" * 2 + "that_is_missing")
    tasks = [
        task("render_a", "render", Path.touch, out / "render_a"),
        task("render_b", "render", Path.touch, out / "render_b"),
        task("pretrain_fast", "pretrain", Path.touch, out / "pretrain_fast", ["render_a"]),
        task("pretrain_slow", "pretrain", subprocess.run,
             ["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.2; done; touch {out / 'slow' / 'done'}"], ["render_b"],
             output="slow/done"),
        task("finetune_fast", "finetune", Path.touch, out / "finetune_fast", ["pretrain_fast"]),
        task("finetune_broken", "finetune", Path.read_text, missing, ["pretrain_fast"]),
        task("finetune_killed", "finetune", os._exit, 3, ["pretrain_fast"]),
        task("finetune_slow1", "finetune", Path.touch, out / "finetune_slow1", ["pretrain_slow"]),
        task("finetune_slow2", "finetune", Path.touch, out / "finetune_slow2", ["pretrain_slow"]),
    ]
    points = [{"point": t.key.split("_", 1)[1], "task": t.key} for t in tasks if t.stage == "finetune"]
    return sweep.Plan("staged", str(root), tasks, points), go


def test_status_counts_each_stage_gives_an_eta_and_whole_failure_reasons(tmp_path, capsys):
    plan, go = staged_plan(tmp_path)
    sweep.launch(plan, LauncherConfig(name="local", max_parallel=3, timeout_min=5))
    try:
        wait_until(lambda: runner_states(plan).get("pretrain_slow") == "RUNNING" and all(
            runner_states(plan).get(f"finetune_{k}") in ("COMPLETED", "FAILED") for k in ("fast", "broken", "killed")))
        progress = sweep.stage_progress(plan.folder)
        counts = progress.stages[["done", "running", "pending", "failed"]].to_dict("index")
        assert counts == {"render": {"done": 2, "running": 0, "pending": 0, "failed": 0},
                          "pretrain": {"done": 1, "running": 1, "pending": 0, "failed": 0},
                          "finetune": {"done": 1, "running": 0, "pending": 2, "failed": 2}}
        assert list(progress.stages.index) == ["render", "pretrain", "finetune"]  # the plan's order
        assert progress.stages.task_seconds.notna().all() and progress.eta_seconds is not None
        assert progress.elapsed_seconds > 0 and progress.parallel == 3
        text = sweep.format_progress(progress)
        assert "ETA ~" in text and "since the first launch" in text

        table = sweep.status(plan.folder).set_index("point")
        assert table.state.to_dict() == {"fast": "done", "broken": "failed", "killed": "failed", "slow1": "pending",
                                         "slow2": "pending"}
        broken = table.loc["broken"]
        assert broken.error == (f"finetune: FileNotFoundError: [Errno 2] No such file or directory: "
                                f"'{plan.task('finetune_broken').job}'")  # the whole line, path and all
        assert Path(broken.log).is_file() and "FileNotFoundError" in Path(broken.log).read_text()
        killed = table.loc["killed"]
        # os._exit in a warm worker: the job's process is gone; the runner says so and starts a fresh worker
        assert killed.error == "finetune: the job ended without a result (its worker process exited with code 3)"
        assert "UncompletedJobError" not in killed.error and Path(killed.log).is_file()

        assert main(["sweep", "status", "+experiment=sweep_toy", f"root={tmp_path}", "name=staged"]) == 0
        out = capsys.readouterr().out
        assert f"'{plan.task('finetune_broken').job}'" in out and f"log: {broken.log}" in out
        assert out.rstrip().splitlines()[-1].startswith("elapsed ")  # the summary ends the output
        assert "pretrain" in out.rstrip().splitlines()[-3]
    finally:
        go.touch()
        wait_until(lambda: not sweep._local_runner_alive(plan.folder))

    progress = sweep.stage_progress(plan.folder)
    assert progress.stages.done.to_dict() == {"render": 2, "pretrain": 2, "finetune": 3}
    assert progress.active == 0 and progress.eta_seconds is None
    assert sweep.stage_progress(plan.folder, now=time.time() + 3600).elapsed_seconds == progress.elapsed_seconds
    text = sweep.format_progress(progress)
    assert "from the first launch to the last output" in text and "launching again reruns the 2 failed" in text


def test_an_eta_waits_for_a_finished_task_of_each_stage_with_work_left(tmp_path):
    plan, go = staged_plan(tmp_path)
    sweep.launch(plan, LauncherConfig(name="local", max_parallel=1, timeout_min=5))
    try:
        wait_until(lambda: runner_states(plan).get("pretrain_slow") == "RUNNING")
        progress = sweep.stage_progress(plan.folder)  # one job at a time: the slow chain runs before fine-tunes
        assert progress.stages.loc["finetune", "done"] == 0 and progress.parallel == 1
        assert progress.eta_seconds is None and progress.stages.left_seconds.isna().tolist() == [False, False, True]
        assert "ETA once a finetune task has finished" in sweep.format_progress(progress)
    finally:
        go.touch()
        wait_until(lambda: not sweep._local_runner_alive(plan.folder))


@pytest.mark.parametrize("seconds, text", [(None, "-"), (float("nan"), "-"), (4.4, "4s"), (725, "12m05s"),
                                           (3 * 3600 + 12 * 60, "3h12m"), (2 * 86400 + 4 * 3600, "2d04h")])
def test_durations_read_at_a_glance(seconds, text):
    assert sweep.format_duration(seconds) == text


def test_a_job_that_died_without_a_result_says_why():
    error = UncompletedJobError("\n".join([
        "Job 28903 (task: 0) with path /runs/x/sweep/jobs/28903_0_result.pkl",
        "has not produced any output (state: OUT_OF_MEMORY)", "Error stream produced:", "-" * 40,
        "step 10", "slurmstepd: error: Detected 1 oom_kill event in StepId=28903.batch"]))
    assert sweep.job_failure(error) == ("the job ended without a result (state: OUT_OF_MEMORY): slurmstepd: error: "
                                        "Detected 1 oom_kill event in StepId=28903.batch")
    failed = FailedJobError("Job (task=0) failed during processing with trace:\n---\nValueError: bad lr 1e12\n---")
    assert sweep.job_failure(failed) == "ValueError: bad lr 1e12"


def test_waiting_shows_the_stage_at_work_and_the_steps_of_a_running_training(tmp_path, capsys):
    import threading

    from lab.core.progress import write_progress

    plan, go = staged_plan(tmp_path)
    write_progress(tmp_path / "staged" / "out" / "slow", "pretrain n=100", 7, 20)  # as run_steps records it
    sweep.launch(plan, LauncherConfig(name="local", max_parallel=3, timeout_min=5))

    def release_once_seen_running() -> None:  # every render done, the slow pre-training running: pretrain at work
        wait_until(lambda: runner_states(plan).get("pretrain_slow") == "RUNNING" and all(
            Path(plan.task(key).outputs[0]).exists() for key in ("render_a", "render_b")))
        time.sleep(2.0)  # ten polls of wait_for
        go.touch()

    releaser = threading.Thread(target=release_once_seen_running)
    releaser.start()
    try:
        final = sweep.wait_for(plan, poll_seconds=0.2)
    finally:
        go.touch()
        releaser.join()
    assert final.state.value_counts().to_dict() == {"done": 3, "failed": 2}
    err = capsys.readouterr().err
    assert "staged pretrain" in err and "render 2/2" in err and "finetune 3/5" in err  # stage at work, counts
    assert "pretrain pretrain n=100" in err and "7/20" in err  # the running training's steps



def test_the_runner_names_the_stage_it_starts_and_counts_each_stage(tmp_path, capsys):
    def touch(key: str, stage: str, depends: list[str] = ()) -> sweep.Task:
        return sweep.Task(key=key, stage=stage, fn=Path.touch, job=tmp_path / key, outputs=[str(tmp_path / key)],
                          depends=list(depends))

    tasks = [touch("r", "render"), touch("p1", "pretrain", ["r"]), touch("p2", "pretrain", ["r"]),
             touch("f", "finetune", ["p1"])]
    outcomes = sweep.run_tasks(tasks, LauncherConfig(name="debug", tasks_per_job=2), tmp_path / "jobs", desc="toy")
    assert all(o.ok for o in outcomes.values())
    err = capsys.readouterr().err
    assert "toy render" in err and "toy pretrain+finetune" in err  # p1 and its only dependent: one pack
    assert "render 1/1, pretrain 2/2, finetune 1/1, failed 0" in err


def test_on_slurm_a_failed_job_names_its_log_and_the_running_jobs_set_the_pace(tmp_path, fake_slurm, monkeypatch):
    from submitit.core.utils import JobPaths

    from experiments.sweep import plan_sweep
    from lab.run import slurm

    config = toy_sweep(tmp_path, "launcher=slurm", "launcher.tasks_per_job=1")  # a job per render slice
    plan = plan_sweep(config)
    sweep.launch(plan, config.launcher)
    job_of = {key: info["job_ids"][-1] for key, info in sweep.load_state(plan.folder)["tasks"].items()}
    renders = [job_of[t.key] for t in plan.tasks if t.stage == "render"]
    log = JobPaths(plan.folder / "jobs", job_id=renders[0], task_id=0).stderr
    log.parent.mkdir(parents=True)
    reason = "ValueError: shard 0 of the render could not be written " + "because of a long reason " * 6
    log.write_text(f"Traceback (most recent call last):\n  File \"render.py\", line 1, in <module>\n{reason}\n")
    monkeypatch.setattr(slurm, "job_states", lambda ids: {
        job: "FAILED" if job == renders[0] else "RUNNING" if job in renders else "PENDING" for job in ids})

    table = sweep.status(plan.folder).set_index("n")
    assert table.loc[0, "state"] == "pending"  # from scratch: no render
    for n in (100, 200):  # every pre-training waits on every render slice
        assert (table.loc[n, "state"], table.loc[n, "error"], table.loc[n, "log"]) == (
            "failed", f"render: {reason.strip()}", str(log))
    progress = sweep.stage_progress(plan.folder)
    assert progress.stages[["running", "pending", "failed"]].to_dict("index") == {
        "render": {"running": 2, "pending": 0, "failed": 1}, "pretrain": {"running": 0, "pending": 2, "failed": 0},
        "finetune": {"running": 0, "pending": 3, "failed": 0}}
    assert progress.parallel == 2 and progress.eta_seconds is None  # nothing finished yet
    assert "ETA once a task of each of render, pretrain, finetune has finished" in sweep.format_progress(progress)
