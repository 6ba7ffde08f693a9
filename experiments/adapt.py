"""`lab sweep adapt`: the digits study run as an adaptive design instead of a fixed grid (opt-in: design.kind).

Each round fits the results so far (analysis.design: the grouped fit, shared D across the s curves), scores
candidate points (a new n on a log grid inside and up to `design.beyond` x past the measured range, or another
seed at a measured n) by the expected narrowing of the target's interval per unit cost, and runs the best batch
through the normal sweep machinery (lab.run.sweep.execute: any executor, the same plan.json, state.json and
results table as `lab sweep launch`). It stops at the target width, at the budget (points or job-hours) or when
no candidate helps.

Every decision is appended to `<root>/<name>/sweep/adapt.jsonl` (the fit, the width, every candidate's score,
the chosen points) before its points are launched, and `adapt.png` draws the run. A restart (after a kill, even
mid-round) rebuilds the design from that log: the points of a logged round are launched again, and the
orchestrator skips those already done or still running, so no point runs twice and a round is never re-planned.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.design import CostModel, DesignSpec, Observations, Target, plan_round, plot_rounds
from analysis.validation import InputError
from experiments.design import DesignConfig, check_design
from experiments.digits_demo import STAGES, digits_points, render_slice_tasks, validate
from lab.core.config import ConfigError
from lab.core.rundir import append_jsonl, config_hash, read_jsonl
from lab.run import sweep
from lab.run.launch import validate_launcher
from lab.run.sweep import Plan

LOG_FILE = "adapt.jsonl"
FIGURE_FILE = "adapt.png"


def design_spec(design: DesignConfig, cost: CostModel, n_max: int) -> DesignSpec:
    try:
        return DesignSpec(law=design.law, target=Target.parse(design.target), shared=tuple(design.shared),
                          space=design.space, cost=cost, batch=design.batch, per_octave=design.per_octave,
                          beyond=design.beyond, n_max=n_max)
    except ValueError as error:
        raise ConfigError(f"design: {error}") from None


def starting_units(config: Any) -> list[tuple[int, int]]:
    """The study's own grid of (n, seed) with n > 0: the first round's points."""
    return [(int(n), int(seed)) for n in dict.fromkeys(config.study.n) if n > 0
            for seed in dict.fromkeys(config.study.seeds)]


def largest_n(config: Any) -> int:
    return int(config.design.n_max or config.design.beyond * max(config.study.n))


def plan_units(config: Any, units: list[tuple[int, int]]) -> Plan:
    """The study's tasks for these (n, seed) pairs plus its scratch (n = 0) points; the render is sized for
    n_max from the first round, so its tasks stay the same however far the rounds go."""
    study = config.study
    dataset_id = config_hash(study.renderer)
    dataset = Path(config.root) / config.name / "render" / f"{study.renderer.name}-{dataset_id}"
    count = study.pretrain.render_count(largest_n(config))
    renders = render_slice_tasks(study.renderer, count, dataset, config.render_shards_per_task)
    tasks = {t.key: t for t in renders}
    add = digits_points(config.name, config.root, config.launcher.threads())
    points: list[dict[str, Any]] = []
    scratch = [0] if 0 in study.n else []
    cells = [replace(study, n=scratch, seeds=list(study.seeds))] if scratch else []
    cells += [replace(study, n=[n], seeds=[seed]) for n, seed in units]
    for cell in cells:
        points += add(tasks, cell, {}, dataset, count, [t.key for t in renders])
    return Plan(name=config.name, root=config.root, tasks=sweep.in_stage_order(tasks.values(), STAGES),
                points=points)


def observations(table: pd.DataFrame, metric: str, units: list[tuple[int, int]]) -> Observations:
    """The error of every measured (n > 0, seed, s) of the design, one curve per s."""
    rows = table[(table.metric == metric) & (table.n > 0)]
    wanted = set(units)
    rows = rows[[(int(n), int(seed)) in wanted for n, seed in zip(rows.n, rows.seed)]]
    if rows.empty:
        raise ConfigError(f"no {metric!r} results at n > 0 to fit; metrics in the table: "
                          f"{sorted(table.metric.unique())}")
    return Observations.of(rows.n.to_numpy(float), rows.seed.to_numpy(int), rows.error.to_numpy(float),
                           [f"{s:g}" for s in rows.s] if rows.s.nunique() > 1 else None)


def task_seconds(plan: Plan, known: dict[str, float]) -> dict[str, float]:
    """Job-seconds of every finished task: as the sweep records them, else as an earlier round logged them (a
    later local runner's record replaces the earlier one's, and a render task has no result.json to time)."""
    view = sweep.SweepView.read(plan.folder)
    seconds = {}
    for task in plan.tasks:
        if view.done[task.key]:
            value = view.seconds(task)
            seconds[task.key] = float(value) if value is not None else float(known.get(task.key, 0.0))
    return seconds


def unit_seconds(plan: Plan, seconds: dict[str, float]) -> tuple[dict[tuple[int, int], float], float]:
    """Job-seconds of each (n, seed) (its pre-training and every fine-tune) and of the whole sweep."""
    per_unit: dict[tuple[int, int], float] = {}
    counted: set[str] = set()
    for point in plan.points:
        if point["n"] <= 0:
            continue
        key = (int(point["n"]), int(point["seed"]))
        for task in plan.ancestors(point["task"]):
            if task.stage == "render" or task.key in counted:
                continue
            counted.add(task.key)
            per_unit[key] = per_unit.get(key, 0.0) + seconds.get(task.key, 0.0)
    return per_unit, sum(seconds.values())


def cost_model(design: DesignConfig, per_unit: dict[tuple[int, int], float]) -> CostModel:
    """Seconds per point: fitted to the recorded durations, or the protocol's shape scaled to them (in the
    protocol's own units when nothing was timed)."""
    n = [k[0] for k in per_unit]
    seconds = list(per_unit.values())
    if design.cost == "durations":
        return CostModel.from_durations(n, seconds)
    shape = CostModel.protocol(design.cost)
    scale = sum(seconds) / max(sum(shape(v) for v in n), 1e-12)
    scale = scale if scale > 0 else 1.0
    return CostModel(fixed=shape.fixed * scale, per_n=shape.per_n * scale)


