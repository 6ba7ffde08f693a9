"""Notebooks redraw figures from stored results (no training); each is executed here."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def execute(notebook: Path, env: dict[str, str], cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(notebook, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


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
