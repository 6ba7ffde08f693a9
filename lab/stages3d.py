"""Moved to `lab.stages.scenes3d` (issue 17). This old path keeps imports, pickled jobs and plans that name it
working for one release; new code imports `lab.stages.scenes3d`."""

import sys

from lab.stages import scenes3d as _moved

sys.modules[__name__] = _moved
