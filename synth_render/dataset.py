"""Render a synthetic dataset to verified shards, and draw contact sheets of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lab.data.shards import NPZ_FORMAT, ShardedDataset, write_sharded
from lab.rundir import to_plain
from synth_render.registry import create_renderer


def render_dataset(config: Any, count: int, out_dir: Path | str, *, workers: int = 1,
                   progress: bool = True) -> ShardedDataset:
    """Render samples 0..count-1 of the renderer `config` into `out_dir` (finished shards are kept)."""
    renderer = create_renderer(config)
    write_sharded(out_dir, renderer, count, shard_size=config.shard_size, generator=to_plain(config),
                  seed=config.seed, workers=workers, progress=progress, **shard_options(renderer))
    return ShardedDataset.open(out_dir)


def render_shards(config: Any, count: int, out_dir: Path | str, shards: list[int], *, workers: int = 1) -> list[int]:
    """Render only `shards` of a `count`-sample dataset: one task of a render array job."""
    renderer = create_renderer(config)
    write_sharded(out_dir, renderer, count, shard_size=config.shard_size, generator=to_plain(config),
                  seed=config.seed, workers=workers, progress=False, only_shards=shards, **shard_options(renderer))
    return shards


def shard_options(renderer: Any) -> dict[str, Any]:
    """What a renderer may declare: its shard format (npz unless it names one, e.g. tar for 3D scenes), extra
    manifest fields, and how worker processes start (e.g. spawn for torch engines)."""
    extra = getattr(renderer, "manifest_extra", None)
    return {"shard_format": getattr(renderer, "shard_format", NPZ_FORMAT),
            "manifest_extra": extra() if extra else None,
            "start_method": getattr(renderer, "start_method", None)}


def contact_sheet(images: np.ndarray, labels: np.ndarray | None = None, columns: int = 16, zoom: int = 3) -> Image.Image:
    """A grid of samples (sorted by label when given) as one greyscale image, for a quick look."""
    if labels is not None:
        images = images[np.argsort(labels, kind="stable")]
    rows = int(np.ceil(len(images) / columns))
    height, width = images.shape[1:3]
    sheet = np.zeros((rows * (height + 1), columns * (width + 1)), dtype=np.uint8)
    for k, image in enumerate(images):
        r, c = divmod(k, columns)
        sheet[r * (height + 1) : r * (height + 1) + height, c * (width + 1) : c * (width + 1) + width] = image
    picture = Image.fromarray(sheet)
    return picture.resize((picture.width * zoom, picture.height * zoom), Image.NEAREST)
