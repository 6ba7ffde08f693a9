"""The demo study end to end at toy scale: outputs, honest bookkeeping, reuse of finished work."""

from __future__ import annotations

import json
import math
from pathlib import Path
import shutil

import pandas as pd
import pytest

from experiments.digits_demo import DemoConfig, plan_demo, run_demo
from lab.run import sweep
from lab.core.config import load_config
from lab.run.launch import LauncherConfig, run_jobs
from lab.run.sweep import Task, run_tasks
from tests.conftest import CONF_DIR, REPO, load_demo_config


def test_study_writes_table_fit_figure_and_report(toy_study):
    config, outcome = toy_study
    out = config.study_dir
    for name in ("results.csv", "fit.json", "scaling.png", "report.md", "config.yaml"):
        assert (out / name).stat().st_size > 0, name

    table = pd.read_csv(out / "results.csv")
    top1 = table[table.metric == "top1"]
    assert sorted(top1.n.unique()) == [0, 100, 200, 400]
    assert len(top1) == 4 * 2  # every (n, seed) point at s = 20
    assert (top1.error - (1 - top1.value)).abs().max() < 1e-12
    assert top1.run_hash.is_unique
    assert top1[top1.n > 0].pretrain_hash.notna().all() and top1[top1.n == 0].pretrain_hash.isna().all()
    assert top1[top1.n > 0].dataset_hash.nunique() == 1  # every n is a prefix of one render

    fit = json.loads((out / "fit.json").read_text())["20"]
    assert fit["law"] == "power_floor"
    assert {"D", "alpha", "C"} <= set(fit["params"])
    assert "power_floor" in outcome["report"] and "From scratch" in outcome["report"]


def test_pretraining_is_shared_and_each_run_dir_holds_its_config(toy_study):
    config, _ = toy_study
    pretrain_dirs = list((config.study_dir / "pretrain").iterdir())
    assert len(pretrain_dirs) == 3 * 2  # (n > 0) x seeds
    for run in pretrain_dirs:
        assert (run / "config.yaml").exists() and (run / "result.json").exists()
        assert (run / "metrics.jsonl").read_text().count("\n") >= 1


def test_second_run_reuses_every_finished_point(toy_study):
    config, first = toy_study
    stamps = {p: p.stat().st_mtime_ns for p in config.study_dir.glob("*/*/result.json")}
    again = run_demo(config)
    assert {p: p.stat().st_mtime_ns for p in config.study_dir.glob("*/*/result.json")} == stamps
    pd.testing.assert_frame_equal(again["table"].reset_index(drop=True), first["table"].reset_index(drop=True))


def test_an_interrupted_study_finishes_only_what_is_missing(tmp_path):
    config = load_demo_config(tmp_path, "n=[0,100]", "seeds=[0]")
    first = run_demo(config)
    assert "not fitted" in first["report"]  # one point at n > 0 cannot fit three parameters; the table is kept
    finished = sorted((config.study_dir / "finetune").iterdir())
    victim = finished[0] / "result.json"
    victim.unlink()  # as if the job had been killed before it finished
    untouched = {p: p.stat().st_mtime_ns for p in config.study_dir.glob("*/*/result.json")}
    run_demo(config)
    assert victim.exists()
    assert all(p.stat().st_mtime_ns == t for p, t in untouched.items())


