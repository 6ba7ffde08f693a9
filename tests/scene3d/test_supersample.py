"""Supersampled rendering: the k x k downsampling rules on hand-made blocks, the writer's output equal to a
full-resolution render downsampled, and edges that blend (less aliasing) where a one-ray-per-pixel render has
hard steps."""

from __future__ import annotations

import numpy as np
import pytest

from synth_render.scene3d.geometry import camera_frame_normals
from synth_render.scene3d.renderers import RenderOutput, create_scene_renderer
from synth_render.scene3d.sampler import SceneSamplerConfig
from synth_render.scene3d.scene import Camera, CeilingLight, Light, Material, Scene, SceneObject
from synth_render.scene3d.supersample import blocks, downsample_outputs
from synth_render.scene3d.writer import Scene3DGenerator, Scene3DRendererConfig

SIZE = 16
MISS = (None, np.inf)  # a sample whose ray hit nothing


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def render_of(samples: list[list[tuple[int | None, float]]]) -> RenderOutput:
    """A 2 x (2 n) render from n 2x2 blocks, each 4 samples (instance, depth) or MISS, in row-major order.
    Normals are unit and different for every sample; semantic = 10 * instance; rgb encodes the sample."""
    n = len(samples)
    instance = np.zeros((2, 2 * n), dtype=np.int32)
    depth = np.full((2, 2 * n), np.inf, dtype=np.float32)
    normals = np.zeros((2, 2 * n, 3), dtype=np.float32)
    for b, block in enumerate(samples):
        for s, (ident, z) in enumerate(block):
            row, col = s // 2, 2 * b + s % 2
            if ident is not None:
                instance[row, col], depth[row, col] = ident, z
                angle = 0.3 * (4 * b + s)
                normals[row, col] = (np.cos(angle), np.sin(angle), 0.0)
    rgb = np.arange(2 * 2 * n * 3, dtype=np.uint8).reshape(2, 2 * n, 3) * 3
    return RenderOutput(rgb=rgb, depth=depth, normals=normals, instance=instance, semantic=instance * 10)


def test_majority_instance_and_its_tie_rules_drive_every_annotation():
    out = render_of([
        [(5, 1.0), (5, 2.0), (2, 9.0), (0, 9.0)],  # majority: object 5
        [(3, 1.0), (2, 1.0), (0, 4.0), (0, 6.0)],  # the room (2 samples) beats two single objects
        [(3, 1.0), (2, 2.0), (2, 4.0), (3, 1.0)],  # tie between objects: the smaller id
        [(0, 3.0), (0, 5.0), MISS, MISS],  # tie room / nothing hit: the room
        [MISS, MISS, MISS, (4, 1.0)],  # nothing hit wins: background
        [(4, 2.0), MISS, MISS, (4, 4.0)],  # tie object / nothing hit: the object
    ])  # fmt: skip
    small = downsample_outputs(out, 2)
    np.testing.assert_array_equal(small.instance, [[5, 0, 2, 0, 0, 4]])
    np.testing.assert_array_equal(small.semantic, small.instance * 10)
    np.testing.assert_allclose(small.depth, [[1.5, 5.0, 3.0, 4.0, np.inf, 3.0]])
    sample_normals = blocks(out.normals, 2)[0]
    for b, chosen in enumerate([[0, 1], [2, 3], [1, 2], [0, 1], [], [0, 3]]):
        expected = sample_normals[b, chosen].sum(0)
        expected = expected / np.linalg.norm(expected) if chosen else expected
        np.testing.assert_allclose(small.normals[0, b], expected, atol=1e-6)
    assert small.rgb.dtype == np.uint8 and small.depth.dtype == np.float32 and small.instance.dtype == np.int32


def test_rgb_is_the_block_mean_rounded_half_up():
    rng = np.random.default_rng(0)
    out = render_of([[(1, 1.0)] * 4] * 3)
    out.rgb[:] = rng.integers(0, 256, size=out.rgb.shape)
    out.rgb[:, :2] = [[[0, 1, 255], [0, 0, 255]], [[1, 0, 254], [0, 0, 254]]]  # means 0.25, 0.25, 254.5
    small = downsample_outputs(out, 2)
    assert small.rgb[0, 0].tolist() == [0, 0, 255]
    mean = blocks(out.rgb, 2).astype(np.float64).mean(axis=2)
    assert np.abs(small.rgb - mean).max() <= 0.5


def test_factor_one_returns_the_render_itself_and_bad_factors_fail():
    out = render_of([[(1, 1.0)] * 4])
    assert downsample_outputs(out, 1) is out
    for k in (0, 9, 1.5):
        with pytest.raises(ValueError, match=r"integer in \[1, 8\]"):
            downsample_outputs(out, k)
    with pytest.raises(ValueError, match="does not split into 3x3"):
        downsample_outputs(out, 3)


