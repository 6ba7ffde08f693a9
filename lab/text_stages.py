"""Moved to `lab.stages.text` (issue 17). This old path keeps imports, pickled jobs and plans that name it
working for one release; new code imports `lab.stages.text`."""

import sys

from lab.stages import text as _moved

sys.modules[__name__] = _moved
