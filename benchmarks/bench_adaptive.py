"""Benchmark the adaptive design (analysis.design) against the doubling grid on the theory simulation.

Each simulated study (analysis.theory: known alpha = b - 1 = 0.8 on every curve) measures three curves (s = 64, 128,
256), one pre-training per (n, seed) serving all three, and fits them as the paper does: one grouped power_floor
fit with D shared (log space, where the simulation's noise is homoscedastic). The target is the width of the 95%
interval of alpha (the widest curve).

- grid: n = 2048 ... 65536 doubling (6 values) x 3 seeds = 18 points; its width W_grid is the study's target.
- adaptive: starts from four grid n with one seed (every other grid n at fixed steps, the four cheapest at fixed
  epochs), then rounds of 1 point chosen by Fisher scoring, until its width <= W_grid or it has spent the grid's
  compute. Candidates run up to n_max = 131072 (2x the grid's largest n). The starts and the batch size were chosen
  on studies 1000-1019 (--first-study 1000); the stored result is studies 0-99.

Two cost protocols: fixed steps (every point costs 1: the paper's fixed step budget) and fixed epochs (a point
costs n). Reports per protocol: mean compute fraction adaptive / grid with its SE (acceptance: <= 0.6), how often
the target was reached within the grid's budget, and the coverage of the true alpha by the 95% delta-method
intervals of both designs with its binomial SE (acceptance: within 5 points of 95%). The delta-method width is
checked against the unit bootstrap (fit_law's cluster bootstrap over (n, seed) runs) on the first studies, and
the Fisher prediction of each round's width against the width measured after the batch.

Run: cd benchmarks && PYTHONPATH=.. python bench_adaptive.py [--studies 100] [--bootstrap-studies 30] (~10 min on
one core). Writes benchmarks/results/adaptive_<cpu>.csv (one row per study and protocol), adaptive_summary_<cpu>.json,
adaptive_example_rounds_<cpu>.json (study 0's rounds: docs/figures/adaptive_run.png is plot_rounds of them) and
adaptive_<cpu>.png.
"""

from __future__ import annotations

import os

for _thread_variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_thread_variable, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.design import (  # noqa: E402
    CostModel, DesignSpec, Observations, Target, delta_interval, fit_observations, plan_round, plot_rounds,
)
from analysis.fit import bootstrap, fit_law  # noqa: E402
from analysis.plots import save_figure  # noqa: E402
from analysis.theory import TransferSetting, simulate_transfer  # noqa: E402
from machine import RESULTS, cpu_name, slug  # noqa: E402

SETTING = TransferSetting()
CURVES = (64, 128, 256)
GRID_N = [2048 * 2**j for j in range(6)]
GRID_SEEDS = 3
STARTS = {"small": [(2048, 0), (4096, 0), (8192, 0), (16384, 0)],  # the 4 cheapest grid n, one seed
          "spread": [(2048, 0), (8192, 0), (32768, 0), (65536, 0)]}  # every other grid n, one seed
N_MAX = 2 * GRID_N[-1]
SPEC = DesignSpec(law="power_floor", target=Target("alpha"), shared=("D",), space="log",
                  bounds={"alpha": (0.05, 3.0)}, target_range=None, batch=2, per_octave=2, beyond=4.0, n_max=N_MAX)
PROTOCOLS = ("fixed_steps", "fixed_epochs")
MAX_ROUNDS = 200  # never reached: a study stops at its target or its budget


