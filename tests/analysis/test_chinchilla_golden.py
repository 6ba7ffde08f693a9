"""Golden test: the Chinchilla replication's estimates come out within their standard errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis import bootstrap
from analysis.chinchilla import (
    REPLICATION_ESTIMATES,
    REPLICATION_STDERR,
    fit_chinchilla,
    load_chinchilla,
    standard_errors_from_replication,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "chinchilla" / "svg_extracted_data.csv"


@pytest.fixture(scope="module")
def chinchilla_fit():
    return fit_chinchilla(load_chinchilla(DATA))


def test_loader_follows_the_replication():
    frame = load_chinchilla(DATA)
    assert len(frame) == 240
    assert frame["loss"].max() < load_chinchilla(DATA, drop_highest=0)["loss"].max()
    assert (frame["D"] * 6 * frame["N"]).round(-10).equals(frame["flop"].round(-10))


def test_fit_matches_replication_within_one_standard_error(chinchilla_fit):
    assert chinchilla_fit.converged, chinchilla_fit.report()
    distances = standard_errors_from_replication(chinchilla_fit)
    for name, distance in distances.items():
        assert distance <= 1.0, (
            f"{name} = {chinchilla_fit.params[name]:.4g}, replication {REPLICATION_ESTIMATES[name]} "
            f"+- {REPLICATION_STDERR[name]}"
        )


def test_fit_is_not_hoffmanns_beta(chinchilla_fit):
    """The replication's point: beta is ~0.37, not Hoffmann et al.'s 0.28 (which is > 4 se away)."""
    assert chinchilla_fit.params["beta"] > 0.28 + 3 * REPLICATION_STDERR["beta"]


REPLICATION_CI = {"alpha": (0.317, 0.373), "beta": (0.331, 0.415)}


@pytest.mark.parametrize(
    "resamples, tolerance",
    [(400, 0.012), pytest.param(4000, 0.008, marks=pytest.mark.slow)],
)
def test_bootstrap_intervals_match_the_replications(chinchilla_fit, resamples, tolerance):
    """The replication's 95% intervals came from 4,000 point resamples; ours should land on them."""
    result = bootstrap(chinchilla_fit, resamples, seed=0, resample="points")
    assert result.bootstrap.n_converged >= 0.98 * resamples
    for name, (low, high) in REPLICATION_CI.items():
        ours = result.intervals[name]
        assert ours[0] == pytest.approx(low, abs=tolerance), (name, ours)
        assert ours[1] == pytest.approx(high, abs=tolerance), (name, ours)
