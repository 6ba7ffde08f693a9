"""On-disk cache of n-gram tables, one folder per question file, keyed by a hash of the file's bytes.

Why: building the tables for all 50 questions takes tens of seconds, scoring with them well under one.
A changed data file has a new hash, so its tables are rebuilt and the stale folder is removed. Every array file's
sha256 is stored in the folder's meta.json and checked when the folder is read: a damaged entry (flipped bytes, a
truncated array, no recorded hashes) is named on stderr and rebuilt, never scored with.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from lab.core.rundir import current_umask
from lab.eval.pfgen.data import Question
from lab.eval.pfgen.ngram_table import NgramTable, build_table

FORMAT_VERSION = 1  # bump when the table layout or the metric code changes


def default_cache_dir() -> Path:
    """$LAB_CACHE_DIR, else ~/.cache/synth_transfer_lab."""
    root = os.environ.get("LAB_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "synth_transfer_lab"


def _folder(cache_dir: Path, question: Question) -> Path:
    return Path(cache_dir) / "pfgen" / f"{question.question_id}-{question.sha1[:16]}-v{FORMAT_VERSION}"


def _write(folder: Path, question: Question, tables: dict[str, NgramTable]) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; a shared cache is as readable as any folder
    meta: dict = {"sha1": question.sha1, "sets": [], "sha256": {}}
    for index, (label, table) in enumerate(tables.items()):
        for name in ("vocab", "keys", "df"):
            path = tmp / f"{index}_{name}.npy"
            np.save(path, getattr(table, name))
            meta["sha256"][path.name] = _sha256(path)
        meta["sets"].append({"label": label, "n_answers": table.n_answers, "baseline": table.baseline})
    (tmp / "meta.json").write_text(json.dumps(meta))
    try:
        os.rename(tmp, folder)
    except OSError:  # another process wrote it first
        shutil.rmtree(tmp, ignore_errors=True)
    for stale in folder.parent.glob(f"{question.question_id}-*"):
        if stale != folder and ".tmp-" not in stale.name:
            shutil.rmtree(stale, ignore_errors=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class DamagedCacheError(ValueError):
    """A cache folder whose files do not match the hashes in its meta.json (or cannot be read)."""


def _read(folder: Path) -> dict[str, NgramTable]:
    """The tables in `folder`, each array file checked against its recorded sha256 (`DamagedCacheError` if not)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        hashes = meta.get("sha256")
        if not isinstance(hashes, dict):
            raise DamagedCacheError(f"{folder / 'meta.json'} records no file hashes (an entry from before they were)")
        tables = {}
        for index, entry in enumerate(meta["sets"]):
            arrays = {}
            for name in ("vocab", "keys", "df"):
                path = folder / f"{index}_{name}.npy"
                if _sha256(path) != hashes.get(path.name):
                    raise DamagedCacheError(f"{path} does not match the sha256 recorded in its meta.json")
                arrays[name] = np.load(path, mmap_mode="r")
            tables[entry["label"]] = NgramTable(n_answers=entry["n_answers"], baseline=entry["baseline"], **arrays)
    except DamagedCacheError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DamagedCacheError(f"{folder} cannot be read ({type(error).__name__}: {error})") from None
    return tables


def cached_tables(question: Question, cache_dir: Path | None = None) -> dict[str, NgramTable]:
    """The question's tables per reference set, built and stored on first use."""
    folder = _folder(default_cache_dir() if cache_dir is None else Path(cache_dir), question)
    if folder.is_dir():
        try:
            tables = _read(folder)
            if list(tables) == list(question.answer_sets):
                return tables
        except DamagedCacheError as error:
            print(f"pfgen n-gram cache: {error}; rebuilding {folder.name}", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
    tables = {label: build_table(answers) for label, answers in question.answer_sets.items()}
    _write(folder, question, tables)
    return tables
