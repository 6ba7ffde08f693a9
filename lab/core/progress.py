"""Progress a user can watch: a bar over the named stages of work run in this process, and the step count a
training leaves in its run directory for a process that waits on it from elsewhere (`lab.run.sweep.wait_for`:
`lab train`, `lab text-study`, any study waiting on its jobs).

Bars go to stderr through tqdm, like every bar of the lab (`lab.train.engine.run_steps`, the render and sweep
bars), and `progress=False` silences them (jobs whose logs should stay short).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tqdm.auto import tqdm

from lab.core.rundir import atomic_write_json

PROGRESS_FILE = "progress.json"  # in a training's run directory: {"desc", "step", "steps", "time"}


def write_progress(run_path: Path, desc: str, step: int, steps: int) -> None:
    """Record that a training named `desc` has taken `step` of its `steps` steps."""
    atomic_write_json(Path(run_path) / PROGRESS_FILE, {"desc": desc, "step": step, "steps": steps,
                                                       "time": time.time()})


def read_progress(run_path: Path) -> dict[str, Any] | None:
    """The training progress recorded in `run_path` (None when there is none, or it is not a valid record)."""
    try:
        record = json.loads((Path(run_path) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not all(isinstance(record.get(k), int) for k in ("step", "steps")):
        return None
    return record


class StageBar:
    """One bar over the stages of a run in this process, each named as it starts ("long-context: score"), so
    minutes of work are never silent. Use `with bar.stage(name):` for each of the `total` stages, then `close()`
    (or `with StageBar(...)`)."""

    def __init__(self, desc: str, total: int, progress: bool = True) -> None:
        self.desc = desc
        self.bar = tqdm(total=total, desc=desc, unit="stage", disable=not progress)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.bar.set_description(f"{self.desc}: {name}")
        yield
        self.bar.update()

    def close(self) -> None:
        self.bar.set_description(self.desc)
        self.bar.close()

    def __enter__(self) -> StageBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
