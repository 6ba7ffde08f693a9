"""The controlled transfer simulation: exact expectation, bound, sampler, and recovered exponents."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import fit_law
from analysis.theory import (
    TransferSetting,
    check_theory,
    expected_risk,
    plot_theory,
    predicted_gap,
    risk_bound,
    simulate_explicit_design,
    simulate_transfer,
)

SETTINGS = [
    TransferSetting(),
    TransferSetting(source_decay=2.5, discrepancy_decay=1.3, discrepancy_scale=0.5),
    TransferSetting(label_noise=0.05, pretrain_feature_ratio=0.25, finetune_feature_ratio=0.5),
]


@pytest.mark.parametrize("setting", SETTINGS)
def test_exact_expectation_never_exceeds_the_bound(setting):
    for n in [256, 1024, 4096, 65536, 1 << 20, math.inf]:
        for s in [16, 64, 256, 4096, 1 << 16]:
            assert expected_risk(setting, n, s) <= risk_bound(setting, n, s) * (1 + 1e-12), (n, s)


def test_bound_has_the_papers_structure():
    setting = TransferSetting()
    s = 128
    bound_gap = risk_bound(setting, math.inf, s)
    excess = np.array([risk_bound(setting, n, s) - bound_gap for n in (1 << 14, 1 << 18, 1 << 22)])
    slopes = -np.diff(np.log(excess)) / np.log(16)
    np.testing.assert_allclose(slopes, setting.alpha, atol=0.02)
    gaps = np.array([risk_bound(setting, math.inf, s) for s in (1 << 12, 1 << 16)])
    assert -np.diff(np.log(gaps))[0] / np.log(16) == pytest.approx(setting.beta, abs=0.01)


def test_pretraining_benefit_vanishes_once_finetuning_refits_every_direction():
    setting = TransferSetting()
    s = 4096
    k = setting.finetune_features(s)
    small_n = [n for n in (2048, 8192, 32768) if setting.pretrain_features(n) <= k]
    risks = {expected_risk(setting, n, s) for n in small_n}
    assert len(small_n) == 3 and max(risks) - min(risks) < 1e-15
    assert expected_risk(setting, 1 << 20, s) < min(risks)


def test_fits_of_the_exact_curves_recover_the_theory_exponents():
    setting = TransferSetting()
    n = np.array([2048 * 2**j for j in range(6)], dtype=float)
    for s in (64, 128, 256):
        curve = np.array([expected_risk(setting, v, s) for v in n])
        fit = fit_law(n, curve, bounds={"alpha": (0.05, 3.0)}, target_range=None)
        assert fit.params["alpha"] == pytest.approx(setting.alpha, abs=0.02)
        assert fit.params["C"] == pytest.approx(predicted_gap(setting, s), rel=0.03)
    s = np.array([1024 * 2**j for j in range(5)], dtype=float)
    gaps = np.array([predicted_gap(setting, v) for v in s])
    beta = fit_law(s, gaps, fix={"C": 0.0}, space="log", target_range=None)
    assert beta.params["alpha"] == pytest.approx(setting.beta, abs=0.005)


def test_sufficient_statistic_sampler_matches_explicit_regression():
    setting = TransferSetting(dimension=256, pretrain_feature_ratio=1 / 16, finetune_feature_ratio=1 / 4)
    explicit = simulate_explicit_design(setting, n=256, s=64, replicates=120, seed=1)
    sampled = simulate_transfer(setting, n_values=(256,), s_values=(64,), gap_s_values=(), replicates=600, seed=2)
    exact = expected_risk(setting, 256, 64)
    assert abs(explicit.mean() - exact) < 4 * explicit.std() / math.sqrt(explicit.size)
    assert abs(sampled.risk.mean() - exact) < 4 * sampled.risk.std() / math.sqrt(sampled.risk.size)


@pytest.fixture(scope="module")
def simulation_check():
    simulation = simulate_transfer(TransferSetting(), seed=0)
    return simulation, check_theory(simulation, bootstrap=300, level=0.99, seed=0)


def test_simulated_curves_stay_under_the_bound(simulation_check):
    simulation, check = simulation_check
    assert np.all(simulation.expected <= simulation.bound)
    assert check.bound_violations == 0
    assert check.worst_bound_ratio < 1.05


def test_fitted_alpha_gap_and_beta_agree_with_theory(simulation_check):
    _, check = simulation_check
    assert check.alpha_within_intervals, check.report()
    assert check.gap_within_intervals, check.report()
    assert check.beta_within_interval, check.report()
    assert "agree: alpha True, C True, beta True" in check.report()


def test_theory_figure_shows_curves_and_gap(simulation_check):
    simulation, check = simulation_check
    figure = plot_theory(simulation, check)
    left, right = figure.axes
    assert left.get_xscale() == "log" and right.get_xscale() == "log"
    assert len(left.lines) >= 3 * 3


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="must exceed 1"):
        TransferSetting(source_decay=1.0)
    with pytest.raises(ValueError, match="too small"):
        expected_risk(TransferSetting(finetune_feature_ratio=0.5), 1 << 12, 2)
