"""Moved to `lab.core.distributed` (issue 17). This old path keeps imports, pickled jobs and plans that name it
working for one release; new code imports `lab.core.distributed`."""

import sys

from lab.core import distributed as _moved

sys.modules[__name__] = _moved
