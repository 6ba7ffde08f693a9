"""Weight-only int8/int4 quantization: error bounds, packing, model outputs, generation, save/load, bad input."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from lab.lm_train import evaluate_text
from lab.models.plamo import CheckpointError, create_plamo, generate, load_pretrained, save_pretrained
from lab.post.quantize import (
    QuantizationError,
    QuantizedLinear,
    dequantize_weight,
    load_model,
    load_quantized,
    model_size_bytes,
    pack_int4,
    quantize_model,
    quantize_weight,
    save_quantized,
    unpack_int4,
)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return create_plamo("plamo-2-tiny").eval()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).detach().norm() / expected.detach().norm())


@pytest.mark.parametrize("bits,group_size", [(8, None), (8, 32), (4, 16), (4, 64), (4, None)])
def test_weight_error_is_at_most_half_a_step(bits, group_size):
    torch.manual_seed(1)
    weight = torch.randn(24, 128) * torch.logspace(-3, 0, 128)  # columns of very different magnitude
    weight[3] = 0.0  # an all-zero row must not divide by zero
    q, scales = quantize_weight(weight, bits, group_size)
    qmax = 2 ** (bits - 1) - 1
    assert q.dtype == torch.int8 and int(q.abs().max()) <= qmax
    assert scales.shape == (24, 1 if group_size is None else 128 // group_size)
    restored = dequantize_weight(q, scales)
    group = 128 if group_size is None else group_size
    step = scales.repeat_interleave(group, dim=1)
    assert torch.all((restored - weight).abs() <= step / 2 + 1e-7)
    assert torch.equal(restored[3], torch.zeros(128))
    # the largest weight of each group is represented exactly (up to float rounding)
    grouped = weight.reshape(24, -1, group).abs().amax(-1)
    assert torch.allclose(scales * qmax, torch.where(grouped > 0, grouped, torch.full_like(grouped, qmax)))


def test_int4_packing_round_trips_and_uses_half_a_byte():
    q = torch.randint(-7, 8, (5, 10), dtype=torch.int8)
    packed = pack_int4(q)
    assert packed.dtype == torch.uint8 and packed.shape == (5, 5)
    assert torch.equal(unpack_int4(packed), q)
    assert int(packed[0, 0]) == (int(q[0, 0]) + 8) | ((int(q[0, 1]) + 8) << 4)  # the documented nibble order


def test_quantized_linear_matches_dequantized_float_linear():
    torch.manual_seed(2)
    linear = torch.nn.Linear(64, 48, bias=False)
    quantized = QuantizedLinear.from_linear(linear, bits=4, group_size=32)
    x = torch.randn(3, 7, 64)
    expected = x @ quantized.dequantize().T
    assert torch.allclose(quantized(x), expected, atol=1e-6)
    assert relative_error(quantized(x), linear(x)) < 0.2


def test_quantized_model_logits_close_to_float(tiny):
    ids = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(0))
    reference = tiny(ids).logits
    errors = {}
    for bits, group in [(8, None), (8, 32), (4, 32)]:
        quantized = quantize_model(copy.deepcopy(tiny), bits=bits, group_size=group)
        errors[(bits, group)] = relative_error(quantized(ids).logits, reference)
    assert errors[(8, None)] < 0.05 and errors[(8, 32)] < 0.05
    assert errors[(8, 32)] < errors[(4, 32)] < 0.8  # int4 is worse, yet far from noise (relative error 1)


def test_quantize_model_replaces_linears_skips_defaults_and_shrinks(tiny):
    float_bytes = model_size_bytes(tiny)
    quantized = quantize_model(copy.deepcopy(tiny), bits=4, group_size=32)
    kinds = {name: type(module).__name__ for name, module in quantized.named_modules()}
    assert kinds["model.layers.layers.0.mixer.in_proj"] == "QuantizedLinear"
    assert kinds["model.layers.layers.1.mixer.qkv_proj"] == "QuantizedLinear"
    assert kinds["model.layers.layers.0.mlp.down_proj"] == "QuantizedLinear"
    assert kinds["model.layers.layers.0.mixer.dt_proj"] == "Linear"  # skipped by default
    assert not any(kind == "Linear" for name, kind in kinds.items() if "dt_proj" not in name)
    assert model_size_bytes(quantized) < float_bytes
    assert quantized.quantization_config.bits == 4
    with pytest.raises(QuantizationError, match="already quantized"):
        quantize_model(quantized, bits=8)


def test_quantized_model_loss_evaluation_and_generation(tiny):
    quantized = quantize_model(copy.deepcopy(tiny), bits=8, group_size=32)
    ids = torch.randint(3, 256, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        loss, float_loss = quantized(ids[:, :-1], ids[:, 1:]).loss, tiny(ids[:, :-1], ids[:, 1:]).loss
    assert torch.isfinite(loss) and abs(float(loss) - float(float_loss)) < 0.05

    class ByteTokenizer:
        def encode_batch(self, texts):
            return [[3 + (b % 250) for b in text.encode()] for text in texts]

    result = evaluate_text(quantized, ByteTokenizer(), ["こんにちは世界", "abc def"], max_len=8)
    assert result["bits_per_char"] > 0
    prompts = [[1, 5, 9, 200], [1, 7]]
    cached = generate(quantized, prompts, max_new_tokens=12, temperature=0, eos_token_id=None)
    uncached = generate(quantized, prompts, max_new_tokens=12, temperature=0, eos_token_id=None, use_cache=False)
    assert [g.tokens for g in cached] == [g.tokens for g in uncached]
    assert all(len(g.tokens) == 12 for g in cached)


def test_untied_output_head_can_be_quantized(tmp_path):
    torch.manual_seed(0)
    model = create_plamo("plamo-2-tiny", tie_word_embeddings=False).eval()
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(4))
    reference = model(ids).logits
    quantized = quantize_model(copy.deepcopy(model), bits=8, group_size=32, skip=("embed_tokens", "dt_proj"))
    assert isinstance(quantized.lm_head, QuantizedLinear)
    assert relative_error(quantized(ids).logits, reference) < 0.05
    assert len(generate(quantized, [[1, 2]], max_new_tokens=4, temperature=0, eos_token_id=None)[0].tokens) == 4
    save_quantized(quantized, tmp_path / "q")
    assert torch.equal(load_quantized(tmp_path / "q")(ids).logits, quantized(ids).logits)


def test_bf16_activations_run_through_quantized_layers(tiny):
    quantized = quantize_model(copy.deepcopy(tiny), bits=4, group_size=16)
    ids = torch.randint(0, 256, (1, 16), generator=torch.Generator().manual_seed(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = quantized(ids).logits
    assert torch.isfinite(logits.float()).all()
    assert relative_error(logits.float(), quantized(ids).logits) < 0.05


@pytest.mark.parametrize("bits,group_size", [(8, None), (4, 32)])
def test_save_load_round_trip_gives_identical_outputs(tiny, tmp_path, bits, group_size):
    quantized = quantize_model(copy.deepcopy(tiny), bits=bits, group_size=group_size)
    save_quantized(quantized, tmp_path / "q")
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    assert config["quantization_config"]["bits"] == bits
    assert config["quantization_config"]["group_size"] == group_size
    assert "model.layers.layers.0.mixer.in_proj" in config["quantization_config"]["modules"]
    loaded = load_quantized(tmp_path / "q")
    ids = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(3))
    assert torch.equal(loaded(ids).logits, quantized(ids).logits)
    assert type(load_model(tmp_path / "q").model.layers.layers[0].mlp.down_proj) is QuantizedLinear
    prompts = [[1, 4, 8]]
    assert generate(loaded, prompts, max_new_tokens=6, seed=0)[0].tokens == \
        generate(quantized, prompts, max_new_tokens=6, seed=0)[0].tokens
    assert (tmp_path / "q" / "model.safetensors").stat().st_size < 0.75 * model_size_bytes(tiny)


def test_load_model_reads_float_folders_and_quantized_folder_errors(tiny, tmp_path):
    save_pretrained(tiny, tmp_path / "float")
    assert type(load_model(tmp_path / "float")).__name__ == "PlamoForCausalLM"
    with pytest.raises(CheckpointError, match="no quantization_config"):
        load_quantized(tmp_path / "float")
    with pytest.raises(QuantizationError, match="not quantized"):
        save_quantized(tiny, tmp_path / "x")
    quantized = quantize_model(copy.deepcopy(tiny), bits=8, group_size=None)
    save_quantized(quantized, tmp_path / "q")
    assert torch.equal(load_pretrained(tmp_path / "q").model.layers.layers[0].mixer.in_proj.qweight,
                       quantized.model.layers.layers[0].mixer.in_proj.qweight)  # the float loader takes it too
    data = json.loads((tmp_path / "q" / "config.json").read_text())
    data["quantization_config"]["group_size"] = 32
    (tmp_path / "q" / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="scales"):
        load_quantized(tmp_path / "q")


def test_group_size_that_does_not_divide_a_layer_names_it(tiny):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    with pytest.raises(QuantizationError, match=r"model\.layers\.layers\.0\.mixer\.in_proj.*in_features 64.*128"):
        quantize_model(tiny, bits=4, group_size=128)
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())  # checked before any change
    assert not any(isinstance(m, QuantizedLinear) for m in tiny.modules())


@pytest.mark.parametrize("bits", [2, 3, 16, "8"])
def test_unsupported_bits_are_errors(tiny, bits):
    with pytest.raises(QuantizationError, match="bits must be one of"):
        quantize_model(tiny, bits=bits)


@pytest.mark.parametrize("group_size", [0, -8, 2.5])
def test_bad_group_size_is_an_error(tiny, group_size):
    with pytest.raises(QuantizationError, match="group_size"):
        quantize_model(tiny, bits=8, group_size=group_size)


def test_skipping_everything_is_an_error(tiny):
    with pytest.raises(QuantizationError, match="no linear layer"):
        quantize_model(tiny, bits=8, skip=("model",))


def test_load_pretrained_builds_quantized_modules_and_keeps_scales_in_float32(tiny, tmp_path):
    quantized = quantize_model(copy.deepcopy(tiny), bits=4, group_size=16)
    save_quantized(quantized, tmp_path / "q")
    ids = torch.randint(0, tiny.config.vocab_size, (2, 9))
    loaded = load_pretrained(tmp_path / "q")
    assert loaded.quantization_config == quantized.quantization_config
    assert torch.equal(loaded(ids).logits, quantized(ids).logits)
    half = load_pretrained(tmp_path / "q", dtype=torch.bfloat16)
    layer = half.model.layers.layers[0].mlp.down_proj
    assert type(layer) is QuantizedLinear and layer.scales.dtype == torch.float32 and layer.qweight.dtype == torch.uint8
    assert half.model.embed_tokens.weight.dtype == torch.bfloat16


def test_an_unknown_quantization_method_is_named(tiny, tmp_path):
    save_quantized(quantize_model(copy.deepcopy(tiny), bits=8, group_size=None), tmp_path / "q")
    data = json.loads((tmp_path / "q" / "config.json").read_text())
    data["quantization_config"]["quant_method"] = "gptq"
    (tmp_path / "q" / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="'gptq'.*lab_weight_only"):
        load_pretrained(tmp_path / "q")
