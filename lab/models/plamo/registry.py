"""Named PLaMo 2 configs and the one factory, `create_plamo`.

Sizes (parameters with tied embeddings; `lab model info NAME` prints the breakdown):
- plamo-2-tiny: 0.2 M, for CPU tests (16-token window, chunk 8, layer 3 full attention);
- plamo-2-7m: d 256, 4 layers, vocab 8192 (the lab's 8k sentencepiece size), the CPU benchmark;
- plamo-2-40m: d 512, 8 layers, vocab 8192;
- plamo-2-240m: d 1024, 12 layers, vocab 32000, the GPU benchmark;
- plamo-2-1b: the public pfnet/plamo-2-1b numbers (1,291,441,920 parameters).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from lab.models.plamo.config import PlamoConfig
from lab.models.plamo.model import PlamoForCausalLM
from lab.core.registry import Registry

PLAMO_CONFIGS: Registry[PlamoConfig] = Registry("PLaMo config")


def register_config(name: str, **fields: Any) -> PlamoConfig:
    return PLAMO_CONFIGS.register(name)(PlamoConfig(**fields))


register_config(
    "plamo-2-tiny", hidden_size=64, num_hidden_layers=4, intermediate_size=128, vocab_size=256,
    num_attention_heads=4, num_key_value_heads=1, hidden_size_per_head=16, attention_window_size=16,
    full_attention_idx=(3,), mamba_num_heads=8, mamba_d_state=16, mamba_chunk_size=8,
)  # fmt: skip
register_config(
    "plamo-2-7m", hidden_size=256, num_hidden_layers=4, intermediate_size=1024, vocab_size=8192,
    num_attention_heads=4, num_key_value_heads=1, hidden_size_per_head=64, attention_window_size=1024,
    mamba_num_heads=8, mamba_d_state=64, mamba_chunk_size=128,
)  # fmt: skip
register_config(
    "plamo-2-40m", hidden_size=512, num_hidden_layers=8, intermediate_size=2048, vocab_size=8192,
    num_attention_heads=8, num_key_value_heads=1, hidden_size_per_head=64, attention_window_size=2048,
    mamba_num_heads=16, mamba_d_state=64, mamba_chunk_size=256,
)  # fmt: skip
register_config(
    "plamo-2-240m", hidden_size=1024, num_hidden_layers=12, intermediate_size=4096, vocab_size=32000,
    num_attention_heads=8, num_key_value_heads=1, hidden_size_per_head=128, attention_window_size=2048,
    mamba_num_heads=16, mamba_d_state=64, mamba_chunk_size=256,
)  # fmt: skip
register_config("plamo-2-1b")  # the defaults are the public plamo-2-1b config


def get_plamo_config(name_or_config: str | PlamoConfig, **overrides: Any) -> PlamoConfig:
    """A registered name or a config, with overrides (unknown keys are errors listing the valid ones)."""
    config = PLAMO_CONFIGS.get(name_or_config) if isinstance(name_or_config, str) else name_or_config
    return config.replace(**overrides) if overrides else config


def create_plamo(
    name_or_config: str | PlamoConfig,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **overrides: Any,
) -> PlamoForCausalLM:
    """Build a freshly initialised model; device="meta" builds the structure without allocating weights."""
    config = get_plamo_config(name_or_config, **overrides)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = PlamoForCausalLM(config)
    return model if dtype is None else model.to(dtype)
