"""RMS normalisation, computed in at least float32 so bf16 activations do not lose the mean square."""

from __future__ import annotations

import torch
from torch import nn


def rms_normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / rms(x) over the last dimension, in float32 (float64 stays float64); the caller casts back."""
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


class RMSNorm(nn.Module):
    """RMSNorm whose scale is `offset + weight` with weight starting at 0.

    PLaMo 2's sandwich norms use offsets below 1 after each mixer and MLP (1/5 and 1/5**1.5), so a fresh
    layer adds a damped update to the residual stream; the learned weight moves the gain from there.
    """

    def __init__(self, dim: int, eps: float, offset: float = 1.0) -> None:
        super().__init__()
        self.eps = eps
        self.offset = offset
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = rms_normalize(x, self.eps)
        return (normed * (self.offset + self.weight.to(normed.dtype))).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, offset={self.offset:g}"
