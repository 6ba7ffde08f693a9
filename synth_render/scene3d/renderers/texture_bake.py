"""Bake the procedural solid textures into mesh colours, for renderers without a shader language (Mitsuba).

Checker and stripes are piecewise constant, so cutting the triangles along the cell borders (planes in
texture space) and giving each piece the colour at its centroid reproduces `textures.evaluate_texture`
exactly. Noise is smooth: each triangle is split at its edge midpoints until its edges are shorter than a
quarter of the wavelength, and coloured per vertex, which the renderer interpolates linearly (close, not
exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synth_render.scene3d.geometry import WorldMesh
from synth_render.scene3d.textures import CELL_OFFSET, evaluate_texture, stripe_direction

NOISE_EDGES_PER_SCALE = 4
MAX_SUBDIVISIONS = 6
_MAX_PASSES = 10_000
_EPS = 1e-9
_AXES = np.eye(3)


@dataclass
class BakedMesh:
    """A triangle soup in world coordinates with either one colour per face or one per vertex (linear RGB)."""

    vertices: np.ndarray  # float64 [V, 3]
    faces: np.ndarray  # int64 [F, 3]
    face_colors: np.ndarray | None = None  # float64 [F, 3]
    vertex_colors: np.ndarray | None = None  # float64 [V, 3]


def slice_triangles(triangles: np.ndarray, direction: np.ndarray, spacing: float, offset: float) -> np.ndarray:
    """Cut triangles [F, 3, 3] along the planes `p . direction / spacing + offset = integer`; no piece crosses one.

    Each pass cuts every crossing triangle at its lowest crossed plane into three (winding kept), so the
    number of passes is the largest number of planes one triangle spans.
    """
    done: list[np.ndarray] = []
    todo = np.asarray(triangles, dtype=np.float64)
    for _ in range(_MAX_PASSES):
        if len(todo) == 0:
            break
        level = todo @ direction / spacing + offset  # [F, 3]
        cut = np.floor(level.min(axis=1) + _EPS) + 1  # a vertex on a plane belongs to the cell above it
        crossing = level.max(axis=1) > cut + _EPS
        done.append(todo[~crossing])
        todo, level, cut = todo[crossing], level[crossing], cut[crossing]
        if len(todo) == 0:
            break
        below = level < cut[:, None] - _EPS
        lone_below = below.sum(axis=1) == 1
        lone = np.where(lone_below, np.argmax(below, axis=1), np.argmax(~below, axis=1))
        order = (lone[:, None] + np.arange(3)) % 3  # the lone vertex first, cyclic order kept
        rows = np.arange(len(todo))[:, None]
        tri, lev = todo[rows, order], level[rows, order]
        a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
        t_ab = ((cut - lev[:, 0]) / (lev[:, 1] - lev[:, 0]))[:, None]
        t_ac = ((cut - lev[:, 0]) / (lev[:, 2] - lev[:, 0]))[:, None]
        ab, ac = a + t_ab * (b - a), a + t_ac * (c - a)
        todo = np.concatenate([np.stack([a, ab, ac], 1), np.stack([ab, b, c], 1), np.stack([ab, c, ac], 1)])
        area = np.linalg.norm(np.cross(todo[:, 1] - todo[:, 0], todo[:, 2] - todo[:, 0]), axis=1)
        todo = todo[area > 1e-14]
    else:
        raise RuntimeError("slice_triangles did not converge")
    return np.concatenate(done) if done else np.zeros((0, 3, 3))


def subdivide_triangles(triangles: np.ndarray, max_edge: float) -> np.ndarray:
    """Split triangles [F, 3, 3] 1 -> 4 at edge midpoints until every edge is at most `max_edge` long
    (at most MAX_SUBDIVISIONS times); winding kept."""
    done: list[np.ndarray] = []
    todo = np.asarray(triangles, dtype=np.float64)
    for _ in range(MAX_SUBDIVISIONS):
        edges = np.linalg.norm(todo - np.roll(todo, 1, axis=1), axis=2).max(axis=1)
        done.append(todo[edges <= max_edge])
        todo = todo[edges > max_edge]
        if len(todo) == 0:
            break
        a, b, c = todo[:, 0], todo[:, 1], todo[:, 2]
        ab, bc, ca = (a + b) / 2, (b + c) / 2, (c + a) / 2
        todo = np.concatenate([np.stack(t, 1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))])
    return np.concatenate(done + [todo])


def _transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def bake_texture(mesh: WorldMesh) -> BakedMesh:
    """The mesh with its material's texture baked into colours (a single face colour if untextured)."""
    material, texture = mesh.material, mesh.material.texture
    if texture is None:
        colors = np.broadcast_to(np.asarray(material.color, dtype=np.float64), (len(mesh.faces), 3)).copy()
        return BakedMesh(mesh.vertices, mesh.faces, face_colors=colors)
    to_texture = mesh.texture_transform
    triangles = _transform(mesh.vertices, to_texture)[mesh.faces]
    if texture.kind == "checker":
        for axis in _AXES:
            triangles = slice_triangles(triangles, axis, texture.scale, CELL_OFFSET)
    elif texture.kind == "stripes":
        triangles = slice_triangles(triangles, stripe_direction(texture.seed), texture.scale, CELL_OFFSET)
    else:
        triangles = subdivide_triangles(triangles, texture.scale / NOISE_EDGES_PER_SCALE)
    points = triangles.reshape(-1, 3)
    vertices = _transform(points, np.linalg.inv(to_texture))
    faces = np.arange(len(points), dtype=np.int64).reshape(-1, 3)
    if texture.kind == "noise":
        return BakedMesh(vertices, faces, vertex_colors=evaluate_texture(material, points))
    return BakedMesh(vertices, faces, face_colors=evaluate_texture(material, triangles.mean(axis=1)))
