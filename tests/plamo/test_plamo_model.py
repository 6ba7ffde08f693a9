"""Architecture facts of PLaMo 2: layer pattern, sandwich norms, QK-norm before RoPE, MQA, SwiGLU, init, loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from plamo_helpers import perturb_norm_weights, relative_error

from lab.models.plamo import PLAMO_CONFIGS, PlamoConfig, causal_lm_loss, create_plamo, get_plamo_config
from lab.models.plamo.attention import Attention, apply_rope
from lab.models.plamo.mamba import Mamba
from lab.models.plamo.model import MLP, DecoderLayer, TokenLayout
from lab.models.plamo.norm import RMSNorm


def test_layer_pattern_follows_mamba_step():
    assert get_plamo_config("plamo-2-1b").layer_pattern == " ".join(["M", "A"] * 8)
    three = PlamoConfig(num_hidden_layers=6, mamba_step=3, full_attention_idx=[4])
    assert three.layer_pattern == "M A M M F M"  # attention where i % 3 == 1
    assert get_plamo_config("plamo-2-tiny").layer_pattern == "M A M F"


def test_layers_have_the_right_mixers_and_windows():
    model = create_plamo("plamo-2-tiny", device="meta")
    layers = model.model.layers.layers
    assert [type(layer.mixer) for layer in layers] == [Mamba, Attention, Mamba, Attention]
    assert layers[1].mixer.window == 16 and layers[3].mixer.window is None


def test_sandwich_norm_offsets_and_zero_init():
    layer = create_plamo("plamo-2-tiny").model.layers.layers[0]
    offsets = {name: getattr(layer, name).offset for name in
               ("pre_mixer_norm", "post_mixer_norm", "pre_mlp_norm", "post_mlp_norm")}  # fmt: skip
    assert offsets == pytest.approx({"pre_mixer_norm": 1.0, "post_mixer_norm": 0.2, "pre_mlp_norm": 1.0,
                                     "post_mlp_norm": 1 / 5**1.5})  # fmt: skip
    model = create_plamo("plamo-2-tiny")
    assert model.model.norm.offset == 1.0
    for name, parameter in model.named_parameters():
        if name.endswith("norm.weight"):
            assert torch.count_nonzero(parameter) == 0, name


def test_rms_norm_scale_is_offset_plus_weight():
    norm = RMSNorm(8, eps=1e-6, offset=0.2)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(-0.1, 0.1, 8))
    x = torch.randn(3, 8, dtype=torch.float64)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * (0.2 + norm.weight.double())
    torch.testing.assert_close(norm(x), expected)


def test_decoder_layer_is_sandwich_residual():
    torch.manual_seed(0)
    config = get_plamo_config("plamo-2-tiny")
    layer = perturb_norm_weights(DecoderLayer(config, 1).double())  # type: ignore[arg-type]
    x = torch.randn(1, 5, 64, dtype=torch.float64)
    positions = torch.arange(5)[None]
    mixed, _ = layer.mixer(layer.pre_mixer_norm(x), positions)
    h = x + layer.post_mixer_norm(mixed)
    expected = h + layer.post_mlp_norm(layer.mlp(layer.pre_mlp_norm(h)))
    out, _ = layer(x, TokenLayout(positions, None, None), None)
    torch.testing.assert_close(out, expected)


def test_attention_matches_reference_with_qk_norm_before_rope_and_one_kv_head():
    torch.manual_seed(0)
    config = get_plamo_config("plamo-2-tiny")
    attention = Attention(config, window=None).double()
    with torch.no_grad():
        attention.q_weight.normal_(1, 0.3)
        attention.k_weight.normal_(1, 0.3)
    assert attention.q_weight.shape == (4, 16) and attention.k_weight.shape == (1, 16)
    b, T, H, D = 2, 6, 4, 16
    x = torch.randn(b, T, 64, dtype=torch.float64)
    positions = torch.arange(T).expand(b, T)
    q, k, v = attention.qkv_proj(x).split([H * D, D, D], dim=-1)
    q, k, v = q.view(b, T, H, D).transpose(1, 2), k.view(b, T, 1, D).transpose(1, 2), v.view(b, T, 1, D).transpose(1, 2)

    def rms(t):
        return t / torch.sqrt(t.pow(2).mean(-1, keepdim=True) + config.rms_norm_eps)

    q = apply_rope(rms(q) * attention.q_weight[:, None], positions, 10_000.0)
    k = apply_rope(rms(k) * attention.k_weight[:, None], positions, 10_000.0)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(D)  # the one key head broadcasts over all query heads
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    expected = attention.o_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, T, H * D))
    out, _ = attention(x, positions)
    assert relative_error(out, expected) < 1e-12


def test_rope_rotates_half_pairs():
    x = torch.zeros(1, 1, 2, 4, dtype=torch.float64)
    x[..., 0] = 1.0  # pairs (0, 2) and (1, 3); frequencies 1 and 1/100 for D = 4
    out = apply_rope(x, torch.tensor([[0, 1]]), 10_000.0)
    torch.testing.assert_close(out[0, 0, 0], x[0, 0, 0])
    torch.testing.assert_close(out[0, 0, 1], torch.tensor([math.cos(1), 0, math.sin(1), 0], dtype=torch.float64))


def test_sliding_window_hides_keys_outside_the_window():
    torch.manual_seed(0)
    config = get_plamo_config("plamo-2-tiny")
    window = Attention(config, window=4).double()
    full = Attention(config, window=None).double()
    full.load_state_dict(window.state_dict())
    x = torch.randn(1, 10, 64, dtype=torch.float64)
    positions = torch.arange(10)[None]
    changed = x.clone()
    changed[0, 5] += 1.0  # position 9 sees 6..9 through a window of 4
    for module, should_change in ((window, False), (full, True)):
        before, _ = module(x, positions)
        after, _ = module(changed, positions)
        assert torch.allclose(before[0, 9], after[0, 9]) is not should_change
    before, _ = window(x, positions)
    after, _ = window(changed, positions)
    assert not torch.allclose(before[0, 8], after[0, 8])  # 5 is inside 8's window


def test_mlp_is_fused_swiglu():
    torch.manual_seed(0)
    mlp = MLP(get_plamo_config("plamo-2-tiny")).double()
    x = torch.randn(3, 64, dtype=torch.float64)
    gate, up = mlp.gate_up_proj.weight[:128], mlp.gate_up_proj.weight[128:]
    torch.testing.assert_close(mlp(x), (F.silu(x @ gate.T) * (x @ up.T)) @ mlp.down_proj.weight.T)


def test_no_biases_tied_embeddings_and_normal_init():
    torch.manual_seed(0)
    model = create_plamo("plamo-2-7m")
    names = [name for name, _ in model.named_parameters()]
    assert not any(name.endswith("bias") and "dt_bias" not in name for name in names)
    assert model.lm_head is None and model.output_weight is model.model.embed_tokens.weight
    assert "lm_head.weight" not in names
    for weight in (model.model.embed_tokens.weight, model.model.layers.layers[0].mlp.gate_up_proj.weight):
        assert weight.mean().abs() < 1e-3 and abs(weight.std().item() - 0.02) < 1e-3
    untied = create_plamo("plamo-2-tiny", tie_word_embeddings=False)
    assert untied.output_weight is untied.lm_head.weight


def test_mamba_parameter_init():
    mixer = create_plamo("plamo-2-tiny").model.layers.layers[0].mixer
    torch.testing.assert_close(mixer.A_log, torch.log(torch.arange(1.0, 9.0)))
    assert torch.equal(mixer.D, torch.ones(8))
    dt = F.softplus(mixer.dt_bias)
    assert ((dt > 1e-3 * 0.999) & (dt < 0.1 * 1.001)).all()
    assert mixer.in_proj.weight.shape == (2 * 8 * 16, 64) and mixer.bcdt_proj.weight.shape == (16 + 16 + 64, 128)
    assert mixer.conv1d.weight.shape == (128, 1, 4) and mixer.conv1d.bias is None


def test_optimizer_groups_skip_decay_on_norms_and_ssm_parameters():
    model = create_plamo("plamo-2-tiny", device="meta")
    decay, no_decay = model.optimizer_param_groups(0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)].rsplit(".", 1)[-1] for p in no_decay["params"]}
    assert no_decay_names == {"weight", "A_log", "D", "dt_bias", "dt_norm_weight", "B_norm_weight",
                              "C_norm_weight", "q_weight", "k_weight"}  # fmt: skip
    assert len(no_decay["params"]) == 17 + 2 * 6 + 2 * 2  # 4 x 4 sandwich + final norm; Mamba; QK-norm
    assert len(decay["params"]) == 1 + 2 * 5 + 2 * 2 + 4 * 2  # embedding; Mamba, attention and MLP matrices
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)
    assert all(p.dim() >= 2 for p in decay["params"])


def test_forward_backward_at_init():
    torch.manual_seed(0)
    model = create_plamo("plamo-2-tiny")
    ids = torch.randint(0, 256, (2, 33))
    out = model(ids[:, :-1], ids[:, 1:])
    assert out.logits.shape == (2, 32, 256) and out.z_loss is None
    assert abs(out.loss.item() - math.log(256)) < 0.1  # small init: near-uniform predictions
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_z_loss_is_coef_times_mean_squared_log_partition():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11, dtype=torch.float64)
    targets = torch.randint(0, 11, (2, 5))
    targets[0, 0] = -100
    loss, z_loss = causal_lm_loss(logits, targets, 1e-4)
    valid = targets != -100
    expected_z = 1e-4 * torch.logsumexp(logits, -1)[valid].pow(2).mean()
    torch.testing.assert_close(z_loss, expected_z)
    torch.testing.assert_close(loss, F.cross_entropy(logits[valid], targets[valid]) + expected_z)
    assert causal_lm_loss(logits, targets)[1] is None


def test_model_z_loss_option_uses_default_coefficient():
    config = get_plamo_config("plamo-2-tiny", z_loss=True)
    assert config.z_loss_coef == 1e-4
    torch.manual_seed(0)
    model = create_plamo(config)
    ids = torch.randint(0, 256, (1, 9))
    out = model(ids, ids)
    _, expected = causal_lm_loss(out.logits, ids, 1e-4)
    torch.testing.assert_close(out.z_loss, expected)


def test_last_logits_only():
    torch.manual_seed(0)
    model = create_plamo("plamo-2-tiny").eval()
    ids = torch.randint(0, 256, (2, 7))
    torch.testing.assert_close(model(ids, last_logits_only=True).logits, model(ids).logits[:, -1:])


@pytest.mark.parametrize("name", PLAMO_CONFIGS.names())
def test_every_registered_config_builds_on_meta(name):
    model = create_plamo(name, device="meta")
    assert model.output_weight.is_meta
    assert model.num_parameters() > 0
    assert model.flops_per_token(model.config.attention_window_size) > 6 * model.num_parameters()
