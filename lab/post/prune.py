"""Structured pruning of a trained PLaMo: measure what matters on a calibration batch, keep that, drop the rest.

Width: MLP channels, attention heads (query heads, and key/value heads with their query groups) and Mamba heads;
depth: whole layers. Every layer keeps the same counts (the config holds one number for all), but each layer
keeps its own most important channels and heads. Importance is measured on real activations:
- an MLP channel: mean |activation| at the input of down_proj times the norm of its down_proj column (the
  expected size of what the channel writes into the residual stream);
- an attention or Mamba head: mean norm of its output after o_proj / out_proj (its own columns only);
- a layer unit: 1 - mean cosine similarity of the residual stream before and after it ("block influence").
Depth is pruned in units of `mamba_step` consecutive layers: a layer's kind (Mamba or attention) is fixed by
its index, so dropping a Mamba layer alone would turn the following attention layer into a Mamba one. A
trailing partial unit is always kept. The smaller model is initialised from the kept rows and columns of every
affected tensor; everything else is copied, so pruning to the same shape gives the same model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from lab.models.plamo.config import PlamoConfig, PlamoConfigError
from lab.models.plamo.model import PlamoForCausalLM

LAYER_PREFIX = "model.layers.layers."
WIDTH_FIELDS = ("intermediate_size", "num_attention_heads", "num_key_value_heads", "mamba_num_heads")


class PruneTargetError(ValueError):
    """A pruning target that does not fit the model's shape."""


@dataclass
class PruneTarget:
    """The smaller shape; None keeps that size. Hidden size is never pruned (it is the residual stream)."""

    num_hidden_layers: int | None = None
    intermediate_size: int | None = None
    num_attention_heads: int | None = None
    num_key_value_heads: int | None = None
    mamba_num_heads: int | None = None

    def resolve(self, config: PlamoConfig) -> dict[str, int]:
        return {name: getattr(config, name) if getattr(self, name) is None else getattr(self, name)
                for name in ("num_hidden_layers", *WIDTH_FIELDS)}


