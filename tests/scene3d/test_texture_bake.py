"""Baking solid textures into meshes (used by the Mitsuba renderer): exact for checker/stripes, fine for noise."""

from __future__ import annotations

import numpy as np
import pytest

from synth_render.scene3d.geometry import WorldMesh
from synth_render.scene3d.renderers.texture_bake import bake_texture, slice_triangles, subdivide_triangles
from synth_render.scene3d.scene import Material, TextureSpec
from synth_render.scene3d.textures import texture_weight


def areas_and_normals(triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cross = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    return np.linalg.norm(cross, axis=1) / 2, cross


def test_slicing_keeps_area_and_winding_and_leaves_no_piece_across_a_plane():
    triangles = np.random.default_rng(0).uniform(-1, 1, size=(40, 3, 3))
    direction = np.array([0.3, 0.5, -0.2]) / np.linalg.norm([0.3, 0.5, -0.2])
    pieces, parents = [], []
    for k, triangle in enumerate(triangles):  # one at a time, to know each piece's parent
        cut = slice_triangles(triangle[None], direction, 0.1, 0.25)
        pieces.append(cut)
        parents += [k] * len(cut)
    pieces = np.concatenate(pieces)
    assert np.isclose(areas_and_normals(pieces)[0].sum(), areas_and_normals(triangles)[0].sum())
    parent_normals = areas_and_normals(triangles)[1][parents]
    assert (np.sum(areas_and_normals(pieces)[1] * parent_normals, axis=1) > 0).all()
    level = pieces @ direction / 0.1 + 0.25
    assert (level.max(axis=1) - np.floor(level.min(axis=1) + 1e-9) <= 1 + 1e-7).all()


def test_subdivision_bounds_edges_and_keeps_area():
    triangles = np.random.default_rng(1).uniform(-1, 1, size=(10, 3, 3))
    pieces = subdivide_triangles(triangles, 0.2)
    edges = np.linalg.norm(pieces - np.roll(pieces, 1, axis=1), axis=2)
    assert edges.max() <= 0.2 + 1e-12
    assert np.isclose(areas_and_normals(pieces)[0].sum(), areas_and_normals(triangles)[0].sum())


@pytest.mark.parametrize("kind", ["checker", "stripes"])
def test_piecewise_constant_textures_bake_exactly(kind):
    texture = TextureSpec(kind=kind, color=(0.0, 0.0, 1.0), scale=0.3, seed=2)
    vertices = np.array([[0, 0, 0], [2, 0, 0], [2, 2, 0.5], [0, 2, 0.5]], dtype=np.float64)
    to_texture = np.diag([2.0, 2.0, 2.0, 1.0])
    to_texture[:3, 3] = [0.1, -0.2, 0.3]
    mesh = WorldMesh(1, 0, vertices, np.array([[0, 1, 2], [0, 2, 3]]), Material(color=(1.0, 0.0, 0.0), texture=texture),
                     to_texture)  # fmt: skip
    baked = bake_texture(mesh)
    assert baked.face_colors is not None and len(baked.faces) > 20
    triangles = baked.vertices[baked.faces] @ to_texture[:3, :3].T + to_texture[:3, 3]
    samples = np.random.default_rng(3).dirichlet([1, 1, 1], size=len(triangles))
    points = np.einsum("fk,fkd->fd", samples, triangles)  # a random point inside each piece
    expected = texture_weight(texture, points)
    assert np.array_equal(baked.face_colors[:, 2], expected)


def test_noise_is_coloured_per_vertex_and_untextured_meshes_are_untouched():
    faces = np.array([[0, 1, 2]])
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float64)
    noise = Material(texture=TextureSpec(kind="noise", scale=0.5))
    baked = bake_texture(WorldMesh(1, 0, vertices, faces, noise, np.eye(4)))
    assert baked.vertex_colors is not None and len(baked.vertex_colors) == len(baked.vertices) > 3
    plain = bake_texture(WorldMesh(1, 0, vertices, faces, Material(color=(0.2, 0.3, 0.4)), np.eye(4)))
    assert np.array_equal(plain.faces, faces) and np.allclose(plain.face_colors, [[0.2, 0.3, 0.4]])
