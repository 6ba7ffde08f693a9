"""FLOPs per token and model FLOPs utilisation (MFU), nanoGPT style, with a measured peak.

The peak is never a table of device names: `measure_peak_flops` times large matmuls on the device at hand (or
the caller passes a number it trusts).
"""

from __future__ import annotations

import time

import torch

from lab.models.plamo.config import PlamoConfig


def flops_per_token(config: PlamoConfig, seq_len: int, num_params: int) -> float:
    """Training FLOPs (forward + backward = 3 x forward) per token.

    6 N for the weights (N counts the tied embedding once, as the output projection does the matmul), plus the
    parts that are not weight matmuls, using nanoGPT's convention of not halving for causality:
    - attention: QK^T and AV, 2 x 2 x heads x head_dim x context, context = min(seq_len, window) or seq_len;
    - SSD scan: C.B within a chunk (2 Q N, shared by heads) and per head the masked product with x
      (2 Q P), the chunk states (2 P N) and the carried-in states (2 P N), Q = min(seq_len, chunk).
    """
    total = 6.0 * num_params
    chunk = min(seq_len, config.mamba_chunk_size)
    for index in range(config.num_hidden_layers):
        window = config.attention_window(index)
        if config.layer_kind(index) == "mamba":
            P, N = config.head_dim, config.mamba_d_state
            total += 3 * (2 * chunk * N + config.mamba_num_heads * (2 * chunk * P + 4 * P * N))
        else:
            context = seq_len if window is None else min(seq_len, window)
            total += 3 * 4 * config.num_attention_heads * config.head_dim * context
    return total


def estimate_mfu(flops_per_token: float, tokens_per_second: float, peak_flops: float) -> float:
    if peak_flops <= 0:
        raise ValueError(f"peak_flops must be positive, got {peak_flops}")
    return flops_per_token * tokens_per_second / peak_flops


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_peak_flops(
    device: str | torch.device = "cuda",
    dtype: torch.dtype = torch.bfloat16,
    size: int = 8192,
    repeats: int = 10,
    burst: int = 10,
) -> float:
    """Best achieved FLOP/s of (size x size) @ (size x size) matmuls, timed in `repeats` bursts of `burst`."""
    device = torch.device(device)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(burst):
        a @ b
    _synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(burst):
            a @ b
        _synchronize(device)
        best = min(best, (time.perf_counter() - start) / burst)
    return 2 * size**3 / best
