"""Training checkpoints: written atomically with a checksum, verified on load, the previous one kept as a fallback.

`save_checkpoint(path, state)` writes `path` (e.g. `checkpoints/last.pt`) and its sidecar `last.pt.sha256` (the
file's sha256), after keeping the checkpoint it replaces as `last.prev.pt` (+ sidecar). `load_checkpoint(path)`
uses the newest of the two whose bytes match their checksum: a corrupt or truncated one is named in an
`IntegrityWarning`, moved aside (`last.pt.invalid-<time>`, so it never blocks the stage again) and the previous
one is used instead, or, when there is none, the stage restarts from step 0, saying so.

The order of the writes leaves a usable checkpoint at every instant: the previous one is kept by a hard link (the
current one stays in place meanwhile), and the new checkpoint's sidecar is written before the new file, so a
crash between the two leaves a mismatch (fall back to the previous one), never an unverified file.

A checkpoint without a sidecar was written before checksums existed: it is accepted once if torch can load it
(weights_only) and said to be unverified; the next save gives it a checksum.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from lab.core.rundir import IntegrityWarning, atomic_write, atomic_write_text, set_aside, sha256_file

CHECKSUM_SUFFIX = ".sha256"


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def previous_path(path: Path) -> Path:
    """Where the checkpoint that `path` replaced is kept: last.pt -> last.prev.pt."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _keep_previous(path: Path) -> None:
    """Keep the checkpoint at `path` (with its checksum) as the previous one; `path` itself stays in place."""
    previous = previous_path(path)
    if not checksum_path(path).exists():  # none yet, or one written before checksums: nothing verified to keep
        for stale in (previous, checksum_path(previous)):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        return
    atomic_write_text(checksum_path(previous), checksum_path(path).read_text())
    link = previous.with_name(f".{previous.name}.{os.getpid()}.link")
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    try:
        os.link(path, link)
    except OSError:  # a file system without hard links
        atomic_write(link, lambda handle: handle.write(path.read_bytes()))
    os.replace(link, previous)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` (state dicts, step counters) to `path` atomically, with its sha256 in `path`.sha256; the
    checkpoint it replaces is kept as `last.prev.pt`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    atomic_write(tmp, lambda handle: torch.save(state, handle))
    try:
        digest = sha256_file(tmp)
        if path.exists():
            _keep_previous(path)
        atomic_write_text(checksum_path(path), f"{digest}  {path.name}\n")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _recorded_digest(path: Path) -> str | None:
    sidecar = checksum_path(path)
    if not sidecar.exists():
        return None
    fields = sidecar.read_text().split()
    return fields[0] if fields else ""


def _load_verified(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(state, '') when `path` is intact, else (None, what is wrong with it)."""
    expected = _recorded_digest(path)
    try:
        if expected is not None:
            actual = sha256_file(path)
            if actual != expected:
                return None, (f"checkpoint {path} is corrupt or truncated: its sha256 {actual[:16]}... differs from "
                              f"the {expected[:16]}... recorded in {checksum_path(path).name}")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None, f"checkpoint {path} vanished while being read"
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for damaged files
        return None, f"checkpoint {path} cannot be read ({type(error).__name__}: {str(error)[:200]})"
    if not isinstance(state, dict) or "step" not in state:
        return None, f"checkpoint {path} holds no training state (no 'step')"
    if expected is None:
        warnings.warn(f"checkpoint {path} has no checksum (written before checksums): accepted unverified because "
                      f"it loads; the next checkpoint is written with one", IntegrityWarning, stacklevel=3)
    return state, ""


def load_checkpoint(path: Path, set_aside_bad: bool = True) -> dict[str, Any] | None:
    """The state of the newest intact checkpoint at `path` or its previous one (tensors on the CPU), or None when
    there is none yet or none intact (then the caller starts from step 0; a warning says so).

    A damaged checkpoint is named in an `IntegrityWarning` and, with `set_aside_bad` (the one process that owns
    the run directory: rank 0), moved aside so it never blocks the stage again."""
    path = Path(path)
    candidates = [p for p in (path, previous_path(path)) if p.exists()]
    problems = []
    for candidate in candidates:
        state, problem = _load_verified(candidate)
        if state is not None:
            if problems:
                warnings.warn(f"{'; '.join(problems)}; resuming from the previous checkpoint {candidate} "
                              f"(step {state['step']})", IntegrityWarning, stacklevel=2)
            return state
        problems.append(problem)
        if set_aside_bad:
            for bad in (candidate, checksum_path(candidate)):
                if bad.exists():
                    set_aside(bad)
    if problems:
        warnings.warn(f"{'; '.join(problems)}; no intact checkpoint left (damaged ones moved aside as "
                      f"*.invalid-<time>): the stage restarts from step 0", IntegrityWarning, stacklevel=2)
    return None

