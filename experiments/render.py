"""`lab render`: write a synthetic dataset to verified shards and, optionally, a contact sheet to look at.

The renderer group picks the schema: `renderer=digits` (default, npz shards) or `renderer=scenes3d` (3D
scenes, webdataset-style tar shards; `renderer.engine=torch|mitsuba|blender`, `renderer.level=lv0..lv7`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from lab.config import ConfigError
from synth_render.dataset import contact_sheet, render_dataset
from synth_render.digits import DigitRendererConfig
from synth_render.scene3d.writer import Scene3DGenerator, Scene3DRendererConfig


@dataclass
class RenderConfig:
    renderer: DigitRendererConfig = field(default_factory=DigitRendererConfig)
    count: int = 1000
    out: str = "runs/render/digits"
    workers: int = 2
    preview: str = ""  # PNG path for a contact sheet of the first samples ("" = none)
    preview_count: int = 160


@dataclass
class Scene3DRenderConfig:
    renderer: Scene3DRendererConfig = field(default_factory=Scene3DRendererConfig)
    count: int = 64
    out: str = "runs/render/scenes3d"
    workers: int = 2
    preview: str = ""  # PNG path for a contact sheet of the first samples ("" = none)
    preview_count: int = 8
    coco: str = ""  # path of a COCO-style JSON export of all samples ("" = none)


def run_render(config: RenderConfig) -> str:
    if config.count <= 0:
        raise ValueError(f"count must be positive, got {config.count}")
    dataset = render_dataset(config.renderer, config.count, config.out, workers=config.workers)
    lines = [f"{dataset.count} samples in {config.out} (content hash {dataset.content_hash[:16]})"]
    if config.preview:
        sample = dataset.load(min(config.preview_count, dataset.count))
        contact_sheet(sample["image"], sample["label"]).save(config.preview)
        lines.append(f"contact sheet: {config.preview}")
    return "\n".join(lines)


def run_scenes3d_render(config: Scene3DRenderConfig) -> str:
    """Check everything (names, sizes, engine installed) before any work, then render, preview, export."""
    from synth_render.scene3d.coco import export_coco
    from synth_render.scene3d.preview import write_preview
    from synth_render.scene3d.renderers import RendererUnavailableError

    for key in ("count", "workers", "preview_count"):
        if getattr(config, key) <= 0:
            raise ConfigError(f"{key} must be positive, got {getattr(config, key)}")
    try:
        Scene3DGenerator(config.renderer)  # validates, and builds the engine: a missing package fails here
    except RendererUnavailableError as error:
        raise ConfigError(f"renderer.engine={config.renderer.engine}: {error}") from None
    except ValueError as error:
        raise ConfigError(str(error)) from None
    dataset = render_dataset(config.renderer, config.count, config.out, workers=config.workers)
    lines = [f"{dataset.count} samples ({config.renderer.level}, {config.renderer.engine} engine, "
             f"{config.renderer.width}x{config.renderer.height}) in {config.out} "
             f"(content hash {dataset.content_hash[:16]})"]
    if config.preview:
        write_preview(config.out, config.preview, config.preview_count)
        lines.append(f"contact sheet: {config.preview}")
    if config.coco:
        export_coco(config.out, config.coco)
        lines.append(f"COCO annotations: {config.coco}")
    return "\n".join(lines)


# renderer group option -> (schema of `lab render`, the function that runs it)
RENDER_COMMANDS: dict[str, tuple[type, Callable[[Any], str]]] = {
    "digits": (RenderConfig, run_render),
    "scenes3d": (Scene3DRenderConfig, run_scenes3d_render),
}


def render_command(overrides: Sequence[str]) -> tuple[type, Callable[[Any], str]]:
    """The schema and runner for the `renderer=NAME` among the overrides (the last one wins; digits if none)."""
    names = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == "renderer" and "=" in o]
    name = names[-1] if names else "digits"
    if name not in RENDER_COMMANDS:
        raise ConfigError(f"unknown renderer {name!r}; valid renderers: {', '.join(sorted(RENDER_COMMANDS))}")
    return RENDER_COMMANDS[name]


def run_render_preview(folder: str, out: str, count: int, zoom: int) -> str:
    """Contact sheet of a rendered folder of either format (tar: 3D scenes, npz: digits)."""
    from lab.data.shards import ShardedDataset, read_manifest
    from synth_render.scene3d.preview import write_preview

    if count <= 0 or zoom <= 0:
        raise ConfigError(f"--count and --zoom must be positive, got {count} and {zoom}")
    try:
        manifest = read_manifest(Path(folder))
    except FileNotFoundError as error:
        raise ConfigError(str(error)) from None
    if manifest.get("shard_format") == "tar":
        write_preview(folder, out, count, zoom)
    else:
        dataset = ShardedDataset.open(folder)
        sample = dataset.load(min(count, dataset.count))
        contact_sheet(sample["image"], sample["label"], zoom=zoom).save(out)
    return f"contact sheet of {min(count, int(manifest['count']))} samples of {folder}: {out}"
