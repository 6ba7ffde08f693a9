"""Moved to `lab.run.sweep` (issue 17). This old path keeps imports, pickled jobs and plans that name it
working for one release; new code imports `lab.run.sweep`."""

import sys

from lab.run import sweep as _moved

if __name__ == "__main__":  # a local runner started by an older checkout: python -m lab.sweep
    import runpy

    runpy.run_module("lab.run.sweep", run_name="__main__")
else:
    sys.modules[__name__] = _moved
