"""Moved to `lab.stages.batch_control` (issue 17). This old path keeps imports, pickled jobs and plans that name it
working for one release; new code imports `lab.stages.batch_control`."""

import sys

from lab.stages import batch_control as _moved

sys.modules[__name__] = _moved
