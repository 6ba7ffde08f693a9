"""Long context as PLaMo 2 does it: turn the sliding-window layers into full attention, then keep training longer.

`switch_to_full_attention` rebuilds a model with its attention layers listed in `full_attention_idx` and copies
every weight (the window is a mask, not a parameter, so nothing new is learned from zero). The continued training
and the passkey study that measures what the switch buys are in `experiments/passkey_study.py` (`lab long-context`).
"""

from __future__ import annotations

import torch

from lab.models.plamo.model import PlamoForCausalLM


def attention_layers(model: PlamoForCausalLM) -> list[int]:
    return [i for i, kind in enumerate(model.config.layer_kinds) if kind != "mamba"]


def switch_to_full_attention(model: PlamoForCausalLM, layers: list[int] | None = None) -> PlamoForCausalLM:
    """A copy of `model` whose attention layers `layers` (default: all) attend to the whole document."""
    chosen = attention_layers(model) if layers is None else list(layers)
    config = model.config.replace(full_attention_idx=tuple(sorted(set(model.config.full_attention_idx) | set(chosen))))
    weight = next(model.parameters())
    with torch.device("meta"):
        switched = PlamoForCausalLM(config)
    switched.load_state_dict(model.state_dict(), assign=True)
    return switched.to(device=weight.device, dtype=weight.dtype)
