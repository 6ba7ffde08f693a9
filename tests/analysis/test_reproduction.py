"""analysis.reproduction on results tables drawn from known laws: the findings must come out as constructed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.reproduction import (Finding, benefit, curve_summary, extrapolation_table, findings_latex,
                                   findings_markdown, fit_curves, latex_table, load_findings, s_sweep,
                                   save_outputs, trend, verdict_from_trend)
from analysis.validation import InputError

NS = [0, 250, 500, 1000, 2000, 4000, 8000]


def results_table(curves: dict[str, tuple[float, float, float]], *, noise: float = 0.002, seeds: int = 3,
                  scratch: float = 0.5, column: str = "model", seed: int = 0) -> pd.DataFrame:
    """Tidy rows in the lab's format: per curve (D, alpha, C), per n and seed, an error with gaussian noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, (d, alpha, c) in curves.items():
        for n in NS:
            for s in range(seeds):
                mean = scratch if n == 0 else d * n ** -alpha + c
                error = float(np.clip(mean + rng.normal(0, noise), 0, 1))
                rows += [{"n": n, "s": 50, "seed": s, column: name, "metric": "top1", "error": error,
                          "value": 1 - error},
                         {"n": n, "s": 50, "seed": s, column: name, "metric": "loss", "error": 9.9, "value": 9.9}]
    return pd.DataFrame(rows)


def test_shared_d_fit_recovers_each_curves_alpha_and_gap():
    truth = {"small": (2.0, 0.5, 0.20), "large": (2.0, 0.5, 0.10)}
    fits = fit_curves(results_table(truth), ["model"], bootstrap=40)
    frame = fits.frame.set_index("model")
    for name, (_, alpha, gap) in truth.items():
        assert frame.loc[name, "C"] == pytest.approx(gap, abs=0.01)
        assert frame.loc[name, "alpha"] == pytest.approx(alpha, abs=0.1)
        assert frame.loc[name, "C_lo"] <= gap <= frame.loc[name, "C_hi"] + 0.005
    assert fits.result.params["D"] == pytest.approx(2.0, rel=0.3) and "D" in fits.result.shared
    assert list(frame.scratch) == pytest.approx([0.5, 0.5], abs=0.01) and (frame.points == 18).all()


def test_trend_and_its_verdict_follow_the_constructed_order():
    truth = {"a": (2.0, 0.5, 0.30), "b": (2.0, 0.5, 0.20), "c": (2.0, 0.5, 0.10)}
    fits = fit_curves(results_table(truth), ["model"], bootstrap=40)
    down = trend(fits, "C", "model", ["a", "b", "c"])
    assert down.steps_down == 2 and down.endpoint_change == pytest.approx(-0.2, abs=0.02)
    assert down.endpoints_separated and verdict_from_trend(down) == "reproduced"
    up = trend(fits, "C", "model", ["c", "b", "a"])
    assert verdict_from_trend(up) == "not reproduced" and "a vs c" in up.sentence()
    with pytest.raises(InputError, match="one curve per model"):
        trend(fits, "C", "model", ["a", "zzz"])


def test_identical_curves_in_noise_are_not_called_a_trend():
    truth = {"a": (2.0, 0.5, 0.15), "b": (2.0, 0.5, 0.15)}
    fits = fit_curves(results_table(truth, noise=0.03), ["model"], bootstrap=60)
    verdict = verdict_from_trend(trend(fits, "C", "model", ["a", "b"]))
    assert verdict in ("partly (within the noise)", "not reproduced")


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
