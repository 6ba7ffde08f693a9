"""Sizes: the 1B parameter count by hand, `model info` on names and files, FLOPs and MFU."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from lab.models.plamo import PLAMO_CONFIGS, create_plamo, get_plamo_config
from lab.models.plamo.checkpoint import save_pretrained
from lab.models.plamo.flops import estimate_mfu, measure_peak_flops
from lab.models.plamo.info import add_model_info_arguments, model_info, run_model_info


def plamo_2_1b_by_hand() -> dict[str, int]:
    d, layers, inner, vocab = 2048, 16, 8192, 100_000
    heads, kv_heads, head_dim = 16, 1, 128
    mamba_heads, d_state, d_conv = 32, 64, 4
    mamba_width, dt_dim = mamba_heads * head_dim, max(64, d // 16)
    mamba = (
        d * 2 * mamba_width  # in_proj
        + mamba_width * d_conv  # depthwise conv1d
        + mamba_width * (2 * d_state + dt_dim)  # bcdt_proj
        + dt_dim * mamba_heads  # dt_proj
        + 3 * mamba_heads  # dt_bias, A_log, D
        + dt_dim + 2 * d_state  # dt, B, C norm weights
        + mamba_width * d  # out_proj
    )
    attention = d * (heads + 2 * kv_heads) * head_dim + heads * head_dim * d + (heads + kv_heads) * head_dim
    mlp = d * 2 * inner + inner * d
    return {
        "embedding": vocab * d,  # tied: the output head adds nothing
        "lm_head": 0,
        "mamba": layers // 2 * mamba,
        "attention": layers // 2 * attention,
        "mlp": layers * mlp,
        "norms": layers * 4 * d + d,
    }


def test_plamo_2_1b_parameter_count_matches_the_hand_formula():
    expected = plamo_2_1b_by_hand()
    assert sum(expected.values()) == 1_291_441_920  # "about 1.29 B"
    model = create_plamo("plamo-2-1b", device="meta")
    assert model.num_parameters() == 1_291_441_920
    info = model_info("plamo-2-1b")
    assert info.by_block == expected and info.total == 1_291_441_920
    assert info.layer_pattern == " ".join(["M", "A"] * 8)


def test_1b_config_has_the_public_numbers():
    c = get_plamo_config("plamo-2-1b")
    public = (2048, 16, 8192, 100_000, 16, 1, 128, 2048, 32, 64, 4, 256, 2, 1, 2, True)
    assert (c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.vocab_size, c.num_attention_heads,
            c.num_key_value_heads, c.hidden_size_per_head, c.attention_window_size, c.mamba_num_heads,
            c.mamba_d_state, c.mamba_d_conv, c.mamba_chunk_size, c.mamba_step, c.bos_token_id, c.eos_token_id,
            c.tie_word_embeddings) == public  # fmt: skip


def test_benchmark_config_is_about_240m():
    config = get_plamo_config("plamo-2-240m")
    assert (config.hidden_size, config.num_hidden_layers) == (1024, 12)
    assert 230e6 < model_info("plamo-2-240m").total < 250e6


@pytest.mark.parametrize("name", PLAMO_CONFIGS.names())
def test_info_blocks_add_up_for_every_config(name):
    info = model_info(name)
    assert sum(info.by_block.values()) == info.total == create_plamo(name, device="meta").num_parameters()


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_model_info_arguments(parser)
    return parser.parse_args(argv)


def test_run_model_info_on_a_name_a_config_file_and_a_directory(tmp_path, capsys):
    assert run_model_info(parse("plamo-2-tiny")) == 0
    printed = capsys.readouterr().out
    assert "212,432 parameters" in printed and "layer pattern: M A M F" in printed and "F = full attention" in printed
    two_layers = create_plamo("plamo-2-tiny", num_hidden_layers=2, full_attention_idx=())
    directory = save_pretrained(two_layers, tmp_path / "ckpt")
    for path in (directory, directory / "config.json"):
        assert run_model_info(parse(str(path), "--json")) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["layer_pattern"] == "M A" and data["config"]["num_hidden_layers"] == 2


def test_run_model_info_errors(tmp_path, capsys):
    assert run_model_info(parse("plamo-2-tinny")) == 2
    assert "plamo-2-tiny" in capsys.readouterr().err  # lists the valid names
    bad = tmp_path / "config.json"
    bad.write_text('{"hidden_size": 63, "hidden_size_per_head": null}')
    assert run_model_info(parse(str(bad))) == 1
    assert "not divisible" in capsys.readouterr().err


def test_flops_per_token_is_6n_plus_attention_and_scan_terms():
    model = create_plamo("plamo-2-1b", device="meta")
    n = model.num_parameters()
    attention = 8 * 12 * 16 * 128 * 2048
    scan = 8 * 3 * (2 * 256 * 64 + 32 * (2 * 256 * 128 + 4 * 128 * 64))
    assert model.flops_per_token(2048) == 6 * n + attention + scan
    assert model.flops_per_token(8192) == model.flops_per_token(2048)  # every attention layer is windowed


def test_estimate_mfu():
    model = create_plamo("plamo-2-tiny", device="meta")
    flops = model.flops_per_token(16)
    assert model.estimate_mfu(1000.0, flops * 4000, seq_len=16) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="peak_flops"):
        estimate_mfu(flops, 1000.0, 0.0)


def test_measure_peak_flops_on_cpu():
    assert measure_peak_flops("cpu", dtype=torch.float32, size=64, repeats=2, burst=2) > 0
