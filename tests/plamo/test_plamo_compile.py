"""torch.compile of the model, through the scan and with the scan left eager (slow: tens of seconds on CPU)."""

from __future__ import annotations

import pytest
import torch

from lab.models.plamo import create_plamo


@pytest.mark.slow
@pytest.mark.parametrize("compile_scan", [True, False])
def test_compiled_model_matches_eager(compile_scan):
    torch.manual_seed(0)
    model = create_plamo("plamo-2-tiny")
    model.set_compile_scan(compile_scan)
    ids = torch.randint(0, 256, (2, 24))
    documents = torch.tensor([[0] * 10 + [1] * 14, [0] * 24])
    expected = model(ids, ids, document_ids=documents)
    compiled = torch.compile(model)
    out = compiled(ids, ids, document_ids=documents)
    torch.testing.assert_close(out.logits, expected.logits, rtol=1e-4, atol=1e-4)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
