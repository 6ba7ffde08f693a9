"""lab: the core of the synthetic-to-real transfer lab.

Small components with one job each: registries (`lab.registry`), run directories and atomic results
(`lab.rundir`), the sharded dataset format (`lab.data.shards`), real datasets (`lab.data.real`), models
(`lab.models`), the training loop (`lab.train`), stages (`lab.stages`), executors (`lab.launch`) and the
tidy results table (`lab.results`). Recipes that combine them live in `experiments/`.
"""

__version__ = "0.1.0"
