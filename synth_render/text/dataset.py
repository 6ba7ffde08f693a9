"""Synthetic text as verified shards: per-document character and token counts, renders to a token budget.

Each shard holds `text` (numpy unicode, no pickle), `n_chars` and, when a tokenizer is given, `n_tokens`.
`text_stats.json`, written after the manifest, sums them and names the tokenizer (by sha256). The first n
documents of a render are a nested subset of any larger render of the same config, so a sweep over n
synthetic tokens renders the largest budget once and reads prefixes (`TextDataset.docs_for`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lab.data.shards import ShardedDataset, write_sharded
from lab.data.text_shards import STATS, TextDataset
from lab.core.rundir import atomic_write_json, config_hash, to_plain
from synth_render.text.registry import create_text_generator

GENERATOR_STAMP = "text_generator.json"


@dataclass
class TextSampler:
    """Document i as shard arrays; a picklable callable so `workers > 1` can render shards in parallel."""

    generator: Any
    tokenizer: Any = None

    def __call__(self, index: int) -> dict[str, Any]:
        text = self.generator.document(index)
        sample: dict[str, Any] = {"text": np.array(text), "n_chars": len(text)}
        if self.tokenizer is not None:
            sample["n_tokens"] = len(self.tokenizer.encode(text))
        return sample


def _recorded_config(config: Any, tokenizer: Any) -> dict[str, Any]:
    return {**to_plain(config), "tokenizer": None if tokenizer is None else tokenizer.fingerprint}


def _claim_folder(out_dir: Path, recorded: dict[str, Any]) -> None:
    """Refuse to mix configs in one folder: finished shards of another config would be silently reused."""
    stamp = out_dir / GENERATOR_STAMP
    if stamp.exists():
        previous = json.loads(stamp.read_text())
        if previous.get("config_hash") != config_hash(recorded):
            raise ValueError(f"{out_dir} holds text of another config ({previous.get('config')}); use a new folder")
    else:
        atomic_write_json(stamp, {"config": recorded, "config_hash": config_hash(recorded)})


def render_text(config: Any, out_dir: Path | str, count: int, *, tokenizer: Any = None, workers: int = 1,
                progress: bool = False, target: dict[str, int] | None = None) -> "TextDataset":
    """Documents 0..count-1 of `config` into `out_dir` (finished shards are kept); returns the dataset."""
    out_dir = Path(out_dir)
    generator = create_text_generator(config)
    recorded = _recorded_config(generator.config, tokenizer)
    out_dir.mkdir(parents=True, exist_ok=True)
    _claim_folder(out_dir, recorded)
    manifest = write_sharded(out_dir, TextSampler(generator, tokenizer), count, shard_size=generator.config.shard_size,
                             generator=recorded, seed=generator.config.seed, workers=workers, progress=progress)
    assert manifest is not None
    dataset = TextDataset(ShardedDataset.open(out_dir), {})
    totals = {key: int(dataset.counts(key).sum()) for key in dataset.count_keys()}
    stats = {"content_hash": manifest["content_hash"], "count": count, "tokenizer": recorded["tokenizer"],
             **{f"total_{key}": value for key, value in totals.items()}, "target": target}
    atomic_write_json(out_dir / STATS, stats)
    return TextDataset(dataset.shards, stats)


def render_until(config: Any, out_dir: Path | str, *, tokens: int | None = None, chars: int | None = None,
                 tokenizer: Any = None, workers: int = 1, max_docs: int = 10**8) -> "TextDataset":
    """Render whole shards until the documents hold at least `tokens` tokens (or `chars` characters).

    The count is re-estimated from the mean document length so far; earlier shards are kept, so each round
    only adds shards. `TextDataset.docs_for(...)` then gives the exact prefix that meets the budget.
    """
    if (tokens is None) == (chars is None):
        raise ValueError("give exactly one of tokens= or chars=")
    key, budget = ("n_tokens", tokens) if tokens is not None else ("n_chars", chars)
    if budget <= 0:
        raise ValueError(f"the budget must be positive, got {budget}")
    if key == "n_tokens" and tokenizer is None:
        raise ValueError("counting tokens needs a tokenizer (lab.data.text.Tokenizer)")
    shard_size = create_text_generator(config).config.shard_size
    count = shard_size
    while True:
        dataset = render_text(config, out_dir, count, tokenizer=tokenizer, workers=workers,
                              target={key: budget})
        total = dataset.stats[f"total_{key}"]
        if total >= budget:
            return dataset
        if count >= max_docs:
            raise ValueError(f"{max_docs} documents hold only {total} {key[2:]} of the {budget} asked for")
        estimate = math.ceil(budget / (total / count) * 1.02)  # 2% margin: one more round is rarely needed
        count = min(max_docs, max(count + shard_size, math.ceil(estimate / shard_size) * shard_size))
