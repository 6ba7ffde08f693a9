"""Every other family interleaved: document i is family i mod k's document i // k, so any prefix of a mixture
render holds the families in equal shares (within one document) and the same documents each family renders alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Optional

from synth_render.text.base import TextGenerator
from synth_render.text.config import TextGenConfig
from synth_render.text.registry import TEXT_GENERATORS, text_config

DEFAULT_FAMILIES = ["world_facts", "arithmetic", "dialogue", "structured"]
SHARED = ("seed", "vocab_size", "n_entities", "template_depth")


@dataclass
class MixtureConfig(TextGenConfig):
    """The world and complexity knobs (`SHARED`) go to every family; `doc_length` too when given, else each family
    keeps its own document length; `families` names them in turn."""

    name: str = "mixture"
    families: list[str] = field(default_factory=lambda: list(DEFAULT_FAMILIES))
    doc_length: Optional[list[int]] = None

    def validate(self) -> None:
        if self.doc_length is None:
            replace(self, doc_length=[1, 1]).validate()  # every other knob, checked as any family checks it
        else:
            super().validate()
        if not self.families or len(set(self.families)) != len(self.families):
            raise ValueError(f"mixture.families must name distinct families, got {self.families}")
        if "mixture" in self.families:
            raise ValueError("mixture.families cannot include the mixture itself")


@TEXT_GENERATORS.register("mixture")
class Mixture(TextGenerator):
    config_class = MixtureConfig

    @cached_property
    def members(self) -> list[TextGenerator]:
        shared = {key: getattr(self.config, key) for key in SHARED}
        if self.config.doc_length is not None:
            shared["doc_length"] = list(self.config.doc_length)
        return [TEXT_GENERATORS.get(name)(text_config(name, **shared)) for name in self.config.families]

    def document(self, index: int) -> str:
        if index < 0:
            raise ValueError(f"document index must be >= 0, got {index}")
        k = len(self.members)
        return self.members[index % k].document(index // k)
