"""Moved to `synth_render.text.instruct_data` (instruction data drawn from the synthetic world is synthetic data
generation); this path is kept for one release."""

from synth_render.text.instruct_data import (  # noqa: F401
    CORRUPTIONS,
    PROMPT_TEMPLATE,
    RESPONSE_TEMPLATE,
    InstructData,
    InstructDataConfig,
    InstructExample,
    PreferencePair,
)
