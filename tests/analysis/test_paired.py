"""Seed-paired differences and the three verdicts: resolved the paper's way, resolved the other way, within noise."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.paired import (combine_verdicts, count_verdicts, paired_difference, verdict_from_gain,
                             verdict_from_interval)


def test_verdict_from_gain_uses_the_two_sided_t_interval_with_its_degrees_of_freedom():
    critical = stats.t.ppf(0.975, 4)  # 2.776: the interval is mean +- 2.776 SE with 4 df
    assert verdict_from_gain(0.05, 0.01, 4) == "reproduced"
    assert verdict_from_gain(-0.05, 0.01, 4) == "opposite"
    assert verdict_from_gain(0.01, 0.01, 4) == "not resolved"
    assert verdict_from_gain(0.0101 * critical, 0.01, 4) == "reproduced"
    assert verdict_from_gain(0.0099 * critical, 0.01, 4) == "not resolved"
    assert verdict_from_gain(0.0099 * critical, 0.01, 400) == "reproduced"  # 1.97 SE is enough with many df
    assert verdict_from_gain(-0.05, 0.01, 4, expect_sign=-1) == "reproduced"
    assert verdict_from_gain(0.05, 0.01, 4, expect_sign=-1) == "opposite"
    assert verdict_from_gain(0.5, math.nan, 0) == "not resolved"  # one pair: no test, whatever the mean
    assert verdict_from_gain(0.05, 0.02, 4, significance=0.5) == "reproduced"
    with pytest.raises(ValueError, match="expect_sign"):
        verdict_from_gain(0.1, 0.01, 3, expect_sign=0)


def test_verdict_from_interval_and_combined_findings():
    assert verdict_from_interval(-0.3, -0.1, -1) == "reproduced"
    assert verdict_from_interval(0.1, 0.3, -1) == "opposite"
    assert verdict_from_interval(-0.1, 0.3, -1) == "not resolved"
    assert verdict_from_interval(math.nan, math.nan, -1) == "not resolved"
    assert verdict_from_interval(0.1, 0.3, 0) == verdict_from_interval(-0.3, -0.1, 0) == "reproduced"
    assert combine_verdicts(["reproduced"] * 3) == "reproduced"
    assert combine_verdicts(["reproduced", "not resolved", "opposite"]) == "partly"
    assert combine_verdicts(["not resolved", "opposite"]) == "opposite"
    assert combine_verdicts(["not resolved"] * 2) == combine_verdicts([]) == "not resolved"
    assert count_verdicts(["reproduced", "not resolved", "opposite"]) == \
        "1 of 3 panels reproduced, 1 opposite, 1 not resolved"


def test_paired_difference_pairs_by_seed_and_drops_unpaired_seeds():
    before = pd.Series([0.50, 0.60, 0.70, 0.90], index=[0, 1, 2, 9])
    after = pd.Series([0.40, 0.51, 0.59, 0.10], index=[0, 1, 2, 7])  # seeds 9 and 7 have no partner
    diff = paired_difference(before, after)
    d = np.array([0.10, 0.09, 0.11])
    assert diff.pairs == 3 and diff.df == 2
    assert diff.mean == pytest.approx(d.mean()) and diff.se == pytest.approx(d.std(ddof=1) / math.sqrt(3))
    assert diff.p_value == pytest.approx(stats.ttest_rel([0.5, 0.6, 0.7], [0.4, 0.51, 0.59]).pvalue)
    assert diff.lo == pytest.approx(d.mean() - stats.t.ppf(0.975, 2) * diff.se)
    assert diff.verdict() == "reproduced" and "3 paired seeds" in diff.describe()
    one = paired_difference(before, pd.Series([0.4], index=[0]))
    assert one.pairs == 1 and one.df == 0 and math.isnan(one.lo) and one.verdict() == "not resolved"
    assert "no test" in one.note and "no test" in one.describe()
    none = paired_difference(before, pd.Series([0.4], index=[5]))
    assert none.pairs == 0 and math.isnan(none.mean) and none.verdict() == "not resolved"
