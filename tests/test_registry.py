"""Registries that discover their package: a new entry is one module with one decorator, listed nowhere else."""

from __future__ import annotations

import sys

import pytest

from lab.core.registry import Registry, UnknownNameError


def make_package(root, name: str, modules: dict[str, str]) -> None:
    for module, text in {"__init__": "", **modules}.items():
        path = root / name / f"{module.replace('.', '/')}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """A throwaway package `plugins_<n>` on sys.path, removed from sys.modules afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("plugins_"):
            del sys.modules[name]


def test_a_registry_imports_its_package_before_the_first_lookup(plugins):
    make_package(plugins, "plugins_a", {
        "registry": "from lab.core.registry import Registry\nTHINGS = Registry('thing', discover='plugins_a')\n",
        "deep/__init__": "",
        "deep/one": "from plugins_a.registry import THINGS\n\n\n@THINGS.register('one')\ndef one():\n    return 1\n",
        "two": "from plugins_a.registry import THINGS\nTHINGS.register('two')(lambda: 2)\n",
    })
    from plugins_a.registry import THINGS

    assert "plugins_a.two" not in sys.modules  # nothing is imported before a lookup needs it
    assert THINGS.names() == ["one", "two"] and THINGS.get("two")() == 2 and "one" in THINGS
    with pytest.raises(UnknownNameError, match="unknown thing 'three'; valid names: one, two"):
        THINGS.get("three")


def test_a_module_that_fails_to_import_fails_every_lookup(plugins):
    make_package(plugins, "plugins_b", {"broken": "raise ImportError('needs a package that is not installed')\n"})
    things = Registry("thing", discover="plugins_b")
    for _ in range(2):
        with pytest.raises(ImportError, match="not installed"):
            things.names()


def test_every_renderer_names_its_lab_render_job():
    from synth_render.dataset import RenderJob
    from synth_render.registry import RENDERERS

    assert RENDERERS.names() == ["digits", "scenes3d"]  # discovered: no module list names them
    for name in RENDERERS:
        job = RENDERERS.get(name).job
        assert issubclass(job, RenderJob) and job().renderer.name == name


def test_scene_engines_and_text_families_are_discovered():
    from synth_render.scene3d.renderers import SCENE_RENDERERS
    from synth_render.text import TEXT_GENERATORS

    assert {"torch", "mitsuba", "blender", "blenderproc"} <= set(SCENE_RENDERERS)
    assert TEXT_GENERATORS.names() == ["arithmetic", "dialogue", "mixture", "structured", "world_facts"]
