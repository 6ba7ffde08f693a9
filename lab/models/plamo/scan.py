"""The Mamba2 selective state-space scan with scalar decay per head, and document resets.

Recurrence, per batch row and head (state h: head_dim x d_state, B and C shared by all heads):

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * x_t B_t^T          y_t = h_t C_t

`reset_t` drops h_{t-1} before step t (a new document starts at t). Three forms:
- `ssm_step`: one token, for generation with a cached state;
- `sequential_scan`: the definition, a Python loop over `ssm_step`; the reference the tests check against;
- `chunked_scan`: the SSD (state space duality) form for training. Inside each chunk of `chunk_size` tokens the
  output is a masked, decayed attention-like product; chunk-final states are passed between chunks with one
  small (chunks x chunks) matrix product. Everything is batched matmuls, no Python loop over time.
  Sequences that are not a multiple of the chunk size are zero-padded at the end internally (zero dt leaves the
  state untouched), so any length works.

Running sums are matmuls with triangular matrices of ones, not cumsum: Inductor's cumsum codegen crashed on an
earlier form of this scan (torch 2.11, H200). In this form torch.compile traces through the whole scan, which
took a ~240M hybrid from 33% to 47% MFU on one H200 (benchmarks/results/plamo_NVIDIA-H200_*.csv).
`chunked_scan_eager` is the same function excluded from torch.compile, for compilers that still fail on it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ssm_step(
    state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token. state (b, H, P, N), x (b, H, P), dt (b, H), A (H,), B and C (b, N) -> (new state, y (b, H, P))."""
    decay = torch.exp(dt * A)[..., None, None]
    state = state * decay + (dt[..., None] * x)[..., None] * B[:, None, None, :]
    return state, (state @ C[:, None, :, None]).squeeze(-1)


