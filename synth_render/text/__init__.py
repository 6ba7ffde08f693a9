"""Synthetic Japanese text: generator families registered by name, rendered to verified shards.

Every family draws document i from `numpy.random.default_rng([seed, index])` plus a world (people and places
with names, attributes and relations) that is a function of the seed alone, so facts agree across documents
and families. `create_text_generator(config)` builds one by `config.name`; `render_text` / `render_until`
write documents with per-document character and token counts; `TextDataset` reads them back.
"""

from synth_render.text.config import TextGenConfig
from synth_render.text.dataset import TextDataset, render_text, render_until
from synth_render.text.registry import TEXT_GENERATORS, create_text_generator, text_config

__all__ = ["TEXT_GENERATORS", "TextDataset", "TextGenConfig", "create_text_generator", "render_text", "render_until",
           "text_config"]
