"""What a new user of `lab fit` meets first (issue 19): several curves are refused rather than pooled, the fit
under --extrapolate-from never sees the held-out points, --where compares numbers as numbers, messages name
the flags and say what to do, output goes to ./fits/<stem>/, and the figure speaks the CSV's language."""

from __future__ import annotations

import json

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest

from analysis.cli import EXAMPLE_CSV, EXIT_BAD_INPUT, EXIT_OK, fit_arguments, fit_csv, main

N_GRID = 1000 * 2 ** np.arange(8)  # 1k .. 128k


def curves_csv(path, labels: dict[str, list], seeds: int = 2, extra=None, scale: float = 1.0):
    """One power-law curve per combination of `labels`, `seeds` repeats each, plus an n = 0 baseline row."""
    rng = np.random.default_rng(7)
    combos = pd.MultiIndex.from_product(list(labels.values()), names=list(labels)).to_frame(index=False)
    rows = []
    for i, combo in combos.iterrows():
        for seed in range(seeds):
            rows.append({**combo, "n": 0, "seed": seed, "error": 0.95 * scale})
            for n in N_GRID:
                error = 0.5 * n**-0.3 + 0.3 + 0.05 * i + rng.normal(0, 0.002)
                rows.append({**combo, "n": n, "seed": seed, "error": error * scale, **(extra(rng) if extra else {})})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_several_curves_are_refused_with_their_label_columns_named(tmp_path, capsys):
    csv = curves_csv(tmp_path / "many.csv", {"model": ["r18", "r50"], "task": ["coco", "ade"]})
    frame = pd.read_csv(csv)
    frame["model_hash"] = frame.model.map({"r18": "a1", "r50": "b2"})  # follows model: not worth naming
    frame.to_csv(csv, index=False)
    assert main([str(csv), "--bootstrap", "0", "--out", str(tmp_path / "x")]) == EXIT_BAD_INPUT
    message = capsys.readouterr().err
    assert "several curves" in message and "differ in model, task (" in message and "model_hash" not in message
    assert "--group model,task" in message and "--where model=r18 --where task=coco" in message
    assert not (tmp_path / "x").exists()
    assert main([str(csv), "--group", "model", "--where", "task=coco", "--bootstrap", "0", "--out",
                 str(tmp_path / "y")]) == EXIT_OK


def test_columns_that_follow_the_groups_are_not_labels_but_a_further_label_is(tmp_path, capsys):
    """A pre-training task's metric name follows the task: grouped by task it splits nothing; a model does."""
    frame = pd.read_csv(curves_csv(tmp_path / "tasks.csv", {"task": ["seg", "normals"], "model": ["r18", "r50"]}))
    frame["task_metric"] = frame.task.map({"seg": "ce", "normals": "cos"})
    csv = tmp_path / "with_metric.csv"
    frame.to_csv(csv, index=False)
    argv = [str(csv), "--group", "task", "--bootstrap", "0"]
    assert main(argv + ["--where", "model=r18", "--out", str(tmp_path / "a")]) == EXIT_OK
    assert main(argv + ["--out", str(tmp_path / "b")]) == EXIT_BAD_INPUT
    message = capsys.readouterr().err
    assert "differ in model (" in message and "--group task,model" in message and "task_metric" not in message


def test_one_curve_with_per_run_columns_is_not_mistaken_for_several(tmp_path):
    """A learning rate chosen per run and a run hash vary from row to row but do not make curves."""
    counter = iter(range(10**6))
    csv = curves_csv(tmp_path / "one.csv", {"task": ["coco"]}, seeds=3,
                     extra=lambda rng: {"lr": rng.choice([0.003, 0.01]), "run_hash": f"h{next(counter)}"})
    assert main([str(csv), "--bootstrap", "0", "--out", str(tmp_path / "fit")]) == EXIT_OK


def test_a_seed_column_by_another_name_is_named_with_seed_column(tmp_path, capsys):
    frame = pd.read_csv(curves_csv(tmp_path / "one.csv", {"task": ["coco"]}, seeds=3))
    csv = tmp_path / "trials.csv"
    frame.rename(columns={"seed": "trial_no"}).to_csv(csv, index=False)
    assert main([str(csv), "--bootstrap", "0", "--out", str(tmp_path / "a")]) == EXIT_BAD_INPUT
    assert "name it with --seed-column" in capsys.readouterr().err
    assert main([str(csv), "--seed-column", "trial_no", "--bootstrap", "0", "--out", str(tmp_path / "b")]) == EXIT_OK