@dataclass
class AdaptLog:
    """The decisions of one adaptive sweep, one JSON line each: a header, then rounds, then a stop."""

    path: Path

    def records(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path) if self.path.exists() else []

    def rounds(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == "round"]

    def check_header(self, fingerprint: str, config: Any) -> None:
        records = self.records()
        if not records:
            append_jsonl(self.path, {"event": "start", "fingerprint": fingerprint, "time": time.time(),
                                     "target": config.design.target, "start": starting_units(config)})
            return
        if records[0].get("fingerprint") != fingerprint:
            raise ConfigError(f"{self.path} was written by an adaptive sweep with another study or design config; "
                              f"resume it with the same overrides, or give this one another name=")

    def append(self, record: dict[str, Any]) -> None:
        append_jsonl(self.path, {**record, "time": time.time()})


def limits(design: DesignConfig) -> dict[str, Any]:
    """What may change between a stop and a resumed run (a larger budget continues a stopped design)."""
    return {"target_width": design.target_width, "budget_points": design.budget_points,
            "budget_hours": design.budget_hours, "max_rounds": design.max_rounds}


def fingerprint(config: Any) -> str:
    """What a resumed run must share with the one that wrote the log: the study and the design."""
    design = {k: v for k, v in vars(config.design).items() if k not in limits(config.design)}
    return config_hash({"study": config.study, "design": design})


def check_adaptive(config: Any) -> None:
    """Every check of an adaptive sweep config that can fail, before anything is written or run."""
    design: DesignConfig = config.design
    if design.kind != "adaptive":
        raise ConfigError("this study uses the fixed grid (design.kind=grid); `lab sweep adapt` needs "
                          "design.kind=adaptive with a budget (design.budget_points / design.budget_hours)")
    check_design(design)
    if config.grid:
        raise ConfigError("an adaptive design chooses the points of one study: leave grid empty")
    try:
        validate_launcher(config.launcher)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    validate(replace(config.study, n=[*config.study.n, largest_n(config)]))  # every n a round may choose
    design_spec(design, CostModel(), largest_n(config))  # a bad target or law fails before anything runs
    if len({n for n, _ in starting_units(config)}) < 2:
        raise ConfigError("the starting grid needs at least two n > 0 to fit (study.n)")


