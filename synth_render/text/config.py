"""The knobs every synthetic text family shares; a family may subclass it to add its own."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_VOCAB = 20_000  # the name generators run out of distinct names a little above this


@dataclass
class TextGenConfig:
    """Complexity knobs of a synthetic Japanese corpus; ranges are [low, high], sampled per document."""

    name: str = "world_facts"
    seed: int = 0
    vocab_size: int = 400  # distinct entity names (people + places) the world may use
    n_entities: int = 100  # people and places in the world, shared by every family of a seed
    template_depth: int = 2  # nesting: relative clauses, expression depth, list depth, reply detail
    doc_length: list[int] = field(default_factory=lambda: [4, 12])  # sentences / problems / turns / rows
    shard_size: int = 1000

    def validate(self) -> None:
        if not 2 <= self.vocab_size <= MAX_VOCAB:
            raise ValueError(f"text.vocab_size must be in [2, {MAX_VOCAB}], got {self.vocab_size}")
        if self.n_entities < 2:
            raise ValueError(f"text.n_entities must be >= 2 (a person and a place), got {self.n_entities}")
        if not 1 <= self.template_depth <= 6:
            raise ValueError(f"text.template_depth must be in [1, 6], got {self.template_depth}")
        low, high = self.doc_length
        if not 1 <= low <= high:
            raise ValueError(f"text.doc_length must be [low, high] with 1 <= low <= high, got {self.doc_length}")
        if self.shard_size <= 0:
            raise ValueError(f"text.shard_size must be positive, got {self.shard_size}")
