"""Scene renderers: each module registers itself in SCENE_RENDERERS (which imports them all before its first
lookup); optional packages (mitsuba, bpy) are imported only when such a renderer is constructed, so importing this
package never needs them."""

from __future__ import annotations

from synth_render.scene3d.renderers.base import (
    SCENE_RENDERERS,
    RendererUnavailableError,
    RenderOutput,
    SceneRenderer,
    create_scene_renderer,
)

__all__ = ["SCENE_RENDERERS", "RenderOutput", "RendererUnavailableError", "SceneRenderer", "create_scene_renderer"]
