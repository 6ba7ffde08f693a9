"""The law registry: every law is well formed, evaluates sensibly and can be fitted."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from analysis import LAWS, fit_law, get_law, register_law
from analysis.laws import broken_power, m4

SAMPLE_INPUTS = {
    "n": np.geomspace(1e3, 1e5, 9),
    "s": np.geomspace(10, 1000, 9),
    "N": np.geomspace(1e7, 1e10, 9),
    "D": np.geomspace(1e9, 1e11, 9),
    "x": np.geomspace(1e2, 1e6, 9),
}

TRUE_PARAMS = {
    "power_floor": {"D": 0.48, "alpha": 0.3, "C": 0.6},
    "joint_ns": {"delta": 0.9, "gamma": 0.3, "alpha": 0.4, "beta": 0.15},
    "joint_additive": {"C": 0.2, "E": 0.8, "beta": 0.3, "D": 1.5, "alpha": 0.35, "kappa": 0.6},
    "chinchilla": {"E": 1.8, "A": 480.0, "B": 2000.0, "alpha": 0.35, "beta": 0.37},
    "broken_power": {"C": 0.1, "D": 2.0, "alpha": 0.2, "x_break": 1e4, "delta_alpha": 0.5, "smoothness": 0.3},
    "m4": {"eps_inf": 0.1, "eps_0": 0.9, "beta": 40.0, "c": -0.5, "alpha": 0.6},
}


def law_inputs(name: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    law = get_law(name)
    if len(law.independent_vars) == 1:
        return {law.independent_vars[0]: SAMPLE_INPUTS[law.independent_vars[0]]}
    first, second = (SAMPLE_INPUTS[v] for v in law.independent_vars)
    a, b = np.meshgrid(first[::2], second[::2])
    return {law.independent_vars[0]: a.ravel(), law.independent_vars[1]: b.ravel()}


def test_every_law_has_true_parameters_for_these_tests():
    assert set(TRUE_PARAMS) == set(LAWS)


@pytest.mark.parametrize("name", sorted(LAWS))
def test_law_is_well_formed(name):
    law = get_law(name)
    signature = tuple(inspect.signature(law.func).parameters)
    assert signature == law.independent_vars + law.param_names
    for param in law.param_names:
        lo, hi = law.bounds[param]
        assert lo < hi
        assert lo <= law.guess[param] <= hi
    assert law.formula and law.description


@pytest.mark.parametrize("name", sorted(LAWS))
def test_law_recovers_its_own_noise_free_curve(name, rng):
    law = get_law(name)
    xs = law_inputs(name, rng)
    y = law.evaluate(xs, TRUE_PARAMS[name])
    assert np.all(np.isfinite(y)) and np.all(y > 0)
    result = fit_law(xs, y, name, space="log")
    assert result.converged, result.report()
    np.testing.assert_allclose(result.predict(xs), y, rtol=2e-3)


@pytest.mark.parametrize("name", sorted(LAWS))
def test_law_broadcasts_over_bootstrap_batches(name, rng):
    law = get_law(name)
    xs = {k: v[None, :] for k, v in law_inputs(name, rng).items()}
    params = {k: np.full((4, 1), v) for k, v in TRUE_PARAMS[name].items()}
    assert law.evaluate(xs, params).shape == (4, next(iter(xs.values())).shape[1])


def test_unknown_law_lists_valid_names():
    with pytest.raises(ValueError, match="unknown law 'power_flor'.*chinchilla.*power_floor"):
        get_law("power_flor")


def test_duplicate_registration_is_rejected():
    with pytest.raises(ValueError, match="already registered"):
        register_law(bounds={"D": (0, 1), "alpha": (0, 1), "C": (0, 1)}, guess={"D": 1, "alpha": 0.5, "C": 0.5})(
            get_law("power_floor").func
        )


def test_registration_checks_bounds_cover_parameters():
    def pure_power(n, D, alpha):
        return D * n ** (-alpha)

    with pytest.raises(ValueError, match="bounds keys"):
        register_law(bounds={"D": (0, 10)}, guess={"D": 1.0, "alpha": 0.3})(pure_power)
    assert "pure_power" not in LAWS


def test_a_newly_registered_law_is_fittable_by_name():
    def pure_power_test_only(n, D, alpha):
        """Power law without a floor."""
        return D * n ** (-alpha)

    register_law(bounds={"D": (1e-9, 1e9), "alpha": (0.0, 3.0)}, guess={"D": 1.0, "alpha": 0.5})(pure_power_test_only)
    try:
        n = np.geomspace(10, 1e4, 8)
        result = fit_law(n, 3.0 * n**-0.7, "pure_power_test_only")
        assert result.params["alpha"] == pytest.approx(0.7, rel=1e-5)
    finally:
        del LAWS["pure_power_test_only"]


def test_m4_solves_its_implicit_equation():
    x = np.geomspace(1, 1e6, 50)
    p = TRUE_PARAMS["m4"]
    loss = m4(x, **p)
    lhs = (loss - p["eps_inf"]) / (p["eps_0"] - loss) ** p["alpha"]
    np.testing.assert_allclose(lhs, p["beta"] * x ** p["c"], rtol=1e-8)
    assert np.all(np.diff(loss) < 0)
    assert p["eps_inf"] < loss.min() and loss.max() < p["eps_0"]


def test_broken_power_has_both_slopes():
    x = np.array([1.0, 10.0, 1e8, 1e9])
    y = broken_power(x, C=0.0, D=1.0, alpha=0.2, x_break=1e4, delta_alpha=0.5, smoothness=0.1)
    slopes = -np.diff(np.log(y))[[0, 2]] / np.log(10)
    np.testing.assert_allclose(slopes, [0.2, 0.7], atol=1e-6)