def removable_units(config: PlamoConfig) -> list[list[int]]:
    """The layer units depth pruning may drop: each `mamba_step` consecutive layers (a trailing rest never)."""
    step = config.mamba_step
    return [list(range(u * step, (u + 1) * step)) for u in range(config.num_hidden_layers // step)]


def check_target(config: PlamoConfig, target: PruneTarget) -> PlamoConfig:
    """The pruned config (full attention as in the original layers 0..n-1), or a PruneTargetError naming the key."""
    sizes = target.resolve(config)
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PruneTargetError(f"prune target {name} must be a positive integer, got {value!r}"
                                   + (" (a model needs at least one layer)" if name == "num_hidden_layers" else ""))
        if value > getattr(config, name):
            raise PruneTargetError(f"prune target {name}={value} exceeds the model's {getattr(config, name)}: "
                                   "pruning can only shrink")
    heads, kv_heads = sizes["num_attention_heads"], sizes["num_key_value_heads"]
    if heads % kv_heads:
        raise PruneTargetError(f"prune target num_attention_heads={heads} is not divisible by "
                               f"num_key_value_heads={kv_heads}")
    group, old_group = heads // kv_heads, config.num_attention_heads // config.num_key_value_heads
    if group > old_group:
        raise PruneTargetError(
            f"prune target needs {group} query heads per key/value head ({heads}/{kv_heads}) but the model's groups "
            f"hold {old_group} ({config.num_attention_heads}/{config.num_key_value_heads}): keep more key/value heads")
    removed = config.num_hidden_layers - sizes["num_hidden_layers"]
    if removed % config.mamba_step:
        units = len(removable_units(config)) + (config.num_hidden_layers % config.mamba_step != 0)
        valid = [config.num_hidden_layers - k * config.mamba_step for k in range(units)]
        raise PruneTargetError(
            f"prune target num_hidden_layers={sizes['num_hidden_layers']} removes {removed} layers; layers go in units "
            f"of mamba_step={config.mamba_step} (a layer's kind is fixed by its index): valid values {valid}")
    try:
        return config.replace(**sizes, full_attention_idx=())
    except PlamoConfigError as error:
        raise PruneTargetError(f"pruned config is invalid: {error}") from None


@dataclass
class Importance:
    """Per layer: MLP channel scores (intermediate,), attention and Mamba head scores; per unit: block influence."""

    mlp: dict[int, torch.Tensor] = field(default_factory=dict)
    attention: dict[int, torch.Tensor] = field(default_factory=dict)
    mamba: dict[int, torch.Tensor] = field(default_factory=dict)
    units: torch.Tensor = field(default_factory=lambda: torch.zeros(0))

    def to_dict(self) -> dict[str, Any]:
        def plain(scores: dict[int, torch.Tensor]) -> dict[str, list[float]]:
            return {str(k): [round(float(x), 6) for x in v] for k, v in scores.items()}

        return {"mlp": plain(self.mlp), "attention": plain(self.attention), "mamba": plain(self.mamba),
                "units": [round(float(x), 6) for x in self.units]}


def _head_output_norms(inputs: torch.Tensor, weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Sum over tokens of ||W[:, head] a_head|| per head: inputs (b, T, heads*D), weight (d, heads*D)."""
    b, T, width = inputs.shape
    a = inputs.reshape(b * T, heads, width // heads).float()
    w = weight.float().reshape(weight.shape[0], heads, width // heads)
    return torch.einsum("nhk,dhk->nhd", a, w).norm(dim=-1).sum(0)


@torch.no_grad()
def measure_importance(model: PlamoForCausalLM, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]]
                       ) -> Importance:
    """Score channels, heads and layer units on `batches` of (input_ids, document_ids or None)."""
    config = model.config
    device = next(model.parameters()).device
    layers = list(model.model.layers.layers)
    totals: dict[tuple[str, int], torch.Tensor] = {}
    hidden: dict[int, torch.Tensor] = {}
    hooks = []

    def add(key: tuple[str, int], value: torch.Tensor) -> None:
        totals[key] = totals[key] + value if key in totals else value

    for index, layer in enumerate(layers):
        down = layer.mlp.down_proj
        hooks.append(down.register_forward_pre_hook(
            lambda m, args, i=index: add(("mlp", i), args[0].float().abs().flatten(0, -2).sum(0)
                                         * m.weight.float().norm(dim=0))))
        if layer.kind == "mamba":
            out, heads, kind = layer.mixer.out_proj, config.mamba_num_heads, "mamba"
        else:
            out, heads, kind = layer.mixer.o_proj, config.num_attention_heads, "attention"
        hooks.append(out.register_forward_pre_hook(
            lambda m, args, i=index, h=heads, k=kind: add((k, i), _head_output_norms(args[0], m.weight, h))))
        hooks.append(layer.register_forward_pre_hook(lambda m, args, i=index: hidden.__setitem__(i, args[0])))
    hooks.append(layers[-1].register_forward_hook(
        lambda m, args, out: hidden.__setitem__(len(layers), out[0])))
    units = removable_units(config)
    influence = torch.zeros(len(units), dtype=torch.float64)
    tokens = 0
    was_training = model.training
    model.eval()
    try:
        for input_ids, document_ids in batches:
            hidden.clear()
            model(input_ids.to(device), document_ids=None if document_ids is None else document_ids.to(device))
            for u, unit in enumerate(units):
                compute = torch.promote_types(hidden[unit[0]].dtype, torch.float32)
                before, after = hidden[unit[0]].to(compute), hidden[unit[-1] + 1].to(compute)
                influence[u] += (1 - F.cosine_similarity(before, after, dim=-1)).sum().double()
            tokens += input_ids.numel()
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    if tokens == 0:
        raise ValueError("measure_importance needs at least one calibration batch")
    importance = Importance(units=(influence / tokens).float())
    for (kind, index), total in totals.items():
        getattr(importance, kind)[index] = (total / tokens).cpu()
    return importance


@dataclass(frozen=True)
class PrunePlan:
    """What survives: the pruned config, kept layers (old indices, in order) and, per old layer, kept indices."""

    config: PlamoConfig
    layers: tuple[int, ...]
    mlp: dict[int, torch.Tensor]
    query_heads: dict[int, torch.Tensor]
    kv_heads: dict[int, torch.Tensor]
    mamba_heads: dict[int, torch.Tensor]

    def to_dict(self) -> dict[str, Any]:
        def plain(kept: dict[int, torch.Tensor]) -> dict[str, list[int]]:
            return {str(k): [int(x) for x in v] for k, v in kept.items()}

        return {"config": self.config.to_dict(), "layers": list(self.layers), "mlp": plain(self.mlp),
                "query_heads": plain(self.query_heads), "kv_heads": plain(self.kv_heads),
                "mamba_heads": plain(self.mamba_heads)}


def _top(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the `count` highest scores, in their original order (ties: the earlier index)."""
    order = torch.argsort(-scores.double(), stable=True)[:count]
    return torch.sort(order).values


def plan_pruning(config: PlamoConfig, importance: Importance, target: PruneTarget) -> PrunePlan:
    """Choose the kept layers, channels and heads by importance; the target is checked first."""
    pruned = check_target(config, target)
    units = removable_units(config)
    keep_units = _top(importance.units, len(units) - (config.num_hidden_layers - pruned.num_hidden_layers)
                      // config.mamba_step)
    layers = tuple(i for u in keep_units.tolist() for i in units[u]) + tuple(
        range(len(units) * config.mamba_step, config.num_hidden_layers))
    full = tuple(new for new, old in enumerate(layers) if old in config.full_attention_idx)
    pruned = pruned.replace(full_attention_idx=full)
    mlp, query, kv, mamba = {}, {}, {}, {}
    group = config.num_attention_heads // config.num_key_value_heads
    new_group = pruned.num_attention_heads // pruned.num_key_value_heads
    for old in layers:
        mlp[old] = _top(importance.mlp[old], pruned.intermediate_size)
        if config.layer_kind(old) == "mamba":
            mamba[old] = _top(importance.mamba[old], pruned.mamba_num_heads)
            continue
        scores = importance.attention[old].reshape(config.num_key_value_heads, group)
        kv[old] = _top(scores.sum(1), pruned.num_key_value_heads)
        query[old] = torch.cat([g * group + _top(scores[g], new_group) for g in kv[old].tolist()])
    return PrunePlan(pruned, layers, mlp, query, kv, mamba)


def _blocks(kept: torch.Tensor, size: int, offset: int = 0) -> torch.Tensor:
    """Row indices of the kept blocks of `size` rows each (head h owns rows h*size .. h*size+size-1)."""
    return (offset + kept[:, None] * size + torch.arange(size)).reshape(-1)


def _slice_layer(tensors: dict[str, torch.Tensor], config: PlamoConfig, plan: PrunePlan, old: int
                 ) -> dict[str, torch.Tensor]:
    """The layer's tensors (names relative to the layer) cut to the plan."""
    out = dict(tensors)
    channels, I = plan.mlp[old], config.intermediate_size
    out["mlp.gate_up_proj.weight"] = tensors["mlp.gate_up_proj.weight"][torch.cat([channels, I + channels])]
    out["mlp.down_proj.weight"] = tensors["mlp.down_proj.weight"][:, channels]
    D = config.head_dim
    if config.layer_kind(old) == "mamba":
        heads = plan.mamba_heads[old]
        width = _blocks(heads, D)
        out["mixer.in_proj.weight"] = tensors["mixer.in_proj.weight"][_blocks(heads, 2 * D)]  # per head: z then x
        out["mixer.conv1d.weight"] = tensors["mixer.conv1d.weight"][width]
        out["mixer.bcdt_proj.weight"] = tensors["mixer.bcdt_proj.weight"][:, width]
        out["mixer.out_proj.weight"] = tensors["mixer.out_proj.weight"][:, width]
        out["mixer.dt_proj.weight"] = tensors["mixer.dt_proj.weight"][heads]
        for name in ("mixer.dt_bias", "mixer.A_log", "mixer.D"):
            out[name] = tensors[name][heads]
        return out
    query, kv = plan.query_heads[old], plan.kv_heads[old]
    H, KV = config.num_attention_heads, config.num_key_value_heads
    rows = torch.cat([_blocks(query, D), _blocks(kv, D, H * D), _blocks(kv, D, (H + KV) * D)])
    out["mixer.qkv_proj.weight"] = tensors["mixer.qkv_proj.weight"][rows]
    out["mixer.o_proj.weight"] = tensors["mixer.o_proj.weight"][:, _blocks(query, D)]
    out["mixer.q_weight"] = tensors["mixer.q_weight"][query]
    out["mixer.k_weight"] = tensors["mixer.k_weight"][kv]
    return out


@torch.no_grad()
def apply_pruning(model: PlamoForCausalLM, plan: PrunePlan) -> PlamoForCausalLM:
    """A new model of `plan.config` holding copies of the kept weights (the original is left untouched)."""
    config = model.config
    state = model.state_dict()
    per_layer: dict[int, dict[str, torch.Tensor]] = {}
    new_state: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.startswith(LAYER_PREFIX):
            index, rest = name[len(LAYER_PREFIX):].split(".", 1)
            per_layer.setdefault(int(index), {})[rest] = tensor
        else:
            new_state[name] = tensor
    for new, old in enumerate(plan.layers):
        for rest, tensor in _slice_layer(per_layer[old], config, plan, old).items():
            new_state[f"{LAYER_PREFIX}{new}.{rest}"] = tensor
    with torch.device("meta"):
        pruned = PlamoForCausalLM(plan.config)
    pruned.load_state_dict({k: v.detach().clone().contiguous() for k, v in new_state.items()}, assign=True)
    return pruned


def prune_model(model: PlamoForCausalLM, target: PruneTarget,
                calibration: Iterable[tuple[torch.Tensor, torch.Tensor | None]]) -> tuple[PlamoForCausalLM, PrunePlan,
                                                                                         Importance]:
    """Check the target, measure importance on `calibration`, plan, and build the pruned model."""
    check_target(model.config, target)
    importance = measure_importance(model, calibration)
    plan = plan_pruning(model.config, importance, target)
    return apply_pruning(model, plan), plan, importance
