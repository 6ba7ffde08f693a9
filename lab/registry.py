"""Moved to `lab.core.registry` (issue 17). This old path keeps imports, pickled jobs and plans that name it
working for one release; new code imports `lab.core.registry`."""

import sys

from lab.core import registry as _moved

sys.modules[__name__] = _moved
