"""Adaptive design scoring (analysis.design) on curves whose law is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.design import (
    Candidate, CostModel, DesignSpec, Observations, Target, candidate_points, delta_interval, fit_observations,
    plan_round,
)
from analysis.fit import bootstrap, fit_law

TRUE = {"D": 2.0, "alpha": 0.5, "C": 0.1}


def curve(n, D=TRUE["D"], alpha=TRUE["alpha"], C=TRUE["C"]):
    return D * np.asarray(n, dtype=float) ** (-alpha) + C


def observations(units, noise=0.004, seed=0, curves=None):
    """Noisy power_floor losses at (n, seed) units, one row per curve (curves: name -> (D, alpha, C))."""
    rng = np.random.default_rng(seed)
    n, seeds, loss, label = [], [], [], []
    for unit_n, unit_seed in units:
        for name, params in (curves or {None: (TRUE["D"], TRUE["alpha"], TRUE["C"])}).items():
            n.append(unit_n), seeds.append(unit_seed), label.append(name)
            loss.append(float(curve(unit_n, *params)) + noise * rng.standard_normal())
    return Observations.of(n, seeds, loss, None if curves is None else label)


SPEC = DesignSpec(law="power_floor", target=Target("alpha"), cost=CostModel.protocol("fixed_steps"), batch=1,
                  per_octave=1, beyond=8.0)
# five n, the middle one measured with four seeds: well covered
UNITS = [(100, 0), (200, 0), (400, 0), (400, 1), (400, 2), (400, 3), (800, 0), (1600, 0)]


def by_candidate(decision):
    return {(c.candidate.n, c.candidate.seed): c for c in decision.candidates}


def test_a_point_beyond_the_range_narrows_alpha_more_than_another_seed_at_a_well_covered_n():
    decision = plan_round(observations(UNITS), SPEC)
    scores = by_candidate(decision)
    beyond, duplicate = scores[(12800.0, 0)], scores[(400.0, 4)]
    assert beyond.candidate.kind == "new n" and duplicate.candidate.kind == "another seed"
    assert beyond.width_after < duplicate.width_after < decision.interval.width
    assert decision.chosen[0].n > 1600  # the best point extends the range


def test_a_cost_that_grows_with_n_divides_the_gain_by_n_and_moves_the_choice_to_cheaper_points():
    data = observations(UNITS)
    flat = plan_round(data, SPEC)
    per_n = plan_round(data, DesignSpec(**{**vars(SPEC), "cost": CostModel(fixed=0.0, per_n=1.0)}))
    width = flat.interval.width
    for scored in per_n.candidates:
        assert scored.cost == scored.candidate.n
        assert scored.score == pytest.approx((width - scored.width_after) / scored.candidate.n)
    assert per_n.chosen[0].n < flat.chosen[0].n


def test_the_fisher_width_matches_the_bootstrap_on_a_well_sampled_curve():
    units = [(n, s) for n in (100, 200, 400, 800, 1600, 3200) for s in range(4)]
    data = observations(units, seed=3)
    delta = delta_interval(fit_observations(data, SPEC), SPEC)
    boot = bootstrap(fit_law(data.n, data.loss, "power_floor"), 400, seed=0, resample="residuals")
    low, high = boot.intervals["alpha"]
    assert 0.7 < delta.width / (high - low) < 1.4
    assert delta.low < TRUE["alpha"] < delta.high


def test_a_batch_is_chosen_greedily_and_never_repeats_a_measured_seed():
    data = observations(UNITS)
    decision = plan_round(data, DesignSpec(**{**vars(SPEC), "batch": 3}))
    assert len(decision.chosen) == 3
    measured = set(data.units)
    picked = [(c.n, c.seed) for c in decision.chosen]
    assert len(set(picked)) == 3 and not set(picked) & measured
    one = plan_round(data, SPEC)
    assert decision.predicted_width < one.predicted_width < decision.interval.width


def test_a_prediction_target_favours_points_near_the_extrapolated_n():
    spec = DesignSpec(**{**vars(SPEC), "target": Target.parse("loss@1.28e6"), "beyond": 16.0})
    decision = plan_round(observations(UNITS), spec)
    assert decision.interval.label == "loss@1.28e+06"
    assert decision.interval.estimate == pytest.approx(float(curve(1.28e6)), abs=0.02)
    assert decision.chosen[0].n == max(c.candidate.n for c in decision.candidates)


def test_the_rounds_stop_at_the_target_width_and_at_the_budget():
    data = observations(UNITS)
    reached = plan_round(data, SPEC, target_width=10.0)
    assert reached.stop == "target" and reached.chosen == []
    broke = plan_round(data, SPEC, budget_left=0.5)  # every point costs 1
    assert broke.stop == "budget" and broke.chosen == []


def test_a_grouped_fit_shares_D_and_a_point_serves_every_curve():
    curves = {"a": (2.0, 0.5, 0.1), "b": (2.0, 0.3, 0.2)}
    data = observations([(n, 0) for n in (100, 200, 400, 800, 1600)], curves=curves)
    decision = plan_round(data, SPEC)
    assert set(decision.fit.params) == {"D", "alpha[a]", "alpha[b]", "C[a]", "C[b]"}
    widths = {k: hi - lo for k, (_, lo, hi) in decision.interval.per_curve.items()}
    assert decision.interval.width == pytest.approx(max(widths.values()))
    one = plan_round(data, DesignSpec(**{**vars(SPEC), "target": Target("alpha[a]")}))
    assert set(one.interval.per_curve) == {"alpha[a]"}
    assert one.interval.width == pytest.approx(widths["a"])


def test_an_undetermined_exponent_has_a_huge_width_not_zero():
    # a flat curve: D goes to 0 and alpha is free; a pseudo-inverse would call its width 0 (target reached)
    data = Observations.of([100, 200, 400, 800, 1600], [0] * 5, [0.5, 0.51, 0.49, 0.5, 0.505])
    decision = plan_round(data, SPEC, target_width=0.1)
    assert decision.stop != "target" and decision.interval.width > 1.0


def test_candidates_span_the_log_grid_within_the_limits_with_the_next_free_seed():
    data = observations(UNITS)
    spec = DesignSpec(**{**vars(SPEC), "per_octave": 2, "beyond": 4.0, "n_max": 5000})
    candidates = candidate_points(data, spec)
    values = [c.n for c in candidates]
    assert min(values) == 100 and max(values) <= 5000 and max(values) > 1600
    assert Candidate(400.0, 4, "another seed") in candidates and Candidate(100.0, 1, "another seed") in candidates
    assert all(c.seed == 0 for c in candidates if c.kind == "new n")
    assert len(values) == len(set(values))


def test_a_cost_model_is_fitted_to_recorded_durations():
    n = np.array([100, 200, 400, 800])
    model = CostModel.from_durations(n, 3.0 + 0.01 * n)
    assert model.fixed == pytest.approx(3.0) and model.per_n == pytest.approx(0.01)
    assert CostModel.from_durations([100, 100], [2.0, 4.0]) == CostModel(fixed=3.0, per_n=0.0)


@pytest.mark.parametrize("make, message", [
    (lambda: Target.parse("loss@big"), "must be a number"),
    (lambda: DesignSpec(target=Target("gamma")), "not a parameter of power_floor"),
    (lambda: DesignSpec(law="joint_ns"), "one input"),
    (lambda: DesignSpec(law="m4", target=Target("alpha")), "shared names \\['D'\\], not parameters of m4"),
    (lambda: CostModel(fixed=0.0, per_n=0.0), "not both 0"),
    (lambda: plan_round(Observations.of([100, 200, 400], [0] * 3, [0.5, 0.4, 0.35]), SPEC), "degrees of freedom"),
])
def test_bad_designs_are_refused_with_a_reason(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_decision_serialises_to_json_without_nan():
    import json

    decision = plan_round(observations(UNITS), SPEC)
    text = json.dumps(decision.to_dict())
    assert "NaN" not in text and math.isfinite(json.loads(text)["width"])
