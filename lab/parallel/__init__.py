"""Data-parallel communication and large-batch control (Mikami et al., arXiv 1811.05233).

- `register_allreduce(ddp_model, AllReduceConfig(kind="ring"|"torus2d"|"hierarchical", ...), world)`
- `BatchSchedule` / `lr_for` / `smoothed_cross_entropy`: batch-size control with accumulation and warm-up;
  `lab.train.batch_control.train_on_schedule` trains by them (resumable), `lab.stages.batch_control` is the stage and
  `lab train recipe=...` the command
- `cost_model`: alpha-beta predictions for ring, tree, hierarchical and 2D-torus all-reduce
"""

from lab.parallel.batch_schedule import BatchPhase, BatchSchedule, BatchScheduleConfig, StepPlan
from lab.parallel.config import AllReduceConfig
from lab.parallel.grid import GridError, TorusGrid, processes_per_node, resolve_grid
from lab.parallel.groups import TorusGroups
from lab.parallel.hooks import ALLREDUCE, register_allreduce, torus_hook
from lab.parallel.loss import smoothed_cross_entropy
from lab.parallel.lr_schedule import LRScheduleConfig, lr_for, peak_lr
from lab.parallel.torus import torus_allreduce_



def __getattr__(name: str):
    """The recipe (Hydra/omegaconf and the launcher) loads on first use, so training code imports without them."""
    if name in ("BatchControlRecipe", "load_recipe"):
        from lab.parallel import recipe

        return getattr(recipe, name)
    raise AttributeError(f"module 'lab.parallel' has no attribute {name!r}")


__all__ = [
    "ALLREDUCE", "AllReduceConfig", "BatchControlRecipe", "BatchPhase", "BatchSchedule", "BatchScheduleConfig",
    "GridError", "LRScheduleConfig", "StepPlan", "TorusGrid", "TorusGroups", "load_recipe", "lr_for", "peak_lr",
    "processes_per_node", "register_allreduce", "resolve_grid", "smoothed_cross_entropy", "torus_allreduce_",
    "torus_hook",
]
