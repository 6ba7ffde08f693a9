"""Held-out extrapolation scoring, law comparison, and the scientist's questions with intervals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from analysis import InputError, fit_law
from analysis.extrapolation import compare_laws, evaluate_extrapolation
from analysis.questions import n_to_reach, real_sample_equivalent, transfer_gap
from synthetic_curves import N_VALUES, noisy_power_floor

LONG_N = 1000 * 2.0 ** np.arange(11)


def test_paper_claim_fit_to_64k_predicts_1_28m_within_0_01(rng):
    n = np.repeat(np.append(LONG_N[:7], 1.28e6), 3)
    y = 0.48 * n**-0.2 + 0.8 + rng.normal(0, 0.002, n.size)
    held_out = evaluate_extrapolation(n, y, cut=64000, fix={"D": 0.48})
    assert held_out.n_train == 21 and held_out.n_test == 3
    assert held_out.max_abs_error < 0.01
    assert held_out.rmsle == pytest.approx(
        math.sqrt(np.mean(np.log(held_out.predicted / held_out.y_test) ** 2)), rel=1e-12
    )
    assert "scored on 3 points beyond" in held_out.report()
    json.dumps(held_out.to_dict(), allow_nan=False)


def test_extrapolation_exposes_a_wrong_law():
    """Data with a break beyond the cut: the in-sample-perfect power_floor extrapolates badly."""
    n = LONG_N
    y = 0.02 + 2.0 * n**-0.3 * (1 + n / 3e4) ** -0.5
    flat = evaluate_extrapolation(n, y, "power_floor", cut=1.3e5, target_range=None, bounds={"alpha": (0.05, 3)})
    assert flat.fit.r2 > 0.99
    assert flat.rmsle > 0.05


def test_compare_laws_prefers_the_true_form_held_out():
    n = LONG_N
    y = 0.05 + 2.0 * n**-0.3 * (1 + (n / 2e4) ** 2) ** -0.25
    comparison = compare_laws(n, y, ("power_floor", "broken_power"), cut=2.6e5, space="log")
    assert comparison.best == "broken_power"
    assert comparison.rows[0]["rmsle"] < comparison.rows[1]["rmsle"]
    assert {"aic", "bic", "n_free"} <= set(comparison.rows[0])
    assert comparison.to_frame().shape[0] == 2
    assert "ranked by held-out RMSLE" in comparison.report()


def test_compare_laws_keeps_unfittable_laws_with_a_reason():
    n = N_VALUES
    y = 0.48 * n**-0.2 + 0.8
    comparison = compare_laws(n, y, ("power_floor", "broken_power"), cut=8000)
    row = next(r for r in comparison.rows if r["law"] == "broken_power")
    assert row["note"].startswith("not fitted") and "6 free parameters" in row["note"]
    assert comparison.best == "power_floor"


def test_bad_cut_is_an_input_error():
    with pytest.raises(InputError, match="leaves 7 training and 0 held-out"):
        evaluate_extrapolation(N_VALUES, 0.9 - 0.001 * np.arange(7), cut=1e9)


def test_transfer_gap_and_n_to_reach_match_closed_forms(rng):
    n, y = noisy_power_floor(rng, alpha=0.25, C=0.75)
    result = fit_law(n, y, fix={"D": 0.48}, bootstrap=300, seed=0)
    gap = transfer_gap(result)
    assert gap.value == pytest.approx(result.params["C"], rel=1e-9)
    assert gap.interval[0] == pytest.approx(result.intervals["C"][0], rel=1e-6)
    target = 0.78
    needed = n_to_reach(result, target)
    alpha, floor = result.params["alpha"], result.params["C"]
    assert needed.value == pytest.approx(((target - floor) / 0.48) ** (-1 / alpha), rel=1e-6)
    lo, hi = needed.interval
    assert lo < needed.value < hi
    assert 0.48 * lo ** -0.25 + 0.75 > target > 0.48 * hi ** -0.25 + 0.75 - 0.01


def test_unreachable_target_is_infinite_not_an_error(rng):
    n, y = noisy_power_floor(rng, alpha=0.25, C=0.75)
    result = fit_law(n, y, fix={"D": 0.48}, bootstrap=200, seed=0)
    answer = n_to_reach(result, 0.70)
    assert answer.value == math.inf and answer.interval[1] == math.inf
    assert "never get there" in answer.note
    assert answer.to_dict()["value"] is None


def test_real_sample_equivalent_for_the_multiplicative_law():
    n, s = np.meshgrid(N_VALUES, [100.0, 300.0, 1000.0, 3000.0])
    xs = {"n": n.ravel(), "s": s.ravel()}
    params = {"delta": 0.9, "gamma": 0.3, "alpha": 0.4, "beta": 0.15}
    y = 0.9 * (0.3 + xs["n"] ** -0.4) * xs["s"] ** -0.15
    result = fit_law(xs, y, "joint_ns", bootstrap=100, seed=0)
    worth = real_sample_equivalent(result, n=64000, s=100, n_reference=1000)
    ratio = (params["gamma"] + 1000**-0.4) / (params["gamma"] + 64000**-0.4)
    assert worth.value == pytest.approx(100 * ratio ** (1 / params["beta"]) - 100, rel=1e-3)
    assert worth.interval[0] <= worth.value <= worth.interval[1]
    gap = transfer_gap(result, at={"s": 100})
    assert gap.value == pytest.approx(0.9 * 0.3 * 100**-0.15, rel=1e-3)
    with pytest.raises(ValueError, match="at=\\{'s': ...\\}"):
        transfer_gap(result)
    with pytest.raises(ValueError, match="needs a joint law"):
        real_sample_equivalent(fit_law(N_VALUES, 0.48 * N_VALUES**-0.2 + 0.8), n=1, s=1, n_reference=1)


def test_vanishing_pretraining_benefit_means_no_real_sample_equivalent():
    """With kappa > beta the additive joint law lets pre-training stop mattering at large s."""
    n, s = np.meshgrid(N_VALUES, [30.0, 100.0, 300.0, 1000.0, 3000.0])
    xs = {"n": n.ravel(), "s": s.ravel()}
    truth = {"C": 0.1, "E": 0.8, "beta": 0.3, "D": 3.0, "alpha": 0.35, "kappa": 0.9}
    y = 0.1 + 0.8 * xs["s"] ** -0.3 + 3.0 * xs["n"] ** -0.35 * xs["s"] ** -0.9
    result = fit_law(xs, y, "joint_additive", space="log")
    assert result.params["kappa"] > result.params["beta"]
    small_s = real_sample_equivalent(result, n=64000, s=30, n_reference=1000).value
    large_s = real_sample_equivalent(result, n=64000, s=3000, n_reference=1000).value
    assert small_s > 0 and large_s / 3000 < small_s / 30
