"""Sweeps without a cluster: planning, validation, launch/status/collect through the debug executor."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from experiments.cli import main
from experiments.sweep import SweepConfig, plan_sweep
from lab.run import sweep
from lab.core.config import ConfigError, load_config
from lab.core.registry import UnknownNameError
from lab.run.launch import LauncherConfig
from tests.conftest import CONF_DIR


def toy_sweep(root, *overrides: str) -> SweepConfig:
    return load_config(CONF_DIR, "sweep", SweepConfig, ["+experiment=sweep_toy", f"root={root}", *overrides])


def test_plan_shares_renders_and_pretrainings(tmp_path):
    plan = plan_sweep(toy_sweep(tmp_path, "study.s=[10,20]"))
    stages = pd.Series([t.stage for t in plan.tasks]).value_counts().to_dict()
    assert stages == {"render": 3, "pretrain": 2, "finetune": 6}  # 50 held out + 200 = 5 shards, 2 per task
    assert len(plan.points) == 3 * 2
    pretrain_of = {p["task"]: plan.task(p["task"]).depends for p in plan.points}
    assert sum(1 for deps in pretrain_of.values() if deps) == 4  # n > 0 fine-tunes depend on a pre-training
    assert len({tuple(d) for d in pretrain_of.values() if d}) == 2  # ... shared by both values of s
    assert all(plan.task(t.key).depends == [k for k in (t.depends)] for t in plan.tasks)


def test_grid_adds_axes_and_columns(tmp_path):
    plan = plan_sweep(toy_sweep(tmp_path, "+grid={model.name: [test_resnet, resnet10t]}"))
    assert len(plan.points) == 6
    assert {p["model.name"] for p in plan.points} == {"test_resnet", "resnet10t"}
    assert sum(t.stage == "render" for t in plan.tasks) == 3  # the renderer did not change: one render


@pytest.mark.parametrize(
    "override, message",
    [
        ("+grid={pretrain.lrr: [0.1]}", "pretrain.lrr"),
        ("+grid={model.name: []}", "at least one value"),
        ("+grid={model.name: [no_such_net]}", "unknown model"),
        ("+grid={study.n: [1]}", "unknown config key"),
        ("launcher.timeout_min=0", "timeout_min"),
    ],
)
def test_bad_sweeps_fail_before_anything_is_submitted(tmp_path, override, message):
    with pytest.raises((ConfigError, UnknownNameError), match=message):
        plan_sweep(toy_sweep(tmp_path, override))
    assert not (tmp_path / "sweep_toy").exists()


def test_launch_status_collect_and_relaunch_with_the_debug_executor(tmp_path, capsys):
    args = ["+experiment=sweep_toy", f"root={tmp_path}", "launcher=debug"]
    assert main(["sweep", "launch", *args]) == 0
    assert "submitted 8" in capsys.readouterr().out  # 3 renders + 2 pre-trainings + 3 fine-tunes

    folder = tmp_path / "sweep_toy" / "sweep"
    table = sweep.status(folder)
    assert table.state.tolist() == ["done"] * 3 and (table.requeues == 0).all()

    assert main(["sweep", "collect", *args]) == 0
    results = pd.read_csv(tmp_path / "sweep_toy" / "results.csv")
    assert sorted(results[results.metric == "top1"].n) == [0, 100, 200]
    assert results.dataset_hash.dropna().nunique() == 1 and results.git_commit.notna().all()

    capsys.readouterr()
    assert main(["sweep", "launch", *args]) == 0
    assert "submitted 0 (8 done" in capsys.readouterr().out


def test_a_failing_point_shows_its_error_and_its_dependents(tmp_path):
    # subprocess jobs: the debug executor would open pdb on the failure
    config = toy_sweep(tmp_path, "launcher=local", "study.pretrain.lr=1e12")  # NaN loss in pre-training
    plan = plan_sweep(config)
    sweep.launch(plan, config.launcher)  # returns at once: a detached runner executes the plan
    deadline = time.time() + 300
    while sweep.status(plan.folder).state.isin(["pending", "running"]).any() and time.time() < deadline:
        time.sleep(1)
    table = sweep.status(plan.folder).set_index("n")
    assert table.loc[0, "state"] == "done"  # from scratch does not depend on the broken pre-training
    assert table.loc[100, "state"] == "failed"
    error = table.loc[100, "error"]
    assert error.startswith("pretrain: ") and "NonFiniteLossError" in error and "loss is nan" in error


def test_a_killed_local_runner_loses_its_tasks_and_a_relaunch_resubmits_them(tmp_path):
    import os
    import signal

    config = toy_sweep(tmp_path, "study.n=[0,50]", "study.pretrain.steps=4", "study.finetune.steps=4")
    plan = plan_sweep(config)
    sweep.launch(plan, config.launcher)
    pid = int((plan.folder / sweep.LOCAL_PID_FILE).read_text())
    os.killpg(pid, signal.SIGKILL)  # the runner and the jobs it started (its own session)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
            os.waitpid(pid, os.WNOHANG)
        except (ProcessLookupError, ChildProcessError):
            break
        time.sleep(0.2)
    table = sweep.status(plan.folder)
    assert (table.state == "failed").all() and table.error.str.contains("LOST").all()
    relaunched = sweep.launch(plan, config.launcher.__class__(name="debug"))
    assert relaunched["submitted"] == len(plan.tasks) and relaunched["skipped_active"] == 0
    assert (sweep.status(plan.folder).state == "done").all()


def test_a_task_and_its_dependent_run_as_one_pack_and_a_failure_is_pinned_on_the_right_one(tmp_path):
    from pathlib import Path

    from lab.run.launch import LauncherConfig

    def touch(name: str, depends: list[str] = ()) -> sweep.Task:  # Path.touch: the job subprocesses can unpickle it
        path = tmp_path / name
        return sweep.Task(key=name, stage="touch", fn=Path.touch, job=path, outputs=[str(path)], depends=list(depends))

    tasks = [touch("parent"), touch("child", ["parent"]), touch("no_dir/parent"), touch("orphan", ["no_dir/parent"]),
             touch("parent2"), touch("no_dir/child", ["parent2"])]
    launcher = LauncherConfig(name="local", max_parallel=3, timeout_min=5, tasks_per_job=2)
    outcomes = sweep.run_tasks(tasks, launcher, tmp_path / "jobs", poll_seconds=0.1)
    assert outcomes["parent"].job_id == outcomes["child"].job_id and outcomes["child"].ok
    assert outcomes["no_dir/parent"].error.startswith("FileNotFoundError")
    assert outcomes["orphan"].error == sweep.PARENT_FAILED
    assert outcomes["parent2"].ok and outcomes["no_dir/child"].error.startswith("FileNotFoundError")
    assert len({o.job_id for o in outcomes.values() if o.job_id}) == 3


def test_ctrl_c_while_waiting_stops_the_local_runner_and_the_same_call_resumes(tmp_path, monkeypatch):
    import json

    from lab.run.launch import LauncherConfig

    config = toy_sweep(tmp_path, "study.n=[0,50]", "study.pretrain.steps=4", "study.finetune.steps=4")
    plan = plan_sweep(config)

    def interrupted_once_a_job_runs(plan, poll_seconds=2.0):
        deadline = time.time() + 240
        while time.time() < deadline and "RUNNING" not in (plan.folder / sweep.LOCAL_STATUS_FILE).read_text():
            time.sleep(0.5)
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "wait_for", interrupted_once_a_job_runs)
    with pytest.raises(KeyboardInterrupt, match="run the same command again"):
        sweep.execute(plan, config.launcher)
    assert not sweep._local_runner_alive(plan.folder)
    runner = json.loads((plan.folder / sweep.LOCAL_STATUS_FILE).read_text())
    assert {"CANCELLED"} <= {info["state"] for info in runner.values()} <= {"CANCELLED", "COMPLETED"}
    assert not sweep.status(plan.folder).state.isin(["pending", "running"]).any()
    monkeypatch.undo()
    _, final = sweep.execute(plan, LauncherConfig(name="debug"))
    assert (final.state == "done").all()


# --- issue 18: integrity and safety of sweep records ------------------------------------------------------------


def small_sweep(root, *overrides: str) -> SweepConfig:
    return toy_sweep(root, "study.n=[0,50]", "study.pretrain.steps=4", "study.finetune.steps=4", "launcher=debug",
                     *overrides)


def test_moved_and_copied_sweep_folders_report_their_own_results(tmp_path):
    import json
    import shutil
    import subprocess

    config = small_sweep(tmp_path / "a")
    plan = plan_sweep(config)
    sweep.launch(plan, config.launcher)
    original = sweep.collect(plan.folder, "sweep_toy", tmp_path / "original.csv")
    assert len(original[original.metric == "top1"]) == 2
    scratch = plan.task(next(p["task"] for p in plan.points if p["n"] == 0))
    scratch_result = Path(scratch.outputs[0]).relative_to(tmp_path / "a" / "sweep_toy")

    moved = tmp_path / "b" / "sweep_toy_moved"
    moved.parent.mkdir()
    shutil.move(str(tmp_path / "a" / "sweep_toy"), str(moved))  # mv: the original folder is gone
    assert sweep.status(moved / "sweep").state.tolist() == ["done", "done"]
    table = sweep.collect(moved / "sweep", "sweep_toy", tmp_path / "moved.csv")
    assert sorted(table.run_hash.unique()) == sorted(original.run_hash.unique())  # the same runs, same hashes

    copy = tmp_path / "c" / "sweep_toy"
    copy.parent.mkdir()
    subprocess.run(["cp", "-a", str(moved), str(copy)], check=True)
    (copy / scratch_result).unlink()  # the copy loses one result; the folder it was copied from keeps it
    assert sweep.status(copy / "sweep").set_index("n").loc[0, "state"] != "done"
    assert sweep.status(moved / "sweep").state.tolist() == ["done", "done"]
    assert sorted(sweep.collect(copy / "sweep", "sweep_toy", tmp_path / "copy.csv").query("metric == 'top1'").n) == [50]
    assert sorted(sweep.collect(moved / "sweep", "sweep_toy", tmp_path / "m.csv").query("metric == 'top1'").n) == [0, 50]
    record = json.loads((copy / "sweep" / sweep.PLAN_FILE).read_text())  # what made it so: relative paths
    assert scratch_result.as_posix() in {output for task in record["tasks"] for output in task["outputs"]}


class _RunsCode:
    """A pickle that runs a shell command when it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_plan_file_cannot_run_code(tmp_path, capsys):
    import json
    import pickle

    marker = tmp_path / "code_ran"
    # a sweep folder from before plan.json (or one an attacker made): only a plan.pkl, which is never unpickled
    old = tmp_path / "old_sweep" / "sweep"
    old.mkdir(parents=True)
    (old / "plan.pkl").write_bytes(pickle.dumps(_RunsCode(marker)))
    (old / sweep.STATE_FILE).write_text(json.dumps({"tasks": {}, "launches": []}))
    for read in (sweep.status, lambda folder: sweep.collect(folder, "old_sweep", tmp_path / "r.csv")):
        with pytest.raises(sweep.PlanFileError, match="lab sweep launch"):
            read(old)
    assert main(["sweep", "status", "+experiment=sweep_toy", f"root={tmp_path}", "name=old_sweep"]) == 2
    assert "launched before plan.json" in capsys.readouterr().err  # the reason, not "no sweep launched"
    assert not marker.exists()

    # a launched sweep: its plan is data (plan.json); a plan.pkl planted beside it is ignored, and the local runner
    # got its tasks through a pipe, so no pickled plan lies in the sweep folder
    def touch(name: str) -> sweep.Task:
        path = tmp_path / "new_sweep" / "out" / name
        return sweep.Task(key=name, stage="touch", fn=Path.touch, job=path, outputs=[str(path)])

    (tmp_path / "new_sweep" / "out").mkdir(parents=True)
    plan = sweep.Plan("new_sweep", str(tmp_path), [touch("a"), touch("b")], [{"task": "a"}, {"task": "b"}])
    sweep.execute(plan, LauncherConfig(name="local", max_parallel=1, timeout_min=5), poll_seconds=0.2)
    assert not list(plan.folder.glob("*.pkl"))
    (plan.folder / "plan.pkl").write_bytes(pickle.dumps(_RunsCode(marker)))
    assert sweep.status(plan.folder).state.tolist() == ["done", "done"]
    assert not marker.exists()

    # a crafted plan.json can only name files inside the sweep's own folder
    record = json.loads((plan.folder / sweep.PLAN_FILE).read_text())
    for bad in ("../../../etc/passwd", "/etc/passwd", "out/../../x"):
        record["tasks"][0]["outputs"] = [bad]
        (plan.folder / sweep.PLAN_FILE).write_text(json.dumps(record))
        with pytest.raises(sweep.PlanFileError, match="not a path inside the sweep's folder"):
            sweep.status(plan.folder)
    (plan.folder / sweep.PLAN_FILE).write_text('{"format": 1, "tasks": [')
    with pytest.raises(sweep.PlanFileError, match="not valid JSON"):
        sweep.status(plan.folder)


