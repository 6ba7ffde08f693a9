"""Procedural solid textures: the reference (numpy) definition every renderer reproduces.

A texture is a function of a point in texture space (object space for objects, world metres for the room;
`geometry.WorldMesh.texture_transform` maps world points there). It returns a weight w in [0, 1] and the
surface colour is `(1 - w) * material.color + w * texture.color`. Renderers that cannot evaluate it in a
shader may bake it (per vertex of a subdivided mesh, or into an image) from `evaluate_texture`.
"""

from __future__ import annotations

import numpy as np

from synth_render.scene3d.scene import Material, TextureSpec

CELL_OFFSET = 0.25  # shifts cell borders off the room's planes (z = 0, walls) so they never flicker
NOISE_WAVES = 4


def stripe_direction(seed: int) -> np.ndarray:
    """The unit direction across which stripes alternate."""
    direction = np.random.default_rng([seed, 0]).normal(size=3)
    return direction / np.linalg.norm(direction)


def noise_waves(texture: TextureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Wave vectors [4, 3] (radians per unit) and phases [4] of the noise texture."""
    rng = np.random.default_rng([texture.seed, 1])
    directions = rng.normal(size=(NOISE_WAVES, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    frequencies = 2 * np.pi / texture.scale * rng.uniform(0.7, 1.3, size=(NOISE_WAVES, 1))
    return directions * frequencies, rng.uniform(0, 2 * np.pi, size=NOISE_WAVES)


def texture_weight(texture: TextureSpec, points: np.ndarray) -> np.ndarray:
    """Mixing weight in [0, 1] of `texture.color` at `points` [N, 3] (texture space)."""
    points = np.asarray(points, dtype=np.float64)
    if texture.kind == "checker":
        cells = np.floor(points / texture.scale + CELL_OFFSET).astype(np.int64)
        return (cells.sum(axis=1) % 2).astype(np.float64)
    if texture.kind == "stripes":
        bands = np.floor(points @ stripe_direction(texture.seed) / texture.scale + CELL_OFFSET).astype(np.int64)
        return (bands % 2).astype(np.float64)
    waves, phases = noise_waves(texture)
    return 0.5 + 0.5 * np.sin(points @ waves.T + phases).mean(axis=1)


def evaluate_texture(material: Material, points: np.ndarray) -> np.ndarray:
    """Linear RGB [N, 3] of `material` at `points` [N, 3] in texture space."""
    base = np.broadcast_to(np.asarray(material.color, dtype=np.float64), (len(points), 3))
    if material.texture is None:
        return base.copy()
    weight = texture_weight(material.texture, points)[:, None]
    return (1 - weight) * base + weight * np.asarray(material.texture.color, dtype=np.float64)
