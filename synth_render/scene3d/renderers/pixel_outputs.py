"""Shared last step of the path tracers: linear RGB -> sRGB bytes, and hit positions/normals -> annotations."""

from __future__ import annotations

import numpy as np

from synth_render.scene3d.geometry import camera_basis
from synth_render.scene3d.scene import Scene


def srgb_uint8(linear: np.ndarray) -> np.ndarray:
    """Linear RGB -> 8-bit sRGB (the encoding every renderer's `rgb` uses)."""
    x = np.clip(np.nan_to_num(linear, nan=0.0), 0.0, 1.0)
    encoded = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.round(encoded * 255).astype(np.uint8)


def annotation_arrays(
    scene: Scene, position: np.ndarray, normal: np.ndarray, instance: np.ndarray, hit: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(depth, normals, instance, semantic) in the RenderOutput convention from world hit positions and normals."""
    camera_position = np.asarray(scene.camera.position, dtype=np.float64)
    forward = camera_basis(scene.camera)[0]
    view = position.astype(np.float64) - camera_position
    depth = np.where(hit, view @ forward, np.inf).astype(np.float32)
    normal = normal.astype(np.float64)
    normal = np.where((np.sum(normal * view, axis=-1) > 0)[..., None], -normal, normal)
    length = np.linalg.norm(normal, axis=-1, keepdims=True)
    normal = np.where(hit[..., None] & (length > 0), normal / np.maximum(length, 1e-12), 0.0).astype(np.float32)
    instance = np.where(hit, instance, 0).astype(np.int32)
    class_lookup = np.array([0] + [obj.class_id + 1 for obj in scene.objects], dtype=np.int32)
    return depth, normal, instance, class_lookup[instance]