def test_simultaneous_launches_of_one_sweep_submit_each_task_once(tmp_path):
    import json
    import subprocess
    import sys

    (tmp_path / "race" / "out").mkdir(parents=True)
    go = tmp_path / "go"
    child = f"""
import json, sys, time
from pathlib import Path
from lab.core.launcher import LauncherConfig
from lab.run import sweep
root = Path({str(tmp_path)!r})
tasks = [sweep.Task(key=f"t{{i}}", stage="touch", fn=Path.touch, job=root / "race" / "out" / str(i),
                    outputs=[str(root / "race" / "out" / str(i))]) for i in range(4)]
plan = sweep.Plan("race", str(root), tasks, [{{"task": t.key}} for t in tasks])
read = sweep.load_state
def slow_read(folder):  # widen the window between reading state.json and writing it back
    state = read(folder)
    time.sleep(1.5)
    return state
sweep.load_state = slow_read
print("ready", flush=True)
while not Path({str(go)!r}).exists():
    time.sleep(0.01)
print(json.dumps(sweep.launch(plan, LauncherConfig(name="local", max_parallel=1, timeout_min=5))), flush=True)
"""
    children = [subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                                 cwd=Path(__file__).resolve().parents[1]) for _ in range(2)]
    for process in children:
        assert process.stdout.readline().strip() == "ready"
    go.touch()
    launches = [json.loads(process.communicate(timeout=120)[0].splitlines()[-1]) for process in children]
    assert sorted(launch["submitted"] for launch in launches) == [0, 4]
    state = sweep.load_state(tmp_path / "race" / "sweep")
    assert len(state["launches"]) == 2  # neither launch record is lost
    assert all(len(info["job_ids"]) == 1 for info in state["tasks"].values())
    deadline = time.time() + 120
    while not all((tmp_path / "race" / "out" / str(i)).exists() for i in range(4)) and time.time() < deadline:
        time.sleep(0.2)
    assert (sweep.status(tmp_path / "race" / "sweep").state == "done").all()


