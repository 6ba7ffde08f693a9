"""Sweeps on the real local Slurm cluster: arrays with afterok dependencies, status, collect, relaunch."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from experiments.cli import main
from experiments.sweep import SweepConfig, plan_sweep
from lab.run import sweep
from lab.core.config import ConfigError, load_config
from lab.run.slurm import SlurmError, job_states
from tests.conftest import CONF_DIR

pytestmark = pytest.mark.slurm


def slurm_sweep(root, partition: str, *overrides: str) -> SweepConfig:
    return load_config(CONF_DIR, "sweep", SweepConfig, [
        "+experiment=sweep_toy", f"root={root}", "launcher=slurm", f"launcher.partition={partition}",
        "launcher.timeout_min=10", "launcher.mem_gb=2", *overrides])


def wait_until_settled(folder, timeout_s: float = 240) -> pd.DataFrame:
    deadline = time.time() + timeout_s
    while True:
        table = sweep.status(folder)
        if not table.state.isin(["pending", "running"]).any() or time.time() > deadline:
            return table
        time.sleep(2)


def test_sweep_runs_as_arrays_with_dependencies_and_collects(slurm_partition, tmp_path, capsys):
    args = ["+experiment=sweep_toy", f"root={tmp_path}", "launcher=slurm", f"launcher.partition={slurm_partition}",
            "launcher.timeout_min=10", "study.s=[10,20]", "launcher.tasks_per_job=1"]  # a job per task
    started = time.time()
    assert main(["sweep", "launch", *args]) == 0
    assert time.time() - started < 30  # launch returns without waiting for the jobs
    assert "submitted 11" in capsys.readouterr().out  # 3 render slices, 2 pre-trainings, 6 fine-tunes

    folder = tmp_path / "sweep_toy" / "sweep"
    state = sweep.load_state(folder)
    finetune_jobs = [info["job_ids"][0] for info in state["tasks"].values() if info["stage"] == "finetune"]
    assert all("_" in job for job in finetune_jobs)  # the fine-tunes of one pre-training are one array
    pretrain_job = next(info["job_ids"][0] for info in state["tasks"].values() if info["stage"] == "pretrain")
    dependency = subprocess.run(["scontrol", "show", "job", pretrain_job.split("_")[0]], capture_output=True,
                                text=True).stdout
    assert "Dependency=" in dependency

    table = wait_until_settled(folder)
    assert table.state.tolist() == ["done"] * 6, table.to_string()

    assert main(["sweep", "collect", *args]) == 0
    results = pd.read_csv(tmp_path / "sweep_toy" / "results.csv")
    assert len(results[results.metric == "top1"]) == 6 and results.host.notna().all()

    capsys.readouterr()
    assert main(["sweep", "launch", *args]) == 0
    assert "submitted 0" in capsys.readouterr().out


def test_failures_and_cancellations_show_in_status(slurm_partition, tmp_path):
    # NaN loss in pre-training; a job per task, so that the fine-tune is a job of its own that waits on it
    config = slurm_sweep(tmp_path, slurm_partition, "study.pretrain.lr=1e12", "launcher.tasks_per_job=1")
    plan = plan_sweep(config)
    sweep.launch(plan, config.launcher)
    table = wait_until_settled(plan.folder).set_index("n")
    assert table.loc[0, "state"] == "done"
    assert table.loc[100, "state"] == "failed"
    assert "NonFiniteLossError" in table.loc[100, "error"]
    dependent = sweep.load_state(plan.folder)["tasks"][plan.points[1]["task"]]["job_ids"][-1]
    deadline = time.time() + 60
    while job_states([dependent])[dependent] == "PENDING" and time.time() < deadline:
        time.sleep(1)
    assert job_states([dependent])[dependent] == "CANCELLED"  # not pending forever on a failed parent

    other = slurm_sweep(tmp_path / "b", slurm_partition, "study.n=[0]", "study.finetune.steps=2000")
    plan = plan_sweep(other)
    sweep.launch(plan, other.launcher)
    job = sweep.load_state(plan.folder)["tasks"][plan.points[0]["task"]]["job_ids"][-1]
    subprocess.run(["scancel", job.split("_")[0]], check=True)
    table = wait_until_settled(plan.folder, timeout_s=60)
    assert table.state.tolist() == ["cancelled"]


def test_impossible_resources_fail_before_submission(slurm_partition, tmp_path):
    for override, message in [("launcher.partition=no_such_partition", "unknown partition"),
                              ("launcher.cpus_per_task=512", "CPUs per node")]:
        config = slurm_sweep(tmp_path, slurm_partition, override)
        with pytest.raises(SlurmError, match=message):
            sweep.launch(plan_sweep(config), config.launcher)
    assert not list((tmp_path / "sweep_toy" / "sweep").glob("jobs/*"))


def test_preempted_pretraining_requeues_resumes_and_matches_an_uninterrupted_run(slurm_partition, tmp_path):
    import submitit

    slow = ["study.n=[200]", "study.pretrain.steps=300", "study.pretrain.checkpoint_every=40",
            "launcher.threads_per_job=1"]
    config = slurm_sweep(tmp_path / "slurm", slurm_partition, *slow)
    plan = plan_sweep(config)
    sweep.launch(plan, config.launcher)
    pretrain = next(t for t in plan.tasks if t.stage == "pretrain")
    checkpoint = pretrain.job.pretrain.run_dir().checkpoint_dir / "last.pt"
    deadline = time.time() + 180
    while not checkpoint.exists():
        assert time.time() < deadline, "the pre-training never wrote a checkpoint"
        time.sleep(0.5)
    job_id = sweep.load_state(plan.folder)["tasks"][pretrain.key]["job_ids"][-1]
    job = submitit.SlurmJob(plan.folder / "jobs", job_id)
    try:
        job._interrupt()  # what a preemption does: USR2, submitit checkpoints and requeues
    except subprocess.CalledProcessError:
        pass  # the requeue can win the race against submitit's second scancel (see environment.md)

    table = wait_until_settled(plan.folder, timeout_s=300)
    assert table.state.tolist() == ["done"], table.to_string()
    assert table.requeues.iloc[0] >= 1  # the pre-training started twice
    resumed = pretrain.job.pretrain.run_dir().read_result()
    assert resumed["resumed_from_step"] > 0

    reference = load_config(CONF_DIR, "sweep", SweepConfig, ["+experiment=sweep_toy", f"root={tmp_path / 'ref'}",
                                                                "launcher=debug", *slow])
    reference_plan = plan_sweep(reference)
    sweep.launch(reference_plan, reference.launcher)
    finetune = plan.task(plan.points[0]["task"])
    expected = reference_plan.task(reference_plan.points[0]["task"])
    got = json.loads(Path(finetune.outputs[0]).read_text())["metrics"]
    want = json.loads(Path(expected.outputs[0]).read_text())["metrics"]
    assert got == want


def test_two_task_job_trains_with_ddp(slurm_partition, tmp_path):
    config = slurm_sweep(tmp_path, slurm_partition, "study.n=[100]", "launcher.tasks_per_node=2",
                         "launcher.cpus_per_task=1", "launcher.threads_per_job=1")
    plan = plan_sweep(config)
    sweep.launch(plan, config.launcher)
    table = wait_until_settled(plan.folder)
    assert table.state.tolist() == ["done"], table.to_string()
    finetune = plan.task(plan.points[0]["task"])
    result = json.loads(Path(finetune.outputs[0]).read_text())
    pretrain = json.loads(Path(plan.task(finetune.depends[0]).outputs[0]).read_text())
    assert result["world_size"] == 2 and pretrain["world_size"] == 2
    assert 0.0 <= result["metrics"]["error"] <= 1.0


def test_two_task_job_trains_with_the_torus_allreduce_selected_by_config(slurm_partition, tmp_path):
    config = slurm_sweep(tmp_path, slurm_partition, "study.n=[100]", "launcher.tasks_per_node=2",
                         "launcher.cpus_per_task=1", "launcher.threads_per_job=1",
                         "study.pretrain.allreduce.kind=torus2d", "study.pretrain.allreduce.grid_x=2",
                         "study.finetune.allreduce.kind=hierarchical")
    plan = plan_sweep(config)
    sweep.launch(plan, config.launcher)
    table = wait_until_settled(plan.folder)
    assert table.state.tolist() == ["done"], table.to_string()
    result = json.loads(Path(plan.task(plan.points[0]["task"]).outputs[0]).read_text())
    assert result["world_size"] == 2 and 0.0 <= result["metrics"]["error"] <= 1.0


# --- issue 18 ------------------------------------------------------------------------------------------------------


def test_a_failed_sbatch_part_way_leaves_every_submitted_job_tracked(slurm_partition, tmp_path, monkeypatch):
    import os
    import shutil

    real = shutil.which("sbatch")
    fake = tmp_path / "bin" / "sbatch"  # the second sbatch of the launch fails, as a full queue or a bad QOS would
    fake.parent.mkdir()
    fake.write_text(f"""#!/bin/sh
