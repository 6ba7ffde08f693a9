"""fit_law recovers known parameters, reports fragility, and supports the paper's options."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis import fit_law
from synthetic_curves import N_VALUES, noisy_power_floor


def test_recovers_paper_like_curve_with_fixed_D(rng):
    n, y = noisy_power_floor(rng, alpha=0.2, C=0.8)
    result = fit_law(n, y, "power_floor", fix={"D": 0.48}, bootstrap=500, seed=0)
    assert result.converged
    assert result.params["D"] == 0.48 and result.fixed == {"D": 0.48}
    for name, truth in (("alpha", 0.2), ("C", 0.8)):
        lo, hi = result.intervals[name]
        assert lo <= truth <= hi, (name, lo, hi)
        assert abs(result.params[name] - truth) < 3 * result.stderr[name]
    assert result.r2 > 0.95


def test_log_and_linear_space_agree_on_clean_data():
    n = N_VALUES
    y = 0.48 * n**-0.4 + 0.9
    linear = fit_law(n, y, "power_floor")
    log = fit_law(n, y, "power_floor", space="log")
    for name, truth in (("D", 0.48), ("alpha", 0.4), ("C", 0.9)):
        assert linear.params[name] == pytest.approx(truth, rel=1e-4)
        assert log.params[name] == pytest.approx(truth, rel=1e-4)


def test_huber_resists_an_outlier_that_l2_does_not(rng):
    n = np.geomspace(1e3, 1e6, 12)
    y = 0.5 * n**-0.35 + 0.3 + rng.normal(0, 2e-4, n.size)
    y[7] += 0.03
    l2 = fit_law(n, y, "power_floor", space="log")
    huber = fit_law(n, y, "power_floor", space="log", loss="huber", huber_delta=1e-3)
    assert abs(huber.params["alpha"] - 0.35) < 0.01
    assert abs(huber.params["alpha"] - 0.35) < abs(l2.params["alpha"] - 0.35) / 3
    assert huber.loss == "huber" and "delta 0.001" in huber.report()


def test_zero_weight_equals_dropping_the_point(rng):
    n, y = noisy_power_floor(rng, seeds=1)
    y_bad = y.copy()
    y_bad[3] = 0.99
    weights = np.ones(n.size)
    weights[3] = 0.0
    weighted = fit_law(n, y_bad, "power_floor", fix={"D": 0.48}, weights=weights)
    dropped = fit_law(np.delete(n, 3), np.delete(y, 3), "power_floor", fix={"D": 0.48})
    assert weighted.params["alpha"] == pytest.approx(dropped.params["alpha"], rel=1e-5)


def test_global_fit_shares_alpha_and_keeps_gaps_apart(rng):
    n1, y1 = noisy_power_floor(rng, alpha=0.3, C=0.7, noise=0.002)
    n2, y2 = noisy_power_floor(rng, alpha=0.3, C=0.9, noise=0.002)
    n = np.concatenate([n1, n2])
    y = np.concatenate([y1, y2])
    groups = ["resnet50"] * n1.size + ["resnet18"] * n2.size
    result = fit_law(n, y, "power_floor", groups=groups, shared=["alpha"], fix={"D": 0.48}, bootstrap=300, seed=1)
    assert set(result.params) == {"D", "alpha", "C[resnet50]", "C[resnet18]"}
    assert result.n_free == 3
    assert result.law_params("resnet18")["C"] == result.params["C[resnet18]"]
    lo, hi = result.intervals["alpha"]
    assert lo <= 0.3 <= hi
    assert result.params["C[resnet50]"] == pytest.approx(0.7, abs=0.02)
    assert result.params["C[resnet18]"] == pytest.approx(0.9, abs=0.02)
    grid = np.array([1e3, 1e6])
    assert np.all(result.predict(grid, group="resnet50") < result.predict(grid, group="resnet18"))
    with pytest.raises(ValueError, match="pass group="):
        result.predict(grid)


def test_free_D_on_seven_noisy_points_is_flagged_not_hidden(rng):
    n = N_VALUES
    y = 0.48 * n**-0.2 + 0.8 + rng.normal(0, 0.004, n.size)
    result = fit_law(n, y, "power_floor", bootstrap=300, seed=0)
    width = result.intervals["alpha"][1] - result.intervals["alpha"][0]
    fixed = fit_law(n, y, "power_floor", fix={"D": 0.48}, bootstrap=300, seed=0)
    fixed_width = fixed.intervals["alpha"][1] - fixed.intervals["alpha"][0]
    assert width > 2 * fixed_width
    assert result.warnings, "a free-D fit of 7 noisy points should warn (bound hit or flat optimum)"


def test_parameter_pushed_past_its_bound_is_reported():
    n = N_VALUES
    y = 50.0 * n**-2.0 + 0.1
    result = fit_law(n, y, "power_floor")
    assert result.params["alpha"] == pytest.approx(1.5)
    assert any("alpha" in w and "upper bound 1.5" in w for w in result.warnings)
    widened = fit_law(n, y, "power_floor", bounds={"alpha": (0.1, 3.0)})
    assert widened.params["alpha"] == pytest.approx(2.0, rel=1e-4)
    assert not any("bound" in w for w in widened.warnings)


def test_non_convergence_is_reported_never_hidden(rng):
    n, y = noisy_power_floor(rng)
    result = fit_law(n, y, "power_floor", max_nfev=3)
    assert result.converged is False
    assert "converged: NO" in result.report()
    assert any("did not converge" in w for w in result.warnings)
    assert result.to_dict()["converged"] is False


def test_report_and_json(rng):
    n, y = noisy_power_floor(rng)
    result = fit_law(n, y, "power_floor", fix={"D": 0.48}, bootstrap=200, seed=3)
    text = result.report()
    for fragment in ("[[power_floor]]", "alpha", "fixed", "95% interval", "resamples over seeds", "AIC"):
        assert fragment in text
    payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert payload["params"]["alpha"] == pytest.approx(result.params["alpha"])
    assert payload["intervals"]["alpha"] == list(result.intervals["alpha"])
    assert payload["bootstrap"]["resample"] == "seeds"


def test_joint_law_from_dataframe_columns(rng):
    import pandas as pd

    n, s = np.meshgrid(N_VALUES, [100.0, 300.0, 1000.0, 3000.0])
    frame = pd.DataFrame({"n": n.ravel(), "s": s.ravel()})
    frame["error"] = 0.9 * (0.3 + frame["n"] ** -0.4) * frame["s"] ** -0.15 * np.exp(rng.normal(0, 0.002, len(frame)))
    result = fit_law(frame[["n", "s"]], frame["error"], "joint_ns", space="log", bootstrap=300, seed=0)
    for name, truth in (("alpha", 0.4), ("beta", 0.15), ("gamma", 0.3)):
        lo, hi = result.intervals[name]
        assert lo <= truth <= hi, (name, result.intervals[name])


def test_profile_likelihood_intervals_on_request(rng):
    n, y = noisy_power_floor(rng)
    result = fit_law(n, y, "power_floor", fix={"D": 0.48}, conf_interval=True)
    lo, hi = result.profile_intervals["alpha"]
    assert lo < result.params["alpha"] < hi
    assert "profile-likelihood" in result.report()