class FakeSlurm:
    """A Slurm executor that records each array's dependency and fails the `fail_at`-th sbatch."""

    fail_at = 0
    calls: list[dict] = []
    next_job = 100

    def __init__(self, folder, launcher) -> None:
        self.parameters: dict = {}

    def update_parameters(self, **parameters) -> None:
        self.parameters.update(parameters)

    def submit_array(self, packs):
        from types import SimpleNamespace

        import submitit

        if len(FakeSlurm.calls) + 1 == FakeSlurm.fail_at:
            FakeSlurm.fail_at = 0
            raise submitit.core.utils.FailedJobError("sbatch: error: Batch job submission failed: injected failure")
        FakeSlurm.next_job += 1
        FakeSlurm.calls.append({"job": str(FakeSlurm.next_job), "dependency": self.parameters.get("dependency"),
                                "stage": self.parameters["job_name"].rsplit("-", 1)[-1],
                                "packs": [[entry.key for entry in pack.entries] for pack in packs],
                                "jobs": [getattr(pack.entries[0].job, "pretrain", pack.entries[0].job) for pack in packs]})
        if len(packs) == 1:  # as submitit does: one task is a plain job, not an array
            return [SimpleNamespace(job_id=str(FakeSlurm.next_job))]
        return [SimpleNamespace(job_id=f"{FakeSlurm.next_job}_{i}") for i in range(len(packs))]


