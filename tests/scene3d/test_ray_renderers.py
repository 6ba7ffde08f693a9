"""The ray-traced scene engines (Blender Cycles, Mitsuba 3) against one contract: outputs, exact geometry on a
hand-built scene, textures. Engine-specific behaviour is in test_blender_renderer.py / test_mitsuba_renderer.py."""

from __future__ import annotations

import numpy as np
import pytest

from synth_render.scene3d.geometry import camera_rays
from synth_render.scene3d.renderers import create_scene_renderer
from synth_render.scene3d.sampler import SceneSamplerConfig, sample_scene
from synth_render.scene3d.scene import Camera, Material, Room, Scene, SceneObject, TextureSpec
from synth_render.scene3d.textures import texture_weight

SIZE = 48
CUBE_HALF = 0.2  # a unit-size box normalised to radius 1 has half-side 1/sqrt(3); scale = radius in metres


def cube_scene() -> Scene:
    """A 0.4 m cube on the floor at the origin, seen head-on from x = 1: its front face x = 0.2 is 0.8 m deep."""
    cube = SceneObject(class_name="cube", class_id=3, kind="box", params={}, position=(0.0, 0.0, CUBE_HALF),
                       scale=CUBE_HALF * np.sqrt(3))  # fmt: skip
    return Scene(objects=(cube,), camera=Camera(position=(1.0, 0.0, CUBE_HALF), look_at=(0.0, 0.0, CUBE_HALF)))


def floor_scene(kind: str) -> Scene:
    """Looking down at a red floor textured with blue (matte, so colour ratios show the texture weight)."""
    floor = Material(color=(1.0, 0.0, 0.0), roughness=1.0, specular=0.0,
                     texture=TextureSpec(kind=kind, color=(0.0, 0.0, 1.0), scale=0.2, seed=3))  # fmt: skip
    return Scene(objects=(), camera=Camera(position=(0.0, 0.0, 1.2), look_at=(0.3, 0.0, 0.0), fov_deg=50.0),
                 room=Room(floor=floor))  # fmt: skip


def blue_fraction(rgb: np.ndarray) -> np.ndarray:
    linear = (rgb.astype(np.float64) / 255) ** 2.2
    return linear[..., 2] / np.maximum(linear[..., 0] + linear[..., 2], 1e-6)


@pytest.fixture(scope="module", params=["blender", "mitsuba"])
def renderer(request):
    """One renderer per engine for the module: importing bpy or mitsuba takes about a second."""
    return create_scene_renderer(request.param, spp=4)


def test_outputs_have_contract_dtypes_and_shapes(renderer):
    scene = sample_scene(SceneSamplerConfig(level="lv5"), seed=0, index=1)
    out = renderer.render(scene, SIZE, SIZE + 8)
    assert out.rgb.dtype == np.uint8 and out.rgb.shape == (SIZE + 8, SIZE, 3)
    assert out.depth.dtype == np.float32 and out.normals.dtype == np.float32
    assert out.instance.dtype == np.int32 and out.semantic.dtype == np.int32
    assert set(np.unique(out.instance)) <= set(range(len(scene.objects) + 1))
    assert out.instance.max() >= 1 and out.rgb.std() > 5
    hit = np.isfinite(out.depth)
    assert np.allclose(np.linalg.norm(out.normals[hit], axis=-1), 1, atol=1e-4)
    classes = np.array([0] + [o.class_id + 1 for o in scene.objects])
    assert np.array_equal(out.semantic, classes[out.instance])


def test_depth_normals_and_masks_of_a_known_cube(renderer):
    out = renderer.render(cube_scene(), SIZE, SIZE)
    centre = (slice(SIZE // 2 - 4, SIZE // 2 + 4),) * 2
    assert np.allclose(out.depth[centre], 0.8, atol=1e-4)
    assert np.allclose(out.normals[centre], [1, 0, 0], atol=1e-4)
    assert (out.instance[centre] == 1).all() and (out.semantic[centre] == 4).all()
    # the top corners see the far wall x = -1.6, a plane facing the camera: z-depth exactly 2.6
    assert np.allclose(out.depth[0, [0, -1]], 2.6, atol=1e-4) and (out.instance[0, [0, -1]] == 0).all()
    rows = np.nonzero((out.instance == 1).any(axis=1))[0]  # the cube's top edge is 0.2 m above the eye, 0.8 m away
    expected_top = SIZE / 2 * (1 - np.tan(np.arctan2(0.2, 0.8)) / np.tan(np.deg2rad(20)))
    assert abs(rows.min() - expected_top) <= 1


def test_open_top_and_hidden_ceiling_give_no_hit(renderer):
    scene = Scene(objects=(), camera=Camera(position=(0.0, 0.0, 0.5), look_at=(0.0, 0.0, 1.5), fov_deg=20.0))
    out = renderer.render(scene, 16, 16)
    assert np.isinf(out.depth).all() and (out.normals == 0).all() and (out.instance == 0).all()


@pytest.mark.parametrize("kind", ["checker", "stripes", "noise"])
def test_textures_follow_the_reference_definition(renderer, kind):
    scene = floor_scene(kind)
    out = renderer.render(scene, SIZE, SIZE)
    points = np.asarray(scene.camera.position) + out.depth[..., None] * camera_rays(scene.camera, SIZE, SIZE)
    weight = texture_weight(scene.room.floor.texture, points.reshape(-1, 3)).reshape(SIZE, SIZE)
    blue = blue_fraction(out.rgb)
    if kind == "noise":
        assert np.corrcoef(weight.ravel(), blue.ravel())[0, 1] > 0.9
    else:  # anti-aliased cell borders blur a few pixels
        assert ((blue > 0.5) == (weight > 0.5)).mean() > 0.9
