"""What produced a result: the lab's commit (dirty or not), the host, the Python and torch versions, the process."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def git_commit() -> str:
    """HEAD of the lab's checkout, with '-dirty' when tracked files differ from it (results must say so)."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, cwd=here)
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], capture_output=True, timeout=10, cwd=here)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = head.stdout.strip()
    if not commit:
        return "unknown"
    return commit + ("-dirty" if dirty.returncode == 1 else "")


def provenance() -> dict[str, Any]:
    import torch  # only the stages that already hold it ask

    return {"git_commit": git_commit(), "host": socket.gethostname(), "python": platform.python_version(),
            "torch": torch.__version__, "pid": os.getpid()}
