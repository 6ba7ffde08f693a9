"""The tidy results table: one row per (run, metric), with the config columns and provenance.

Everything downstream (analysis, notebooks, the paper) reads this table, and it is the same table for a
local demo and a Slurm sweep: both build it from the result.json of the fine-tunes they planned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from lab.core.rundir import atomic_write_text

CONFIG_COLUMNS = ["experiment", "n", "s", "seed", "model", "data"]
# What the run chose and what it had to beat: the fine-tuning learning rate chosen on the validation split and
# its validation error, the test error of the label prior (majority class of the fine-tuning subset), and the
# pre-training's held-out synthetic metric next to its trivial baseline (lab.stages.image / lab.stages.scenes3d).
RUN_COLUMNS = ["lr", "val_error", "baseline_error", "beats_baseline", "pretrain_metric", "pretrain_heldout",
               "pretrain_heldout_baseline", "pretrain_beats_baseline"]
PROVENANCE_COLUMNS = ["run_hash", "pretrain_hash", "dataset_hash", "git_commit", "host",
                      "pretrain_seconds", "finetune_seconds"]
# metric name -> whether its "error" column is 1 - value (accuracy-like) or the value itself (loss-like)
# (bits per character of a language model: lower is better, so its error is the value itself)
ERROR_OF_METRIC = {"top1": lambda v: 1.0 - v, "loss": lambda v: v, "bits_per_char": lambda v: v,
                   "zero_shot_bits_per_char": lambda v: v}


def tidy_rows(result: dict[str, Any], experiment: str, extra: dict[str, Any] | None = None) -> Iterable[dict[str, Any]]:
    base = {"experiment": experiment, **{k: result.get(k) for k in CONFIG_COLUMNS[1:]}, **(extra or {})}
    provenance = {k: result.get(k) for k in RUN_COLUMNS + PROVENANCE_COLUMNS}
    for metric, to_error in ERROR_OF_METRIC.items():
        if metric in result["metrics"]:
            value = float(result["metrics"][metric])
            yield {**base, "metric": metric, "value": value, "error": to_error(value), **provenance}


def results_table(results: Iterable[dict[str, Any]], experiment: str,
                  extras: Iterable[dict[str, Any]] | None = None) -> pd.DataFrame:
    """Fine-tune results (result.json contents) as a tidy table; `extras` adds columns per result."""
    results = list(results)
    extras = list(extras) if extras is not None else [{}] * len(results)
    rows = [row for result, extra in zip(results, extras) for row in tidy_rows(result, experiment, extra)]
    extra_columns = list(dict.fromkeys(k for extra in extras for k in extra))
    columns = CONFIG_COLUMNS + extra_columns + ["metric", "value", "error"] + RUN_COLUMNS + PROVENANCE_COLUMNS
    return pd.DataFrame(rows, columns=columns).sort_values(["n", "s", "seed", "metric"], ignore_index=True)


def write_table(table: pd.DataFrame, path: Path | str) -> None:
    atomic_write_text(Path(path), table.to_csv(index=False))
