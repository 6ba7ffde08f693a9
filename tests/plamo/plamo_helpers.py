"""Helpers for the PLaMo tests: float64 tiny models whose norm weights are moved off their initial values."""

from __future__ import annotations

import torch

from lab.models.plamo import PlamoForCausalLM, create_plamo


def perturb_norm_weights(model: PlamoForCausalLM, scale: float = 0.1, seed: int = 0) -> PlamoForCausalLM:
    """Move every norm-like weight off its initial value, so tests see offsets and per-dim weights at work."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name or name.endswith(("q_weight", "k_weight")):
                noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
                parameter.add_(scale * noise)
    return model


def tiny_float64(seed: int = 0, **overrides) -> PlamoForCausalLM:
    torch.manual_seed(seed)
    return perturb_norm_weights(create_plamo("plamo-2-tiny", dtype=torch.float64, **overrides)).eval()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).detach().abs().max() / expected.detach().abs().max())
