"""Moved to `lab.core.results` (issue 17). This old path keeps imports, pickled jobs and plans that name it
working for one release; new code imports `lab.core.results`."""

import sys

from lab.core import results as _moved

sys.modules[__name__] = _moved
