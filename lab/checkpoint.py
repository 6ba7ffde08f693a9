"""Moved to `lab.core.checkpoint` (issue 17). This old path keeps imports, pickled jobs and plans that name it
working for one release; new code imports `lab.core.checkpoint`."""

import sys

from lab.core import checkpoint as _moved

sys.modules[__name__] = _moved
