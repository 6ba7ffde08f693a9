"""The torch ray caster: exact depth and normals on known geometry, masks = objects, shadows, textures,
determinism and batching, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lab.core.registry import UnknownNameError
from synth_render.scene3d import (
    Camera,
    Light,
    Material,
    Scene,
    SceneObject,
    SceneSamplerConfig,
    TextureSpec,
    sample_scene,
)
from synth_render.scene3d.geometry import camera_rays, project_points, scene_meshes
from synth_render.scene3d.renderers import create_scene_renderer
from synth_render.scene3d.renderers.torch_renderer import (
    MATERIAL_WIDTH,
    MESH_ROWS,
    NO_HIT,
    _decode,
    _material_row,
    _texture_albedo,
    camera_views,
    image_planes,
    pack_scenes,
    rasterize,
    room_buffer,
)
from synth_render.scene3d.textures import evaluate_texture

HALF = 1 / np.sqrt(3)  # half side of the normalised cube (bounding radius 1)


@pytest.fixture(scope="module")
def renderer():
    torch.set_num_threads(1)
    return create_scene_renderer("torch")


def one_object_scene(kind, params, scale, camera, **kwargs):
    obj = SceneObject(
        "thing", 4, kind, params, position=(0.0, 0.0, scale * HALF if kind == "box" else scale), scale=scale, **kwargs
    )
    return Scene(objects=(obj,), camera=camera)


def test_cube_depth_and_normals_are_exact(renderer):
    scale = 0.1
    camera = Camera(position=(0.6, 0.0, scale * HALF), look_at=(0.0, 0.0, scale * HALF), fov_deg=30)
    out = renderer.render(one_object_scene("box", {"size": [1, 1, 1]}, scale, camera), 48, 40)
    face = out.instance == 1
    assert face.sum() > 100
    assert np.allclose(out.depth[face], 0.6 - scale * HALF, atol=1e-5)  # the face at x = +half, seen head on
    assert np.allclose(out.normals[face], [1, 0, 0], atol=1e-5)
    assert np.all(out.semantic[face] == 5) and np.all(out.semantic[~face] == 0)
    rows, cols = np.nonzero(face)  # the face's projected square, pixel centres inside it
    corners = np.array([[scale * HALF, y, z] for y in (-scale * HALF, scale * HALF) for z in (0, 2 * scale * HALF)])
    pixels, _ = project_points(camera, 48, 40, corners)
    assert cols.min() + 0.5 >= pixels[:, 0].min() and cols.max() + 0.5 <= pixels[:, 0].max()
    assert rows.min() + 0.5 >= pixels[:, 1].min() and rows.max() + 0.5 <= pixels[:, 1].max()


def test_sphere_depth_matches_the_analytic_sphere(renderer):
    scale = 0.1
    camera = Camera(position=(0.5, 0.0, scale), look_at=(0.0, 0.0, scale), fov_deg=40)
    out = renderer.render(one_object_scene("superquadric", {"e1": 1, "e2": 1}, scale, camera), 64, 64)
    centre = out.depth[31:33, 31:33]
    assert np.allclose(centre, 0.5 - scale, rtol=0.02)  # tessellated sphere: within 2 %
    radius_px = 32 * np.tan(np.arcsin(scale / 0.5)) / np.tan(np.deg2rad(20))
    assert (out.instance == 1).sum() == pytest.approx(np.pi * radius_px**2, rel=0.12)


def test_annotations_are_consistent_on_sampled_scenes(renderer):
    scenes = [sample_scene(SceneSamplerConfig(level="lv7"), 0, i) for i in range(3)]
    for scene, out in zip(scenes, renderer.render_batch(scenes, 40, 32)):
        assert out.rgb.shape == (32, 40, 3) and out.rgb.dtype == np.uint8
        hit = np.isfinite(out.depth)
        length = np.linalg.norm(out.normals, axis=-1)
        assert np.allclose(length[hit], 1, atol=1e-4) and np.all(length[~hit] == 0)
        directions = camera_rays(scene.camera, 40, 32)
        assert np.all((out.normals * directions).sum(-1)[hit] < 1e-6)  # facing the camera
        ids = np.unique(out.instance)
        assert set(ids) <= set(range(len(scene.objects) + 1)) and len(ids) > 2
        for k in ids[ids > 0]:
            obj = scene.objects[k - 1]
            assert np.all(out.semantic[out.instance == k] == obj.class_id + 1)
            mesh = scene_meshes(scene)[1 + k]
            pixels, _ = project_points(scene.camera, 40, 32, mesh.vertices)
            rows, cols = np.nonzero(out.instance == k)
            assert cols.min() + 0.5 >= pixels[:, 0].min() - 1e-3 and cols.max() + 0.5 <= pixels[:, 0].max() + 1e-3
            assert rows.min() + 0.5 >= pixels[:, 1].min() - 1e-3 and rows.max() + 0.5 <= pixels[:, 1].max() + 1e-3


def test_render_is_deterministic_and_batching_changes_nothing(renderer):
    scenes = [sample_scene(SceneSamplerConfig(level="lv6"), 9, i) for i in range(3)]
    batch = renderer.render_batch(scenes, 32, 32)
    small = create_scene_renderer("torch", max_batch_pixels=32 * 32).render_batch(scenes, 32, 32)
    for a, b in zip(batch, small):
        for name in ("rgb", "depth", "normals", "instance", "semantic"):
            assert np.array_equal(getattr(a, name), getattr(b, name))
    again = renderer.render(scenes[1], 32, 32)
    assert np.array_equal(again.rgb, batch[1].rgb) and np.array_equal(again.depth, batch[1].depth)


def test_analytic_room_matches_rasterised_room_triangles():
    scenes = [sample_scene(SceneSamplerConfig(level="lv3"), 2, i) for i in range(4)]
    device = torch.device("cpu")
    packed = pack_scenes(scenes, device)
    views = camera_views(scenes, 32, 24, device)
    room = (packed.mesh_instance[packed.tri_mesh] == 0).nonzero().squeeze(1)
    raster = rasterize(packed.tri[:, room], packed.tri_scene[room], packed.two_sided[room], views, tri_id=room)
    analytic = room_buffer(packed, views)
    assert torch.equal(raster == NO_HIT, analytic == NO_HIT)
    hit = raster != NO_HIT
    (depth_r, tri_r), (depth_a, tri_a) = _decode(raster[hit]), _decode(analytic[hit])
    assert torch.allclose(depth_r, depth_a, rtol=1e-4)
    assert torch.equal(packed.tri_mesh[tri_r], packed.tri_mesh[tri_a])  # same surface (floor or wall mesh)


def test_shadows_only_darken():
    scene = sample_scene(SceneSamplerConfig(level="lv7", light="fixed", walls="fixed"), 1, 0)
    above = Light(position=(*scene.camera.look_at[:2], 1.4), intensity=3.0)
    scene = Scene(objects=scene.objects, camera=scene.camera, lights=(above,))
    lit = create_scene_renderer("torch", shadows=False).render(scene, 48, 48)
    shaded = create_scene_renderer("torch").render(scene, 48, 48)
    difference = shaded.rgb.astype(int) - lit.rgb.astype(int)
    assert difference.max() == 0 and (difference.sum(-1) < -10).sum() > 20
    assert np.array_equal(shaded.instance, lit.instance)


@pytest.mark.parametrize("kind", ["checker", "stripes", "noise"])
def test_torch_textures_match_the_reference(kind):
    material = Material(
        color=(0.9, 0.2, 0.1), texture=TextureSpec(kind=kind, color=(0.0, 0.3, 1.0), scale=0.07, seed=5)
    )
    points = np.random.default_rng(0).uniform(-1, 1, size=(500, 3))
    table = np.zeros((MESH_ROWS, 1))
    table[:MATERIAL_WIDTH, 0] = _material_row(material)
    table[MATERIAL_WIDTH : MATERIAL_WIDTH + 12, 0] = np.eye(4)[:3].reshape(-1)  # texture space = world
    table = torch.from_numpy(table).float()
    mesh = torch.zeros(500, dtype=torch.int64)
    kind = table[9].expand(500)
    color = table[0:3].expand(3, 500)
    ours = _texture_albedo(table, mesh, kind, color, torch.from_numpy(points.T.copy()).float()).numpy().T
    reference = evaluate_texture(material, points)
    agree = np.isclose(ours, reference, atol=1e-4).all(1)
    assert agree.mean() > 0.99  # float32 vs float64 may disagree exactly on a cell border


def test_empty_scene_and_bad_options():
    scene = Scene(objects=(), camera=Camera())
    out = create_scene_renderer("torch").render(scene, 16, 12)
    assert np.all(out.instance == 0) and np.isfinite(out.depth).sum() > 0
    with pytest.raises(UnknownNameError, match="valid names: .*torch"):
        create_scene_renderer("povray")
    with pytest.raises(ValueError, match="invalid device"):
        create_scene_renderer("torch", device="gpu7")
    with pytest.raises(ValueError, match="image size"):
        create_scene_renderer("torch").render(scene, 0, 12)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            create_scene_renderer("torch", device="cuda")


def test_vectorised_image_planes_match_geometry():
    from synth_render.scene3d.geometry import image_plane

    cameras = [sample_scene(SceneSamplerConfig(level="lv7"), 4, i).camera for i in range(5)]
    cameras.append(Camera(position=(0.0, 0.0, 1.0), look_at=(0.0, 0.0, 0.0), fov_deg=60, roll_deg=10))  # looks along up
    table = image_planes(
        *(
            np.array([getattr(c, k) for c in cameras], dtype=np.float64)
            for k in ("position", "look_at", "up", "fov_deg", "roll_deg")
        ),
        40,
        30,
    )
    for row, camera in zip(table, cameras):
        assert np.allclose(row[3:12], np.concatenate(image_plane(camera, 40, 30)))


def test_prepare_then_render_prepared_equals_render_tensors(renderer):
    scenes = [sample_scene(SceneSamplerConfig(level="lv5"), 8, i) for i in range(3)]
    direct = renderer.render_tensors(scenes, 24, 24)
    split = renderer.render_prepared(renderer.prepare(scenes, 24, 24))
    assert all(torch.equal(direct[k], split[k]) for k in direct)
