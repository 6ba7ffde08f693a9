"""On-disk cache of n-gram tables, one folder per question file, keyed by a hash of the file's bytes.

Why: building the tables for all 50 questions takes tens of seconds, scoring with them well under one.
A changed data file has a new hash, so its tables are rebuilt and the stale folder is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

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
    meta = {"sha1": question.sha1, "sets": []}
    for index, (label, table) in enumerate(tables.items()):
        for name in ("vocab", "keys", "df"):
            np.save(tmp / f"{index}_{name}.npy", getattr(table, name))
        meta["sets"].append({"label": label, "n_answers": table.n_answers, "baseline": table.baseline})
    (tmp / "meta.json").write_text(json.dumps(meta))
    try:
        os.rename(tmp, folder)
    except OSError:  # another process wrote it first
        shutil.rmtree(tmp, ignore_errors=True)
    for stale in folder.parent.glob(f"{question.question_id}-*"):
        if stale != folder and ".tmp-" not in stale.name:
            shutil.rmtree(stale, ignore_errors=True)


def _read(folder: Path) -> dict[str, NgramTable]:
    meta = json.loads((folder / "meta.json").read_text())
    tables = {}
    for index, entry in enumerate(meta["sets"]):
        arrays = {name: np.load(folder / f"{index}_{name}.npy", mmap_mode="r") for name in ("vocab", "keys", "df")}
        tables[entry["label"]] = NgramTable(n_answers=entry["n_answers"], baseline=entry["baseline"], **arrays)
    return tables


def cached_tables(question: Question, cache_dir: Path | None = None) -> dict[str, NgramTable]:
    """The question's tables per reference set, built and stored on first use."""
    folder = _folder(default_cache_dir() if cache_dir is None else Path(cache_dir), question)
    if (folder / "meta.json").is_file():
        tables = _read(folder)
        if list(tables) == list(question.answer_sets):
            return tables
        shutil.rmtree(folder, ignore_errors=True)
    tables = {label: build_table(answers) for label, answers in question.answer_sets.items()}
    _write(folder, question, tables)
    return tables
