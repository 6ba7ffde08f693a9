"""The Chinchilla points as certified reference data for the fitter (as lmfit uses NIST's).

Besiroglu et al. (2024) digitised 245 (N, C, loss) points from Hoffmann et al. (2022) and
refitted L(N, D) = E + A / N^alpha + B / D^beta with a Huber loss (delta 1e-3) on log-space
residuals from a grid of starts. Reproducing their estimates within their standard errors is
the golden test that our law, loss, log space and multi-start all work together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.fit import FitResult, fit_law

REPLICATION_ESTIMATES = {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.348, "beta": 0.366}
REPLICATION_STDERR = {"E": 0.03, "A": 124.0, "B": 1293.0, "alpha": 0.015, "beta": 0.021}
HOFFMANN_ESTIMATES = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
DROPPED_HIGHEST_LOSSES = 5


def load_chinchilla(path: str | Path, *, drop_highest: int = DROPPED_HIGHEST_LOSSES) -> pd.DataFrame:
    """Read the digitised CSV into columns N, D (tokens = FLOP / 6N), flop, loss.

    The replication drops the highest-loss points (tiny models far off the trend) before fitting.
    """
    raw = pd.read_csv(path)
    frame = pd.DataFrame(
        {
            "N": raw["Model Size"].astype(float),
            "flop": raw["Training FLOP"].astype(float),
            "loss": raw["loss"].astype(float),
        }
    )
    frame["D"] = frame["flop"] / (6.0 * frame["N"])
    if drop_highest:
        frame = frame.drop(frame["loss"].nlargest(drop_highest).index)
    return frame.reset_index(drop=True)


def fit_chinchilla(frame: pd.DataFrame, **options: Any) -> FitResult:
    """The replication's recipe: chinchilla law, Huber (delta 1e-3) on log residuals, full start grid."""
    settings: dict[str, Any] = {"space": "log", "loss": "huber", "huber_delta": 1e-3}
    settings.update(options)
    return fit_law(
        {"N": frame["N"].to_numpy(float), "D": frame["D"].to_numpy(float)},
        frame["loss"].to_numpy(float),
        "chinchilla",
        **settings,
    )


def standard_errors_from_replication(result: FitResult) -> dict[str, float]:
    """|ours - replication| in units of the replication's standard error, per parameter."""
    return {
        name: float(np.abs(result.params[name] - value) / REPLICATION_STDERR[name])
        for name, value in REPLICATION_ESTIMATES.items()
    }
