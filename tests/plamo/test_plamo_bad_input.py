"""Impossible configs, unknown names and keys, and malformed model inputs fail with clear messages."""

from __future__ import annotations

import pytest
import torch

from lab.models.plamo import PlamoConfig, PlamoConfigError, create_plamo, get_plamo_config
from lab.core.registry import UnknownNameError


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hidden_size": 100, "num_attention_heads": 16, "hidden_size_per_head": None}, "not divisible by num_atten"),
        ({"num_attention_heads": 16, "num_key_value_heads": 3}, "not divisible by num_key_value_heads"),
        ({"hidden_size_per_head": 7}, "must be even"),
        ({"num_hidden_layers": 4, "full_attention_idx": [2]}, "a Mamba layer; attention layers are \\[1, 3\\]"),
        ({"num_hidden_layers": 4, "full_attention_idx": [5]}, "outside the 4 layers"),
        ({"mamba_chunk_size": 0}, "mamba_chunk_size must be a positive integer"),
        ({"hidden_size": 2.5}, "hidden_size must be a positive integer"),
        ({"rms_norm_eps": 0.0}, "rms_norm_eps"),
        ({"vocab_size": 2}, "eos_token_id 2 is outside the vocabulary"),
    ],
)  # fmt: skip
def test_impossible_configs(fields, message):
    with pytest.raises(PlamoConfigError, match=message):
        PlamoConfig(**fields)


def test_head_dim_derived_when_it_divides():
    assert PlamoConfig(hidden_size=96, num_attention_heads=6, hidden_size_per_head=None).head_dim == 16


def test_unknown_names_and_keys_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match="plamo-2-tiny"):
        create_plamo("plamo-3")
    with pytest.raises(PlamoConfigError, match="Did you mean hidden_size"):
        get_plamo_config("plamo-2-tiny", hiden_size=32)
    with pytest.raises(PlamoConfigError, match="Valid keys: .*mamba_step"):
        PlamoConfig.from_dict({"mamba_stride": 2})


def test_sequence_length_need_not_divide_the_chunk_size():
    """The scan pads internally: 13 tokens with chunk 8 work (and match chunk 1, checked in test_plamo_scan)."""
    model = create_plamo("plamo-2-tiny").eval()
    assert model(torch.randint(0, 256, (1, 13))).logits.shape == (1, 13, 256)


@pytest.mark.parametrize(
    ("ids", "extra", "message"),
    [
        (torch.tensor([[1, 256]]), {}, r"token ids must lie in \[0, 256\)"),
        (torch.tensor([[-1, 3]]), {}, "token ids must lie"),
        (torch.tensor([[1.0, 2.0]]), {}, "must be integer"),
        (torch.tensor([1, 2]), {}, r"\(batch, seq_len\)"),
        (torch.zeros(1, 0, dtype=torch.long), {}, "seq_len >= 1"),
        (torch.tensor([[1, 2]]), {"targets": torch.tensor([[1, 2, 3]])}, "targets shape"),
        (torch.tensor([[1, 2]]), {"document_ids": torch.tensor([[0]])}, "document_ids shape"),
    ],
)
def test_bad_model_inputs(ids, extra, message):
    model = create_plamo("plamo-2-tiny")
    with pytest.raises(ValueError, match=message):
        model(ids, **extra)


def test_bad_cache_use():
    model = create_plamo("plamo-2-tiny").eval()
    cache = model(torch.tensor([[1, 2, 3]]), use_cache=True).cache
    with pytest.raises(ValueError, match="cannot be combined with a cache"):
        model(torch.tensor([[4]]), cache=cache, document_ids=torch.tensor([[0]]))
    with pytest.raises(ValueError, match="cache holds 1 rows, input_ids has 2"):
        model(torch.tensor([[4], [5]]), cache=cache)
