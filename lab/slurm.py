"""Moved to `lab.run.slurm` (issue 17). This old path keeps imports, pickled jobs and plans that name it
working for one release; new code imports `lab.run.slurm`."""

import sys

from lab.run import slurm as _moved

sys.modules[__name__] = _moved
