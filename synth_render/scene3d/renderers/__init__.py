"""Scene renderers: each module registers itself in SCENE_RENDERERS; optional packages (mitsuba, bpy) are
imported only when such a renderer is constructed, so importing this package never needs them."""

from __future__ import annotations

import importlib

from synth_render.scene3d.renderers.base import (
    SCENE_RENDERERS,
    RendererUnavailableError,
    RenderOutput,
    SceneRenderer,
    create_scene_renderer,
)

_MODULES = ("torch_renderer", "mitsuba_renderer", "blender_renderer")


def _register_builtin() -> None:
    for module in _MODULES:
        name = f"{__name__}.{module}"
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:  # the module exists but something it imports at top level does not
                raise


_register_builtin()

__all__ = ["SCENE_RENDERERS", "RenderOutput", "RendererUnavailableError", "SceneRenderer", "create_scene_renderer"]
