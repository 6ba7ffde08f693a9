"""Model merging: linear averaging and task arithmetic on state dicts, models and HF-layout folders."""

from __future__ import annotations

import copy

import pytest
import torch

from lab.models.plamo import create_plamo, load_pretrained, save_pretrained
from lab.post.merge import MergeError, merge_linear, merge_task_arithmetic
from lab.post.quantize import quantize_model, save_quantized


def tiny(seed: int, **overrides):
    torch.manual_seed(seed)
    return create_plamo("plamo-2-tiny", **overrides).eval()


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_state_equal(a: dict, b: dict, exact: bool = True) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if exact:
            assert torch.equal(a[name], b[name]), name
        else:
            assert torch.allclose(a[name], b[name], atol=1e-6), name


def test_average_of_identical_checkpoints_is_the_checkpoint():
    model = tiny(0)
    merged = merge_linear([state(model), state(model), state(model)], [0.2, 0.3, 0.5])
    assert_state_equal(merged, state(model), exact=False)
    assert_state_equal(merge_linear([model]), state(model))


def test_linear_merge_is_the_weighted_average():
    a, b = state(tiny(0)), state(tiny(1))
    merged = merge_linear([a, b], [0.25, 0.75])
    name = "model.layers.layers.0.mlp.down_proj.weight"
    assert torch.allclose(merged[name], 0.25 * a[name] + 0.75 * b[name], atol=1e-7)
    assert torch.allclose(merge_linear([a, b])[name], (a[name] + b[name]) / 2, atol=1e-7)
    assert torch.allclose(merge_linear([a, b], [1, 3], normalize=True)[name], merged[name], atol=1e-7)


def test_linear_merge_keeps_bfloat16_dtype():
    a = {k: v.to(torch.bfloat16) for k, v in state(tiny(0)).items()}
    merged = merge_linear([a, a])
    assert all(t.dtype == torch.bfloat16 for t in merged.values())
    assert_state_equal(merged, a)


def test_task_arithmetic_scale_zero_is_base_and_scale_one_is_the_model():
    base, finetuned = state(tiny(0)), state(tiny(1))
    assert_state_equal(merge_task_arithmetic(base, [finetuned], 0.0), base)
    assert_state_equal(merge_task_arithmetic(base, [finetuned], 1.0), finetuned)
    second = state(tiny(2))
    name = "model.layers.layers.1.mixer.qkv_proj.weight"
    merged = merge_task_arithmetic(base, [finetuned, second], [0.5, -0.3])
    expected = base[name] + 0.5 * (finetuned[name] - base[name]) - 0.3 * (second[name] - base[name])
    assert torch.allclose(merged[name], expected, atol=1e-6)


def test_folders_in_and_hf_folder_out(tmp_path):
    base, finetuned = tiny(0), tiny(1)
    save_pretrained(base, tmp_path / "base")
    save_pretrained(finetuned, tmp_path / "ft")
    merge_task_arithmetic(tmp_path / "base", [tmp_path / "ft"], 1.0, out=tmp_path / "ta")
    loaded = load_pretrained(tmp_path / "ta")
    assert loaded.config == finetuned.config
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded(ids).logits, finetuned(ids).logits)
    merge_linear([tmp_path / "base", finetuned], [0.5, 0.5], out=tmp_path / "avg")
    averaged = load_pretrained(tmp_path / "avg")
    name = "model.norm.weight"
    expected = (base.state_dict()[name] + finetuned.state_dict()[name]) / 2
    assert torch.allclose(averaged.state_dict()[name], expected, atol=1e-7)


def test_saving_state_dicts_needs_a_config(tmp_path):
    model = tiny(0)
    with pytest.raises(MergeError, match="needs a config"):
        merge_linear([state(model)], out=tmp_path / "x")
    merge_linear([state(model)], out=tmp_path / "y", config=model.config)
    assert load_pretrained(tmp_path / "y").config == model.config