@pytest.fixture
def fake_slurm(monkeypatch):
    from lab.run import slurm
    from lab.run.launch import EXECUTORS

    monkeypatch.setitem(EXECUTORS._entries_discovered(), "slurm", FakeSlurm)
    monkeypatch.setattr(slurm, "max_array_size", lambda: 1001)
    monkeypatch.setattr(slurm, "job_states", lambda ids: {job: "PENDING" for job in ids})
    FakeSlurm.calls, FakeSlurm.fail_at = [], 0
    return FakeSlurm


def test_a_failed_sbatch_part_way_leaves_the_submitted_jobs_recorded(tmp_path, fake_slurm):
    from lab.run.slurm import SlurmError

    config = toy_sweep(tmp_path, "launcher=slurm", "launcher.tasks_per_job=1")
    plan = plan_sweep(config)
    fake_slurm.fail_at = 2  # the render array goes in, the first pre-training's sbatch fails
    with pytest.raises(SlurmError, match="launching again submits only the rest"):
        sweep.launch(plan, config.launcher)
    state = sweep.load_state(plan.folder)
    renders = [t.key for t in plan.tasks if t.stage == "render"]
    assert {key: info["job_ids"] for key, info in state["tasks"].items()} == {
        key: [f"101_{i}"] for i, key in enumerate(renders)}
    assert state["launches"][-1]["submitted"] == 3 and "injected failure" in state["launches"][-1]["error"]

    relaunched = sweep.launch(plan, config.launcher)
    assert relaunched["skipped_active"] == 3 and relaunched["submitted"] == len(plan.tasks) - 3
    stages = [call["stage"] for call in fake_slurm.calls]
    assert stages.count("render") == 1 and stages.count("finetune") == 3  # no render array twice
    assert fake_slurm.calls[1]["dependency"] == "afterok:101_0:101_1:101_2"  # the recorded render jobs


