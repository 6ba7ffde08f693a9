"""The renderer registry: a renderer config's `name` picks its class here.

A renderer is one module anywhere in `synth_render` with one decorator, `@RENDERERS.register("name")`, on a class
that builds from its config and names its `lab render` job (`job = ...`, a `synth_render.dataset.RenderJob`
subclass); the registry imports the package's modules before its first lookup, so nothing else lists them.
"""

from __future__ import annotations

from typing import Any

from lab.core.registry import Registry

RENDERERS: Registry[Any] = Registry("renderer", discover="synth_render")


def create_renderer(config: Any) -> Any:
    """Build the renderer whose registered name is `config.name`."""
    return RENDERERS.get(config.name)(config)
