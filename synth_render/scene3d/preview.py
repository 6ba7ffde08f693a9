"""A contact sheet of rendered 3D scenes: one row per sample, one column per output, boxes drawn on the RGB.

Columns: rgb + boxes (coloured by class, labelled with the class name), semantic mask (colour per class),
instance mask (colour per object), depth (near = bright, nothing hit = black), normals (xyz -> rgb).
It reads the stored fields, so what you see is exactly what the tasks train on.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lab.data.tar_shards import TarShardDataset

COLUMNS = ("rgb + boxes", "semantic", "instance", "depth", "normals")
HEADER = 14


def palette(count: int) -> np.ndarray:
    """`count` distinct uint8 colours; entry 0 (background) is black."""
    colours = [(0, 0, 0)]
    for k in range(1, count):
        r, g, b = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.75, 0.95)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return np.array(colours, dtype=np.uint8)


def colour_ids(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask, dtype=np.int64)
    return palette(int(mask.max()) + 1)[mask]


def depth_image(depth: np.ndarray) -> np.ndarray:
    finite = np.isfinite(depth)
    out = np.zeros(depth.shape, dtype=np.uint8)
    if finite.any():
        near, far = float(depth[finite].min()), float(depth[finite].max())
        scaled = 1.0 - (depth[finite] - near) / max(far - near, 1e-6)
        out[finite] = (40 + 215 * scaled).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=2)


def normals_image(normals: np.ndarray) -> np.ndarray:
    valid = np.linalg.norm(normals, axis=-1, keepdims=True) > 0
    return np.where(valid, (normals * 0.5 + 0.5) * 255, 0).clip(0, 255).astype(np.uint8)


def sample_panels(sample: Mapping[str, Any], class_names: Sequence[str], zoom: int) -> list[Image.Image]:
    """The five panels of one sample, each `zoom` times its rendered size."""
    arrays = [sample["rgb.png"], colour_ids(sample["semantic.png"]), colour_ids(sample["instance.png"]),
              depth_image(sample["depth.npy"]), normals_image(sample["normals.npy"])]
    panels = [Image.fromarray(np.ascontiguousarray(a)).resize((a.shape[1] * zoom, a.shape[0] * zoom), Image.NEAREST)
              for a in arrays]
    draw = ImageDraw.Draw(panels[0])
    colours = palette(len(class_names) + 1)
    for obj in sample["json"]["objects"]:
        x0, y0, x1, y1 = (v * zoom for v in obj["bbox"])
        colour = tuple(int(c) for c in colours[obj["class_id"] + 1])
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=colour, width=max(1, zoom // 2))
        font = ImageFont.load_default()
        draw.rectangle(draw.textbbox((x0 + 2, y0 + 1), obj["class_name"], font=font), fill=(0, 0, 0))
        draw.text((x0 + 2, y0 + 1), obj["class_name"], fill=colour, font=font)
    return panels


def contact_sheet(samples: Iterable[Mapping[str, Any]], class_names: Sequence[str], zoom: int = 4) -> Image.Image:
    """One row per sample (five panels), a header naming the columns; 1 px gaps."""
    rows = [sample_panels(s, class_names, zoom) for s in samples]
    if not rows:
        raise ValueError("no samples to preview")
    width, height = rows[0][0].size
    sheet = Image.new("RGB", (len(COLUMNS) * (width + 1), HEADER + len(rows) * (height + 1)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for c, title in enumerate(COLUMNS):
        draw.text((c * (width + 1) + 2, 1), title, fill=(0, 0, 0), font=ImageFont.load_default())
    for r, panels in enumerate(rows):
        for c, panel in enumerate(panels):
            sheet.paste(panel, (c * (width + 1), HEADER + r * (height + 1)))
    return sheet


def write_preview(folder: Path | str, out: Path | str, count: int = 8, zoom: int = 4) -> Path:
    """The contact sheet of the first `count` samples of a rendered folder, saved as PNG."""
    dataset = TarShardDataset(folder, min(count, int(TarShardDataset(folder).manifest["count"])))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(dataset, dataset.manifest["class_names"], zoom).save(out)
    return out