class Study:
    """One simulated study: a run at (n, seed) gives the three curves' risks, the same whichever design asks."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.cache: dict[tuple[float, int], np.ndarray] = {}

    def run(self, n: float, seed: int) -> np.ndarray:
        key = (float(n), int(seed))
        if key not in self.cache:
            state = np.random.SeedSequence([self.index, int(n), int(seed)]).generate_state(1)[0]
            simulation = simulate_transfer(SETTING, n_values=[n], s_values=CURVES, gap_s_values=(), replicates=1,
                                           seed=int(state))
            self.cache[key] = simulation.risk
        return self.cache[key]

    def observations(self, units: list[tuple[float, int]]) -> Observations:
        n, seed, loss, curve = [], [], [], []
        for unit in units:
            for s, risk in zip(CURVES, self.run(*unit)):
                n.append(unit[0]), seed.append(unit[1]), loss.append(risk), curve.append(s)
        return Observations.of(n, seed, loss, curve)


def covered(interval) -> list[bool]:
    return [low <= SETTING.alpha <= high for _, low, high in interval.per_curve.values()]


def unit_bootstrap_width(study: Study, units: list[tuple[float, int]], spec: DesignSpec, resamples: int) -> float:
    """The widest curve's 95% percentile interval of alpha over a bootstrap of whole runs (n, seed)."""
    data = study.observations(units)
    clusters = [f"{n:g}/{s}" for n, s in zip(data.n, data.seed)]
    fit = fit_law(data.n, data.loss, spec.law, groups=list(data.curve), shared=spec.shared, space=spec.space,
                  bounds=spec.bounds, target_range=spec.target_range, clusters=clusters)
    fit = bootstrap(fit, resamples, seed=0, resample="seeds")
    widths = [hi - lo for name, (lo, hi) in fit.intervals.items() if name.startswith("alpha")]
    return max(widths) if widths else math.nan


def run_adaptive(study: Study, spec: DesignSpec, start: list[tuple[float, int]], target_width: float,
                 budget: float, keep_rounds: bool = False) -> dict:
    units = list(start)
    spent = sum(spec.cost(n) for n, _ in units)
    ratios, rounds, decision = [], [], None
    for index in range(MAX_ROUNDS):
        data = study.observations(units)
        decision = plan_round(data, spec, target_width=target_width, budget_left=budget - spent)
        if rounds and rounds[-1]["predicted_width"] and decision.interval.width:
            ratios.append(decision.interval.width / rounds[-1]["predicted_width"])
        rounds.append({"round": index, "spent": spent, "units": [list(u) for u in units], "target": "alpha",
                       **decision.to_dict()})
        if decision.stop:
            break
        units += [(c.n, c.seed) for c in decision.chosen]
        spent += sum(spec.cost(c.n) for c in decision.chosen)
    assert decision is not None
    return {"units": units, "spent": spent, "interval": decision.interval, "stop": decision.stop,
            "rounds": len(rounds), "ratios": ratios, "log": rounds if keep_rounds else None}


def run_study(index: int, protocol: str, bootstrap_resamples: int, start: str, batch: int,
              keep_rounds: bool = False) -> tuple[dict, list | None]:
    spec = replace(SPEC, cost=CostModel.protocol(protocol), batch=batch)
    study = Study(index)
    grid_units = [(float(n), s) for n in GRID_N for s in range(GRID_SEEDS)]
    grid_interval = delta_interval(fit_observations(study.observations(grid_units), spec), spec)
    grid_cost = sum(spec.cost(n) for n, _ in grid_units)
    adaptive = run_adaptive(study, spec, STARTS[start], grid_interval.width, grid_cost, keep_rounds=keep_rounds)
    reached = adaptive["interval"].width <= grid_interval.width
    row = {
        "study": index, "protocol": protocol, "grid_width": grid_interval.width, "grid_cost": grid_cost,
        "adaptive_width": adaptive["interval"].width, "adaptive_cost": adaptive["spent"],
        "fraction": adaptive["spent"] / grid_cost, "reached": reached, "stop": adaptive["stop"],
        "rounds": adaptive["rounds"], "points": len(adaptive["units"]),
        "largest_n": max(n for n, _ in adaptive["units"]),
        "grid_covered": sum(covered(grid_interval)), "adaptive_covered": sum(covered(adaptive["interval"])),
        "curves": len(CURVES), "fisher_ratio_median": float(np.median(adaptive["ratios"])) if adaptive["ratios"]
        else math.nan,
        "grid_bootstrap_width": math.nan, "adaptive_bootstrap_width": math.nan,
    }
    if bootstrap_resamples:
        row["grid_bootstrap_width"] = unit_bootstrap_width(study, grid_units, spec, bootstrap_resamples)
        row["adaptive_bootstrap_width"] = unit_bootstrap_width(study, adaptive["units"], spec, bootstrap_resamples)
    return row, adaptive["log"]


