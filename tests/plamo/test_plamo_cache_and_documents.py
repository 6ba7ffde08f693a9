"""Cached generation equals the full forward pass, and packed documents equal separate runs (float64)."""

from __future__ import annotations

import pytest
import torch
from plamo_helpers import relative_error, tiny_float64

from lab.models.plamo.attention import AttentionState
from lab.models.plamo.mamba import MambaState

T = 37  # longer than the tiny window (16) and not a multiple of its chunk (8)


def test_step_by_step_logits_equal_full_sequence(tiny64):
    ids = torch.randint(0, 256, (2, T), generator=torch.Generator().manual_seed(0))
    full = tiny64(ids).logits
    out = tiny64(ids[:, :1], use_cache=True)
    logits = [out.logits]
    for t in range(1, T):
        out = tiny64(ids[:, t : t + 1], cache=out.cache)
        logits.append(out.logits)
    assert relative_error(torch.cat(logits, 1), full) < 1e-10


@pytest.mark.parametrize("split", [3, 11, 20])
def test_prefill_then_continue_in_blocks_equals_full(tiny64, split):
    ids = torch.randint(0, 256, (2, T), generator=torch.Generator().manual_seed(1))
    first = tiny64(ids[:, :split], use_cache=True)
    second = tiny64(ids[:, split:], cache=first.cache)
    assert relative_error(torch.cat([first.logits, second.logits], 1), tiny64(ids).logits) < 1e-10


def test_cache_contents(tiny64):
    out = tiny64(torch.randint(0, 256, (2, T)), use_cache=True)
    mamba, window, full = out.cache.layers[0], out.cache.layers[1], out.cache.layers[3]
    assert isinstance(mamba, MambaState) and mamba.conv.shape == (2, 3, 128) and mamba.ssm.shape == (2, 8, 16, 16)
    assert isinstance(window, AttentionState) and window.keys.shape == (2, 1, 16, 16)  # trimmed to the window
    assert full.keys.shape == (2, 1, T, 16)
    assert out.cache.next_positions.tolist() == [T, T]


def packed_ids_and_documents(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, 256, (1, sum(lengths)), generator=torch.Generator().manual_seed(seed))
    documents = torch.cat([torch.full((n,), 10 + i) for i, n in enumerate(lengths)])[None]
    return ids, documents


@pytest.mark.parametrize("lengths", [[7, 13, 17], [1, 2, 30, 4], [20, 20]])
def test_packed_documents_equal_separate_runs(tiny64, lengths):
    """Documents shorter than the conv, longer than the window, and across chunk boundaries."""
    ids, documents = packed_ids_and_documents(lengths)
    packed = tiny64(ids, document_ids=documents).logits
    separate, start = [], 0
    for n in lengths:
        separate.append(tiny64(ids[:, start : start + n]).logits)
        start += n
    assert relative_error(packed, torch.cat(separate, 1)) < 1e-10


def test_packed_loss_gradients_do_not_cross_documents():
    """The loss on the second document gives no gradient to the first document's input embeddings."""
    model = tiny_float64()
    embedded = []

    def keep_output(module, args, output):
        output.retain_grad()
        embedded.append(output)

    model.model.embed_tokens.register_forward_hook(keep_output)
    ids = torch.randint(0, 256, (1, 30), generator=torch.Generator().manual_seed(2))
    documents = torch.tensor([[0] * 12 + [1] * 18])
    targets = torch.full_like(ids, -100)
    targets[0, 12:-1] = ids[0, 13:]
    model(ids, targets, document_ids=documents).loss.backward()
    grad = embedded[0].grad[0]
    assert grad[:12].abs().max() == 0 and grad[12:].abs().max() > 0


def test_cache_continues_the_last_packed_document(tiny64):
    ids, documents = packed_ids_and_documents([9, 12])
    more = torch.randint(0, 256, (1, 5), generator=torch.Generator().manual_seed(3))
    first = tiny64(ids, document_ids=documents, use_cache=True)
    continued = tiny64(more, cache=first.cache).logits
    alone = tiny64(torch.cat([ids[:, 9:], more], 1)).logits[:, -5:]
    assert relative_error(continued, alone) < 1e-10


def test_left_padded_rows_equal_unpadded(tiny64):
    """Left padding as its own document (what generate does) leaves each row's logits unchanged."""
    generator = torch.Generator().manual_seed(4)
    short = torch.randint(0, 256, (1, 5), generator=generator)
    long = torch.randint(0, 256, (1, 21), generator=generator)
    ids = torch.cat([torch.cat([torch.full((1, 16), 2), short], 1), long])
    documents = torch.ones_like(ids)
    documents[0, :16] = 0
    out = tiny64(ids, document_ids=documents, use_cache=True)
    assert relative_error(out.logits[0, 16:], tiny64(short).logits[0]) < 1e-10
    assert relative_error(out.logits[1], tiny64(long).logits[0]) < 1e-10
    nxt = torch.tensor([[7], [8]])
    step = tiny64(nxt, cache=out.cache).logits
    assert relative_error(step[0], tiny64(torch.cat([short, nxt[:1]], 1)).logits[0, -1:]) < 1e-10
    assert relative_error(step[1], tiny64(torch.cat([long, nxt[1:]], 1)).logits[0, -1:]) < 1e-10
