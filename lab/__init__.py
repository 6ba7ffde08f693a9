"""lab: the core of the synthetic-to-real transfer lab.

Small components with one job each: registries (`lab.core.registry`), run directories and atomic results
(`lab.core.rundir`), the sharded dataset format (`lab.data.shards`), real datasets (`lab.data.real`), models
(`lab.models`), the training loop (`lab.train`), stages (`lab.stages.image`), executors (`lab.run.launch`) and the
tidy results table (`lab.core.results`). Recipes that combine them live in `experiments/`.
"""

__version__ = "0.1.0"