@pytest.mark.parametrize("k", [2, 3])
def test_the_writer_downsamples_a_full_resolution_render(k):
    """Writer output at k = 2, 3 == the torch engine's (k SIZE)^2 render downsampled by the same function."""
    config = Scene3DRendererConfig(level="lv5", width=SIZE, height=SIZE, supersample=k,
                                   sampler=SceneSamplerConfig(objects_per_scene=[3, 5]))  # fmt: skip
    generator = Scene3DGenerator(config)
    engine = create_scene_renderer("torch")
    for index in range(2):
        sample = generator(index)
        scene = generator.scene(index)
        full = engine.render(scene, k * SIZE, k * SIZE)
        small = downsample_outputs(full, k)
        np.testing.assert_array_equal(sample["instance.png"], small.instance)
        np.testing.assert_array_equal(sample["semantic.png"], small.semantic)
        np.testing.assert_array_equal(sample["depth.npy"], small.depth)
        np.testing.assert_array_equal(sample["normals.npy"], camera_frame_normals(small.normals, scene.camera))
        np.testing.assert_array_equal(sample["rgb.png"], small.rgb)
        mean = blocks(full.rgb, k).astype(np.float64).mean(axis=2)
        assert sample["rgb.png"].shape == (SIZE, SIZE, 3) and np.abs(sample["rgb.png"] - mean).max() <= 1
        # annotations stay consistent with each other after the vote
        lookup = np.array([0] + [o.class_id + 1 for o in scene.objects])
        np.testing.assert_array_equal(sample["semantic.png"], lookup[sample["instance.png"]])
        hit = np.isfinite(sample["depth.npy"])
        assert hit[sample["instance.png"] > 0].all()
        np.testing.assert_allclose(np.linalg.norm(sample["normals.npy"][hit], axis=-1), 1, atol=1e-5)
        assert (sample["normals.npy"][~hit] == 0).all()


def flat_scene() -> Scene:
    """A red cube seen head on against grey walls, lit by the ceiling alone: with flat shading every surface
    has one colour, so any other colour in the image is a blend across an edge."""
    cube = SceneObject("cube", 0, "box", {"size": [1, 1, 1]}, position=(0.0, 0.0, 0.15), scale=0.15 * np.sqrt(3),
                       rotation=(np.cos(0.2), 0.0, 0.0, np.sin(0.2)), material=Material(color=(0.9, 0.1, 0.1)))
    camera = Camera(position=(0.9, 0.0, 0.15), look_at=(0.0, 0.0, 0.15), fov_deg=45.0, roll_deg=17.0)
    return Scene(objects=(cube,), camera=camera, lights=(Light(intensity=0.0),), ceiling=CeilingLight(strength=0.5))


def test_supersampling_blends_edges_that_one_ray_per_pixel_leaves_hard():
    engine = create_scene_renderer("torch", shadows=False)
    scene = flat_scene()
    single = engine.render(scene, SIZE, SIZE)
    pure = {tuple(c) for c in single.rgb.reshape(-1, 3)}
    assert len(pure) == 3  # the cube's two visible sides (both vertical), walls, floor; nothing in between

    k = 4
    full = engine.render(scene, k * SIZE, k * SIZE)
    small = downsample_outputs(full, k)
    colours = small.rgb.reshape(-1, 3)
    blended = np.array([tuple(c) not in pure for c in colours]).reshape(SIZE, SIZE)
    labels = blocks(full.instance, k)
    outline = (labels != labels[..., :1]).any(axis=-1)  # pixels whose block straddles the cube's outline
    assert outline.sum() >= SIZE
    assert blended[outline].all()  # all along the (rotated, rolled) outline: intermediate colours
    assert blended.sum() > outline.sum()  # the rest: the edge between walls and floor, blended too
    red = small.rgb[..., 0].astype(int) - small.rgb[..., 1]
    cube = small.instance == 1
    assert red[cube].min() > red[blended & ~cube].min()  # edge pixels are less red than the cube itself


def test_without_supersampling_the_writer_stores_the_engine_render_as_is():
    config = Scene3DRendererConfig(level="lv5", width=SIZE, height=SIZE, normals_frame="world",
                                   sampler=SceneSamplerConfig(objects_per_scene=[3, 5]))  # fmt: skip
    generator = Scene3DGenerator(config)
    engine = create_scene_renderer("torch")
    for index in range(2):
        sample, out = generator(index), engine.render(generator.scene(index), SIZE, SIZE)
        for field, array in [("rgb.png", out.rgb), ("depth.npy", out.depth), ("normals.npy", out.normals),
                             ("instance.png", out.instance), ("semantic.png", out.semantic)]:  # fmt: skip
            assert sample[field].tobytes() == array.astype(sample[field].dtype).tobytes(), field
