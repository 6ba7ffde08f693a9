"""The PLaMo 2 Mamba mixer (Mamba2-style: scalar decay A per head, B and C shared by all heads).

in_proj -> per head (gate z, input x) -> causal depthwise conv + SiLU on x -> bcdt_proj(x) = [B, C, dt] ->
RMSNorm on each -> dt = softplus(dt_proj(dt) + dt_bias) -> y = SSM(x) + D x -> y * SiLU(z) -> out_proj.
The SSM's state and decays are float32 (float64 when the model is float64) whatever the activation dtype;
under autocast only its large matmuls use the autocast dtype (as fused SSD kernels do).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from lab.models.plamo.config import PlamoConfig
from lab.models.plamo.norm import rms_normalize
from lab.models.plamo.scan import chunked_scan, chunked_scan_eager, ssm_step


class MambaState(NamedTuple):
    """What generation carries between tokens: the last d_conv-1 conv inputs and the SSM state."""

    conv: torch.Tensor  # (b, d_conv - 1, channels)
    ssm: torch.Tensor  # (b, heads, head_dim, d_state), float32 or float64


def causal_conv(
    x: torch.Tensor, weight: torch.Tensor, reset: torch.Tensor | None, context: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise causal conv1d over time that never mixes inputs across a document start.

    x (b, T, ch); weight (ch, 1, K) as nn.Conv1d stores it; context (b, K-1, ch) are the inputs before x (zeros
    when None). Returns the output and the next context: the last K-1 inputs, zeroed where they belong to an
    earlier document than the last one. The tap s steps back is cut once a document starts within the last s
    tokens (a running OR of shifted resets: no cumsum, which Inductor has failed to compile on GPUs).
    """
    b, T, channels = x.shape
    K = weight.shape[-1]
    if context is None:
        context = x.new_zeros(b, K - 1, channels)
    padded = torch.cat([context.to(x.dtype), x], dim=1)
    out = padded[:, K - 1 :] * weight[:, 0, K - 1]
    if reset is not None:
        starts = F.pad(reset, (0, 1))  # position T, the next token, continues the last document
        cut = torch.zeros_like(starts)
        keep_in_context = []
    for s in range(1, K):
        tap = padded[:, K - 1 - s : K - 1 - s + T] * weight[:, 0, K - 1 - s]
        if reset is not None:
            cut = cut | F.pad(starts, (s - 1, 0))[:, : T + 1]
            tap = tap.masked_fill(cut[:, :T, None], 0)
            keep_in_context.append(~cut[:, T])
        out = out + tap
    next_context = padded[:, T:]
    if reset is not None:
        next_context = next_context * torch.stack(keep_in_context[::-1], dim=1)[..., None]
    return out, next_context


def initial_dt_bias(num_heads: int, dt_min: float = 1e-3, dt_max: float = 0.1) -> torch.Tensor:
    """softplus^-1 of log-uniform samples in [dt_min, dt_max], so each head starts at its own time scale."""
    dt = torch.exp(torch.rand(num_heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    return dt + torch.log(-torch.expm1(-dt))


class Mamba(nn.Module):
    def __init__(self, config: PlamoConfig) -> None:
        super().__init__()
        self.num_heads, self.head_dim = config.mamba_num_heads, config.head_dim
        self.d_state, self.dt_dim = config.mamba_d_state, config.mamba_dt_dim
        self.chunk_size, self.eps = config.mamba_chunk_size, config.rms_norm_eps
        width = config.mamba_intermediate_size
        self.in_proj = nn.Linear(config.hidden_size, 2 * width, bias=False)
        self.conv1d = nn.Conv1d(width, width, config.mamba_d_conv, groups=width, bias=False)
        self.bcdt_proj = nn.Linear(width, 2 * self.d_state + self.dt_dim, bias=False)
        self.dt_proj = nn.Linear(self.dt_dim, self.num_heads, bias=False)
        self.dt_bias = nn.Parameter(initial_dt_bias(self.num_heads))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, self.num_heads + 1, dtype=torch.float32)))
        self.D = nn.Parameter(torch.ones(self.num_heads))
        self.dt_norm_weight = nn.Parameter(torch.ones(self.dt_dim))
        self.B_norm_weight = nn.Parameter(torch.ones(self.d_state))
        self.C_norm_weight = nn.Parameter(torch.ones(self.d_state))
        self.out_proj = nn.Linear(width, config.hidden_size, bias=False)
        self.compile_scan = True  # False keeps the scan out of torch.compile (see scan.py)

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return rms_normalize(x, self.eps) * weight

    def forward(
        self, hidden: torch.Tensor, reset: torch.Tensor | None = None, state: MambaState | None = None
    ) -> tuple[torch.Tensor, MambaState]:
        """hidden (b, T, d); reset (b, T) marks document starts; `state` continues a cached sequence."""
        b, T, _ = hidden.shape
        H, P = self.num_heads, self.head_dim
        z, x = self.in_proj(hidden).view(b, T, H, 2, P).unbind(dim=3)
        context = None if state is None else state.conv
        x, conv_state = causal_conv(x.reshape(b, T, H * P), self.conv1d.weight, reset, context)
        x = F.silu(x)

        B, C, dt = self.bcdt_proj(x).split([self.d_state, self.d_state, self.dt_dim], dim=-1)
        compute = torch.promote_types(hidden.dtype, torch.float32)
        B, C = self._norm(B, self.B_norm_weight.to(compute)), self._norm(C, self.C_norm_weight.to(compute))
        dt = self._norm(dt, self.dt_norm_weight.to(compute)).to(hidden.dtype)
        dt = F.softplus(self.dt_proj(dt).to(compute) + self.dt_bias.to(compute))
        A = -torch.exp(self.A_log.to(compute))
        xs = x.view(b, T, H, P).to(compute)

        device_type = xs.device.type
        # Under autocast the scan's four large products run in the autocast dtype; decays stay in float32.
        low = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
        with torch.autocast(device_type, enabled=False):
            if state is not None and T == 1:
                ssm_state, y = ssm_step(state.ssm, xs[:, 0], dt[:, 0], A, B[:, 0], C[:, 0])
                y = y[:, None]
            else:
                scan = chunked_scan if self.compile_scan else chunked_scan_eager
                initial = None if state is None else state.ssm
                y, ssm_state = scan(xs, dt, A, B, C, self.chunk_size, reset, initial, low)
        y = y + self.D.to(compute)[:, None] * xs
        y = y.to(hidden.dtype) * F.silu(z)
        return self.out_proj(y.reshape(b, T, H * P)), MambaState(conv_state, ssm_state)
