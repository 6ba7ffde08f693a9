"""The chunked SSD scan and the reset-aware conv against their definitions (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from plamo_helpers import relative_error

from lab.models.plamo.mamba import causal_conv, initial_dt_bias
from lab.models.plamo.scan import chunked_scan, segment_sum, sequential_scan, ssm_step


def scan_inputs(b=2, T=37, H=3, P=4, N=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, T, H, P, generator=g, dtype=dtype)
    dt = F.softplus(torch.randn(b, T, H, generator=g, dtype=dtype))
    A = -torch.rand(H, generator=g, dtype=dtype) * 2
    B, C = torch.randn(b, T, N, generator=g, dtype=dtype), torch.randn(b, T, N, generator=g, dtype=dtype)
    return x, dt, A, B, C


def some_resets(b: int, T: int) -> torch.Tensor:
    reset = torch.zeros(b, T, dtype=torch.bool)
    reset[0, [5, 16, 17]] = True  # includes a one-token document
    reset[-1, [8, T - 1]] = True
    return reset


@pytest.mark.parametrize("chunk_size", [1, 4, 8, 16, 37, 64])
@pytest.mark.parametrize("with_resets", [False, True])
@pytest.mark.parametrize("with_initial_state", [False, True])
def test_chunked_scan_matches_sequential_reference(chunk_size, with_resets, with_initial_state):
    x, dt, A, B, C = scan_inputs()
    reset = some_resets(2, 37) if with_resets else None
    initial = torch.randn(2, 3, 4, 5, dtype=torch.float64) if with_initial_state else None
    y_ref, state_ref = sequential_scan(x, dt, A, B, C, reset, initial)
    y, state = chunked_scan(x, dt, A, B, C, chunk_size, reset, initial)
    assert y.shape == y_ref.shape and state.shape == state_ref.shape
    assert relative_error(y, y_ref) < 1e-8
    assert relative_error(state, state_ref) < 1e-8


def test_chunked_scan_with_strong_decay_stays_finite_and_exact():
    """Large dt * |A| underflows exp() to 0 on long chunks; the segment sums must not turn that into NaN."""
    x, dt, A, B, C = scan_inputs(T=64)
    dt = dt * 50
    y_ref, _ = sequential_scan(x, dt, A, B, C)
    y, _ = chunked_scan(x, dt, A, B, C, 32)
    assert torch.isfinite(y).all()
    assert relative_error(y, y_ref) < 1e-8


def test_chunked_scan_gradients_are_finite_with_resets():
    x, dt, A, B, C = (t.float().requires_grad_() for t in scan_inputs())
    y, state = chunked_scan(x, dt, A, B, C, 8, some_resets(2, 37))
    (y.square().mean() + state.square().mean()).backward()
    for tensor in (x, dt, A, B, C):
        assert torch.isfinite(tensor.grad).all()


def test_reset_drops_everything_before_it():
    x, dt, A, B, C = scan_inputs(b=1, T=20)
    reset = torch.zeros(1, 20, dtype=torch.bool)
    reset[0, 12] = True
    y, state = chunked_scan(x, dt, A, B, C, 8, reset)
    y_alone, state_alone = chunked_scan(x[:, 12:], dt[:, 12:], A, B[:, 12:], C[:, 12:], 8)
    assert relative_error(y[:, 12:], y_alone) < 1e-12
    assert relative_error(state, state_alone) < 1e-12


def test_ssm_step_is_the_recurrence():
    x, dt, A, B, C = scan_inputs(b=1, T=1, H=2, P=3, N=4)
    state = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    new_state, y = ssm_step(state, x[:, 0], dt[:, 0], A, B[:, 0], C[:, 0])
    for h in range(2):
        expected = torch.exp(dt[0, 0, h] * A[h]) * state[0, h] + dt[0, 0, h] * torch.outer(x[0, 0, h], B[0, 0])
        torch.testing.assert_close(new_state[0, h], expected)
        torch.testing.assert_close(y[0, h], expected @ C[0, 0])


def test_segment_sum():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    s = segment_sum(a)
    assert s[3, 1] == 3 + 4 and s[2, 2] == 0 and s[1, 0] == 2
    assert torch.isneginf(s[0, 1]) and torch.isneginf(s[1, 3])


def test_causal_conv_without_resets_is_conv1d():
    g = torch.Generator().manual_seed(1)
    x, weight = torch.randn(2, 11, 6, generator=g), torch.randn(6, 1, 4, generator=g)
    out, context = causal_conv(x, weight, None, None)
    expected = F.conv1d(F.pad(x.transpose(1, 2), (3, 0)), weight, groups=6).transpose(1, 2)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(context, x[:, -3:])


def test_causal_conv_does_not_mix_documents_and_continues_from_context():
    g = torch.Generator().manual_seed(2)
    x, weight = torch.randn(1, 10, 3, generator=g), torch.randn(3, 1, 4, generator=g)
    reset = torch.zeros(1, 10, dtype=torch.bool)
    reset[0, 6] = True
    out, context = causal_conv(x, weight, reset, None)
    alone, _ = causal_conv(x[:, 6:], weight, None, None)
    torch.testing.assert_close(out[:, 6:], alone)
    # a second call that continues the last document from the returned context
    more = torch.randn(1, 2, 3, generator=g)
    continued, _ = causal_conv(more, weight, None, context)
    whole, _ = causal_conv(torch.cat([x[:, 6:], more], 1), weight, None, None)
    torch.testing.assert_close(continued, whole[:, -2:])


def test_conv_context_of_a_short_last_document_is_clean():
    """A last document shorter than d_conv - 1 must not pass earlier documents' inputs to generation."""
    x, weight = torch.randn(1, 8, 2), torch.randn(2, 1, 4)
    reset = torch.zeros(1, 8, dtype=torch.bool)
    reset[0, 7] = True
    _, context = causal_conv(x, weight, reset, None)
    assert torch.equal(context[0, :2], torch.zeros(2, 2)) and torch.equal(context[0, 2], x[0, 7])


def test_initial_dt_bias_gives_dt_in_range():
    dt = F.softplus(initial_dt_bias(10_000))
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)


def test_chunked_scan_low_precision_matmuls_stay_close():
    """bf16 products (as under autocast) with float32 decays: close to the exact scan, not equal to it."""
    x, dt, A, B, C = (t.float() for t in scan_inputs(T=64))
    y, state = chunked_scan(x, dt, A, B, C, 16)
    y_low, state_low = chunked_scan(x, dt, A, B, C, 16, matmul_dtype=torch.bfloat16)
    assert y_low.dtype == torch.float32 and state_low.dtype == torch.float32
    assert 0 < relative_error(y_low, y) < 3e-2
    assert relative_error(state_low, state) < 3e-2