count=$(( $(cat {tmp_path}/sbatch_calls 2>/dev/null || echo 0) + 1 ))
echo $count > {tmp_path}/sbatch_calls
if [ $count -eq 2 ]; then echo "sbatch: error: Batch job submission failed: injected" >&2; exit 1; fi
exec {real} "$@"
""")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    config = slurm_sweep(tmp_path, slurm_partition, "study.n=[0,100]", "study.pretrain.steps=4",
                         "study.finetune.steps=4")
    plan = plan_sweep(config)
    with pytest.raises(SlurmError, match="injected"):
        sweep.launch(plan, config.launcher)
    state = sweep.load_state(plan.folder)
    renders = [t.key for t in plan.tasks if t.stage == "render"]
    assert sorted(state["tasks"]) == sorted(renders)  # the render array was submitted, and recorded at once
    render_jobs = {state["tasks"][key]["job_ids"][0] for key in renders}
    assert all(job_states([job])[job] != "UNKNOWN" for job in render_jobs)  # real jobs, in the queue

    monkeypatch.undo()  # sbatch works again: the relaunch submits only the rest, after the recorded renders
    relaunched = sweep.launch(plan, config.launcher)
    assert relaunched["skipped_active"] + relaunched["skipped_done"] >= len(renders)
    assert relaunched["submitted"] == len(plan.tasks) - len(renders)
    state = sweep.load_state(plan.folder)
    assert all(len(state["tasks"][key]["job_ids"]) == 1 for key in renders)  # no render submitted twice
    table = wait_until_settled(plan.folder)
    assert table.state.tolist() == ["done", "done"], table.to_string()


def test_cancelling_one_pretraining_cancels_only_its_own_finetunes(slurm_partition, tmp_path):
    config = slurm_sweep(tmp_path, slurm_partition, "study.n=[0,100,200]", "study.pretrain.steps=4",
                         "study.finetune.steps=4", "launcher.tasks_per_job=1")
    plan = plan_sweep(config)
    sweep.launch(plan, config.launcher)
    state = sweep.load_state(plan.folder)
    point = {p["n"]: p["task"] for p in plan.points}
    own_pretrain = {n: plan.task(point[n]).depends[0] for n in (100, 200)}
    pretrain_jobs = {n: state["tasks"][key]["job_ids"][-1] for n, key in own_pretrain.items()}
    assert pretrain_jobs[100] != pretrain_jobs[200] and "_" not in pretrain_jobs[100] + pretrain_jobs[200]
    finetune_job = state["tasks"][point[200]]["job_ids"][-1]
    shown = subprocess.run(["scontrol", "show", "job", finetune_job], capture_output=True, text=True).stdout
    assert f"afterok:{pretrain_jobs[200]}" in shown and pretrain_jobs[100] not in shown, shown

    subprocess.run(["scancel", pretrain_jobs[100]], check=True)  # still pending on the renders
    table = wait_until_settled(plan.folder).set_index("n")
    assert table.loc[100, "state"] == "cancelled", table.to_string()
    assert table.loc[200, "state"] == "done" and table.loc[0, "state"] == "done", table.to_string()


def test_extra_sbatch_is_checked_like_the_named_options(slurm_partition, tmp_path):
    marker = tmp_path / "injected"
    config = slurm_sweep(tmp_path, slurm_partition, "study.n=[0]")
    plan = plan_sweep(config)
    config.launcher.extra_sbatch = {f"comment=x\ntouch {marker} #": "y"}  # a command smuggled in through a key
    with pytest.raises(ConfigError, match="not an sbatch option name"):
        plan_sweep(config)
    with pytest.raises(ValueError, match="not an sbatch option name"):
        sweep.launch(plan, config.launcher)
    for extra, message in [({"mem": "100000G"}, "GB per node requested"),
                           ({"cpus_per_task": "512"}, "CPUs per node"),
                           ({"partition": "no_such_partition"}, "unknown partition")]:
        config = slurm_sweep(tmp_path, slurm_partition, "study.n=[0]", "launcher.extra_sbatch=" + "{%s: %s}" % next(
            iter(extra.items())))
        with pytest.raises(SlurmError, match=message):
            sweep.launch(plan_sweep(config), config.launcher)
    assert not list((tmp_path / "sweep_toy" / "sweep").glob("jobs/*"))

    config = slurm_sweep(tmp_path / "ok", slurm_partition, "study.n=[0]", "study.finetune.steps=2",
                         "launcher.extra_sbatch={comment: 'two words', time: '00:09:00'}")
    plan = plan_sweep(config)
    sweep.launch(plan, config.launcher)
    job = sweep.load_state(plan.folder)["tasks"][plan.points[0]["task"]]["job_ids"][-1]
    shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    assert "TimeLimit=00:09:00" in shown and "Comment=two words" in shown, shown
    assert wait_until_settled(plan.folder).state.tolist() == ["done"]
    assert not marker.exists()
