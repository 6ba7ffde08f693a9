"""Bad input fails with errors that name the rows to fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import InputError, fit_law

N = np.array([1e3, 2e3, 4e3, 8e3, 16e3])
ERRORS = np.array([0.95, 0.93, 0.91, 0.90, 0.89])


def test_too_few_points_for_free_parameters():
    with pytest.raises(InputError, match=r"3 free parameters \(D, alpha, C\) but only 2 points"):
        fit_law(N[:2], ERRORS[:2], "power_floor")


def test_replicates_do_not_count_as_distinct_inputs():
    with pytest.raises(InputError, match="6 points at 2 distinct inputs"):
        fit_law(np.repeat(N[:2], 3), np.repeat(ERRORS[:2], 3), "power_floor")


def test_fixing_a_parameter_makes_two_points_enough():
    result = fit_law(N[:2], ERRORS[:2], "power_floor", fix={"D": 0.48})
    assert result.n_free == 2


def test_non_positive_x_names_rows_and_suggests_baseline():
    n = np.array([0.0, 1e3, 2e3, 4e3, -1.0])
    with pytest.raises(InputError, match=r"n must be > 0.*rows 0, 4 \(values 0, -1\).*baseline"):
        fit_law(n, ERRORS, "power_floor")


def test_nan_and_inf_name_rows():
    y = ERRORS.copy()
    y[[1, 3]] = [np.nan, np.inf]
    with pytest.raises(InputError, match=r"NaN or infinite in rows 1, 3"):
        fit_law(N, y, "power_floor")


def test_errors_outside_unit_interval_for_bounded_law_use_dataframe_labels():
    frame = pd.DataFrame({"n": N, "error": [0.9, 1.2, 0.8, -0.1, 0.7]}, index=[10, 11, 12, 13, 14])
    with pytest.raises(InputError, match=r"\[0, 1\].*rows 11, 13 \(values 1.2, -0.1\).*1 - metric"):
        fit_law(frame["n"], frame["error"], "power_floor")


def test_unbounded_targets_allowed_when_range_check_disabled():
    n = np.geomspace(1e3, 1e5, 7)
    result = fit_law(n, 3.0 + 20 * n**-0.5, "power_floor", target_range=None, bounds={"C": (0, 10)})
    assert result.params["C"] == pytest.approx(3.0, rel=1e-4)


def test_chinchilla_law_accepts_losses_above_one():
    n_params = np.geomspace(1e7, 1e9, 6)
    tokens = 20 * n_params
    loss = 1.8 + 480 * n_params**-0.35 + 2000 * tokens**-0.37
    assert fit_law({"N": n_params, "D": tokens}, loss, "chinchilla", fix={"alpha": 0.35, "beta": 0.37}).converged


def test_log_space_rejects_zero_targets():
    y = ERRORS.copy()
    y[2] = 0.0
    with pytest.raises(InputError, match="log-space fits need y > 0.*row 2"):
        fit_law(N, y, "power_floor", space="log")


def test_length_mismatch():
    with pytest.raises(InputError, match="n has 5 rows but y has 4"):
        fit_law(N, ERRORS[:4], "power_floor")


def test_unknown_parameter_names_in_options():
    with pytest.raises(ValueError, match=r"fix names unknown parameters \['d'\].*\['D', 'alpha', 'C'\]"):
        fit_law(N, ERRORS, "power_floor", fix={"d": 0.48})
    with pytest.raises(ValueError, match="shared names unknown"):
        fit_law(N, ERRORS, "power_floor", groups=["a"] * 5, shared=["gap"])


def test_unknown_space_and_loss():
    with pytest.raises(ValueError, match="unknown space 'loglog'"):
        fit_law(N, ERRORS, space="loglog")
    with pytest.raises(ValueError, match="unknown loss 'l1'"):
        fit_law(N, ERRORS, loss="l1")


def test_joint_law_needs_both_inputs():
    with pytest.raises(InputError, match=r"inputs \['s'\] missing"):
        fit_law({"n": N}, ERRORS, "joint_ns")


def test_group_with_too_few_points():
    n = np.concatenate([np.geomspace(1e3, 1e5, 6), N[:2]])
    y = np.concatenate([0.9 + 0.5 * np.geomspace(1e3, 1e5, 6) ** -0.3, ERRORS[:2]])
    groups = ["a"] * 6 + ["b"] * 2
    with pytest.raises(InputError, match="group 'b' has 2 distinct inputs but 3 parameters"):
        fit_law(n, y, "power_floor", groups=groups)
    assert fit_law(n, y, "power_floor", groups=groups, shared=["D", "alpha"]).n_free == 4
