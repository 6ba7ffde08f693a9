"""The renderer registry: a renderer config's `name` picks its class here."""

from __future__ import annotations

import importlib
from typing import Any

from lab.registry import Registry

RENDERERS: Registry[Any] = Registry("renderer")
BUILTIN_MODULES = ("synth_render.digits", "synth_render.scene3d.writer")  # each registers its renderer on import


def create_renderer(config: Any) -> Any:
    """Build the renderer whose registered name is `config.name`."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    return RENDERERS.get(config.name)(config)
