"""Moved to `lab.core.rundir` (issue 17). This old path keeps imports, pickled jobs and plans that name it
working for one release; new code imports `lab.core.rundir`."""

import sys

from lab.core import rundir as _moved

sys.modules[__name__] = _moved
