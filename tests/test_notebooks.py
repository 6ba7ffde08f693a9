"""Notebooks redraw figures from stored results (no training); each is executed here."""

from __future__ import annotations

from pathlib import Path

import nbformat

from experiments.paper import execute_notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def execute(notebook: Path, env: dict[str, str], cwd: Path) -> nbformat.NotebookNode:
    assert cwd == notebook.parent  # the notebooks resolve their data relative to notebooks/
    return execute_notebook(notebook, env, timeout=300)


def test_demo_notebook_redraws_the_figure_from_a_results_table(toy_study, tmp_path):
    config, _ = toy_study
    figure = tmp_path / "demo_from_notebook.png"
    nb = execute(NOTEBOOKS / "demo.ipynb",
                 {"LAB_RESULTS": str(config.study_dir / "results.csv"), "LAB_FIGURE": str(figure)}, NOTEBOOKS)
    assert figure.stat().st_size > 0
    outputs = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "alpha" in outputs


def test_demo_notebook_runs_on_the_stored_results():
    stored = NOTEBOOKS / "data" / "digits_demo_results.csv"
    assert stored.exists(), "the stored demo results are missing; copy runs/digits_demo/results.csv there"
    execute(NOTEBOOKS / "demo.ipynb", {}, NOTEBOOKS)


def test_fit_new_curves_notebook_is_lab_fit_on_a_foreign_csv_from_outside_the_repo(tmp_path, monkeypatch):
    """Copied out of the repo, pointed by environment variables at a CSV with its own column names, the notebook
    writes the fit.json `lab fit` writes and the figure, and shows the figure (MPLBACKEND left unset)."""
    import json
    import shutil

    import numpy as np
    import pandas as pd

    from analysis.cli import main

    rng = np.random.default_rng(5)
    rows = [{"family": family, "trial_no": r, "images": n, "top1_err": 0.5 * n**-0.3 + gap + rng.normal(0, 0.002)}
            for family, gap in (("cnn", 0.2), ("vit", 0.3)) for r in range(2) for n in 500 * 2 ** np.arange(8)]
    csv = tmp_path / "data" / "my_curves.csv"
    csv.parent.mkdir()
    pd.DataFrame(rows).to_csv(csv, index=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    notebook = Path(shutil.copy(NOTEBOOKS / "fit_new_curves.ipynb", elsewhere))
    source = notebook.read_text()
    assert "matplotlib.use" not in source and '"parameters"' in source
    monkeypatch.delenv("MPLBACKEND", raising=False)
    options = {"X": "images", "Y": "top1_err", "SEED_COLUMN": "trial_no", "GROUP": "family", "EXTRAPOLATE_FROM": "16000",
               "TARGET_ERROR": "0.35", "BOOTSTRAP": "50"}
    nb = execute_notebook(notebook, {"FIT_CSV": str(csv), **{f"FIT_{k}": v for k, v in options.items()}}, timeout=300)

    out = elsewhere / "fits" / "my_curves"  # the default folder, under the notebook's working directory
    assert (out / "fit.png").stat().st_size > 5000
    written = json.loads((out / "fit.json").read_text())
    assert set(written["fit"]["groups"]) == {"cnn", "vit"} and written["extrapolation"]["by_group"]
    assert "images" in written["extrapolation"]["points"][0], "held-out points keyed by the CSV's column"
    shown = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs if "image/png" in o.get("data", {})]
    assert shown, "the figure is displayed inline"
    argv = [str(csv), "--x", "images", "--y", "top1_err", "--seed-column", "trial_no", "--group", "family", "--extrapolate-from", "16000",
            "--target-error", "0.35", "--bootstrap", "50", "--out", str(tmp_path / "cli")]
    assert main(argv) == 0
    from_cli = json.loads((tmp_path / "cli" / "fit.json").read_text())
    assert written["fit"] == from_cli["fit"] and written["questions"] == from_cli["questions"]