def test_local_executor_runs_tasks_in_subprocesses_and_keeps_going_after_a_failure(tmp_path):
    # a stdlib function: the job subprocesses must unpickle it, and test modules are not importable there
    tasks = [Task(key=str(x), stage="root", fn=math.sqrt, job=x, outputs=[]) for x in (1, 4, -1, 16)]
    tasks.append(Task(key="after-failure", stage="root", fn=math.sqrt, job=9, outputs=[], depends=["-1"]))
    outcomes = run_tasks(tasks, LauncherConfig(name="local", max_parallel=2, timeout_min=5), tmp_path,
                         desc="roots", poll_seconds=0.1)
    assert [outcomes[t.key].result for t in tasks] == [1, 2, None, 4, None]
    assert outcomes["-1"].error == "ValueError: math domain error"
    assert outcomes["after-failure"].error == sweep.PARENT_FAILED and not outcomes["after-failure"].job_id
    assert all(outcomes[t.key].job_id for t in tasks[:4])
    assert "ValueError: math domain error" in Path(outcomes["-1"].log).read_text()  # the point's own log
    workers = {outcomes[t.key].job_id.split("-")[1] for t in tasks[:4]}  # local-<worker pid>-<job>
    assert len(workers) <= 2  # warm workers: four jobs, at most max_parallel processes


def test_run_jobs_is_a_deprecated_use_of_the_one_runner(tmp_path):
    with pytest.deprecated_call():
        outcomes = run_jobs(math.sqrt, [1, 16], LauncherConfig(name="local", timeout_min=5), tmp_path,
                            poll_seconds=0.1)
    assert [o.result for o in outcomes] == [1, 4] and [o.config for o in outcomes] == [1, 16]


def test_a_rerun_on_a_study_folder_without_sweep_state_reuses_every_point(toy_study, tmp_path):
    """Folders written before the demo ran through lab.run.sweep have results but no sweep/ state."""
    config, first = toy_study
    shutil.copytree(config.study_dir, tmp_path / config.experiment)
    shutil.rmtree(tmp_path / config.experiment / "sweep")
    copy = load_demo_config(tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in copy.study_dir.glob("*/*/result.json")}
    again = run_demo(copy)
    assert sweep.load_state(plan_demo(copy).folder)["launches"][-1]["submitted"] == 0
    assert {p: p.stat().st_mtime_ns for p in copy.study_dir.glob("*/*/result.json")} == stamps
    pd.testing.assert_frame_equal(again["table"], first["table"])


def test_the_default_demo_plans_the_stored_reference_runs(tmp_path):
    """Same hashes as the reference `make demo` run: a re-run on its runs/ folder trains nothing."""
    stored = pd.read_csv(REPO / "tests" / "data" / "digits_demo" / "results.csv")
    plan = plan_demo(load_config(CONF_DIR, "demo", DemoConfig, [f"root={tmp_path}"]))
    hashes = {stage: {t.key.split("/")[1] for t in plan.tasks if t.stage == stage} for stage in ("pretrain", "finetune")}
    assert hashes["finetune"] == set(stored.run_hash) and len(plan.points) == 21
    assert hashes["pretrain"] == set(stored.pretrain_hash.dropna())
    renders = [t for t in plan.tasks if t.stage == "render"]
    assert [t.key for t in renders] == ["render/6da5a11d8568/0", "render/6da5a11d8568/9"]  # render_workers=2 tasks
    assert renders[0].job.out.endswith("digits_demo/render/digits-seed0-6da5a11d8568")  # the stored render folder


def test_the_table_holds_only_the_runs_of_the_current_config(tmp_path):
    first = run_demo(load_demo_config(tmp_path, "n=[0]", "seeds=[0]"))["table"]
    second = run_demo(load_demo_config(tmp_path, "n=[0]", "seeds=[0]", "finetune.scratch_lr=0.02"))["table"]
    assert len(first[first.metric == "top1"]) == len(second[second.metric == "top1"]) == 1
    assert set(first.run_hash).isdisjoint(second.run_hash)


def test_scikit_learn_digits_is_a_second_real_target(tmp_path):
    outcome = run_demo(load_demo_config(tmp_path, "data=sklearn_digits", "n=[0,100]", "seeds=[0]"))
    top1 = outcome["table"][outcome["table"].metric == "top1"]
    assert set(top1.data) == {"sklearn_digits"} and sorted(top1.n) == [0, 100]
    assert (top1.error < 0.9).all()  # better than chance on 10 classes after 20 fine-tuning steps