def test_extrapolation_reports_and_stores_the_training_only_fit(tmp_path, capsys):
    from analysis.fit import fit_law

    csv = curves_csv(tmp_path / "two.csv", {"task": ["coco", "ade"]})
    out = tmp_path / "out"
    argv = [str(csv), "--group", "task", "--extrapolate-from", "32000", "--bootstrap", "0", "--out", str(out)]
    assert main(argv) == EXIT_OK
    printed = capsys.readouterr().out
    payload = json.loads((out / "fit.json").read_text())
    frame = pd.read_csv(csv)
    train = frame[(frame.n > 0) & (frame.n <= 32000)]
    expected = fit_law(train.n.to_numpy(float), train.error.to_numpy(float), groups=train.task.tolist())
    assert payload["fit"]["n_points"] == len(train) == 2 * 2 * 6
    assert f"points {len(train)}," in printed, "the printed table is the training-only fit"
    for name, value in expected.params.items():
        assert payload["fit"]["params"][name] == pytest.approx(value, rel=1e-4)
    assert payload["questions"]["transfer_gap[coco]"]["value"] == pytest.approx(expected.params["C[coco]"], rel=1e-4)
    held = payload["extrapolation"]
    assert held["n_test"] == 2 * 2 * 2 and "fit" not in held
    assert set(held["by_group"]) == {"coco", "ade"} and held["by_group"]["ade"]["n_test"] == 4
    assert len(held["points"]) == 8 and {"n", "observed", "predicted", "group", "row"} <= set(held["points"][0])
    last = held["points"][-1]
    assert frame.loc[last["row"] - 2, "error"] == pytest.approx(last["observed"]), "row is the CSV line number"
    assert "  ade: mean |error|" in printed


