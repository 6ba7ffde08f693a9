"""`lab model info NAME_OR_CONFIG`: parameter counts per block type and the layer pattern of a PLaMo 2 config.

The model is built on the meta device, so even the 1B config is counted instantly without allocating weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from lab.models.plamo.checkpoint import CheckpointError, load_config
from lab.models.plamo.config import PlamoConfig, PlamoConfigError
from lab.models.plamo.model import PlamoForCausalLM
from lab.models.plamo.registry import PLAMO_CONFIGS
from lab.core.registry import UnknownNameError

BLOCKS = ("embedding", "lm_head", "mamba", "attention", "mlp", "norms")


@dataclass
class ModelInfo:
    name: str
    config: PlamoConfig
    total: int
    by_block: dict[str, int]  # every name of BLOCKS; lm_head is 0 with tied embeddings
    layer_pattern: str  # "M A M F": Mamba, sliding-window attention, full attention
    flops_per_token: float  # training FLOPs per token at seq_len = attention_window_size

    def to_dict(self) -> dict:
        return {
            "name": self.name, "total_parameters": self.total, "parameters_by_block": self.by_block,
            "layer_pattern": self.layer_pattern, "flops_per_token": self.flops_per_token,
            "flops_seq_len": self.config.attention_window_size, "config": self.config.to_dict(),
        }  # fmt: skip


def resolve_config(name_or_path: str | Path) -> PlamoConfig:
    """A registered name, a config.json file, or a checkpoint directory holding one."""
    if str(name_or_path) in PLAMO_CONFIGS:
        return PLAMO_CONFIGS.get(str(name_or_path))
    if Path(name_or_path).exists():
        return load_config(name_or_path)
    raise UnknownNameError(
        f"{str(name_or_path)!r} is neither a PLaMo config name ({', '.join(PLAMO_CONFIGS.names())}) "
        "nor an existing config.json or checkpoint directory"
    )


def block_of(name: str, config: PlamoConfig) -> str:
    """Which block type a parameter name belongs to."""
    if name.startswith("model.embed_tokens."):
        return "embedding"
    if name.startswith("lm_head."):
        return "lm_head"
    if name.startswith("model.layers.layers."):
        index, part = name.removeprefix("model.layers.layers.").split(".", 2)[:2]
        if part == "mixer":
            return "mamba" if config.layer_kind(int(index)) == "mamba" else "attention"
        if part == "mlp":
            return "mlp"
    return "norms"


def model_info(name_or_path: str | Path) -> ModelInfo:
    config = resolve_config(name_or_path)
    with torch.device("meta"):
        model = PlamoForCausalLM(config)
    by_block = dict.fromkeys(BLOCKS, 0)
    for name, parameter in model.named_parameters():
        by_block[block_of(name, config)] += parameter.numel()
    total = sum(by_block.values())
    return ModelInfo(
        str(name_or_path), config, total, by_block, config.layer_pattern,
        model.flops_per_token(config.attention_window_size),
    )  # fmt: skip


def human_count(count: float) -> str:
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:.3g} {suffix}"
    return f"{count:g}"


def format_model_info(info: ModelInfo) -> str:
    config, kinds = info.config, info.config.layer_kinds
    layers = {
        "embedding": "tied with the output head" if config.tie_word_embeddings else "input only",
        "lm_head": "untied output head",
        "mamba": f"{kinds.count('mamba')} layers, {config.mamba_num_heads} heads, d_state {config.mamba_d_state}",
        "attention": f"{kinds.count('attention') + kinds.count('full_attention')} layers "
        f"({kinds.count('full_attention')} full), {config.num_attention_heads} q / {config.num_key_value_heads} kv "
        f"heads of {config.head_dim}",
        "mlp": f"{config.num_hidden_layers} x SwiGLU {config.hidden_size} -> {config.intermediate_size}",
        "norms": "sandwich RMSNorms and the final norm",
    }
    lines = [f"{info.name}: {info.total:,} parameters ({human_count(info.total)})"]
    for block in BLOCKS:
        count = info.by_block[block]
        if count or block != "lm_head":
            lines.append(f"  {block:<10}{count:>15,}  {100 * count / info.total:5.1f}%  {layers[block]}")
    lines.append(f"layer pattern: {info.layer_pattern}")
    window = config.attention_window_size
    lines.append(f"  M = Mamba, A = sliding-window attention (window {window}), F = full attention")
    lines.append(
        f"training FLOPs per token at {config.attention_window_size} tokens: {info.flops_per_token / 1e9:.3g} GFLOP"
    )
    return "\n".join(lines)


def add_model_info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", help=f"a PLaMo config name ({', '.join(PLAMO_CONFIGS.names())}), a config.json or a checkpoint dir"
    )
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")


def run_model_info(args: argparse.Namespace) -> int:
    """Print the info; 0 on success, 2 for an unknown name, 1 for an unreadable or invalid config."""
    try:
        info = model_info(args.model)
    except UnknownNameError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (CheckpointError, PlamoConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(info.to_dict(), indent=2) if args.json else format_model_info(info))
    return 0
