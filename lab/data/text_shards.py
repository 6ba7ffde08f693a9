"""Reading rendered text shards: documents, per-document character/token counts, nested prefixes by budget.

The writer is synth_render.text.dataset (`render_text`, `render_until`); training code reads through this
class only, so it needs no renderer. Each shard holds `text` (numpy unicode, no pickle), `n_chars` and, when
rendered with a tokenizer, `n_tokens`; `text_stats.json` sums them and names the shards' content hash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from lab.data.shards import ShardedDataset

STATS = "text_stats.json"


@dataclass(frozen=True)
class TextDataset:
    """Read access to rendered text; every shard read is verified against the manifest."""

    shards: ShardedDataset
    stats: dict[str, Any]

    @classmethod
    def open(cls, path: Path | str) -> "TextDataset":
        shards = ShardedDataset.open(path)
        stats_path = Path(path) / STATS
        stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
        if stats.get("content_hash") != shards.content_hash:
            raise ValueError(f"{stats_path} does not describe the shards in {path} (re-run the render)")
        return cls(shards, stats)

    @property
    def count(self) -> int:
        return self.shards.count

    @property
    def content_hash(self) -> str:
        return self.shards.content_hash

    def documents(self, n: int | None = None) -> Iterator[str]:
        """The first `n` documents (all by default), one shard in memory at a time."""
        for arrays in self.shards.iter_shards(n):
            yield from (str(text) for text in arrays["text"])

    def subset(self, n: int) -> list[str]:
        """The first n documents: nested in every larger subset of this render."""
        return list(self.documents(n))

    def count_keys(self) -> list[str]:
        keys = next(self.shards.iter_shards(1)).keys()
        return [key for key in ("n_chars", "n_tokens") if key in keys]

    def counts(self, key: str = "n_tokens") -> np.ndarray:
        """Per-document counts (`n_chars`, or `n_tokens` when rendered with a tokenizer)."""
        if key not in self.count_keys():
            raise KeyError(f"{key} was not recorded in {self.shards.path}; valid: {', '.join(self.count_keys())}")
        return np.concatenate([arrays[key] for arrays in self.shards.iter_shards()]).astype(np.int64)

    def docs_for(self, *, tokens: int | None = None, chars: int | None = None) -> int:
        """The smallest n whose first n documents hold at least `tokens` tokens (or `chars` characters)."""
        if (tokens is None) == (chars is None):
            raise ValueError("give exactly one of tokens= or chars=")
        key, budget = ("n_tokens", tokens) if tokens is not None else ("n_chars", chars)
        cumulative = np.cumsum(self.counts(key))
        if budget > cumulative[-1]:
            raise ValueError(f"{self.shards.path} holds {cumulative[-1]} {key[2:]}, fewer than {budget}")
        return int(np.searchsorted(cumulative, budget) + 1)
