"""Moved to `lab.tasks.pretrain` (issue 17). This old path keeps imports, pickled jobs and plans that name it
working for one release; new code imports `lab.tasks.pretrain`."""

import sys

from lab.tasks import pretrain as _moved

sys.modules[__name__] = _moved