def test_a_finetune_depends_only_on_its_own_pretraining(tmp_path, fake_slurm):
    config = toy_sweep(tmp_path, "launcher=slurm", "study.s=[10,20]", "launcher.tasks_per_job=1")
    plan = plan_sweep(config)
    sweep.launch(plan, config.launcher)
    stages = [call["stage"] for call in fake_slurm.calls]
    assert stages == ["render", "pretrain", "pretrain", "finetune", "finetune", "finetune"]
    render = fake_slurm.calls[0]
    state = sweep.load_state(plan.folder)
    pretrain_jobs = {state["tasks"][t.key]["job_ids"][-1] for t in plan.tasks if t.stage == "pretrain"}
    assert len(pretrain_jobs) == 2 and not any("_" in job for job in pretrain_jobs)  # a job each, not one array
    for call in fake_slurm.calls[1:3]:
        assert call["dependency"] == f"afterok:{render['job']}"  # every render task: the whole array
    for call in fake_slurm.calls[3:]:
        assert len(call["jobs"]) == 2  # the fine-tunes of one pre-training (both s) are one array
        if call["jobs"][0] is None:  # from scratch: no parent
            assert call["dependency"] is None
            continue
        parent = next(t for t in plan.tasks if t.stage == "pretrain" and t.job.pretrain == call["jobs"][0])
        assert call["dependency"] == f"afterok:{state['tasks'][parent.key]['job_ids'][-1]}"  # its own, only


