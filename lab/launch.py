"""Moved to `lab.run.launch` (issue 17). This old path keeps imports, pickled jobs and plans that name it
working for one release; new code imports `lab.run.launch`."""

import sys

from lab.run import launch as _moved

sys.modules[__name__] = _moved
