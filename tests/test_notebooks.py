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


def test_fit_new_curves_notebook_runs_end_to_end(tmp_path):
    nb = execute(NOTEBOOKS / "fit_new_curves.ipynb", {"MPLBACKEND": "Agg"}, NOTEBOOKS)
    outputs = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "alpha" in outputs
