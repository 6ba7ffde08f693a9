"""`lab render`: write a synthetic dataset to verified shards and, optionally, a contact sheet to look at.

The renderer group picks the schema: each registered renderer names its job (`synth_render.dataset.RenderJob`
subclass), e.g. `renderer=digits` (default, npz shards; `synth_render.digits.DigitRenderJob`) or
`renderer=scenes3d` (3D scenes, webdataset-style tar shards; `renderer.engine=torch|mitsuba|blender`,
`renderer.level=lv0..lv7`; `synth_render.scene3d.writer.Scene3DRenderJob`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from lab.core.config import ConfigError
from synth_render.registry import RENDERERS


def render_jobs() -> dict[str, type]:
    """renderer group option -> the schema of `lab render` with it (a `RenderJob` subclass)."""
    return {name: RENDERERS.get(name).job for name in RENDERERS.names() if hasattr(RENDERERS.get(name), "job")}


def render_command(overrides: Sequence[str]) -> tuple[type, Callable[[Any], str]]:
    """The schema and runner for the `renderer=NAME` among the overrides (the last one wins; digits if none)."""
    names = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == "renderer" and "=" in o]
    name = names[-1] if names else "digits"
    jobs = render_jobs()
    if name not in jobs:
        raise ConfigError(f"unknown renderer {name!r}; valid renderers: {', '.join(sorted(jobs))}")
    return jobs[name], jobs[name].run


def run_render_preview(folder: str, out: str, count: int, zoom: int) -> str:
    """Contact sheet of a rendered folder, drawn by the job of the renderer its manifest names."""
    from lab.data.shards import read_manifest

    if count <= 0 or zoom <= 0:
        raise ConfigError(f"--count and --zoom must be positive, got {count} and {zoom}")
    try:
        manifest = read_manifest(Path(folder))
    except FileNotFoundError as error:
        raise ConfigError(str(error)) from None
    name = manifest.get("generator", {}).get("name", "")
    jobs = render_jobs()
    if name not in jobs:
        raise ConfigError(f"{folder} was not written by a renderer (its generator is {name!r}); valid renderers: "
                          f"{', '.join(sorted(jobs))}")
    jobs[name].write_preview(folder, out, count, zoom)
    return f"contact sheet of {min(count, int(manifest['count']))} samples of {folder}: {out}"