def test_packed_jobs_keep_each_pretraining_with_its_finetunes_and_wait_only_on_what_they_need(tmp_path, fake_slurm):
    config = toy_sweep(tmp_path, "launcher=slurm", "study.n=[0,100,200]", "study.seeds=[0,1]", "study.s=[10,20]",
                       "launcher.tasks_per_job=6")
    plan = plan_sweep(config)
    launched = sweep.launch(plan, config.launcher)
    assert launched["submitted"] == len(plan.tasks)
    packs = [pack for call in fake_slurm.calls for pack in call["packs"]]
    assert sorted(key for pack in packs for key in pack) == sorted(t.key for t in plan.tasks)  # each task once
    assert all(len(pack) <= 6 for pack in packs) and len(packs) < len(plan.tasks) / 3
    pack_of = {key: i for i, pack in enumerate(packs) for key in pack}
    for task in plan.tasks:
        if task.stage == "finetune" and task.depends:  # a fine-tune runs in its own pre-training's job
            assert pack_of[task.key] == pack_of[task.depends[0]]
    state = sweep.load_state(plan.folder)
    renders = {state["tasks"][t.key]["job_ids"][0] for t in plan.tasks if t.stage == "render"}
    for call in fake_slurm.calls:
        if "pretrain" in call["stage"]:  # 'pretrain+finetune' packs wait on the renders, nothing else
            assert call["dependency"] == f"afterok:{','.join(sorted(renders)).split('_')[0]}"
        else:
            assert call["dependency"] is None
    relaunched = sweep.launch(plan, config.launcher)  # all queued: nothing twice
    assert relaunched["submitted"] == 0 and relaunched["skipped_active"] == len(plan.tasks)


@pytest.mark.parametrize("extra, message", [
    ({"comment=x\ntouch /tmp/lab_injected #": "y"}, "not an sbatch option name"),
    ({"comment\n": "y"}, "not an sbatch option name"),
    ({"Comment": "y"}, "not an sbatch option name"),
    ({"comment": "x\ntouch /tmp/lab_injected"}, "more than one line"),
    ({"comment": ["a"]}, "a string or a number"),
    ({"dependency": "afterok:1"}, "not allowed"),
    ({"output": "/tmp/x"}, "not allowed"),
    ({"mem_per_cpu": "1G"}, "launcher.mem_gb"),
    ({"part": "gpu"}, "write the option out"),
    ({"mem": "lots"}, "not a Slurm memory size"),
    ({"time": "soon"}, "not a Slurm time"),
])
def test_extra_sbatch_is_checked_before_anything_is_submitted(tmp_path, extra, message):
    config = toy_sweep(tmp_path, "launcher=slurm")
    config.launcher.extra_sbatch = extra
    with pytest.raises(ConfigError, match=message):
        plan_sweep(config)
    assert not (tmp_path / "sweep_toy").exists()


def test_extra_sbatch_resources_are_read_like_the_named_options(tmp_path):
    from lab.core.launcher import LauncherConfig as Launcher

    config = toy_sweep(tmp_path, "launcher=slurm", "launcher.extra_sbatch={account: lab, mem: 100000G, "
                                                   "time: '1-00:00:00', gres: 'gpu:a100:2', cpus_per_task: 3}")
    assert config.launcher.extra_sbatch["account"] == "lab"  # the README's form, without a '+'
    request = config.launcher.slurm_request()
    assert request["mem_gb"] == pytest.approx(100000) and request["time_min"] == 24 * 60
    assert request["gpus_per_node"] == 2 and request["cpus_per_task"] == 3
    assert Launcher(name="slurm", extra_sbatch={"time": "UNLIMITED"}).slurm_request()["time_min"] is None
    assert Launcher(name="slurm", extra_sbatch={"partition": "gpu"}).slurm_request()["partition"] == "gpu"


