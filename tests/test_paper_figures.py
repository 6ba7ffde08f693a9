"""Paper figures others can regenerate and read (issue 19): identical bytes on every run, Figure 1 panels with
labelled n ticks and a scratch legend entry, the extrapolation plot with error bars."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from analysis.plots import save_figure  # noqa: E402
from analysis.reproduction import (SCRATCH_LABEL, draw_extrapolation, draw_figure1, extrapolation_table,  # noqa: E402
                                   fit_curves, save_outputs)

STORED = Path(__file__).parent / "data" / "paper_results"


def small_figure():
    figure, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2, 3], [3, 1, 2], label="a line")
    ax.set_title("title")
    ax.legend()
    return figure


@pytest.mark.parametrize("kind", ["pdf", "png", "svg"])
def test_saving_the_same_figure_twice_gives_the_same_bytes(kind, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    figure = small_figure()
    first, second = io.BytesIO(), io.BytesIO()
    save_figure(figure, first, format=kind, dpi=130, bbox_inches="tight")
    time.sleep(1.1)  # a creation date has one-second resolution
    save_figure(figure, second, format=kind, dpi=130, bbox_inches="tight")
    assert first.getvalue() == second.getvalue()
    assert b"Matplotlib" not in first.getvalue() and b"matplotlib.org" not in first.getvalue()


def test_source_date_epoch_is_the_date_written(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    figure = small_figure()
    pdf = io.BytesIO()
    save_figure(figure, pdf, format="pdf")
    assert b"/CreationDate (D:20231114" in pdf.getvalue()


def test_save_outputs_rewrites_identical_figure_files(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    figure = small_figure()
    save_outputs(tmp_path / "a", "demo", figure=figure)
    time.sleep(1.1)
    save_outputs(tmp_path / "b", "demo", figure=figure)
    for suffix in ("pdf", "png"):
        name = Path("figures") / f"demo.{suffix}"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.fixture(scope="module")
def figure1_table():
    table = pd.read_csv(STORED / "figure1.csv")
    fits = {key: fit_curves(part, ["pretrain_task"], bootstrap=5) for key, part in table.groupby(["target", "s"])}
    return table, fits


def test_every_figure1_panel_labels_several_n_and_the_legend_names_the_scratch_line(figure1_table):
    table, fits = figure1_table
    errors = table[table.metric == "top1"]
    figure = draw_figure1(errors, fits, controls=["multilabel_shuffled"])
    figure.canvas.draw()
    panels = figure.axes
    assert len(panels) == errors.pretrain_task.nunique() * len(fits)
    for ax in panels:
        low, high = ax.get_xlim()
        labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text() and low <= t.get_position()[0] <= high]
        assert len(labels) >= 2, (ax.get_title(), labels)
    legend = [t.get_text() for legend in figure.legends for t in legend.get_texts()]
    assert SCRATCH_LABEL in legend
    plt.close(figure)


def test_the_extrapolation_plot_has_error_bars():
    from matplotlib.container import ErrorbarContainer

    table = pd.read_csv(STORED / "model_size.csv")
    held = extrapolation_table(table, ["model"], fit_up_to=int(table.n.max()) // 4)
    scored = held.assign(study="model_size").dropna(subset=["abs_error"])
    assert len(scored)
    figure = draw_extrapolation(scored)
    bars = [c for c in figure.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert bars and all(c.has_xerr for c in bars)
    assert "seed SD" in figure.axes[0].get_xlabel()
    plt.close(figure)


def test_a_regenerated_paper_figure_and_its_notebook_are_byte_identical(tmp_path, monkeypatch):
    """`lab paper figures` twice: the same figure files and executed notebook (no dates, no timings)."""
    from experiments import paper

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    for out in ("a", "b"):
        assert paper.make_figures(STORED, tmp_path / out, bootstrap=5, only=["paper_extrapolation"]) == {
            "paper_extrapolation": "ran"}
    for name in ("figures/extrapolation.pdf", "figures/extrapolation.png", "notebooks/paper_extrapolation.ipynb"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    cells = json.loads((tmp_path / "a" / "notebooks" / "paper_extrapolation.ipynb").read_text())["cells"]
    assert not any("execution" in cell.get("metadata", {}) for cell in cells)
