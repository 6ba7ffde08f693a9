"""Save/load in the Hugging Face layout, and clear errors for every way a checkpoint can be wrong."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch

from lab.models.plamo import create_plamo
from lab.models.plamo.checkpoint import CheckpointError, load_config, load_pretrained, save_pretrained

PUBLIC_NAMES = [
    "model.embed_tokens.weight",
    "model.norm.weight",
    "model.layers.layers.0.mixer.in_proj.weight",
    "model.layers.layers.0.mixer.conv1d.weight",
    "model.layers.layers.0.mixer.bcdt_proj.weight",
    "model.layers.layers.0.mixer.dt_proj.weight",
    "model.layers.layers.0.mixer.dt_bias",
    "model.layers.layers.0.mixer.A_log",
    "model.layers.layers.0.mixer.D",
    "model.layers.layers.0.mixer.dt_norm_weight",
    "model.layers.layers.0.mixer.B_norm_weight",
    "model.layers.layers.0.mixer.C_norm_weight",
    "model.layers.layers.0.mixer.out_proj.weight",
    "model.layers.layers.1.mixer.qkv_proj.weight",
    "model.layers.layers.1.mixer.o_proj.weight",
    "model.layers.layers.1.mixer.q_weight",
    "model.layers.layers.1.mixer.k_weight",
    "model.layers.layers.1.mlp.gate_up_proj.weight",
    "model.layers.layers.1.mlp.down_proj.weight",
    "model.layers.layers.1.pre_mixer_norm.weight",
    "model.layers.layers.1.post_mixer_norm.weight",
    "model.layers.layers.1.pre_mlp_norm.weight",
    "model.layers.layers.1.post_mlp_norm.weight",
]


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = create_plamo("plamo-2-tiny").eval()
    return model, save_pretrained(model, tmp_path / "ckpt")


def test_round_trip_with_public_names(saved):
    model, directory = saved
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]
    tensors = safetensors.torch.load_file(str(directory / "model.safetensors"))
    assert set(PUBLIC_NAMES) <= set(tensors) and "lm_head.weight" not in tensors
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "plamo2" and config["hidden_size"] == 64 and config["full_attention_idx"] == [3]
    loaded = load_pretrained(directory).eval()
    assert loaded.config == model.config
    ids = torch.randint(0, 256, (2, 12))
    assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert all(p.requires_grad for p in loaded.parameters())


def test_load_with_dtype(saved):
    _, directory = saved
    assert load_pretrained(directory, dtype=torch.bfloat16).output_weight.dtype == torch.bfloat16


def test_tied_lm_head_copy_in_file_is_accepted(saved):
    model, directory = saved
    tensors = safetensors.torch.load_file(str(directory / "model.safetensors"))
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()
    safetensors.torch.save_file(tensors, str(directory / "model.safetensors"))
    assert torch.equal(load_pretrained(directory).output_weight, model.output_weight)


def test_untied_round_trip(tmp_path):
    model = create_plamo("plamo-2-tiny", tie_word_embeddings=False)
    loaded = load_pretrained(save_pretrained(model, tmp_path))
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)


def rewrite(directory, change):
    tensors = safetensors.torch.load_file(str(directory / "model.safetensors"))
    change(tensors)
    safetensors.torch.save_file(tensors, str(directory / "model.safetensors"))


def test_missing_and_unexpected_tensors_are_named(saved):
    _, directory = saved

    def change(tensors):
        del tensors["model.layers.layers.2.mixer.A_log"]
        tensors["model.layers.layers.9.mixer.A_log"] = torch.zeros(8)

    rewrite(directory, change)
    with pytest.raises(CheckpointError, match=r"1 missing tensor\(s\):\n  model.layers.layers.2.mixer.A_log") as error:
        load_pretrained(directory)
    assert "1 unexpected tensor(s):\n  model.layers.layers.9.mixer.A_log" in str(error.value)


def test_wrong_shape_is_named_with_both_shapes(saved):
    _, directory = saved
    rewrite(directory, lambda t: t.update({"model.layers.layers.1.mixer.q_weight": torch.ones(2, 16)}))
    with pytest.raises(CheckpointError, match=r"model.layers.layers.1.mixer.q_weight: file \(2, 16\) float32, "
                                              r"model \(4, 16\)"):  # fmt: skip
        load_pretrained(directory)


def test_config_that_does_not_match_the_weights(saved):
    _, directory = saved
    config = json.loads((directory / "config.json").read_text())
    config["intermediate_size"] = 96
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="8 wrong shape"):
        load_pretrained(directory)


@pytest.mark.parametrize("corruption", ["garbage", "truncated", "empty"])
def test_corrupt_weights_file(saved, corruption):
    _, directory = saved
    path = directory / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes({"garbage": b"\x00\xff" * 100, "truncated": data[: len(data) // 2], "empty": b""}[corruption])
    with pytest.raises(CheckpointError, match="corrupt or unreadable safetensors file"):
        load_pretrained(directory)


def test_corrupt_or_missing_config(saved, tmp_path):
    _, directory = saved
    (directory / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable JSON config"):
        load_pretrained(directory)
    (directory / "config.json").write_text(json.dumps({"hidden_size": 64, "num_attention_heads": 5,
                                                       "num_key_value_heads": 2}))  # fmt: skip
    with pytest.raises(CheckpointError, match="not divisible by num_key_value_heads"):
        load_pretrained(directory)
    with pytest.raises(CheckpointError, match="no PLaMo config"):
        load_pretrained(tmp_path / "nowhere")


def test_missing_weights_file(saved):
    _, directory = saved
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_pretrained(directory)


def test_sharded_checkpoint_loads(saved):
    model, directory = saved
    tensors = safetensors.torch.load_file(str(directory / "model.safetensors"))
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:10], "model-00002-of-00002.safetensors": names[10:]}
    for file, part in shards.items():
        safetensors.torch.save_file({n: tensors[n] for n in part}, str(directory / file))
    weight_map = {n: file for file, part in shards.items() for n in part}
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (directory / "model.safetensors").unlink()
    assert torch.equal(load_pretrained(directory).output_weight, model.output_weight)


def test_unknown_config_keys_in_a_file_warn_and_are_kept(saved):
    _, directory = saved
    config = json.loads((directory / "config.json").read_text())
    config["mamba_enabled"] = True
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="mamba_enabled"):
        loaded = load_config(directory)
    assert loaded.extra == {"mamba_enabled": True} and loaded.to_dict()["mamba_enabled"] is True


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_saved_files_honour_the_umask(tmp_path, umask, mode):
    """Collaborators on a shared cluster can read a checkpoint (issue 19): no 0600 files from the atomic writes."""
    import os
    import stat

    from lab.post.quantize import quantize_model, save_quantized

    model = create_plamo("plamo-2-tiny")
    previous = os.umask(umask)
    try:
        folders = [save_pretrained(model, tmp_path / "float"),
                   save_quantized(quantize_model(model, bits=8, group_size=None), tmp_path / "int8")]
    finally:
        os.umask(previous)
    for folder in folders:
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {
            "config.json": mode, "model.safetensors": mode}
