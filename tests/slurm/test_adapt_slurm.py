"""`lab sweep adapt` on the real local Slurm cluster: each round's points run as Slurm jobs, none twice."""

from __future__ import annotations

import pandas as pd
import pytest

from experiments.cli import main
from lab.run import sweep
from tests.test_adapt import attempts_per_run, rounds, toy_args

pytestmark = pytest.mark.slurm


def test_an_adaptive_toy_study_runs_its_rounds_on_slurm(slurm_partition, tmp_path, capsys):
    args = ["sweep", "adapt", *toy_args(tmp_path, "launcher=slurm", f"launcher.partition={slurm_partition}",
                                         "launcher.timeout_min=10", "launcher.mem_gb=2", "design.budget_points=5")]
    assert main(args) == 0, capsys.readouterr().err
    assert "stopped (budget) after 2 rounds, 5 points" in capsys.readouterr().out
    log = rounds(tmp_path)
    assert [r["round"] for r in log] == [0, 1] and len(log[0]["chosen"]) == 1
    state = sweep.load_state(tmp_path / "adapt_toy" / "sweep")
    assert state["executor"] == "slurm" and len(state["launches"]) == 2  # one launch per round
    assert all(info["job_ids"] and info["job_ids"][0] != "local" for info in state["tasks"].values())
    table = pd.read_csv(tmp_path / "adapt_toy" / "results.csv")
    assert len(table[(table.metric == "top1") & (table.n > 0)]) == 5
    runs = attempts_per_run(tmp_path)
    assert len(runs) == 10 and set(runs.values()) == {1}, runs
    assert main(args) == 0 and len(rounds(tmp_path)) == 2  # finished: a rerun submits and plans nothing
    assert len(sweep.load_state(tmp_path / "adapt_toy" / "sweep")["launches"]) == 2
