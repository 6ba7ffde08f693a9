"""The demo study end to end at toy scale: outputs, honest bookkeeping, reuse of finished work."""

from __future__ import annotations

import json
import math

import pandas as pd

from experiments.digits_demo import run_demo
from lab.launch import LauncherConfig, run_jobs
from tests.conftest import load_demo_config


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


def test_local_executor_runs_jobs_in_subprocesses_and_keeps_going_after_a_failure(tmp_path):
    # a stdlib function: the job subprocesses must unpickle it, and test modules are not importable there
    outcomes = run_jobs(math.sqrt, [1, 4, -1, 16], LauncherConfig(name="local", max_parallel=2, timeout_min=5),
                        tmp_path, desc="roots", poll_seconds=0.1)
    assert [o.result for o in outcomes] == [1, 2, None, 4]
    assert outcomes[2].error == "ValueError: math domain error"
    assert all(o.job_id for o in outcomes) and outcomes[2].log.endswith("_log.err")


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