def test_mismatched_shapes_name_the_first_tensor():
    small, wide = state(tiny(0)), state(tiny(0, intermediate_size=96))
    first = r"model\.layers\.layers\.0\.mlp\.gate_up_proj\.weight"
    with pytest.raises(MergeError, match=first + r".*\(256, 64\) in checkpoint 0 but \(192, 64\) in checkpoint 1"):
        merge_linear([small, wide])
    with pytest.raises(MergeError, match="gate_up_proj"):
        merge_task_arithmetic(small, [wide])


def test_mismatched_configs_and_tensor_sets_are_errors(tmp_path):
    a, b = tiny(0), tiny(0, attention_window_size=8)  # same tensors, different architecture
    with pytest.raises(MergeError, match="attention_window_size: 16 vs 8"):
        merge_linear([a, b])
    deeper = state(tiny(0, num_hidden_layers=5))
    with pytest.raises(MergeError, match=r"model\.layers\.layers\.4\..*missing from checkpoint 0"):
        merge_linear([state(a), deeper])
    partial = state(a)
    del partial["model.norm.weight"]
    with pytest.raises(MergeError, match=r"'model\.norm\.weight' is in checkpoint 0 but missing from checkpoint 1"):
        merge_linear([state(a), partial])


def test_bad_weights_and_scales_are_errors(tmp_path):
    a, b = state(tiny(0)), state(tiny(1))
    with pytest.raises(MergeError, match="must sum to 1"):
        merge_linear([a, b], [0.5, 0.6])
    with pytest.raises(MergeError, match=">= 0"):
        merge_linear([a, b], [1.5, -0.5])
    with pytest.raises(MergeError, match="2 weights for 3"):
        merge_linear([a, b, a], [0.5, 0.5])
    with pytest.raises(MergeError, match="finite"):
        merge_task_arithmetic(a, [b], float("nan"))
    with pytest.raises(MergeError, match="1 scales for 2"):
        merge_task_arithmetic(a, [b, b], [1.0])
    with pytest.raises(MergeError, match="not a checkpoint folder"):
        merge_linear([a, tmp_path / "missing"], [0.5, 0.5])
    quantized = quantize_model(copy.deepcopy(tiny(0)), bits=8, group_size=None)
    save_quantized(quantized, tmp_path / "q")
    with pytest.raises(MergeError, match="quantized"):
        merge_linear([tmp_path / "q", a], [0.5, 0.5])
    with pytest.raises(MergeError, match="quantized"):
        merge_task_arithmetic(quantized, [a])


def _cli(argv: list[str]) -> int:
    import argparse

    from experiments.post_cli import add_post_commands

    parser = argparse.ArgumentParser(prog="lab")
    commands = parser.add_subparsers(dest="command", required=True)
    add_post_commands(commands)
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_merge_and_quantize(tmp_path, capsys):
    from lab.post.quantize import load_quantized

    base, finetuned = tiny(0), tiny(1)
    save_pretrained(base, tmp_path / "base")
    save_pretrained(finetuned, tmp_path / "ft")
    assert _cli(["post", "merge", "--method", "task", "--base", str(tmp_path / "base"), "--models",
                 str(tmp_path / "ft"), "--scales", "1", "--out", str(tmp_path / "ta")]) == 0
    assert_state_equal(state(load_pretrained(tmp_path / "ta")), state(finetuned))
    assert _cli(["post", "merge", "--method", "linear", "--models", str(tmp_path / "base"), str(tmp_path / "ft"),
                 "--weights", "1", "1", "--out", str(tmp_path / "avg")]) == 2
    assert "must sum to 1" in capsys.readouterr().err
    assert _cli(["post", "quantize", "--model", str(tmp_path / "ta"), "--bits", "4", "--group-size", "32",
                 "--out", str(tmp_path / "q")]) == 0
    assert load_quantized(tmp_path / "q").quantization_config.group_size == 32
    assert _cli(["post", "quantize", "--model", str(tmp_path / "ta"), "--bits", "4", "--group-size", "128",
                 "--out", str(tmp_path / "q2")]) == 2
    assert "model.layers.layers.0.mixer.in_proj" in capsys.readouterr().err
    assert not (tmp_path / "q2").exists()
