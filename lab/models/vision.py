"""Vision models: timm names pass straight through to `timm.create_model` (never with hub weights)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache

import timm
import torch

from lab.core.registry import UnknownNameError


@dataclass
class ModelConfig:
    name: str = "test_resnet"
    in_chans: int = 1
    drop_rate: float = 0.0
    channels_last: bool = True  # faster convolutions on CPU


@lru_cache(maxsize=1)
def _timm_names() -> frozenset[str]:
    return frozenset(timm.list_models())


def check_model_name(name: str) -> None:
    """Fail early, before any work, on a model name timm does not know (with the closest matches)."""
    names = _timm_names()
    if name not in names:
        close = difflib.get_close_matches(name, sorted(names), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(
            f"unknown model {name!r}{hint} (valid names: any of the {len(names)} in timm.list_models())"
        )


def create_model(config: ModelConfig, num_classes: int) -> torch.nn.Module:
    check_model_name(config.name)
    model = timm.create_model(
        config.name, pretrained=False, in_chans=config.in_chans, num_classes=num_classes, drop_rate=config.drop_rate
    )
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
