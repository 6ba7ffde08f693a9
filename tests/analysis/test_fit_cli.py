"""`lab fit` on a small tidy CSV: table, JSON, figure, exit codes and errors."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from analysis.cli import EXIT_BAD_INPUT, EXIT_NOT_CONVERGED, EXIT_OK, add_fit_arguments, main, run_fit

N_GRID = 1000 * 2 ** np.arange(9)


@pytest.fixture
def sweep_csv(tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for task, gap in (("imagenet", 0.8), ("coco", 0.9)):
        for seed in range(3):
            rows.append({"task": task, "n": 0, "seed": seed, "metric": "top1", "error": 0.97})
            for n in N_GRID:
                error = 0.48 * n**-0.25 + gap + rng.normal(0, 0.002)
                rows.append({"task": task, "n": n, "seed": seed, "metric": "top1", "error": error})
    path = tmp_path / "sweep.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_grouped_fit_writes_json_and_figure(sweep_csv, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [str(sweep_csv), "--x", "n", "--y", "error", "--group", "task", "--shared", "alpha"]
    argv += ["--fix", "D=0.48", "--extrapolate-from", "64000", "--target-error", "0.85", "--bootstrap", "200"]
    assert main(argv + ["--out", str(out)]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "C[imagenet]" in printed and "C[coco]" in printed and "RMSLE" in printed
    payload = json.loads((out / "fit.json").read_text())
    assert payload["fit"]["params"]["D"] == 0.48
    assert payload["fit"]["params"]["alpha"] == pytest.approx(0.25, abs=0.01)
    assert payload["fit"]["params"]["C[coco]"] == pytest.approx(0.9, abs=0.005)
    assert payload["baseline"] == {"coco": pytest.approx(0.97), "imagenet": pytest.approx(0.97)}
    assert payload["input"]["rows"] == 2 * 3 * len(N_GRID)
    assert payload["input"]["rows_fitted"] == 2 * 3 * (len(N_GRID) - 2), "the fit is on n <= 64000 only"
    assert payload["extrapolation"]["n_test"] == 2 * 3 * 2
    assert payload["extrapolation"]["max_abs_error"] < 0.01
    assert payload["questions"]["n_to_reach[coco]"]["value"] is None, "0.85 is below coco's gap: unreachable"
    assert 1e3 < payload["questions"]["n_to_reach[imagenet]"]["value"] < 1e5
    assert (out / "fit.png").stat().st_size > 5000


def test_compare_laws_ranks_by_held_out_error(sweep_csv, tmp_path, capsys):
    argv = [str(sweep_csv), "--where", "task=coco", "--extrapolate-from", "64000", "--space", "log"]
    argv += ["--compare", "power_floor,broken_power,m4", "--bootstrap", "0", "--out", str(tmp_path / "cmp")]
    assert main(argv) == EXIT_OK
    payload = json.loads((tmp_path / "cmp" / "fit.json").read_text())
    ranked = [row["law"] for row in payload["comparison"]["rows"]]
    assert sorted(ranked) == ["broken_power", "m4", "power_floor"]
    assert all(row["rmsle"] is not None for row in payload["comparison"]["rows"])
    assert "law comparison" in capsys.readouterr().out


def test_bad_column_and_bad_rows_exit_2_with_clear_messages(sweep_csv, tmp_path, capsys):
    assert main([str(sweep_csv), "--y", "accuracy", "--out", str(tmp_path / "a")]) == EXIT_BAD_INPUT
    assert "columns ['accuracy'] not in the CSV" in capsys.readouterr().err
    frame = pd.read_csv(sweep_csv)
    frame.loc[5, "error"] = np.nan
    frame.loc[7, "error"] = 1.5
    broken = tmp_path / "broken.csv"
    frame.to_csv(broken, index=False)
    imagenet = ["--where", "task=imagenet"]  # the rows changed above; one curve, CSV line numbers kept
    assert main([str(broken), *imagenet, "--out", str(tmp_path / "b")]) == EXIT_BAD_INPUT
    assert "NaN or infinite in row 7" in capsys.readouterr().err, "CSV line of data row 5 is 7"
    frame.loc[5, "error"] = 0.9
    frame.to_csv(broken, index=False)
    assert main([str(broken), *imagenet, "--out", str(tmp_path / "c")]) == EXIT_BAD_INPUT
    message = capsys.readouterr().err
    assert "row 9 (values 1.5)" in message and "--no-range-check" in message
    assert main([str(sweep_csv), "--fix", "D=abc", "--out", str(tmp_path / "d")]) == EXIT_BAD_INPUT
    assert "'abc' is not a number" in capsys.readouterr().err


def test_a_text_cell_or_an_empty_file_is_named_with_file_column_and_row(sweep_csv, tmp_path, capsys):
    frame = pd.read_csv(sweep_csv).astype({"error": object})
    frame.loc[3, "error"] = "abc"
    typo = tmp_path / "typo.csv"
    frame.to_csv(typo, index=False)
    assert main([str(typo), "--bootstrap", "0", "--out", str(tmp_path / "a")]) == EXIT_BAD_INPUT
    message = capsys.readouterr().err
    assert f"{typo}: column 'error' must hold numbers but has text in row 5 ('abc')" in message
    assert "could not convert" not in message
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert main([str(empty), "--out", str(tmp_path / "b")]) == EXIT_BAD_INPUT
    assert f"{empty}: the file is empty" in capsys.readouterr().err
    empty.write_text("n,error\n")
    assert main([str(empty), "--out", str(tmp_path / "c")]) == EXIT_BAD_INPUT
    assert f"{empty}: the file has a header (n, error) but no rows" in capsys.readouterr().err


def test_no_residual_degrees_of_freedom_prints_and_writes_no_interval(tmp_path, capsys):
    three = tmp_path / "three.csv"
    three.write_text("n,error\n1000,0.5\n2000,0.4\n4000,0.35\n")
    assert main([str(three), "--bootstrap", "200", "--out", str(tmp_path / "fit")]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "warning: no residual degrees of freedom (3 points for 3 free parameters)" in printed
    assert "unavailable" in printed and "200 of 200" not in printed
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())["fit"]
    assert fit["stderr"] == {"D": None, "alpha": None, "C": None}
    assert fit["intervals"]["C"] == [None, None] and not fit["bootstrap"]["has_interval"]
    assert fit["warnings"][0].startswith("no residual degrees of freedom")


def test_refuses_to_mix_metrics_of_a_results_table(sweep_csv, tmp_path, capsys):
    frame = pd.read_csv(sweep_csv)
    loss_rows = frame.assign(metric="loss", error=frame["error"] * 2)
    mixed = tmp_path / "mixed.csv"
    pd.concat([frame, loss_rows]).to_csv(mixed, index=False)
    assert main([str(mixed), "--bootstrap", "0", "--out", str(tmp_path / "x")]) == EXIT_BAD_INPUT
    assert "several metrics (loss, top1)" in capsys.readouterr().err
    argv = [str(mixed), "--where", "metric=top1", "--where", "task=coco", "--bootstrap", "0", "--out", str(tmp_path / "y")]
    assert main(argv) == EXIT_OK


def test_non_convergence_exits_3_but_still_writes_results(sweep_csv, tmp_path, monkeypatch):
    import analysis.fit

    real_fit = analysis.fit.fit_law
    monkeypatch.setattr(analysis.fit, "fit_law", lambda *a, **k: real_fit(*a, **{**k, "max_nfev": 3}))
    out = tmp_path / "nc"
    assert main([str(sweep_csv), "--where", "task=coco", "--bootstrap", "0", "--out", str(out)]) == EXIT_NOT_CONVERGED
    assert json.loads((out / "fit.json").read_text())["fit"]["converged"] is False


def test_wires_into_a_parent_parser(sweep_csv, tmp_path):
    parser = argparse.ArgumentParser(prog="lab")
    commands = parser.add_subparsers(dest="command")
    add_fit_arguments(commands.add_parser("fit"))
    args = parser.parse_args(["fit", str(sweep_csv), "--where", "task=imagenet", "--bootstrap", "50", "--out", str(tmp_path / "w")])
    assert run_fit(args) == EXIT_OK
    assert (tmp_path / "w" / "fit.json").exists()


def test_module_entry_point(sweep_csv, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    completed = subprocess.run(
        [sys.executable, "-m", "analysis.cli", str(sweep_csv), "--where", "task=coco", "--bootstrap", "0", "--out", str(tmp_path / "m")],
        cwd=root,
        env={"PYTHONPATH": str(root), "MPLBACKEND": "Agg", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "[[power_floor]]" in completed.stdout
