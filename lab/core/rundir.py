"""Run directories keyed by config hashes, atomic result files, and a lock for shared stages.

A stage's run directory is `<root>/<experiment>/<stage>/<hash>/`. It holds `config.yaml` (the resolved
config), `metrics.jsonl`, `checkpoints/` and, written last and atomically, `result.json`: a valid one (a JSON
object) means the stage is done, so a re-run reuses it instead of clobbering finished work. An invalid one
(truncated, `{}`, not an object) is named in an `IntegrityWarning`, moved aside to `result.json.invalid-<time>`
and the stage counts as not done, so it runs again. A half-written last line of a `.jsonl` log (a process killed
mid-append) is cut off, and named, before the next record is appended, so that record parses.

Atomic writes create their files with the mode `open` would (0666 minus the umask), not mkstemp's 0600, so a
shared runs/ folder stays readable by the group under umask 022 or 002.
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
import warnings
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Sequence

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


class IntegrityWarning(UserWarning):
    """A stored file was found damaged (corrupt checkpoint, invalid result, half-written log line) and was repaired,
    set aside or not used; the message names it and says what happens instead."""


def current_umask() -> int:
    """The process umask, read without changing it (/proc on Linux; elsewhere set-and-restore)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """`write(handle)` into a uniquely named temporary file in `path`'s folder, fsync, rename onto `path`.

    Readers never see half a file, two writers of the same path never share a temporary file (the last rename
    wins), and the file gets the mode a plain `open` would give it (0666 minus the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename: readers never see half a file."""
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(to_plain(data), indent=2, sort_keys=True) + "\n")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class InvalidResultError(ValueError):
    """A result file that is not a JSON object holding the keys its reader needs; the message names it."""


def check_result(path: Path, required: Sequence[str] = ()) -> dict[str, Any]:
    """The result stored at `path`, or an `InvalidResultError` naming the file and what is wrong with it."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError as error:
        raise InvalidResultError(f"{path} is not text ({error})") from None
    try:
        result = json.loads(text)
    except json.JSONDecodeError as error:
        what = "empty" if not text.strip() else f"not valid JSON ({error}; truncated?)"
        raise InvalidResultError(f"{path} is {what}") from None
    if not isinstance(result, dict) or not result:
        raise InvalidResultError(f"{path} holds {text.strip()[:40]!r}, not a result (a JSON object with fields)")
    missing = [key for key in required if key not in result]
    if missing:
        raise InvalidResultError(f"{path} lacks {', '.join(map(repr, missing))} (it has {', '.join(sorted(result))})")
    return result


def set_aside(path: Path) -> Path | None:
    """Rename a damaged file to `<name>.invalid-<time>-<pid>`: kept for a look, out of the way of the next run.
    None when another reader set it aside first."""
    path = Path(path)
    aside = path.with_name(f"{path.name}.invalid-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return None
    return aside


def load_result(path: Path | str, required: Sequence[str] = ()) -> dict[str, Any] | None:
    """The valid result at `path`, else None: missing, or invalid (then named in a warning and set aside, so
    whoever plans the work sees the point as not done and re-runs it). For `lab sweep collect` and friends."""
    path = Path(path)
    try:
        return check_result(path, required)
    except (FileNotFoundError, NotADirectoryError):  # not there (a file where its folder should be: not either)
        return None
    except InvalidResultError as error:
        aside = set_aside(path)
        if aside is not None:
            warnings.warn(f"{error}; moved it to {aside.name}: the stage counts as not done and runs again",
                          IntegrityWarning, stacklevel=2)
        return None


def result_done(path: Path | str, required: Sequence[str] = ()) -> bool:
    """True iff `path` holds a valid result (an invalid one is set aside, see `load_result`)."""
    return load_result(path, required) is not None


def _repair_last_line(handle: IO[bytes], path: Path) -> None:
    """Before appending to a .jsonl file: a last line without its newline is a record whose writer died mid-line.
    A complete record just gets its newline; a partial one is cut off (and named), so the next record parses."""
    size = os.fstat(handle.fileno()).st_size
    if size == 0 or os.pread(handle.fileno(), 1, size - 1) == b"\n":
        return
    start, block = size, 1 << 16
    while start > 0:
        start = max(0, start - block)
        chunk = os.pread(handle.fileno(), size - start, start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            start += cut + 1
            break
    tail = os.pread(handle.fileno(), size - start, start)
    try:
        json.loads(tail)
    except ValueError:
        os.ftruncate(handle.fileno(), start)
        warnings.warn(f"{path}: dropped a half-written last line ({size - start} bytes: {tail[:60]!r}) "
                      f"before appending", IntegrityWarning, stacklevel=4)
    else:
        handle.write(b"\n")


def append_jsonl(path: Path, record: Any) -> None:
    """Append one JSON line to `path`, repairing a half-written last line first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(to_plain(record), sort_keys=True) + "\n").encode()
    with open(path, "ab+") as handle:
        _repair_last_line(handle, path)
        handle.write(line)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a .jsonl file; a line that does not parse is skipped and named in a warning."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{number}: skipped a line that is not JSON ({line[:60]!r})", IntegrityWarning,
                          stacklevel=2)
    return records


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The folder of one stage run; `done` iff its result.json holds a valid result."""

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
        """A valid result.json exists; an invalid one is named, set aside, and the run counts as not done."""
        return result_done(self.result_path)

    def read_result(self, required: Sequence[str] = ()) -> dict[str, Any]:
        """The stored result; an `InvalidResultError` naming the file when it is not a valid one."""
        return check_result(self.result_path, required)

    def write_config(self, config: Any) -> None:
        atomic_write_text(self.path / CONFIG_FILE, yaml.safe_dump(to_plain(config), sort_keys=True))

    def write_result(self, result: dict[str, Any]) -> None:
        atomic_write_json(self.result_path, result)

    def log_metrics(self, record: dict[str, Any]) -> None:
        append_jsonl(self.metrics_path, record)

    def read_metrics(self) -> list[dict[str, Any]]:
        """The logged records; a line that does not parse is skipped and named."""
        return read_jsonl(self.metrics_path)

    @property
    def attempts_path(self) -> Path:
        return self.path / "attempts.jsonl"

    def record_attempt(self) -> None:
        """One line per start of real work: more than one means the run was requeued or resumed."""
        record = {"time": time.time(), "host": socket.gethostname(), "pid": os.getpid(),
                  "job_id": os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID", "")}
        append_jsonl(self.attempts_path, record)

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