def test_a_cut_that_holds_out_nothing_fails_before_any_table_is_printed(tmp_path, capsys):
    csv = curves_csv(tmp_path / "one.csv", {"task": ["coco"]})
    assert main([str(csv), "--extrapolate-from", "1e9", "--bootstrap", "0", "--out", str(tmp_path / "o")]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert "0 held-out points" in captured.err
    assert captured.out == ""


def test_where_compares_numbers_as_numbers_and_names_the_values_present(tmp_path, capsys):
    csv = curves_csv(tmp_path / "ratios.csv", {"fratio": [0.5, 1]})
    assert main([str(csv), "--where", "fratio=1.0", "--bootstrap", "0", "--out", str(tmp_path / "a")]) == EXIT_OK
    assert json.loads((tmp_path / "a" / "fit.json").read_text())["input"]["rows_fitted"] == 2 * len(N_GRID)
    capsys.readouterr()
    assert main([str(csv), "--where", "fratio=2", "--out", str(tmp_path / "b")]) == EXIT_BAD_INPUT
    assert "no rows match fratio=2 (values present: 0.5, 1)" in capsys.readouterr().err


def test_messages_name_the_flags_and_what_to_do(tmp_path, capsys):
    csv = curves_csv(tmp_path / "one.csv", {"task": ["coco"]})
    assert main([str(csv), "--bounds", "alpha=0.1-1.5", "--out", str(tmp_path / "a")]) == EXIT_BAD_INPUT
    assert "--bounds expects NAME=LO:HI" in capsys.readouterr().err
    assert main([str(csv), "--bootstrap", "1", "--out", str(tmp_path / "a")]) == EXIT_BAD_INPUT
    assert "--bootstrap must be 0 (no intervals) or >= 2" in capsys.readouterr().err
    assert main([str(csv), "--bounds", "alpha=0.1:1.5", "--bootstrap", "0", "--out", str(tmp_path / "b")]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "--bootstrap B" in printed and "bootstrap=B" not in printed
    stored = json.loads((tmp_path / "b" / "fit.json").read_text())["questions"]["transfer_gap"]
    assert "--bootstrap B" in stored["note"] and "--bootstrap B" in stored["text"]
    percent = curves_csv(tmp_path / "percent.csv", {"task": ["coco"]}, scale=100.0)
    assert main([str(percent), "--bootstrap", "0", "--out", str(tmp_path / "c")]) == EXIT_BAD_INPUT
    message = capsys.readouterr().err
    assert "looks like a percentage" in message and "divide it by 100" in message
    assert "--no-range-check" not in message


def test_default_output_folder_is_fits_stem_in_the_working_directory(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    csv = curves_csv(data / "my_runs.csv", {"task": ["coco"]})
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main([str(csv), "--bootstrap", "0"]) == EXIT_OK
    assert (work / "fits" / "my_runs" / "fit.json").exists() and (work / "fits" / "my_runs" / "fit.png").exists()
    assert sorted(p.name for p in data.iterdir()) == ["my_runs.csv"], "nothing written into the data folder"


@pytest.fixture
def saved_figures(monkeypatch):
    """The figures `lab fit` saves, kept for inspection."""
    saved = []
    real_savefig = matplotlib.figure.Figure.savefig

    def spy(self, *args, **kwargs):
        saved.append(self)
        return real_savefig(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    return saved


def test_figure_names_the_axes_after_the_columns_and_marks_the_target(tmp_path, saved_figures):
    frame = pd.read_csv(curves_csv(tmp_path / "one.csv", {"task": ["coco"]}))
    csv = tmp_path / "renamed.csv"
    frame.rename(columns={"n": "images", "error": "err_rate"}).to_csv(csv, index=False)
    argv = [str(csv), "--x", "images", "--y", "err_rate", "--target-error", "0.32", "--bootstrap", "0"]
    assert main(argv + ["--out", str(tmp_path / "o")]) == EXIT_OK
    main_ax, residual_ax = saved_figures[-1].axes
    assert main_ax.get_ylabel() == "err_rate" and residual_ax.get_xlabel() == "images"
    needed = json.loads((tmp_path / "o" / "fit.json").read_text())["questions"]["n_to_reach"]["value"]
    assert any(np.allclose(line.get_ydata(), 0.32) for line in main_ax.get_lines()), "target error line"
    stars = [c.get_offsets()[0] for c in main_ax.collections if len(c.get_offsets()) == 1]
    assert any(np.allclose(star, [needed, 0.32]) for star in stars), "the target n is marked"
    assert main_ax.get_xlim()[1] >= needed


def test_grouped_figure_keeps_legend_outside_and_colours_distinct(tmp_path, saved_figures):
    labels = [f"curve_with_a_long_name_{i}" for i in range(12)]
    csv = curves_csv(tmp_path / "twelve.csv", {"task": labels}, seeds=1)
    assert main([str(csv), "--group", "task", "--bootstrap", "0", "--out", str(tmp_path / "o")]) == EXIT_OK
    figure = saved_figures[-1]
    main_ax, residual_ax = figure.axes
    figure.canvas.draw()
    legend = main_ax.get_legend()
    assert legend.get_window_extent().x0 >= main_ax.get_window_extent().x1, "legend right of the plots"
    assert legend.get_window_extent().x0 >= residual_ax.get_window_extent().x1
    colours = {line.get_color() if isinstance(line.get_color(), str) else tuple(line.get_color())
               for line in main_ax.get_lines() if line.get_label() in labels}
    assert len(colours) == 12
    title = main_ax.title.get_window_extent()
    assert title.x0 >= 0 and title.x1 <= figure.get_window_extent().x1 * 1.5


def test_the_bundled_example_fits_with_neutral_defaults(tmp_path):
    run = fit_csv(fit_arguments(EXAMPLE_CSV, bootstrap=0, out=tmp_path / "example"))
    assert run.result.converged and run.json_path.exists() and run.figure_path.exists()
    assert run.payload["fit"]["fixed"] == {} and run.payload["input"]["group"] == []


def test_fit_arguments_takes_comma_separated_lists_and_refuses_unknown_names(tmp_path):
    args = fit_arguments("a.csv", where="task=coco, metric=top1", fix="D=0.48", out=str(tmp_path))
    assert args.where == ["task=coco", "metric=top1"] and args.fix == ["D=0.48"] and args.out == tmp_path
    assert args.bootstrap == 1000 and args.x == ["n"], "defaults come from the parser"
    with pytest.raises(ValueError, match="unknown fit option"):
        fit_arguments("a.csv", groups="task")
