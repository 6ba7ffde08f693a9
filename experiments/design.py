"""How a study chooses its points: the fixed grid (the default) or an adaptive design (`lab sweep adapt`,
experiments/adapt.py). Kept apart from the adaptive loop so that reading a sweep config imports no fitter."""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.core.config import ConfigError

DESIGN_KINDS = ("grid", "adaptive")
COST_MODELS = ("durations", "fixed_steps", "fixed_epochs")


@dataclass
class DesignConfig:
    """How a study chooses its points: the fixed grid (default) or adaptively (`lab sweep adapt`)."""

    kind: str = "grid"
    target: str = "alpha"  # alpha, C, alpha[<s>] for one curve, or loss@N (the predicted error at n = N)
    target_width: float | None = None  # stop once the 95% interval is this narrow (None: spend the budget)
    budget_points: int | None = None  # pre-trainings (n, seed) in all, the starting grid's included
    budget_hours: float | None = None  # job-hours of every task of the sweep (recorded durations)
    batch: int = 2  # points launched per round
    per_octave: int = 2  # candidate n per doubling
    beyond: float = 4.0  # candidates reach this factor past the largest measured n
    n_max: int | None = None  # the largest n a round may choose (default: beyond x the study's largest n)
    law: str = "power_floor"
    shared: list[str] = field(default_factory=lambda: ["D"])
    space: str = "linear"
    metric: str = "top1"
    cost: str = "durations"  # durations (seconds = a + b n fitted to the runs) | fixed_steps | fixed_epochs
    max_rounds: int = 20


def check_design(design: DesignConfig) -> None:
    if design.kind not in DESIGN_KINDS:
        raise ConfigError(f"design.kind must be one of {', '.join(DESIGN_KINDS)}, got {design.kind!r}")
    if design.cost not in COST_MODELS:
        raise ConfigError(f"design.cost must be one of {', '.join(COST_MODELS)}, got {design.cost!r}")
    if design.budget_points is None and design.budget_hours is None:
        raise ConfigError("an adaptive design needs a budget: design.budget_points=N and/or design.budget_hours=H")
    if design.max_rounds < 1:
        raise ConfigError(f"design.max_rounds must be >= 1, got {design.max_rounds}")
