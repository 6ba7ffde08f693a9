"""Fixtures for the text tests: a small tokenizer trained once on synthetic documents of every family."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_tokenizer():
    from lab.data.text import Tokenizer, TokenizerConfig
    from synth_render.text import TEXT_GENERATORS, create_text_generator, text_config

    docs = [create_text_generator(text_config(name)).document(i) for name in TEXT_GENERATORS for i in range(60)]
    return Tokenizer.train(docs, TokenizerConfig(vocab_size=800))