def decide(config: Any, data: Observations, units: list[tuple[int, int]], index: int, cost: CostModel,
           spent: float) -> dict[str, Any]:
    """Round `index`: fit, score, choose within what is left of the budgets; the log record of the decision."""
    design: DesignConfig = config.design
    spec = design_spec(design, cost, largest_n(config))
    budget_left = math.inf if design.budget_hours is None else design.budget_hours * 3600.0 - spent
    points_left = math.inf if design.budget_points is None else design.budget_points - len(units)
    out_of_rounds = points_left <= 0 or index >= design.max_rounds
    try:
        decision = plan_round(data, replace(spec, batch=int(min(design.batch, max(points_left, 1)))),
                              target_width=design.target_width, budget_left=0.0 if out_of_rounds else budget_left)
    except InputError as error:
        raise ConfigError(f"round {index}: the fit of the results so far failed ({error}); finished points are "
                          f"kept") from None
    stop = decision.stop
    if out_of_rounds and stop != "target":
        stop = "budget" if points_left <= 0 else "rounds"
    record = {"event": "round", "round": index, "target": spec.target.label, "units": [list(u) for u in units],
              "limits": limits(design), "spent": spent,
              "cost_model": {"fixed_seconds": cost.fixed, "seconds_per_n": cost.per_n}, **decision.to_dict(),
              "stop": stop}
    if stop:
        record["chosen"] = []
    return record


def run_adaptive(config: Any, poll_seconds: float = 2.0) -> dict[str, Any]:
    """Run (or resume) the adaptive design of a sweep config to its stop; returns its summary and report."""
    check_adaptive(config)
    design: DesignConfig = config.design
    units0 = starting_units(config)
    folder = Path(config.root) / config.name / "sweep"
    log = AdaptLog(folder / LOG_FILE)
    log.check_header(fingerprint(config), config)
    results = Path(config.root) / config.name / "results.csv"
    rounds = log.rounds()
    units = list(units0) + [(int(c["n"]), int(c["seed"])) for r in rounds for c in r["chosen"]]
    units = list(dict.fromkeys(units))
    while not (rounds and rounds[-1]["stop"] and rounds[-1].get("limits") == limits(design)):
        plan = plan_units(config, units)
        _, final = sweep.execute(plan, config.launcher, poll_seconds)
        table = sweep.collect(plan.folder, config.name, results)
        error = sweep.unfinished_error(final)
        if error:
            raise error  # the log keeps every decision: running the same command again resumes this round
        seconds = task_seconds(plan, rounds[-1].get("task_seconds", {}) if rounds else {})
        per_unit, spent = unit_seconds(plan, seconds)
        record = decide(config, observations(table, design.metric, units), units, len(rounds),
                        cost_model(design, per_unit), spent)
        record["task_seconds"] = seconds
        stop = record["stop"]
        log.append(record)
        rounds.append(record)
        if stop:
            break
        units += [(int(c["n"]), int(c["seed"])) for c in record["chosen"]]
    figure_path = folder / FIGURE_FILE
    draw_log(rounds, design.target_width, figure_path, config.name)
    last = rounds[-1]
    value = lambda v: "nan" if v is None else f"{v:.4g}"  # noqa: E731 (JSON null: not finite)
    report = (f"{config.name}: stopped ({last['stop']}) after {len(rounds)} rounds, {len(units)} points, "
              f"{last['spent'] / 3600:.3g} job-hours; {last['target']} = {value(last['estimate'])} "
              f"[{value(last['interval'][0])}, {value(last['interval'][1])}] (95%, delta method), width "
              f"{value(last['width'])}"
              + (f" (target {design.target_width:g})" if design.target_width is not None else "")
              + f". Decisions: {log.path}; figure: {figure_path}; results: {results}")
    return {"rounds": rounds, "units": units, "stop": last["stop"], "report": report, "log": log.path,
            "figure": figure_path}


def draw_log(rounds: list[dict[str, Any]], target_width: float | None, path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.plots import save_figure

    figure = plot_rounds(rounds, target_width=target_width, title=f"{name}: adaptive design")
    figure.axes[0].set_xlabel("job-seconds spent")
    save_figure(figure, path, dpi=110)
    plt.close(figure)
