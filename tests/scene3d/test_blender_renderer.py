"""The Blender (Cycles) renderer beyond the shared contract (test_ray_renderers.py): quiet, stateless, options,
missing package."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from synth_render.scene3d.renderers import RendererUnavailableError, create_scene_renderer
from synth_render.scene3d.sampler import SceneSamplerConfig, sample_scene

OTHER_SCENE = sample_scene(SceneSamplerConfig(level="lv0"), seed=1, index=0)


@pytest.fixture(scope="module")
def renderer():
    return create_scene_renderer("blender", spp=4)


def test_blender_output_is_silenced(renderer, capfd):
    renderer.render(OTHER_SCENE, 8, 8)
    captured = capfd.readouterr()
    assert "Fra:" not in captured.out and "Saved:" not in captured.out


def test_renders_are_independent_of_the_previous_scene(renderer):
    scene = sample_scene(SceneSamplerConfig(level="lv5"), seed=0, index=3)
    first = renderer.render(scene, 24, 24)
    renderer.render(OTHER_SCENE, 24, 24)
    again = renderer.render(scene, 24, 24)
    assert np.array_equal(first.instance, again.instance) and np.array_equal(first.rgb, again.rgb)


def test_bad_options_are_rejected_with_the_valid_values():
    with pytest.raises(ValueError, match="spp"):
        create_scene_renderer("blender", spp=0)
    with pytest.raises(ValueError, match="threads"):
        create_scene_renderer("blender", threads=0)
    with pytest.raises(TypeError):
        create_scene_renderer("blender", variant="scalar_rgb")


def test_missing_package_raises_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "bpy", None)  # `import bpy` now raises ImportError
    with pytest.raises(RendererUnavailableError, match=r"pip install .*bpy==4\.2\.23"):
        create_scene_renderer("blender")