def sequential_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    reset: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence token by token. x (b, T, H, P), dt (b, T, H), B/C (b, T, N), reset (b, T) bool."""
    b, T, H, P = x.shape
    state = x.new_zeros(b, H, P, B.shape[-1]) if initial_state is None else initial_state
    ys = []
    for t in range(T):
        if reset is not None:
            state = torch.where(reset[:, t, None, None, None], torch.zeros_like(state), state)
        state, y = ssm_step(state, x[:, t], dt[:, t], A, B[:, t], C[:, t])
        ys.append(y)
    return torch.stack(ys, dim=1), state


def segment_sum(a: torch.Tensor) -> torch.Tensor:
    """out[..., i, j] = a[..., j+1] + ... + a[..., i] for j <= i, -inf above the diagonal.

    Summing the increments directly, instead of subtracting two cumulative sums, stays exact when the running
    sum of log-decays grows large over a long sequence. The running sum over k is a matmul with a triangular
    matrix of ones (see `_running_sum`).
    """
    n = a.shape[-1]
    ones = torch.ones(n, n, dtype=torch.bool, device=a.device)
    increments = a.unsqueeze(-1).expand(*a.shape, n).masked_fill(~ones.tril(-1), 0)  # [k, j] = a[k] if k > j
    return (ones.tril().to(a.dtype) @ increments).masked_fill(~ones.tril(0), float("-inf"))


def _same_segment(segment: torch.Tensor) -> torch.Tensor:
    """(..., n) segment numbers -> (..., n, n) mask of pairs in the same segment."""
    return segment.unsqueeze(-1) == segment.unsqueeze(-2)


def _running_sum(a: torch.Tensor) -> torch.Tensor:
    """Cumulative sum over the last dim as a matmul with a triangular matrix of ones.

    Inductor's cumsum codegen crashed on this scan on a GPU (torch 2.11); a small matmul compiles everywhere and
    is exact in float64 and (without TF32) accurate in float32 for the chunk-sized sums used here.
    """
    n = a.shape[-1]
    upper = torch.ones(n, n, dtype=a.dtype, device=a.device).triu()
    return a @ upper


def _low_precision(*tensors: torch.Tensor, dtype: torch.dtype | None) -> tuple[torch.Tensor, ...]:
    return tensors if dtype is None else tuple(t.to(dtype) for t in tensors)


def chunked_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    reset: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    matmul_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same result as `sequential_scan`, chunk by chunk. Returns y (b, T, H, P) and the final state (b, H, P, N).

    Decays are always computed in the inputs' dtype; `matmul_dtype` (e.g. bfloat16 under autocast) runs the four
    large products in that dtype, as fused SSD kernels do, and returns to the inputs' dtype after each.
    """
    b, T, H, P = x.shape
    N = B.shape[-1]
    pad = (-T) % chunk_size
    if pad:
        x, B, C = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, B, C))
        dt = F.pad(dt, (0, 0, 0, pad))
        reset = None if reset is None else F.pad(reset, (0, pad))
    c, Q = (T + pad) // chunk_size, chunk_size
    compute = x.dtype

    log_decay = (dt * A).view(b, c, Q, H).permute(0, 3, 1, 2)  # (b, H, c, Q)
    xdt = (x * dt[..., None]).view(b, c, Q, H, P).permute(0, 3, 1, 2, 4)  # (b, H, c, Q, P)
    B, C = B.view(b, 1, c, Q, N), C.view(b, 1, c, Q, N)
    causal = torch.ones(Q, Q, dtype=torch.bool, device=x.device).tril()
    if reset is None:
        segment, visible = None, causal
        within = _running_sum(log_decay)  # (b, H, c, Q)
    else:  # segment number inside each chunk; 0 = continues the carry
        segment = _running_sum(reset.view(b, c, Q).to(compute)).round()
        same = _same_segment(segment)  # (b, c, Q, Q)
        visible = causal & same[:, None]  # (b, 1, c, Q, Q)
        # Running sums restart at each document start, so no document's decays enter another's (not even as
        # rounding): within[i] sums a_k over k <= i in i's document.
        prefix = (causal.T & same).to(compute)[:, None]  # [k, i]: k <= i, same document
        within = (log_decay.unsqueeze(-2) @ prefix).squeeze(-2)

    # Within each chunk: y_i = sum_{j <= i, same document} exp(a_{j+1} + ... + a_i) (C_i . B_j) dt_j x_j.
    # The exponent is a difference of running sums: chunk-sized, so it stays accurate.
    decay = torch.exp((within[..., :, None] - within[..., None, :]).masked_fill(~visible, float("-inf")))
    Cl, Bl, xl = _low_precision(C, B, xdt, dtype=matmul_dtype)
    scores = (Cl @ Bl.transpose(-1, -2)).to(compute)  # (b, 1, c, Q, Q)
    (weights,) = _low_precision(decay * scores, dtype=matmul_dtype)
    y = (weights @ xl).to(compute)

    # Each chunk's own contribution to the state at its end: the last row of `decay` weighs every token.
    (weighted,) = _low_precision(xdt * decay[..., -1, :, None], dtype=matmul_dtype)
    chunk_states = (weighted.transpose(-1, -2) @ Bl).to(compute)  # (b, H, c, P, N)

    # Pass states between chunks: carried[i] = state entering chunk i (i = c: the final state).
    start = x.new_zeros(b, H, 1, P, N) if initial_state is None else initial_state[:, :, None].to(compute)
    states = torch.cat([start, chunk_states], dim=2)  # states[k] = state at the end of chunk k-1
    chunk_log_decay = F.pad(within[..., -1], (1, 0))  # [m] = decay through chunk m-1
    carry = segment_sum(chunk_log_decay)
    if segment is not None:  # a reset inside a chunk cuts the carry
        chunk_reset = _running_sum(F.pad((segment[..., -1] > 0).to(compute), (1, 0))).round()
        carry = carry.masked_fill(~_same_segment(chunk_reset)[:, None], float("-inf"))
    carried = (torch.exp(carry) @ states.flatten(-2)).view(b, H, c + 1, P, N)

    # Carried-in state seen by each token: decayed from the chunk start, dropped after a reset.
    decay_in = torch.exp(within)
    if segment is not None:
        decay_in = decay_in.masked_fill(segment[:, None] > 0, 0)  # (b, H, c, Q)
    (carried_in,) = _low_precision(carried[:, :, :-1], dtype=matmul_dtype)
    y = y + (Cl @ carried_in.transpose(-1, -2)).to(compute) * decay_in[..., None]

    y = y.permute(0, 2, 3, 1, 4).reshape(b, c * Q, H, P)[:, :T]
    return y, carried[:, :, -1]


chunked_scan_eager = torch.compiler.disable(chunked_scan)
