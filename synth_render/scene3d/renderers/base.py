"""What a 3D scene renderer returns, the base class, and the registry renderers register themselves in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from lab.core.registry import Registry
from synth_render.scene3d.scene import Scene

INSTALL_HINT = "pip install 'synth-transfer-lab[render]'"


class RendererUnavailableError(RuntimeError):
    """An optional renderer whose package is not installed; the message says what to install."""


@dataclass
class RenderOutput:
    """One rendered view and its pixel-exact annotations (row 0 = top of the image).

    depth: z-depth along the camera's forward axis in metres, +inf where the ray hits nothing.
    normals: world-space unit normals of the hit surface, facing the camera; 0 where nothing is hit.
    instance: 0 = room or nothing, k = scene.objects[k - 1]. semantic: 0 = background, class_id + 1.
    """

    rgb: np.ndarray  # uint8 [H, W, 3]
    depth: np.ndarray  # float32 [H, W]
    normals: np.ndarray  # float32 [H, W, 3]
    instance: np.ndarray  # int32 [H, W]
    semantic: np.ndarray  # int32 [H, W]

    def __post_init__(self) -> None:
        height, width = self.depth.shape
        expected = {
            "rgb": ((height, width, 3), np.uint8),
            "depth": ((height, width), np.float32),
            "normals": ((height, width, 3), np.float32),
            "instance": ((height, width), np.int32),
            "semantic": ((height, width), np.int32),
        }
        for name, (shape, dtype) in expected.items():
            array = getattr(self, name)
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(
                    f"RenderOutput.{name} must be {np.dtype(dtype).name} {shape}, got {array.dtype} {array.shape}"
                )


class SceneRenderer:
    """Base class: `render` one scene; `render_batch` renders many (renderers that can batch override it)."""

    name = "base"

    def render(self, scene: Scene, width: int, height: int) -> RenderOutput:
        raise NotImplementedError

    def render_batch(self, scenes: Sequence[Scene], width: int, height: int) -> list[RenderOutput]:
        check_size(width, height)
        return [self.render(scene, width, height) for scene in scenes]


def check_size(width: int, height: int) -> None:
    if int(width) != width or int(height) != height or width < 1 or height < 1:
        raise ValueError(f"image size must be positive integers, got width={width!r}, height={height!r}")


# an engine is one module in this package with `@SCENE_RENDERERS.register("name")`; optional packages (mitsuba,
# bpy) are imported only when the engine is constructed, so discovering the package never needs them
SCENE_RENDERERS: Registry[type[SceneRenderer]] = Registry("scene renderer", discover="synth_render.scene3d.renderers")


def create_scene_renderer(name: str, **options: Any) -> SceneRenderer:
    """Build the scene renderer registered as `name`; unknown names list the valid ones."""
    return SCENE_RENDERERS.get(name)(**options)
