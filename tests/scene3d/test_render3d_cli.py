"""`lab render renderer=scenes3d ...` and `lab render-preview`: outputs, and clear errors before any work."""

from __future__ import annotations

import json
import sys

import pytest
from PIL import Image

from experiments.cli import main

TOY = ["renderer=scenes3d", "renderer.engine=torch", "renderer.width=32", "renderer.height=32", "workers=1",
       "renderer.shard_size=4"]


def test_render_writes_shards_preview_and_coco(tmp_path, capsys):
    out, sheet, coco = tmp_path / "scenes", tmp_path / "sheet.png", tmp_path / "coco.json"
    assert main(["render", *TOY, "renderer.level=lv3", "count=8", f"out={out}", f"preview={sheet}",
                 "preview_count=3", f"coco={coco}"]) == 0
    printed = capsys.readouterr().out
    assert "8 samples (lv3, torch engine, 32x32)" in printed and str(sheet) in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 8 and manifest["generator"]["level"] == "lv3"
    assert sorted(p.name for p in out.glob("shard-*.tar")) == ["shard-000000.tar", "shard-000001.tar"]
    assert Image.open(sheet).size == (5 * (32 * 4 + 1), 14 + 3 * (32 * 4 + 1))
    assert len(json.loads(coco.read_text())["images"]) == 8

    again = tmp_path / "again.png"
    assert main(["render-preview", str(out), "--out", str(again), "--count", "2", "--zoom", "2"]) == 0
    assert Image.open(again).size == (5 * (32 * 2 + 1), 14 + 2 * (32 * 2 + 1))


def test_show_config_lists_the_3d_knobs(capsys):
    assert main(["render", "--show-config", "renderer=scenes3d", "renderer.level=lv6"]) == 0
    text = capsys.readouterr().out
    assert "engine: torch" in text and "level: lv6" in text and "objects_per_scene" in text


def test_digits_stay_the_default_renderer(capsys):
    assert main(["render", "--show-config"]) == 0
    assert "rotation_deg" in capsys.readouterr().out


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["renderer=voxels"], "valid renderers: digits, scenes3d"),
        (["renderer.engine=povray"], "unknown scene renderer 'povray'; valid names: "),
        (["renderer.level=lv9"], "lv0, lv1"),
        (["renderer.sampler.classes=[cube,blobby]"], "unknown object class 'blobby'; valid: cube"),
        (["renderer.sampler.class_sets=[furniture]"], "unknown class set 'furniture'; valid: all, basic"),
        (["renderer.width=4"], "renderer.width must lie in [8, 4096]"),
        (["renderer.supersample=9"], "renderer.supersample must be an integer in [1, 8]"),
        (["renderer.normals_frame=image"], "renderer.normals_frame must be one of camera, world"),
        (["renderer.min_visible_fraction=1.5"], "renderer.min_visible_fraction must lie in [0, 1)"),
        (["renderer.sampler.objects_per_scene=[3,1]"], "objects_per_scene"),
        (["count=0"], "count must be positive"),
        (["+renderer.engine_options.spp=4"], "spp not accepted by the torch engine; valid options: device"),
        (["renderer.spp=4"], "Valid keys under 'renderer': name, engine, level"),
        (["renderer.sampler.lights=2"], "unknown config key 'renderer.sampler.lights'"),
    ],
)
def test_bad_settings_fail_before_any_work(overrides, message, tmp_path, capsys):
    out = tmp_path / "never"
    base = [o for o in TOY if not o.startswith("renderer=")] if overrides[0].startswith("renderer=") else TOY
    assert main(["render", *base, *overrides, f"out={out}"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("engine, module", [("blender", "bpy"), ("mitsuba", "mitsuba")])
def test_a_missing_optional_engine_says_how_to_install_it(engine, module, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # as if the package were not installed: import fails
    out = tmp_path / "never"
    assert main(["render", *TOY, f"renderer.engine={engine}", "count=4", f"out={out}"]) == 2
    err = capsys.readouterr().err
    assert f"renderer.engine={engine}" in err and "pip install" in err
    assert not out.exists()


def test_preview_of_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["render-preview", str(tmp_path / "nothing"), "--out", str(tmp_path / "p.png")]) == 2
    assert "never finished" in capsys.readouterr().err
