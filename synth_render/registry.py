"""The renderer registry: a renderer config's `name` picks its class here."""

from __future__ import annotations

from typing import Any

from lab.registry import Registry

RENDERERS: Registry[Any] = Registry("renderer")


def create_renderer(config: Any) -> Any:
    """Build the renderer whose registered name is `config.name`."""
    return RENDERERS.get(config.name)(config)
