"""Normals in the camera frame (the writer's default): x = image right, y = image up, z = towards the camera,
with the camera's roll; known surfaces on hand-built views, and facing/unit checks on sampled scenes."""

from __future__ import annotations

import numpy as np
import pytest

from synth_render.scene3d.geometry import camera_frame_matrix, camera_frame_normals
from synth_render.scene3d.sampler import SceneSamplerConfig
from synth_render.scene3d.scene import Camera, Scene
from synth_render.scene3d.writer import Scene3DGenerator, Scene3DRendererConfig

SIZE = 24


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def written(scene: Scene, **overrides) -> dict:
    """The writer's sample for a hand-built scene (the torch engine, SIZE x SIZE)."""
    generator = Scene3DGenerator(Scene3DRendererConfig(width=SIZE, height=SIZE, **overrides))
    generator.scene = lambda index: scene
    return generator(0)


@pytest.mark.parametrize("roll", [0.0, 30.0, -70.0])
def test_the_floor_seen_from_straight_above_points_at_the_camera(roll):
    camera = Camera(position=(0.2, -0.1, 1.0), look_at=(0.2, -0.1, 0.0), roll_deg=roll)
    sample = written(Scene(objects=(), camera=camera))
    assert sample["json"]["normals_frame"] == "camera"
    assert np.isfinite(sample["depth.npy"]).all()  # only floor in view
    np.testing.assert_allclose(sample["normals.npy"].reshape(-1, 3), np.tile([0, 0, 1], (SIZE * SIZE, 1)), atol=1e-5)


@pytest.mark.parametrize("roll", [0.0, 90.0, -35.0])
def test_x_and_y_follow_the_rolled_image(roll):
    """A level camera facing the +x wall: the wall is (0, 0, 1); the floor's normal (world up) is image up
    turned by the roll, (-sin r, cos r, 0), and points from the floor's pixels towards the image centre."""
    camera = Camera(position=(0.0, 0.0, 0.3), look_at=(1.0, 0.0, 0.3), roll_deg=roll)
    normals = written(Scene(objects=(), camera=camera))["normals.npy"]
    r = np.deg2rad(roll)
    floor = np.isclose(normals, [-np.sin(r), np.cos(r), 0], atol=1e-5).all(-1)
    wall = np.isclose(normals, [0, 0, 1], atol=1e-5).all(-1)
    assert floor.sum() >= SIZE and wall.sum() >= SIZE and (floor | wall).all()
    rows, cols = np.nonzero(floor)
    image_xy = np.stack([cols + 0.5 - SIZE / 2, SIZE / 2 - rows - 0.5], -1).mean(0)  # x right, y up
    assert image_xy @ [-np.sin(r), np.cos(r)] < -SIZE / 8


def test_the_frame_is_a_right_handed_rotation_of_the_world_frame():
    for roll in (0.0, 40.0, -170.0):
        camera = Camera(position=(0.7, -0.4, 0.5), look_at=(0.0, 0.1, 0.05), roll_deg=roll)
        matrix = camera_frame_matrix(camera)
        np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(matrix) == pytest.approx(1.0)
    assert (camera_frame_normals(np.zeros((2, 2, 3)), camera) == 0).all()


def test_sampled_surfaces_face_the_camera_with_unit_camera_frame_normals():
    """Every hit pixel's normal faces its own ray; z > 0 (facing the optical axis) holds for all but
    grazing surfaces near the image border. Camera and world files differ by the camera's rotation."""
    sampler = SceneSamplerConfig(objects_per_scene=[4, 6])
    config = dict(level="lv5", width=SIZE, height=SIZE, sampler=sampler)
    camera_frame = Scene3DGenerator(Scene3DRendererConfig(**config))
    world_frame = Scene3DGenerator(Scene3DRendererConfig(**config, normals_frame="world"))
    half = np.tan(np.deg2rad(sampler.fov_deg) / 2)
    centres = (np.arange(SIZE) + 0.5) / SIZE * 2 - 1
    rays = np.stack(np.broadcast_arrays(centres[None, :] * half, -centres[:, None] * half, -1.0), -1)
    z = []
    for index in range(3):
        sample = camera_frame(index)
        normals, hit = sample["normals.npy"], np.isfinite(sample["depth.npy"])
        np.testing.assert_allclose(np.linalg.norm(normals[hit], axis=-1), 1.0, atol=1e-5)
        assert (normals[~hit] == 0).all()
        assert (np.sum(normals * rays, axis=-1)[hit] <= 1e-6).all()  # facing: normal . ray <= 0
        z.append(normals[hit][:, 2])
        world = world_frame(index)["normals.npy"]
        np.testing.assert_allclose(normals, camera_frame_normals(world, camera_frame.scene(index).camera), atol=1e-6)
    assert (np.concatenate(z) > 0).mean() >= 0.98


def test_an_unknown_frame_is_rejected():
    with pytest.raises(ValueError, match="normals_frame must be one of camera, world, got 'image'"):
        Scene3DRendererConfig(normals_frame="image").validate()
