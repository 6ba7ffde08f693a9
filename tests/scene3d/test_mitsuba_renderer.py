"""The Mitsuba 3 renderer beyond the shared contract (test_ray_renderers.py): variants, options, missing package,
lazy imports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from synth_render.scene3d.renderers import RendererUnavailableError, create_scene_renderer
from synth_render.scene3d.renderers.mitsuba_renderer import llvm_usable
from synth_render.scene3d.sampler import SceneSamplerConfig, sample_scene

@pytest.fixture(scope="module")
def renderer():
    return create_scene_renderer("mitsuba", spp=4)


def test_llvm_variant_gives_the_same_annotations(renderer):
    if not llvm_usable(renderer._mi):
        with pytest.raises(RendererUnavailableError, match="libllvm19"):
            create_scene_renderer("mitsuba", variant="llvm_ad_rgb")
        return
    scene = sample_scene(SceneSamplerConfig(level="lv7"), seed=0, index=2)
    scalar = renderer.render(scene, 32, 32)
    llvm = create_scene_renderer("mitsuba", spp=1, variant="llvm_ad_rgb").render(scene, 32, 32)
    assert np.array_equal(scalar.instance, llvm.instance)
    assert np.allclose(scalar.depth, llvm.depth, rtol=1e-5)
    assert np.abs(scalar.rgb.astype(int).mean() - llvm.rgb.astype(int).mean()) < 10  # same light, other noise


def test_bad_options_are_rejected_with_the_valid_values():
    with pytest.raises(ValueError, match="scalar_rgb"):
        create_scene_renderer("mitsuba", variant="cuda_rgb")
    with pytest.raises(ValueError, match="spp"):
        create_scene_renderer("mitsuba", spp=0)


def test_missing_package_raises_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "mitsuba", None)  # `import mitsuba` now raises ImportError
    with pytest.raises(RendererUnavailableError, match=r"pip install .*mitsuba==3\.9\.1"):
        create_scene_renderer("mitsuba")


def test_importing_the_renderers_imports_neither_mitsuba_nor_bpy():
    code = ("import sys; from synth_render.scene3d.renderers import SCENE_RENDERERS as r; "
            "assert {'mitsuba', 'blender'} <= set(r); print(sorted({'mitsuba', 'drjit', 'bpy'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
