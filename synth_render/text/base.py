"""What every text family shares: config check, the seed's world, and document i from rng([seed, i])."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from synth_render.text.config import TextGenConfig
from synth_render.text.world import World, build_world


class TextGenerator:
    """Subclasses set `config_class` and implement `compose(rng, n_units)`."""

    config_class: type = TextGenConfig

    def __init__(self, config: TextGenConfig) -> None:
        config.validate()
        self.config = config

    @cached_property
    def world(self) -> World:
        return build_world(self.config.seed, self.config.vocab_size, self.config.n_entities)

    def document(self, index: int) -> str:
        """Document `index`: depends on (seed, index) only, whatever order or process asks for it."""
        if index < 0:
            raise ValueError(f"document index must be >= 0, got {index}")
        rng = np.random.default_rng([self.config.seed, index])
        low, high = self.config.doc_length
        return self.compose(rng, int(rng.integers(low, high + 1)))

    def compose(self, rng: np.random.Generator, n_units: int) -> str:
        raise NotImplementedError

    def depth(self, rng: np.random.Generator) -> int:
        """A nesting depth in [1, template_depth] for one unit of text."""
        return int(rng.integers(1, self.config.template_depth + 1))


def pick(rng: np.random.Generator, options):
    """One element of a sequence (rng.choice would turn tuples of strings into numpy strings)."""
    return options[int(rng.integers(len(options)))]
