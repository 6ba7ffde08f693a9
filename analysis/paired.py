"""Seed-paired differences between two arms of a study, and the verdict their statistics support.

In the lab's studies a seed fixes the real fine-tuning subset and the initial weights, so two arms run with the
same seed (n = 0 and n = 4000, say) share much of their seed-to-seed scatter. Comparing them seed by seed,
d = before(seed) - after(seed) over the seeds both arms have, removes that shared part: mean(d), SE = sd(d)/sqrt(k),
a t interval with k - 1 degrees of freedom. With fewer than 2 paired seeds there is no test, and it says so.

Verdicts, everywhere a finding is judged (gains, trends, extrapolation):
- ``reproduced``: resolved (the two-sided interval excludes 0) with the paper's sign;
- ``opposite``: resolved with the other sign;
- ``not resolved``: the interval includes 0, or there is no interval (within the noise);
- ``partly``: only for a finding made of several parts (panels, curves): some parts reproduced, not all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

REPRODUCED = "reproduced"
OPPOSITE = "opposite"
NOT_RESOLVED = "not resolved"
PARTLY = "partly"
VERDICTS = (REPRODUCED, OPPOSITE, NOT_RESOLVED, PARTLY)


def t_interval(mean: float, se: float, df: int, significance: float = 0.05) -> tuple[float, float]:
    """The two-sided (1 - significance) t interval of a mean; NaN without degrees of freedom or an SE."""
    from scipy import stats

    if df < 1 or not math.isfinite(se) or not math.isfinite(mean):
        return math.nan, math.nan
    half = float(stats.t.ppf(1 - significance / 2, df)) * se
    return mean - half, mean + half


def verdict_from_gain(mean: float, se: float, df: int, expect_sign: int = 1, significance: float = 0.05) -> str:
    """`reproduced` when the two-sided (1 - significance) t interval of `mean` excludes 0 on the side of
    `expect_sign` (+1: the paper says the gain is positive), `opposite` when it excludes 0 on the other side,
    `not resolved` when it includes 0 or cannot be computed (df < 1)."""
    if expect_sign not in (1, -1):
        raise ValueError(f"expect_sign must be +1 or -1, got {expect_sign}")
    lo, hi = t_interval(mean, se, df, significance)
    if math.isnan(lo):
        return NOT_RESOLVED
    if lo > 0 or hi < 0:
        return REPRODUCED if (1 if lo > 0 else -1) == expect_sign else OPPOSITE
    return NOT_RESOLVED


def verdict_from_interval(lo: float, hi: float, expect_sign: int = 0) -> str:
    """The verdict of an interval of a change (any method): resolved when it excludes 0; `expect_sign` 0 means
    either direction is the paper's claim ("changes alpha")."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 <= hi:
        return NOT_RESOLVED
    sign = 1 if lo > 0 else -1
    return REPRODUCED if expect_sign in (0, sign) else OPPOSITE


def combine_verdicts(parts: Sequence[str]) -> str:
    """One verdict for a finding with several parts (one per panel or curve): `reproduced` when every part is,
    `partly` when some but not all are, `opposite` when none is and some are resolved the wrong way,
    `not resolved` otherwise (no part resolved, or no parts)."""
    parts = list(parts)
    reproduced = sum(p == REPRODUCED for p in parts)
    if parts and reproduced == len(parts):
        return REPRODUCED
    if reproduced:
        return PARTLY
    return OPPOSITE if OPPOSITE in parts else NOT_RESOLVED


def count_verdicts(parts: Sequence[str], unit: str = "panels") -> str:
    """`2 of 12 panels reproduced, 1 opposite, 9 not resolved`."""
    parts = list(parts)
    counts = [f"{sum(p == v for p in parts)} {v}" for v in (OPPOSITE, NOT_RESOLVED) if v in parts]
    return ", ".join([f"{sum(p == REPRODUCED for p in parts)} of {len(parts)} {unit} reproduced", *counts])


@dataclass(frozen=True)
class PairedDifference:
    """mean over paired seeds of d = before - after, its SE, t interval and two-sided p-value."""

    mean: float
    se: float
    pairs: int  # seeds present in both arms
    df: int  # pairs - 1 (0: no test)
    lo: float
    hi: float
    p_value: float  # two-sided, H0: mean d = 0
    significance: float
    note: str  # why there is no test, else ""

    def verdict(self, expect_sign: int = 1) -> str:
        return verdict_from_gain(self.mean, self.se, self.df, expect_sign, self.significance)

    def describe(self, spec: str = "+.3f", unit: str = "seeds") -> str:
        """`+0.012 (SE 0.004, 3 paired seeds, 95% interval [+0.001, +0.023])`, or the reason for no test."""
        if self.pairs == 0:
            return self.note
        if self.df < 1 or math.isnan(self.lo):
            return f"{self.mean:{spec}} ({self.note})"
        return (f"{self.mean:{spec}} (SE {self.se:{spec.lstrip('+')}}, {self.pairs} paired {unit}, "
                f"{1 - self.significance:.0%} interval [{self.lo:{spec}}, {self.hi:{spec}}])")


def paired_difference(before: pd.Series, after: pd.Series, significance: float = 0.05) -> PairedDifference:
    """Seed-paired before - after. Both series are indexed by seed (repeated seeds are averaged first); seeds
    present in only one arm are left out, since they have nothing to be compared with."""
    from scipy import stats

    before, after = before.groupby(level=0).mean(), after.groupby(level=0).mean()
    common = before.index.intersection(after.index)
    d = (before.loc[common] - after.loc[common]).dropna()
    k = int(d.size)
    if k == 0:
        return PairedDifference(math.nan, math.nan, 0, 0, math.nan, math.nan, math.nan, significance,
                                "no seed in both arms: no test")
    mean = float(d.mean())
    if k < 2:
        return PairedDifference(mean, math.nan, k, 0, math.nan, math.nan, math.nan, significance,
                                f"{k} paired seed: no test")
    se = float(d.std(ddof=1)) / math.sqrt(k)
    lo, hi = t_interval(mean, se, k - 1, significance)
    if se > 0:
        p_value = float(2 * stats.t.sf(abs(mean) / se, k - 1))
    else:
        p_value = 1.0 if mean == 0 else 0.0
    return PairedDifference(mean, se, k, k - 1, lo, hi, p_value, significance, "")
