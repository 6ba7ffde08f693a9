"""Render a synthetic dataset to verified shards, and draw contact sheets of it; `RenderJob` is `lab render`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lab.data.shards import NPZ_FORMAT, ShardedDataset, write_sharded
from lab.core.rundir import to_plain
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


def check_output_folder(key: str, folder: str, file: str = "") -> None:
    """A `ConfigError` naming `key` unless `folder` is a folder that exists or can be made, and can be written
    (and `file`, when given, is not a folder): checked before any rendering, so no raw traceback halfway."""
    from lab.core.config import ConfigError

    if not folder:
        raise ConfigError(f"{key} is empty: give the folder to write into, e.g. {key}=data/digits")
    if file and Path(file).is_dir():
        raise ConfigError(f"{key}={file} is a folder; give a file name such as {key}=sheet.png")
    path = Path(folder)
    existing = path
    while not existing.exists():
        if existing.is_symlink():
            raise ConfigError(f"{key}={folder}: {existing} is a broken link")
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file, not a folder" if existing == path else f"cannot be made: {existing} is a file"
        raise ConfigError(f"{key}={folder} {what}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={folder}: cannot write in {existing} (permission denied)")


@dataclass
class RenderJob:
    """`lab render` with one renderer: `count` samples of `renderer` into `out`, optionally a contact sheet.

    Each renderer names its job (`job = ...` on the registered class): a subclass that types `renderer` with the
    renderer's config (Hydra's schema of `lab render renderer=NAME`), may change defaults, and may override
    `check`, `describe`, `write_preview` and `extra_outputs`. A redefined field keeps its place in the order.
    """

    renderer: Any = None
    count: int = 1000
    out: str = ""
    workers: int = 2
    preview: str = ""  # PNG path for a contact sheet of the first samples ("" = none)
    preview_count: int = 160

    def check(self) -> None:
        """Every check that needs no rendering, so a bad setting fails before any work."""
        from lab.core.config import ConfigError  # here: rendering alone needs no Hydra (the GPU machine lacks it)

        for key in ("count", "workers", "preview_count"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be positive, got {getattr(self, key)}")
        check_output_folder("out", self.out)
        if self.preview:
            check_output_folder("preview", str(Path(self.preview).parent), file=self.preview)
        try:
            create_renderer(self.renderer)  # validates the renderer's config
        except ValueError as error:
            raise ConfigError(str(error)) from None

    def describe(self) -> str:
        """Words about the render after its sample count, e.g. " (lv3, torch engine, 64x64)"."""
        return ""

    @staticmethod
    def write_preview(folder: Path | str, out: Path | str, count: int, zoom: int = 3) -> None:
        """A contact sheet of the first `count` samples of a rendered npz folder, sorted by label."""
        dataset = ShardedDataset.open(folder)
        sample = dataset.load(min(count, dataset.count))
        contact_sheet(sample["image"], sample["label"], zoom=zoom).save(out)

    def extra_outputs(self) -> list[str]:
        """Write any further outputs of the rendered folder; one line each for the report."""
        return []

    def run(self) -> str:
        from lab.core.config import ConfigError

        self.check()
        try:
            dataset = render_dataset(self.renderer, self.count, self.out, workers=self.workers)
        except PermissionError as error:  # e.g. a read-only file system that os.access did not see
            raise ConfigError(f"out={self.out}: cannot write there ({error})") from None
        lines = [f"{dataset.count} samples{self.describe()} in {self.out} (content hash {dataset.content_hash[:16]})"]
        if self.preview:
            self.write_preview(self.out, self.preview, self.preview_count)
            lines.append(f"contact sheet: {self.preview}")
        return "\n".join(lines + self.extra_outputs())
