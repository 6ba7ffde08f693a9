"""`lab sweep adapt`: an adaptive design run through the sweep machinery, logged, resumable without reruns."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from experiments.adapt import LOG_FILE
from experiments.cli import main
from lab.core.rundir import RunDir, read_jsonl
from lab.run import sweep

REPO = Path(__file__).resolve().parents[1]
TINY = ["study.pretrain.steps=4", "study.finetune.steps=4", "study.data.test_size=100", "study.data.val_size=50",
        "study.finetune.lr_grid=[0.01]", "render_shards_per_task=20"]  # seconds per task, one render task


def toy_args(root, *overrides: str) -> list[str]:
    return ["+experiment=adapt_toy", f"root={root}", *TINY, *overrides]


def attempts_per_run(root: Path) -> dict[str, int]:
    """Every pre-training and fine-tune run directory of the study -> how many times it was started."""
    runs = {}
    for stage in ("pretrain", "finetune"):
        for result in (root / "adapt_toy").glob(f"{stage}/*/result.json"):
            runs[f"{stage}/{result.parent.name}"] = RunDir(result.parent).attempts()
    return runs


def rounds(root: Path) -> list[dict]:
    return [r for r in read_jsonl(root / "adapt_toy" / "sweep" / LOG_FILE) if r["event"] == "round"]


def test_the_fixed_grid_stays_the_default_and_the_adaptive_design_is_opt_in(tmp_path, capsys):
    assert main(["sweep", "adapt", "+experiment=sweep_toy", f"root={tmp_path}"]) == 2
    assert "design.kind=adaptive" in capsys.readouterr().err
    assert main(["sweep", "launch", *toy_args(tmp_path)]) == 2
    assert "lab sweep adapt" in capsys.readouterr().err
    assert main(["sweep", "adapt", *toy_args(tmp_path, "design.budget_points=null")]) == 2
    assert "needs a budget" in capsys.readouterr().err
    assert main(["sweep", "adapt", *toy_args(tmp_path, "design.target=gamma")]) == 2
    assert "not a parameter of power_floor" in capsys.readouterr().err
    assert main(["sweep", "adapt", *toy_args(tmp_path, "design.kind=clever")]) == 2
    assert not (tmp_path / "adapt_toy" / "sweep" / "plan.json").exists()  # nothing was launched


def test_a_toy_adaptive_study_runs_its_rounds_logs_every_decision_and_a_rerun_runs_nothing(tmp_path, capsys):
    args = ["sweep", "adapt", *toy_args(tmp_path, "launcher=debug", "design.budget_points=5")]
    assert main(args) == 0
    assert "stopped (budget) after 2 rounds, 5 points" in capsys.readouterr().out
    log = rounds(tmp_path)
    assert [r["round"] for r in log] == [0, 1] and log[-1]["stop"] == "budget"
    first = log[0]
    assert len(first["chosen"]) == 1 and len(first["candidates"]) > 4
    assert {"n", "seed", "kind", "cost", "width_after", "score"} <= set(first["candidates"][0])
    assert first["width"] > 0 and first["predicted_width"] < first["width"]
    assert set(first["task_seconds"]) < set(log[1]["task_seconds"])  # the render is still counted in round 1
    assert log[1]["spent"] > first["spent"] > 0
    chosen = (first["chosen"][0]["n"], first["chosen"][0]["seed"])
    assert chosen not in {(50, 0), (100, 0), (200, 0), (400, 0)} and chosen[0] <= 800
    table = pd.read_csv(tmp_path / "adapt_toy" / "results.csv")
    measured = set(zip(table[(table.metric == "top1") & (table.n > 0)].n, table.seed))
    assert measured == {(50, 0), (100, 0), (200, 0), (400, 0), chosen}
    assert (tmp_path / "adapt_toy" / "sweep" / "adapt.png").stat().st_size > 0
    assert all(sweep.status(tmp_path / "adapt_toy" / "sweep").state == "done")

    before = attempts_per_run(tmp_path)
    assert set(before.values()) == {1} and len(before) == 10
    assert main(args) == 0  # finished: nothing re-planned, nothing run again
    assert len(rounds(tmp_path)) == 2 and attempts_per_run(tmp_path) == before
    hours = [*args[:-1], "design.budget_points=null", "design.budget_hours=1e-6"]  # already spent: no new point
    assert main(hours) == 0
    assert rounds(tmp_path)[-1]["stop"] == "budget" and attempts_per_run(tmp_path) == before


def test_the_cost_per_point_follows_the_recorded_durations_or_the_protocol_scaled_to_them():
    from experiments.adapt import cost_model
    from experiments.design import DesignConfig

    per_unit = {(100, 0): 12.0, (200, 0): 22.0, (400, 0): 42.0}  # 2 s + 0.1 s per sample
    fitted = cost_model(DesignConfig(cost="durations"), per_unit)
    assert fitted.fixed == pytest.approx(2.0) and fitted.per_n == pytest.approx(0.1)
    epochs = cost_model(DesignConfig(cost="fixed_epochs"), per_unit)
    assert epochs.fixed == 0 and epochs(100) + epochs(200) + epochs(400) == pytest.approx(76.0)
    steps = cost_model(DesignConfig(cost="fixed_steps"), per_unit)
    assert steps.per_n == 0 and steps(10**6) == pytest.approx(76.0 / 3)
    untimed = cost_model(DesignConfig(cost="fixed_steps"), {(100, 0): 0.0, (200, 0): 0.0})
    assert untimed(100) == untimed(200) == 1.0  # nothing timed: the protocol's own units


def test_a_log_written_by_another_study_is_not_resumed(tmp_path, capsys):
    folder = tmp_path / "adapt_toy" / "sweep"
    folder.mkdir(parents=True)
    (folder / LOG_FILE).write_text(json.dumps({"event": "start", "fingerprint": "someone-else"}) + "\n")
    assert main(["sweep", "adapt", *toy_args(tmp_path, "launcher=debug")]) == 2
    assert "another study or design config" in capsys.readouterr().err


@pytest.mark.slow
def test_a_kill_mid_round_resumes_the_logged_round_and_runs_no_point_twice(tmp_path):
    """The local executor: `lab sweep adapt` is killed once its first decision is logged and launched; the same
    command finishes the design without re-planning that round or starting any run a second time."""
    command = [sys.executable, "-m", "experiments.cli", "sweep", "adapt",
               *toy_args(tmp_path, "launcher=local", "design.budget_points=6")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "adapt_toy" / "sweep" / LOG_FILE
    state = tmp_path / "adapt_toy" / "sweep" / sweep.STATE_FILE
    deadline = time.time() + 300
    try:
        while time.time() < deadline and process.poll() is None:
            logged = [r for r in read_jsonl(log) if r["event"] == "round"] if log.exists() else []
            if logged:
                chosen = logged[0]["chosen"]
                launches = json.loads(state.read_text())["launches"] if state.exists() else []
                if len(launches) >= 2:  # the round's points are submitted: kill while they run
                    break
            time.sleep(0.2)
        assert process.poll() is None, "the design finished before it could be killed mid-round"
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    assert len([r for r in read_jsonl(log) if r["event"] == "round"]) == 1
    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log_rounds = rounds(tmp_path)
    assert [r["round"] for r in log_rounds] == [0, 1, 2]  # round 0 was resumed, not planned again
    assert log_rounds[1]["units"][-1] == [chosen[0]["n"], chosen[0]["seed"]]
    runs = attempts_per_run(tmp_path)
    assert len(runs) == 12 and set(runs.values()) == {1}, runs  # 6 pre-trainings, 6 fine-tunes, each started once

    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and len(rounds(tmp_path)) == 3  # stopped: nothing re-planned
    larger = [*command[:-1], "design.budget_points=7"]  # a larger budget continues from the stop
    assert subprocess.run(larger, cwd=REPO, env=env, capture_output=True, timeout=600).returncode == 0
    assert [r["round"] for r in rounds(tmp_path)] == [0, 1, 2, 3, 4] and rounds(tmp_path)[2]["stop"] == "budget"
    assert len(attempts_per_run(tmp_path)) == 14 and set(attempts_per_run(tmp_path).values()) == {1}
