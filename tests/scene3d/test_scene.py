"""The scene data and the seeded sampler: round trips, determinism, levels, validation, resting objects, camera."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lab.core.registry import UnknownNameError
from synth_render.scene3d import LEVELS, Scene, SceneObject, SceneSamplerConfig, sample_scene
from synth_render.scene3d.geometry import camera_basis, camera_rays, project_points, scene_meshes
from synth_render.scene3d.sampler import scene_sampler
from synth_render.scene3d.scene import Camera


@pytest.mark.parametrize("level", list(LEVELS))
def test_scene_round_trips_through_dict_and_json(level):
    scene = sample_scene(SceneSamplerConfig(level=level), seed=3, index=7)
    assert Scene.from_dict(scene.to_dict()) == scene
    assert Scene.from_json(scene.to_json()) == scene
    assert json.loads(scene.to_json()) == scene.to_dict()  # plain JSON types only
    assert scene.level == level and (scene.seed, scene.index) == (3, 7)


def test_sample_depends_only_on_seed_and_index():
    config = SceneSamplerConfig(level="lv7")
    forward = [sample_scene(config, 1, i) for i in range(4)]
    backward = [sample_scene(config, 1, i) for i in reversed(range(4))][::-1]
    assert forward == backward
    assert forward[0] != forward[1]
    assert sample_scene(config, 2, 0) != forward[0]


def test_levels_set_the_documented_knobs():
    lv0 = [sample_scene(SceneSamplerConfig(level="lv0"), 0, i) for i in range(20)]
    assert all(len(s.objects) == 1 for s in lv0)
    assert {o.class_name for s in lv0 for o in s.objects} <= set(
        scene_sampler(SceneSamplerConfig(level="lv0")).class_names
    )
    assert len(scene_sampler(SceneSamplerConfig(level="lv0")).class_names) == 10
    assert len({s.lights for s in lv0}) == 1 and len({s.room for s in lv0}) == 1  # fixed light and walls
    assert len({o.material for s in lv0 for o in s.objects}) == 1
    lv7 = [sample_scene(SceneSamplerConfig(level="lv7"), 0, i) for i in range(5)]
    assert all(len(s.objects) == 10 for s in lv7)
    assert len({s.lights for s in lv7}) == 5 and len({s.room for s in lv7}) == 5
    assert len(scene_sampler(SceneSamplerConfig(level="lv7")).class_names) >= 50
    explicit = scene_sampler(SceneSamplerConfig(level="lv7", objects_per_scene=[2, 3], light="fixed")).config
    assert explicit.objects_per_scene == [2, 3] and explicit.light == "fixed" and explicit.walls == "random"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"object_radius": [-0.1, 0.1]}, "object_radius"),
        ({"objects_per_scene": [0, 3]}, "objects_per_scene"),
        ({"class_sets": []}, "no object classes"),
        ({"classes": ["blob"]}, "unknown object class 'blob'; valid: cube"),
        ({"class_sets": ["shiny"]}, "unknown class set 'shiny'"),
        ({"level": "lv9"}, "unknown scene level 'lv9'; valid: lv0"),
        ({"light": "dim"}, "light must be one of fixed, random"),
        ({"mesh_folders": ["/no/such/folder"]}, "does not exist"),
        ({"camera_radius": [1.0, 2.0]}, "room_half_size"),
        ({"fov_deg": 0.0}, "fov_deg"),
    ],
)
def test_invalid_config_fails_before_sampling(overrides, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        sample_scene(SceneSamplerConfig(**overrides), 0, 0)


def test_unknown_shape_kind_lists_the_valid_kinds():
    scene = sample_scene(SceneSamplerConfig(level="lv0"), 0, 0)
    bad = Scene(objects=(SceneObject("blob", 0, "blob", {}),), camera=scene.camera)
    with pytest.raises(UnknownNameError, match="unknown shape kind 'blob'; valid names: box, capsule"):
        scene_meshes(bad)


def test_objects_rest_on_the_floor_without_overlapping():
    for index in range(6):
        scene = sample_scene(SceneSamplerConfig(level="lv7"), 5, index)
        meshes = [m for m in scene_meshes(scene) if m.instance_id > 0]
        assert len(meshes) == 10
        footprints = []
        for mesh in meshes:
            assert mesh.vertices[:, 2].min() == pytest.approx(0.0, abs=1e-9)
            assert np.all(np.abs(mesh.vertices[:, :2]) < scene.room.half_x)
            lo, hi = mesh.vertices[:, :2].min(0), mesh.vertices[:, :2].max(0)
            centre = (lo + hi) / 2
            footprints.append((centre, np.linalg.norm(mesh.vertices[:, :2] - centre, axis=1).max()))
        for a in range(len(footprints)):
            for b in range(a):
                gap = np.linalg.norm(footprints[a][0] - footprints[b][0]) - footprints[a][1] - footprints[b][1]
                assert gap > 0


def test_camera_sits_on_the_shell_and_sees_the_objects():
    config = SceneSamplerConfig(level="lv5")
    for index in range(20):
        scene = sample_scene(config, 0, index)
        camera = scene.camera
        offset = np.subtract(camera.position, camera.look_at)
        distance = np.linalg.norm(offset)
        assert 0.5 - 1e-9 <= distance <= 1.0 + 1e-9
        assert 5 - 1e-6 <= np.rad2deg(np.arcsin(offset[2] / distance)) <= 89 + 1e-6
        assert abs(camera.roll_deg) <= 45
        _, depth = project_points(camera, 64, 64, np.array([o.position for o in scene.objects]))
        assert np.all(depth > 0)


def test_camera_rays_and_projection_agree_and_roll_turns_the_image_counter_clockwise():
    camera = Camera(position=(1.0, 0.2, 0.5), look_at=(0.0, 0.0, 0.1), fov_deg=50, roll_deg=30)
    rays = camera_rays(camera, 8, 6)
    forward, right, up = camera_basis(camera)
    assert np.allclose(rays @ forward, 1.0)
    pixels, depth = project_points(camera, 8, 6, np.asarray(camera.position) + 2.0 * rays.reshape(-1, 3))
    j, i = np.meshgrid(np.arange(8) + 0.5, np.arange(6) + 0.5)
    assert np.allclose(pixels, np.stack([j.ravel(), i.ravel()], -1)) and np.allclose(depth, 2.0)
    flat = Camera(position=camera.position, look_at=camera.look_at, fov_deg=50, roll_deg=0)
    _, right0, up0 = camera_basis(flat)
    point = np.asarray(camera.look_at) + 0.1 * right0  # on the unrolled image's horizontal axis
    x, y = project_points(camera, 64, 64, point[None])[0][0]
    assert x > 32 and y < 32  # now up and to the right: turned counter-clockwise
    assert np.isclose(np.degrees(np.arctan2(32 - y, x - 32)), 30, atol=1e-6)
