"""The vectorised bootstrap: right answers per resample, sensible coverage, seeds vs points."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import least_squares

from analysis import bootstrap, fit_law
from analysis.batched_lsq import solve_batched
from analysis.questions import transfer_gap
from synthetic_curves import N_VALUES, noisy_power_floor


def test_batched_solver_matches_scipy_per_problem(rng):
    n = N_VALUES
    truths = np.column_stack([rng.uniform(0.15, 0.6, 20), rng.uniform(0.3, 0.9, 20)])
    data = truths[:, 1:2] + 0.48 * n[None, :] ** -truths[:, 0:1] + rng.normal(0, 0.003, (20, n.size))

    def residuals(theta, rows):
        return 0.48 * n[None, :] ** -theta[:, 0:1] + theta[:, 1:2] - data[rows]

    lower, upper = np.array([0.1, 0.0]), np.array([1.5, 1.0])
    solution = solve_batched(residuals, np.tile([0.2, 0.8], (20, 1)), lower, upper)
    assert solution.converged.all()
    for row in range(20):
        reference = least_squares(
            lambda p: residuals(p[None, :], np.array([row]))[0], [0.2, 0.8], bounds=(lower, upper), xtol=1e-14, ftol=1e-14
        )
        np.testing.assert_allclose(solution.params[row], reference.x, rtol=1e-5, atol=1e-7)


def test_batched_huber_matches_scipy(rng):
    x = np.geomspace(1, 100, 15)
    data = 2.0 * x**-0.5 + rng.normal(0, 0.01, x.size)
    data[4] += 0.5

    def residuals(theta, rows):
        return theta[:, 0:1] * x[None, :] ** -theta[:, 1:2] - data[None, :]

    lower, upper = np.array([0.0, 0.0]), np.array([10.0, 3.0])
    solution = solve_batched(residuals, np.array([[1.0, 1.0]]), lower, upper, loss="huber", huber_delta=0.02, max_iter=500)
    reference = least_squares(
        lambda p: residuals(p[None, :], None)[0], [1.0, 1.0], bounds=(lower, upper), loss="huber", f_scale=0.02,
        xtol=1e-15, ftol=1e-15, gtol=1e-15,
    )
    np.testing.assert_allclose(solution.params[0], reference.x, rtol=1e-4)


def test_replicates_resample_over_seeds_and_single_points_over_points(rng):
    n, y = noisy_power_floor(rng)
    assert fit_law(n, y, fix={"D": 0.48}, bootstrap=50, seed=0).bootstrap.resample == "seeds"
    n1, y1 = noisy_power_floor(rng, seeds=1)
    assert fit_law(n1, y1, fix={"D": 0.48}, bootstrap=50, seed=0).bootstrap.resample == "points"


def test_bootstrap_is_reproducible_with_a_seed(rng):
    n, y = noisy_power_floor(rng)
    first = fit_law(n, y, fix={"D": 0.48}, bootstrap=200, seed=7)
    second = fit_law(n, y, fix={"D": 0.48}, bootstrap=200, seed=7)
    assert first.intervals == second.intervals
    assert first.bootstrap.n_converged == 200


def test_bootstrap_can_be_added_after_the_fit(rng):
    n, y = noisy_power_floor(rng, seeds=1)
    result = fit_law(n, y, fix={"D": 0.48})
    assert result.intervals == {}
    with pytest.raises(ValueError, match="no bootstrap draws"):
        result.predict_interval(n)
    widened = bootstrap(result, 300, seed=0, resample="residuals", level=0.9)
    assert widened.bootstrap.resample == "residuals" and widened.interval_level == 0.9
    lo, hi = widened.intervals["alpha"]
    assert lo < result.params["alpha"] < hi


@pytest.mark.parametrize("resample", ["seeds", "residuals"])
def test_interval_coverage_is_roughly_nominal(resample):
    """Over 40 simulated experiments the 90% intervals should contain the truth 72-100% of the time."""
    rng = np.random.default_rng(2024)
    hits_alpha = hits_gap = 0
    trials = 40
    for _ in range(trials):
        n, y = noisy_power_floor(rng, alpha=0.25, C=0.75, noise=0.004)
        result = fit_law(n, y, fix={"D": 0.48}, bootstrap=200, seed=int(rng.integers(1 << 31)), resample=resample, level=0.9)
        hits_alpha += result.intervals["alpha"][0] <= 0.25 <= result.intervals["alpha"][1]
        hits_gap += result.intervals["C"][0] <= 0.75 <= result.intervals["C"][1]
    assert 0.72 * trials <= hits_alpha <= trials
    assert 0.72 * trials <= hits_gap <= trials


def test_prediction_band_widens_and_covers_the_extrapolated_truth():
    """The 90% band at n = 1.28M (20x beyond the data) should contain the true error in most experiments."""
    rng = np.random.default_rng(99)
    grid = np.geomspace(1e3, 1.28e6, 30)
    truth = 0.48 * grid**-0.2 + 0.8
    hits = 0
    trials = 30
    for _ in range(trials):
        n, y = noisy_power_floor(rng, alpha=0.2, C=0.8)
        result = fit_law(n, y, fix={"D": 0.48}, bootstrap=200, seed=int(rng.integers(1 << 31)), level=0.9)
        lo, hi = result.predict_interval(grid)
        assert np.all(lo <= result.predict(grid) + 1e-12) and np.all(result.predict(grid) <= hi + 1e-12)
        assert (hi - lo)[-1] > (hi - lo)[0], "bands must widen when extrapolating"
        hits += lo[-1] <= truth[-1] <= hi[-1]
    assert hits >= 0.7 * trials


@pytest.mark.parametrize("seeds", [2, 3, 4])
def test_a_seed_bootstrap_counts_its_distinct_resamples_and_gives_no_interval_below_five(seeds):
    """Redrawing k whole seeds with replacement gives C(2k - 1, k) data sets: 3 for 2 seeds, not an interval."""
    rng = np.random.default_rng(seeds)
    n, y = noisy_power_floor(rng, seeds=seeds)
    clusters = np.tile(np.arange(seeds), N_VALUES.size)
    result = fit_law(n, y, fix={"D": 0.48}, bootstrap=200, seed=0, clusters=clusters)
    assert result.bootstrap.distinct_resamples == math.comb(2 * seeds - 1, seeds)
    if seeds == 2:
        assert all(math.isnan(v) for band in result.intervals.values() for v in band)
        message = "bootstrap over 2 seeds has only 3 distinct resamples: no interval"
        assert message in result.warnings and message in result.report()
        assert not result.bootstrap.has_interval and np.isnan(result.predict_interval(n)).all()
        assert transfer_gap(result).interval is None and transfer_gap(result).note == message
        assert result.to_dict()["intervals"]["C"] == [None, None]
    else:
        lo, hi = result.intervals["C"]
        assert lo < result.params["C"] < hi and result.bootstrap.has_interval


def test_resampling_whole_seeds_gets_a_shared_seed_offset_right():
    """A seed that shifts every n by the same amount (its fine-tuning subset) moves C by the mean offset of the
    seeds drawn: C's sampling SD is sd(offsets) / sqrt(5). Redrawing whole seeds finds that width; redrawing each
    input's replicates independently treats the offsets as independent noise that bends the curve, and does not."""
    rng = np.random.default_rng(3)
    offsets = np.array([-0.02, -0.01, 0.0, 0.01, 0.02])
    n = np.repeat(N_VALUES, 5)
    seed_of_point = np.tile(np.arange(5), N_VALUES.size)
    y = 0.48 * n**-0.2 + 0.8 + offsets[seed_of_point] + rng.normal(0, 0.0005, n.size)
    expected = 2 * 1.96 * offsets.std(ddof=1) / math.sqrt(5)
    paired = fit_law(n, y, fix={"D": 0.48}, bootstrap=300, seed=0, clusters=seed_of_point)
    independent = fit_law(n, y, fix={"D": 0.48}, bootstrap=300, seed=0, resample="seeds")
    width = {name: r.intervals["C"][1] - r.intervals["C"][0] for name, r in (("paired", paired),
                                                                              ("independent", independent))}
    assert 0.6 * expected < width["paired"] < 1.5 * expected
    assert not 0.5 * expected < width["independent"] < 2 * expected
    assert paired.bootstrap.unit == "5 seeds" and independent.bootstrap.unit == "5 seeds at each of 7 inputs"


def test_point_and_residual_bootstraps_count_only_resamples_that_can_be_fitted():
    n, y = N_VALUES[:3], 0.48 * N_VALUES[:3] ** -0.2 + 0.8
    free_d = fit_law(n, y, bootstrap=50, seed=0, resample="points")  # 3 free parameters, 3 points
    assert free_d.bootstrap.distinct_resamples == 1  # only the resample with every point once
    assert "bootstrap over 3 points has only 1 distinct resample: no interval" in free_d.warnings
    fixed_d = fit_law(n, y, fix={"D": 0.48}, bootstrap=50, seed=0, resample="points")
    assert fixed_d.bootstrap.distinct_resamples == math.comb(5, 3) - 3  # minus the three single-point ones
    two = fit_law(N_VALUES[:2], y[:2], fix={"D": 0.48, "C": 0.8}, bootstrap=50, seed=0, resample="residuals")
    assert two.bootstrap.distinct_resamples == 4 and math.isnan(two.intervals["alpha"][0])
