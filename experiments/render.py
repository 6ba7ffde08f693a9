"""`lab render`: write a synthetic dataset to verified shards and, optionally, a contact sheet to look at."""

from __future__ import annotations

from dataclasses import dataclass, field

from synth_render.dataset import contact_sheet, render_dataset
from synth_render.digits import DigitRendererConfig


@dataclass
class RenderConfig:
    renderer: DigitRendererConfig = field(default_factory=DigitRendererConfig)
    count: int = 1000
    out: str = "runs/render/digits"
    workers: int = 2
    preview: str = ""  # PNG path for a contact sheet of the first samples ("" = none)
    preview_count: int = 160


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