def binomial(hits: int, trials: int) -> tuple[float, float]:
    p = hits / trials
    return p, math.sqrt(p * (1 - p) / trials)


def summarise(table: pd.DataFrame) -> dict:
    summary = {}
    for protocol, part in table.groupby("protocol", sort=False):
        studies = len(part)
        trials = int(part.curves.sum())
        grid_cov, grid_se = binomial(int(part.grid_covered.sum()), trials)
        adaptive_cov, adaptive_se = binomial(int(part.adaptive_covered.sum()), trials)
        # per study (any curve missed counts against it): curves within a study share its noise
        grid_all, grid_all_se = binomial(int((part.grid_covered == part.curves).sum()), studies)
        adaptive_all, adaptive_all_se = binomial(int((part.adaptive_covered == part.curves).sum()), studies)
        boot = part.dropna(subset=["grid_bootstrap_width"])
        summary[protocol] = {
            "studies": studies,
            "compute_fraction_mean": float(part.fraction.mean()),
            "compute_fraction_se": float(part.fraction.std(ddof=1) / math.sqrt(studies)),
            "compute_fraction_median": float(part.fraction.median()),
            # a study that did not reach the grid's width within the grid's compute counts as needing all of it
            "compute_fraction_mean_unreached_as_1": float(part.fraction.where(part.reached, 1.0).mean()),
            "reached_target": int(part.reached.sum()),
            "mean_points": float(part.points.mean()),
            "coverage_grid_per_curve": [grid_cov, grid_se, trials],
            "coverage_adaptive_per_curve": [adaptive_cov, adaptive_se, trials],
            "coverage_grid_all_curves": [grid_all, grid_all_se, studies],
            "coverage_adaptive_all_curves": [adaptive_all, adaptive_all_se, studies],
            "fisher_prediction_ratio_median": float(part.fisher_ratio_median.median()),
            "bootstrap_studies": len(boot),
            "delta_over_bootstrap_width_grid_median": float((boot.grid_width / boot.grid_bootstrap_width).median())
            if len(boot) else None,
            "delta_over_bootstrap_width_adaptive_median": float(
                (boot.adaptive_width / boot.adaptive_bootstrap_width).median()) if len(boot) else None,
            "accept_compute": bool(part.fraction.where(part.reached, 1.0).mean() <= 0.6),
            "accept_coverage": bool(abs(adaptive_cov - 0.95) <= 0.05 and abs(grid_cov - 0.95) <= 0.05),
        }
    return summary


def report(summary: dict) -> str:
    lines = []
    for protocol, s in summary.items():
        pct = lambda v: f"{100 * v[0]:.1f}% +- {100 * v[1]:.1f} (n={v[2]})"  # noqa: E731
        lines += [
            f"[{protocol}] {s['studies']} studies",
            f"  compute adaptive / grid: mean {s['compute_fraction_mean']:.3f} +- {s['compute_fraction_se']:.3f} "
            f"(median {s['compute_fraction_median']:.3f}; {s['compute_fraction_mean_unreached_as_1']:.3f} counting "
            f"a study that did not reach it as 1); target reached in {s['reached_target']}/{s['studies']}; "
            f"{s['mean_points']:.1f} points on average (grid 18)",
            f"  coverage of alpha = {SETTING.alpha:g} per curve: grid {pct(s['coverage_grid_per_curve'])}, "
            f"adaptive {pct(s['coverage_adaptive_per_curve'])}",
            f"  all 3 curves covered per study: grid {pct(s['coverage_grid_all_curves'])}, "
            f"adaptive {pct(s['coverage_adaptive_all_curves'])}",
            f"  Fisher: measured / predicted width after a batch, median {s['fisher_prediction_ratio_median']:.3f}; "
            f"delta / bootstrap width over {s['bootstrap_studies']} studies: grid "
            f"{s['delta_over_bootstrap_width_grid_median']}, adaptive {s['delta_over_bootstrap_width_adaptive_median']}",
            f"  acceptance: compute <= 0.6 {'MET' if s['accept_compute'] else 'NOT MET'}; coverage within 5 points "
            f"{'MET' if s['accept_coverage'] else 'NOT MET'}",
        ]
    return "\n".join(lines)


