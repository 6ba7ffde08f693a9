"""Figures render headless and show what they claim to."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis import fit_law
from analysis.plots import plot_fit, plot_transfer_grid
from synthetic_curves import N_VALUES, noisy_power_floor


def test_plot_fit_draws_data_curve_band_and_residuals(rng, tmp_path):
    n, y = noisy_power_floor(rng)
    result = fit_law(n, y, fix={"D": 0.48}, bootstrap=100, seed=0)
    figure = plot_fit(result, n, y, extend_to=1.28e6)
    main, residual = figure.axes
    assert main.get_xscale() == "log" and main.get_yscale() == "log"
    assert len(main.collections) >= 2, "expected data points and a bootstrap band"
    assert len(residual.collections) == 1
    assert main.lines[0].get_xdata().max() == pytest.approx(1.28e6)
    figure.savefig(tmp_path / "fit.png")
    assert (tmp_path / "fit.png").stat().st_size > 1000


def test_plot_fit_into_existing_axes_has_no_residual_panel_by_default(rng):
    n, y = noisy_power_floor(rng, seeds=1)
    result = fit_law(n, y, fix={"D": 0.48})
    figure, ax = plt.subplots()
    assert plot_fit(result, n, y, ax=ax) is figure
    assert len(figure.axes) == 1
    assert not ax.child_axes
    plot_fit(result, n, y, ax=ax, residuals=True)
    assert len(ax.child_axes) == 1, "an inset residual panel when asked for explicitly"


def test_plot_fit_grouped_and_joint(rng):
    n, s = np.meshgrid(N_VALUES, [100.0, 1000.0])
    xs = {"n": n.ravel(), "s": s.ravel()}
    y = 0.9 * (0.3 + xs["n"] ** -0.4) * xs["s"] ** -0.15
    joint = fit_law(xs, y, "joint_ns")
    figure = plot_fit(joint, xs, y)
    assert len(figure.axes[0].lines) == 2, "one curve per fine-tuning size"
    groups = ["a"] * 7 + ["b"] * 7
    grouped = fit_law(xs["n"], y, groups=groups, shared=["alpha"])
    with pytest.raises(ValueError, match="pass groups="):
        plot_fit(grouped, xs["n"], y)
    assert len(plot_fit(grouped, xs["n"], y, groups=groups).axes[0].lines) == 2


def test_transfer_grid_panels_and_baselines(rng):
    rows = []
    for pretrain in ("multilabel", "detection"):
        for finetune in ("imagenet", "coco"):
            gap = 0.8 if finetune == "imagenet" else 0.9
            for seed in range(2):
                rows.append({"pretrain_task": pretrain, "finetune_task": finetune, "n": 0, "seed": seed, "error": 0.99})
                for n in N_VALUES:
                    error = 0.48 * n**-0.3 + gap + rng.normal(0, 0.002)
                    rows.append({"pretrain_task": pretrain, "finetune_task": finetune, "n": n, "seed": seed, "error": error})
    grid = plot_transfer_grid(pd.DataFrame(rows), fit_options={"fix": {"D": 0.48}})
    assert len(grid.figure.axes) == 4
    assert len(grid.fits) == 4 and len(grid.baselines) == 4
    assert grid.fits[("detection", "coco", None)].params["C"] == pytest.approx(0.9, abs=0.01)
    with pytest.raises(ValueError, match=r"columns \['task'\] not in the table"):
        plot_transfer_grid(pd.DataFrame(rows), row="task")