def test_study_axes_fail_fast_with_a_clear_message(tmp_path, capsys):
    started = time.monotonic()
    assert main(["demo", "n=[1000000000000]", f"root={tmp_path}", "launcher=debug"]) == 2
    assert "n=1000000000000 is more than 1,000,000,000" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="more than 1,000,000,000"):
        plan_sweep(toy_sweep(tmp_path, "study.n=[0,1000000000000]"))
    with pytest.raises(ConfigError, match="would render in .* tasks"):
        plan_sweep(toy_sweep(tmp_path, "study.n=[900000000]"))
    assert time.monotonic() - started < 60
    assert main(["demo", "seeds=[-1]", f"root={tmp_path}", "launcher=debug"]) == 2
    assert "seeds must be between 0 and" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="seeds must be between 0"):
        plan_sweep(toy_sweep(tmp_path, "study.seeds=[0,-1]"))
    assert not (tmp_path / "sweep_toy").exists()


def test_the_documented_grid_override_works_without_a_plus(tmp_path):
    documented = plan_sweep(toy_sweep(tmp_path, "grid={model.name: [test_resnet, resnet10t]}"))
    plus = plan_sweep(toy_sweep(tmp_path, "+grid={model.name: [test_resnet, resnet10t]}"))
    assert [t.key for t in documented.tasks] == [t.key for t in plus.tasks]
    assert {p["model.name"] for p in documented.points} == {"test_resnet", "resnet10t"}
    two = toy_sweep(tmp_path, "grid={model.name: [test_resnet]}", "grid={pretrain.lr: [0.001, 0.002]}")
    assert two.grid == {"model.name": ["test_resnet"], "pretrain.lr": [0.001, 0.002]}
    model_size = load_config(CONF_DIR, "sweep", SweepConfig, ["+experiment=paper_model_size", f"root={tmp_path}",
                                                              "grid={pretrain.lr: [0.001]}"])
    assert model_size.grid == {"model.name": ["test_resnet", "resnet10t", "resnet18"], "pretrain.lr": [0.001]}
    with pytest.raises(ConfigError, match="grid.model.name must list the values"):
        plan_sweep(toy_sweep(tmp_path, "grid={model.name: resnet10t}"))
    assert SweepConfig().grid == {} and type(SweepConfig().grid) is dict


def test_an_invalid_result_in_a_finished_sweep_is_named_and_its_point_runs_again(tmp_path):
    import json

    from lab.core.rundir import IntegrityWarning

    config = small_sweep(tmp_path)
    plan = plan_sweep(config)
    sweep.launch(plan, config.launcher)
    finetune = plan.task(next(p["task"] for p in plan.points if p["n"] == 50))
    good = json.loads(Path(finetune.outputs[0]).read_text())
    Path(finetune.outputs[0]).write_text("{}")  # truncated to an empty object: it exists, but is no result
    with pytest.warns(IntegrityWarning, match="result.json"):
        table = sweep.collect(plan.folder, "sweep_toy", tmp_path / "results.csv")  # no KeyError: 'metrics'
    assert sorted(table[table.metric == "top1"].n) == [0]
    assert sweep.status(plan.folder).set_index("n").loc[50, "state"] != "done"
    assert sweep.launch(plan, config.launcher)["submitted"] == 1  # only that fine-tune runs again
    assert json.loads(Path(finetune.outputs[0]).read_text())["metrics"] == good["metrics"]


@pytest.mark.parametrize("config_name, module, schema, extra", [
    ("figure1", "experiments.figure1", "Figure1Config", "grid={renderer.level: [lv0, lv7]}"),
    ("text_sweep", "experiments.text_study", "TextSweepConfig", "grid={generator.name: [world_facts, recipes]}"),
])
def test_every_study_grid_takes_new_keys_without_a_plus(tmp_path, config_name, module, schema, extra):
    import importlib

    cls = getattr(importlib.import_module(module), schema)
    config = load_config(CONF_DIR, config_name, cls, [f"root={tmp_path}", extra])
    key, values = extra.removeprefix("grid={").rstrip("}").split(": ")
    assert list(config.grid) == [key] and len(config.grid[key]) == 2
    assert cls().grid == {} and type(cls().grid) is dict
