"""Run directories keyed by config hashes, atomic result files, and a lock for shared stages.

A stage's run directory is `<root>/<experiment>/<stage>/<hash>/`. It holds `config.yaml` (the resolved
config), `metrics.jsonl`, `checkpoints/` and, written last and atomically, `result.json`: its presence
means the stage is done, so a re-run reuses it instead of clobbering finished work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import yaml

RESULT_FILE = "result.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"


def to_plain(obj: Any) -> Any:
    """Dataclasses / OmegaConf nodes / paths -> JSON-compatible builtins (for hashing and writing)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a hard dependency
        pass
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def config_hash(config: Any, length: int = 12) -> str:
    """A stable short hash of a config: key order and container types do not matter."""
    canonical = json.dumps(to_plain(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(to_plain(data), indent=2, sort_keys=True) + "\n")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The folder of one stage run; `done` iff its result.json exists."""

    path: Path

    @classmethod
    def for_config(cls, root: Path | str, experiment: str, stage: str, config: Any) -> "RunDir":
        return cls(Path(root) / experiment / stage / config_hash(config))

    @property
    def hash(self) -> str:
        return self.path.name

    @property
    def result_path(self) -> Path:
        return self.path / RESULT_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def done(self) -> bool:
        return self.result_path.exists()

    def read_result(self) -> dict[str, Any]:
        return json.loads(self.result_path.read_text())

    def write_config(self, config: Any) -> None:
        atomic_write_text(self.path / CONFIG_FILE, yaml.safe_dump(to_plain(config), sort_keys=True))

    def write_result(self, result: dict[str, Any]) -> None:
        atomic_write_json(self.result_path, result)

    def log_metrics(self, record: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(to_plain(record), sort_keys=True) + "\n")

    @property
    def attempts_path(self) -> Path:
        return self.path / "attempts.jsonl"

    def record_attempt(self) -> None:
        """One line per start of real work: more than one means the run was requeued or resumed."""
        self.path.mkdir(parents=True, exist_ok=True)
        record = {"time": time.time(), "host": socket.gethostname(), "pid": os.getpid(),
                  "job_id": os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID", "")}
        with open(self.attempts_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def attempts(self) -> int:
        return len(self.attempts_path.read_text().splitlines()) if self.attempts_path.exists() else 0

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock so that two jobs sharing a stage (e.g. one pre-training) run it once."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
