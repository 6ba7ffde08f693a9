"""Moved to `lab.core.config` (issue 17). This old path keeps imports, pickled jobs and plans that name it
working for one release; new code imports `lab.core.config`."""

import sys

from lab.core import config as _moved

sys.modules[__name__] = _moved
