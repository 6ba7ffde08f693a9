"""PLaMo 2 attention: multi-query, QK-norm before RoPE, sliding window or full, never across documents.

Visibility is one rule for training, packed documents and cached generation alike: a query sees a key when both
belong to the same document and 0 <= query position - key position < window (positions count from each
document's start). Without documents and within the window this is plain causal attention and takes SDPA's
`is_causal` fast path (flash attention on a GPU).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from lab.models.plamo.config import PlamoConfig
from lab.models.plamo.norm import rms_normalize


class AttentionState(NamedTuple):
    """Cached keys and values of one attention layer, with the position and document of each key."""

    keys: torch.Tensor  # (b, kv_heads, S, head_dim), after QK-norm and RoPE
    values: torch.Tensor  # (b, kv_heads, S, head_dim)
    positions: torch.Tensor  # (b, S)
    documents: torch.Tensor  # (b, S)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate-half RoPE. x (b, heads, T, D), positions (b, T)."""
    compute = torch.promote_types(x.dtype, torch.float32)
    half = x.shape[-1] // 2
    inv_freq = theta ** (-torch.arange(half, device=x.device, dtype=compute) / half)
    angles = positions[:, None, :, None].to(compute) * inv_freq  # (b, 1, T, D/2)
    cos, sin = torch.cos(angles).repeat(1, 1, 1, 2), torch.sin(angles).repeat(1, 1, 1, 2)
    x1, x2 = x.to(compute).chunk(2, dim=-1)
    return (x.to(compute) * cos + torch.cat([-x2, x1], dim=-1) * sin).to(x.dtype)


def visibility_mask(
    query_positions: torch.Tensor,
    query_documents: torch.Tensor,
    key_positions: torch.Tensor,
    key_documents: torch.Tensor,
    window: int | None,
) -> torch.Tensor:
    """(b, 1, Tq, Tk) bool: same document, key not after the query, and within the window."""
    distance = query_positions[:, :, None] - key_positions[:, None, :]
    visible = (query_documents[:, :, None] == key_documents[:, None, :]) & (distance >= 0)
    if window is not None:
        visible &= distance < window
    return visible[:, None]


class Attention(nn.Module):
    def __init__(self, config: PlamoConfig, window: int | None) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = (
            config.num_attention_heads, config.num_key_value_heads, config.head_dim
        )
        self.window, self.eps, self.rope_theta = window, config.rms_norm_eps, config.rope_theta
        q_width, kv_width = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.qkv_proj = nn.Linear(config.hidden_size, q_width + 2 * kv_width, bias=False)
        self.o_proj = nn.Linear(q_width, config.hidden_size, bias=False)
        self.q_weight = nn.Parameter(torch.ones(self.num_heads, self.head_dim))
        self.k_weight = nn.Parameter(torch.ones(self.num_kv_heads, self.head_dim))

    def _qk_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """RMSNorm over the head dim with one weight per (head, dim); x (b, heads, T, D)."""
        normed = rms_normalize(x, self.eps)
        return (normed * weight[:, None, :].to(normed.dtype)).to(x.dtype)

    def forward(
        self,
        hidden: torch.Tensor,
        positions: torch.Tensor,
        documents: torch.Tensor | None = None,
        state: AttentionState | None = None,
    ) -> tuple[torch.Tensor, AttentionState]:
        """hidden (b, T, d); positions (b, T) from each document's start; documents (b, T) or None for one."""
        b, T, _ = hidden.shape
        q, k, v = self.qkv_proj(hidden).split(
            [self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim, self.num_kv_heads * self.head_dim],
            dim=-1,
        )
        q, k, v = (t.view(b, T, -1, self.head_dim).transpose(1, 2) for t in (q, k, v))
        q = apply_rope(self._qk_norm(q, self.q_weight), positions, self.rope_theta)
        k = apply_rope(self._qk_norm(k, self.k_weight), positions, self.rope_theta)

        causal_fast_path = state is None and documents is None and (self.window is None or T <= self.window)
        if documents is None:
            documents = torch.zeros_like(positions)
        key_positions, key_documents = positions, documents
        if state is not None:
            k, v = torch.cat([state.keys, k], dim=2), torch.cat([state.values, v], dim=2)
            key_positions = torch.cat([state.positions, positions], dim=1)
            key_documents = torch.cat([state.documents, documents], dim=1)
        if causal_fast_path:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1 / math.sqrt(self.head_dim),
                                                 enable_gqa=self.num_kv_heads != self.num_heads)  # fmt: skip
        else:  # masked kernels take full heads, so share the key/value heads explicitly
            mask = visibility_mask(positions, documents, key_positions, key_documents, self.window)
            group = self.num_heads // self.num_kv_heads
            out = F.scaled_dot_product_attention(
                q, k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1), attn_mask=mask,
                scale=1 / math.sqrt(self.head_dim),
            )  # fmt: skip
        out = self.o_proj(out.transpose(1, 2).reshape(b, T, self.num_heads * self.head_dim))
        keep = slice(None) if self.window is None else slice(-self.window, None)  # older keys are never seen again
        return out, AttentionState(k[:, :, keep], v[:, :, keep], key_positions[:, keep], key_documents[:, keep])