def draw(table: pd.DataFrame, example: list, path) -> None:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for protocol, color in zip(PROTOCOLS, ("C0", "C2")):
        part = table[table.protocol == protocol]
        axes[0].hist(part.fraction, bins=np.linspace(0, max(1.2, part.fraction.max() + 0.05), 30), alpha=0.6,
                     color=color, label=f"{protocol}: mean {part.fraction.mean():.2f}")
    axes[0].axvline(0.6, color="k", ls="--", lw=1, label="acceptance 0.6")
    axes[0].set_xlabel("compute to reach the grid's width of alpha / grid compute")
    axes[0].set_ylabel("studies")
    axes[0].legend(fontsize=7, frameon=False)
    plot_rounds(example, target_width=table.iloc[0].grid_width, axes=axes[1:])
    axes[1].set_title(f"study 0 ({table.iloc[0].protocol}): width of alpha's interval by round", fontsize=9)
    axes[2].set_title("study 0: n of the points chosen each round", fontsize=9)
    figure.tight_layout()
    save_figure(figure, path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=100)
    parser.add_argument("--bootstrap-studies", type=int, default=30, help="studies whose widths are also bootstrapped")
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--first-study", type=int, default=0, help="simulation seed of the first study (studies "
                        "1000+ were used to choose --start and --batch; the stored result uses 0 ... 99)")
    parser.add_argument("--start", choices=sorted(STARTS), nargs="+", default=["spread", "small"],
                        help="starting design per protocol (fixed_steps, fixed_epochs)")
    parser.add_argument("--batch", type=int, default=1, help="points per round")
    parser.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    starts = dict(zip(PROTOCOLS, args.start if len(args.start) == 2 else args.start * 2))
    rows, example, start = [], None, time.perf_counter()
    for protocol in args.protocols:
        for offset in range(args.studies):
            index = args.first_study + offset
            resamples = args.resamples if offset < args.bootstrap_studies else 0
            row, log = run_study(index, protocol, resamples, starts[protocol], args.batch, keep_rounds=offset == 0)
            row["start"] = starts[protocol]
            rows.append(row)
            if log is not None and protocol == args.protocols[0]:
                example = log
            if (offset + 1) % 10 == 0:
                print(f"{protocol}: {offset + 1}/{args.studies} studies, {time.perf_counter() - start:.0f} s",
                      flush=True)
    table = pd.DataFrame(rows)
    summary = summarise(table)
    summary["seconds"] = time.perf_counter() - start
    summary["setting"] = {"alpha": SETTING.alpha, "curves": list(CURVES), "grid_n": GRID_N, "grid_seeds": GRID_SEEDS,
                          "start": {p: STARTS[starts[p]] for p in args.protocols}, "n_max": N_MAX,
                          "batch": args.batch, "space": SPEC.space, "first_study": args.first_study}
    print(report({k: v for k, v in summary.items() if k in PROTOCOLS}))
    stem = slug(cpu_name())
    results = RESULTS if args.out is None else Path(args.out)
    results.mkdir(exist_ok=True, parents=True)
    table.to_csv(results / f"adaptive_{stem}.csv", index=False)
    (results / f"adaptive_summary_{stem}.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    (results / f"adaptive_example_rounds_{stem}.json").write_text(json.dumps(example, default=str) + "\n")
    draw(table, example, results / f"adaptive_{stem}.png")
    print(f"wrote {results}/adaptive_{stem}.csv, adaptive_summary_{stem}.json, adaptive_{stem}.png")


if __name__ == "__main__":
    main()
