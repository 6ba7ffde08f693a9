"""Training checkpoints: one file, written atomically, so a preempted job never leaves half a checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` (state dicts, step counters) to `path` via a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The state saved at `path` (tensors on the CPU), or None when there is no checkpoint yet."""
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None
