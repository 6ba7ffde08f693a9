"""analysis.reproduction on results tables drawn from known laws: the findings must come out as constructed."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.reproduction import (Finding, Trend, benefit, curve_summary, extrapolation_table, extrapolation_verdict,
                                   findings_latex, findings_markdown, fit_curves, gain_finding, latex_table,
                                   load_findings, s_sweep, save_outputs, seed_errors, trend, verdict_from_trend)
from analysis.validation import InputError

NS = [0, 250, 500, 1000, 2000, 4000, 8000]


def results_table(curves: dict[str, tuple[float, float, float]], *, noise: float = 0.002, seeds: int = 3,
                  scratch: float = 0.5, column: str = "model", seed: int = 0,
                  seed_offsets: Sequence[float] | None = None) -> pd.DataFrame:
    """Tidy rows in the lab's format: per curve (D, alpha, C), per n and seed, an error with gaussian noise
    (plus `seed_offsets[seed]` at every n and curve: the shared effect of a seed's fine-tuning subset)."""
    rng = np.random.default_rng(seed)
    offsets = list(seed_offsets) if seed_offsets is not None else [0.0] * seeds
    rows = []
    for name, (d, alpha, c) in curves.items():
        for n in NS:
            for s in range(seeds):
                mean = (scratch if n == 0 else d * n ** -alpha + c) + offsets[s]
                error = float(np.clip(mean + rng.normal(0, noise), 0, 1))
                rows += [{"n": n, "s": 50, "seed": s, column: name, "metric": "top1", "error": error,
                          "value": 1 - error},
                         {"n": n, "s": 50, "seed": s, column: name, "metric": "loss", "error": 9.9, "value": 9.9}]
    return pd.DataFrame(rows)


def test_shared_d_fit_recovers_each_curves_alpha_and_gap():
    truth = {"small": (2.0, 0.5, 0.20), "large": (2.0, 0.5, 0.10)}
    fits = fit_curves(results_table(truth, seeds=5), ["model"], bootstrap=100)
    frame = fits.frame.set_index("model")
    for name, (_, alpha, gap) in truth.items():
        assert frame.loc[name, "C"] == pytest.approx(gap, abs=0.01)
        assert frame.loc[name, "alpha"] == pytest.approx(alpha, abs=0.1)
        assert frame.loc[name, "C_lo"] <= gap <= frame.loc[name, "C_hi"] + 0.005
    assert fits.result.params["D"] == pytest.approx(2.0, rel=0.3) and "D" in fits.result.shared
    assert list(frame.scratch) == pytest.approx([0.5, 0.5], abs=0.01) and (frame.points == 30).all()
    assert fits.result.bootstrap.distinct_resamples == 126 and (frame.interval_note == "").all()  # C(9, 5)


def test_two_seeds_give_no_interval_and_no_resolved_trend():
    """Whole seeds are resampled: 2 seeds allow 3 distinct resamples, so no interval, even for a large change."""
    truth = {"a": (2.0, 0.5, 0.30), "b": (2.0, 0.5, 0.10)}
    fits = fit_curves(results_table(truth, seeds=2), ["model"], bootstrap=50)
    frame = fits.frame.set_index("model")
    assert frame[["C_lo", "C_hi", "alpha_lo", "alpha_hi"]].isna().all().all()
    assert (frame.interval_note == "bootstrap over 2 seeds has only 3 distinct resamples: no interval").all()
    down = trend(fits, "C", "model", ["a", "b"])
    assert down.endpoint_change == pytest.approx(-0.2, abs=0.02)
    assert not down.endpoints_separated and not down.resolved and verdict_from_trend(down) == "not resolved"
    assert "3 distinct resamples" in down.sentence()


def test_trend_and_its_verdict_follow_the_constructed_order():
    truth = {"a": (2.0, 0.5, 0.30), "b": (2.0, 0.5, 0.20), "c": (2.0, 0.5, 0.10)}
    fits = fit_curves(results_table(truth), ["model"], bootstrap=40)
    down = trend(fits, "C", "model", ["a", "b", "c"])
    assert down.steps_down == 2 and down.endpoint_change == pytest.approx(-0.2, abs=0.02)
    assert down.endpoints_separated and verdict_from_trend(down) == "reproduced"
    assert down.change_hi < 0 and down.change_lo == pytest.approx(-0.2, abs=0.02)  # paired over the same seeds
    up = trend(fits, "C", "model", ["c", "b", "a"])
    assert verdict_from_trend(up) == "opposite" and "a vs c" in up.sentence()
    assert verdict_from_trend(up, expect="higher") == verdict_from_trend(up, expect="either") == "reproduced"
    with pytest.raises(InputError, match="one curve per model"):
        trend(fits, "C", "model", ["a", "zzz"])


def test_identical_curves_in_noise_are_not_called_a_trend():
    truth = {"a": (2.0, 0.5, 0.15), "b": (2.0, 0.5, 0.15)}
    fits = fit_curves(results_table(truth, noise=0.03), ["model"], bootstrap=60)
    same = trend(fits, "C", "model", ["a", "b"])
    assert same.change_lo < 0 < same.change_hi and verdict_from_trend(same) == "not resolved"


def test_benefit_finds_real_gains_and_rarely_calls_noise_a_gain():
    helps = results_table({f"helps{i}": (2.0, 0.5, 0.1) for i in range(20)}, noise=0.01)
    flat = results_table({f"flat{i}": (0.0, 0.5, 0.5) for i in range(200)}, noise=0.02, seed=1)
    gains = benefit(pd.concat([helps, flat]), ["model"]).set_index("model")
    real, noise = gains.loc[[f"helps{i}" for i in range(20)]], gains.loc[[f"flat{i}" for i in range(200)]]
    assert real.beats_scratch.all() and real.improves_with_n.all()
    assert real.gain_vs_scratch.mean() == pytest.approx(0.5 - (2 * 8000 ** -0.5 + 0.1), abs=0.01)
    # a one-sided test at 2.5%: with 200 null curves, about 5 false calls each (binomial sd ~2.2)
    assert noise.beats_scratch.sum() <= 12 and noise.improves_with_n.sum() <= 12


def test_extrapolation_of_a_clean_law_is_accurate_and_unfittable_curves_say_why():
    table = results_table({"clean": (2.0, 0.5, 0.1)}, noise=0.0005)
    held = extrapolation_table(table, ["model"], fit_up_to=2000)
    assert list(held.n) == [4000, 8000] and (held.abs_error < 0.005).all()
    short = extrapolation_table(table, ["model"], fit_up_to=250)
    assert "abs_error" not in short.columns and short.note.str.len().iloc[0] > 0


def test_curve_summary_and_bad_tables():
    table = results_table({"x": (2.0, 0.5, 0.1)})
    summary = curve_summary(table, ["model"])
    assert list(summary.n) == NS and (summary.seeds == 3).all()
    with pytest.raises(InputError, match="lacks columns"):
        curve_summary(table.drop(columns=["seed"]), ["model"])
    with pytest.raises(InputError, match="no rows with metric"):
        fit_curves(table, ["model"], metric="miou")


def joint_table(kappa: float, seeds: int = 3, noise: float = 0.002) -> pd.DataFrame:
    """The additive law: the pre-training term decays with s at rate kappa (> beta: its benefit vanishes)."""
    rng = np.random.default_rng(0)
    rows = []
    for s in [13, 26, 52, 130, 260, 520, 1300]:
        for n in [0, 500, 2000, 8000]:
            for seed in range(seeds):
                pretrain = 1.5 * s ** -kappa if n == 0 else 3.0 * n ** -0.5 * s ** -kappa
                error = 0.02 + 0.8 * s ** -0.5 + pretrain + rng.normal(0, noise)
                rows.append({"n": n, "s": s, "seed": seed, "metric": "top1", "error": error})
    return pd.DataFrame(rows)


def test_s_sweep_finds_where_the_multiplicative_law_breaks():
    sweep = s_sweep(joint_table(kappa=1.2), pool=1300)
    per_s = sweep.per_s.set_index("s")
    assert per_s.benefit.iloc[0] > 5 * per_s.benefit.iloc[-1]  # the pre-training benefit vanishes with s
    additive = sweep.held_out.set_index("law").mean_abs_error
    assert additive["joint_additive"] < additive["joint_ns"]  # and only the additive law extrapolates in s
    assert sweep.fits["joint_additive"].params["kappa"] > sweep.fits["joint_additive"].params["beta"]
    assert (per_s.residual_joint_additive.abs() < 3 * per_s.seed_se + 0.002).all()
    assert sweep.breaks_at is None or sweep.breaks_at >= 13
    assert per_s.benefit_verdict.iloc[0] == "reproduced" and (per_s.benefit_pairs == 3).all()
    assert sweep.benefit_shrink.pairs == 3 and sweep.benefit_shrink.verdict() == "reproduced"
    with pytest.raises(InputError, match="at least 3 values of s"):
        s_sweep(joint_table(1.2)[lambda t: t.s <= 26], pool=1300)


def test_outputs_are_written_and_findings_compose(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    frame = pd.DataFrame({"model": ["a_b"], "C": [0.1234], "note": ["50%"]})
    table = latex_table(frame, {"model": "model", "C": "C", "note": "note"}, caption="c", label="tab:x")
    assert r"a\_b & 0.123 & 50\% \\" in table and r"\label{tab:x}" in table
    assert r"95\% CI" in latex_table(frame, {"C": "C [95% CI]"}, caption="c", label="l")
    finding = Finding("claim", "paper says", "lab measured", "reproduced")
    written = save_outputs(tmp_path, "study", figure=figure, tables={"study": table}, findings=[finding])
    assert {p.name for p in written} == {"study.pdf", "study.png", "study.tex", "study.json"}
    assert json.loads((tmp_path / "findings" / "study.json").read_text())[0]["verdict"] == "reproduced"
    loaded = load_findings(tmp_path, ["study"])
    assert loaded == [finding] and "| claim | paper says | lab measured | reproduced |" in findings_markdown(loaded)
    assert r"\label{tab:findings}" in findings_latex(loaded)
    with pytest.raises(InputError, match="missing_study"):
        load_findings(tmp_path, ["study", "missing_study"])


def test_a_shared_seed_offset_hides_the_gain_from_an_unpaired_test_but_not_from_the_paired_one():
    """Each seed shifts every arm by the same amount (its fine-tuning subset): only seed pairing removes it."""
    offsets = [-0.06, -0.02, 0.02, 0.06]
    table = results_table({"helps": (0.0, 0.5, 0.49)}, seeds=4, seed_offsets=offsets, noise=0.002)
    scratch, largest = seed_errors(table, n=0), seed_errors(table, n=8000)
    assert stats.ttest_ind(scratch, largest).pvalue > 0.5  # unpaired: the 0.01 gain drowns in the seed offsets
    gains = benefit(table, ["model"]).iloc[0]
    d = scratch - largest
    assert gains.gain_vs_scratch == pytest.approx(d.mean()) and gains.gain_vs_scratch_pairs == 4
    assert gains.gain_vs_scratch_se == pytest.approx(d.std(ddof=1) / 2)
    assert gains.gain_vs_scratch_p == pytest.approx(stats.ttest_rel(scratch, largest).pvalue)
    assert gains.gain_vs_scratch_lo > 0 and gains.gain_vs_scratch_verdict == "reproduced" and gains.beats_scratch
    assert gains.gain_with_n_verdict == "not resolved" and not gains.improves_with_n  # flat in n


def test_benefit_verdicts_reproduced_opposite_and_not_resolved():
    table = results_table({"helps": (0.0, 0.5, 0.48), "hurts": (0.0, 0.5, 0.52), "same": (0.0, 0.5, 0.5)},
                          seeds=4, seed_offsets=[-0.05, 0.0, 0.03, 0.05], noise=0.003, seed=3)
    gains = benefit(table, ["model"]).set_index("model")
    assert gains.gain_vs_scratch_verdict.to_dict() == {"helps": "reproduced", "hurts": "opposite",
                                                       "same": "not resolved"}
    assert list(gains.beats_scratch) == [True, False, False]
    verdict, sentence = gain_finding(gains, unit="curves")
    assert verdict == "partly"
    assert sentence.startswith("1 of 3 curves reproduced, 1 opposite, 1 not resolved (seed-paired t-test")
    assert "4 paired seeds per curve, 3 df" in sentence


def test_with_fewer_than_two_paired_seeds_there_is_no_test():
    table = results_table({"helps": (2.0, 0.5, 0.1)}, seeds=2)
    table = table[~((table.n == 0) & (table.seed == 1)) & ~((table.n == 8000) & (table.seed == 0))]
    gains = benefit(table, ["model"]).iloc[0]
    assert gains.gain_vs_scratch_pairs == 0 and math.isnan(gains.gain_vs_scratch)
    assert gains.gain_vs_scratch_verdict == "not resolved" and "no seed in both arms: no test" in gains.note
    assert gains.gain_with_n_pairs == 1 and "1 paired seed: no test" in gains.note
    assert gain_finding(benefit(table, ["model"]))[1].startswith("0 of 1 panels reproduced, 1 not resolved")


def test_extrapolation_of_clean_laws_beats_the_naive_predictors():
    table = results_table({f"clean{i}": (2.0, 0.5, 0.05 + 0.05 * i) for i in range(5)}, noise=0.0005)
    held = extrapolation_table(table, ["model"], fit_up_to=2000)
    first = held[held.model == "clean0"]
    fitted = table[(table.model == "clean0") & (table.metric == "top1") & (table.n > 0) & (table.n <= 2000)]
    assert first.naive_mean.iloc[0] == pytest.approx(fitted.groupby("n").error.mean().mean())
    assert first.naive_last.iloc[0] == pytest.approx(fitted[fitted.n == 2000].error.mean())
    assert held.law_beats_both.all()
    verdict, sentence = extrapolation_verdict(held)
    assert verdict == "reproduced"
    assert "the law beats the constant on 5, the last point on 5, both on 5 of 5" in sentence


def test_extrapolating_flat_noise_is_not_called_reproduced():
    """On flat curves the constant mean of the fitted points is the right predictor: the law cannot beat it."""
    table = results_table({f"flat{i}": (0.0, 0.5, 0.3) for i in range(6)}, noise=0.01, seed=5)
    held = extrapolation_table(table, ["model"], fit_up_to=2000)
    largest = held[held.n == 8000]
    assert largest.naive_mean_abs_error.median() < largest.abs_error.median()
    verdict, sentence = extrapolation_verdict(held)
    assert verdict in ("not resolved", "opposite") and "over 6 curves" in sentence


def test_extrapolation_verdict_opposite_when_a_naive_predictor_is_better_beyond_the_noise():
    held = pd.DataFrame({"curve": list("abcde"), "n": 8000, "abs_error": [0.030, 0.028, 0.033, 0.031, 0.029],
                         "naive_mean_abs_error": [0.010, 0.012, 0.009, 0.011, 0.010],
                         "naive_last_abs_error": [0.040, 0.041, 0.038, 0.042, 0.039]})
    held["law_beats_both"] = False
    assert extrapolation_verdict(held)[0] == "opposite"
    held["naive_mean_abs_error"] = [0.040, 0.015, 0.045, 0.012, 0.050]  # better on 2, worse on 3: noise
    assert extrapolation_verdict(held)[0] == "not resolved"
    assert extrapolation_verdict(held.iloc[:0])[0] == "not resolved"
