"""Render 3D scenes to webdataset-style tar shards with a manifest (the `scenes3d` entry of `RENDERERS`;
`synth_render.dataset.render_dataset` writes it, `lab.data.tar_shards.TarShardDataset` reads it).

Sample i is `sample_scene(level config, seed, i)` rendered by one engine, so it depends only on (seed, i):
shards are identical whatever the worker count, an interrupted render resumes, and the first n samples of a
large render are a nested subset. Per sample the tar holds (key = the index as 9 digits):

    <key>.rgb.png       uint8 [H, W, 3]
    <key>.depth.npy     float32 [H, W], z-depth in metres along the camera axis, +inf where nothing is hit
    <key>.normals.npy   float32 [H, W, 3], unit normals facing the camera, 0 where nothing is hit, in the frame
                        `normals_frame` names (config, manifest and each sample's JSON):
                        camera (default): x = image right, y = image up, z = towards the camera, the axes
                        `geometry.camera_frame_matrix` derives from the scene's Camera (look-at, up, roll) as
                        every engine builds its rays; a surface seen head-on is (0, 0, 1), and a visible
                        surface has z > 0 except at grazing angles near the image border (the test of facing
                        is against the pixel's ray, not the optical axis). Inferable from the image alone.
                        world: the scene's frame (z up); depends on the camera pose, which the image only hints.
    <key>.instance.png  uint16 [H, W], 0 = room/background, k = scene.objects[k - 1]
    <key>.semantic.png  uint16 [H, W], 0 = background, class_id + 1 for objects
    <key>.json          key, index, seed, level, engine, size, normals_frame, the scene, and its annotations
                        (objects with boxes, labels, multilabel); see `annotations.annotation_record`. Only
                        objects with at least `label_min_pixels` visible pixels are annotated (see
                        `Scene3DRendererConfig.label_min_pixels`); the masks keep every visible pixel.

With `supersample` k > 1 the engine renders (k W, k H) and `supersample.downsample_outputs` turns that into the
(W, H) fields above (RGB block means; masks, depth and normals from each block's majority instance).
"""

from __future__ import annotations

import inspect
import multiprocessing
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch

from lab.data.tar_shards import KEY, TAR_FORMAT
from lab.core.rundir import to_plain
from synth_render.dataset import RenderJob
from synth_render.registry import RENDERERS
from synth_render.scene3d.annotations import annotation_record, visibility_threshold
from synth_render.scene3d.geometry import camera_frame_normals
from synth_render.scene3d.renderers import (SCENE_RENDERERS, RendererUnavailableError, SceneRenderer,
                                            create_scene_renderer)
from synth_render.scene3d.sampler import SceneSamplerConfig, sample_scene, scene_sampler
from synth_render.scene3d.scene import Camera, Scene
from synth_render.scene3d.supersample import MAX_SUPERSAMPLE, downsample_outputs

SAMPLE_FIELDS = ("rgb.png", "depth.npy", "normals.npy", "instance.png", "semantic.png", "json")


@dataclass(frozen=True)
class NormalsFrame:
    """A frame normals.npy can be stored in: its axes in words (for the manifest) and world -> frame."""

    axes: str
    convert: Callable[[np.ndarray, Camera], np.ndarray]


NORMALS_FRAMES = {
    "camera": NormalsFrame("x = image right, y = image up, z = towards the camera", camera_frame_normals),
    "world": NormalsFrame("the scene's world frame (right-handed, z up)", lambda normals, camera: normals),
}


def sample_key(index: int) -> str:
    return f"{index:09d}"


@dataclass
class Scene3DRendererConfig:
    """A 3D-scene dataset: which scenes (level + sampler knobs), which engine, which image size."""

    name: str = "scenes3d"
    engine: str = "torch"
    level: str = "lv3"  # lv0..lv7, see synth_render/scene3d/sampler.py; it sets sampler.level
    seed: int = 0
    width: int = 64
    height: int = 64
    shard_size: int = 256
    min_pixels: int = 4  # an object needs this many visible pixels (at width x height) to get a box and a label
    min_visible_fraction: float = 0.005  # ... and this fraction of the image's pixels (see label_min_pixels)
    supersample: int = 1  # k: render at (k width, k height), area-downsample (supersample.downsample_outputs)
    normals_frame: str = "camera"  # camera | world: the frame of normals.npy (see the module docstring)
    sampler: SceneSamplerConfig = field(default_factory=SceneSamplerConfig)  # knobs left None come from the level
    engine_options: dict[str, Any] = field(default_factory=dict)  # passed to the engine (e.g. spp for mitsuba)

    def sampler_config(self) -> SceneSamplerConfig:
        if self.sampler.level not in (self.level, SceneSamplerConfig.level):
            raise ValueError(f"renderer.sampler.level={self.sampler.level} disagrees with renderer.level={self.level}; "
                             "set renderer.level only")
        return replace(self.sampler, level=self.level)

    def label_min_pixels(self) -> int:
        """Visible pixels an object needs to be annotated, at the output size: max(min_pixels,
        ceil(min_visible_fraction * width * height)), e.g. 6 at 32x32 and 21 at 64x64 with the defaults."""
        return visibility_threshold(self.width, self.height, self.min_pixels, self.min_visible_fraction)

    def validate(self) -> None:
        """Every check that needs no rendering: names, sizes, sampler knobs and classes, the engine's name."""
        SCENE_RENDERERS.get(self.engine)
        for key in ("width", "height"):
            if not 8 <= getattr(self, key) <= 4096:
                raise ValueError(f"renderer.{key} must lie in [8, 4096], got {getattr(self, key)}")
        if self.shard_size <= 0:
            raise ValueError(f"renderer.shard_size must be positive, got {self.shard_size}")
        if self.min_pixels < 1:
            raise ValueError(f"renderer.min_pixels must be >= 1, got {self.min_pixels}")
        if not 0 <= self.min_visible_fraction < 1:
            raise ValueError(f"renderer.min_visible_fraction must lie in [0, 1), got {self.min_visible_fraction}")
        if int(self.supersample) != self.supersample or not 1 <= self.supersample <= MAX_SUPERSAMPLE:
            raise ValueError(f"renderer.supersample must be an integer in [1, {MAX_SUPERSAMPLE}], "
                             f"got {self.supersample}")
        if self.normals_frame not in NORMALS_FRAMES:
            raise ValueError(f"renderer.normals_frame must be one of {', '.join(NORMALS_FRAMES)}, "
                             f"got {self.normals_frame!r}")
        try:
            scene_sampler(self.sampler_config())
        except (ValueError, FileNotFoundError) as error:
            raise ValueError(f"renderer.sampler: {error}") from None


@dataclass
class Scene3DRenderJob(RenderJob):
    """`lab render renderer=scenes3d`: tar shards, a contact sheet of every output, optionally a COCO export."""

    renderer: Scene3DRendererConfig = field(default_factory=Scene3DRendererConfig)
    count: int = 64
    out: str = "runs/render/scenes3d"
    preview_count: int = 8
    coco: str = ""  # path of a COCO-style JSON export of all samples ("" = none)

    def check(self) -> None:
        """Also builds the engine: a missing optional package fails here, saying what to install."""
        from lab.core.config import ConfigError

        try:
            super().check()
        except RendererUnavailableError as error:
            raise ConfigError(f"renderer.engine={self.renderer.engine}: {error}") from None

    def describe(self) -> str:
        cfg = self.renderer
        return f" ({cfg.level}, {cfg.engine} engine, {cfg.width}x{cfg.height})"

    @staticmethod
    def write_preview(folder: Any, out: Any, count: int, zoom: int = 4) -> None:
        from synth_render.scene3d.preview import write_preview

        write_preview(folder, out, count, zoom)

    def extra_outputs(self) -> list[str]:
        if not self.coco:
            return []
        from synth_render.scene3d.coco import export_coco

        export_coco(self.out, self.coco)
        return [f"COCO annotations: {self.coco}"]


@RENDERERS.register("scenes3d")
class Scene3DGenerator:
    """index -> one encoded tar sample. Picklable: the engine is built lazily in each worker process."""

    job = Scene3DRenderJob
    shard_format = TAR_FORMAT
    start_method = "spawn"  # engines run torch / OpenMP / LLVM threads, which a forked worker may deadlock on

    def __init__(self, config: Scene3DRendererConfig) -> None:
        config.validate()
        self.config = config
        self.sampler = config.sampler_config()
        self.class_names = scene_sampler(self.sampler).class_names
        self._engine: SceneRenderer | None = None
        self.engine()  # a missing optional engine fails here, before any work

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_engine": None}

    def engine(self) -> SceneRenderer:
        if self._engine is None:
            cls = SCENE_RENDERERS.get(self.config.engine)
            valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
            unknown = sorted(set(self.config.engine_options) - set(valid))
            if unknown:
                raise ValueError(f"renderer.engine_options: {', '.join(unknown)} not accepted by the "
                                 f"{self.config.engine} engine; valid options: {', '.join(valid) or 'none'}")
            if multiprocessing.parent_process() is not None:
                torch.set_num_threads(1)  # one render worker per core: threads inside each would oversubscribe
            self._engine = create_scene_renderer(self.config.engine, **self.config.engine_options)
        return self._engine

    def scene(self, index: int) -> Scene:
        return sample_scene(self.sampler, self.config.seed, index)

    def __call__(self, index: int) -> dict[str, Any]:
        return self.make_samples(range(index, index + 1))[0]

    def make_samples(self, indices: range) -> list[dict[str, Any]]:
        """The samples of a shard from one `render_batch` call: engines that batch (torch) or start a process
        per call (blenderproc: one `blenderproc run` per shard) need the shard's scenes together."""
        cfg = self.config
        scenes = [self.scene(index) for index in indices]
        k = int(cfg.supersample)
        outs = self.engine().render_batch(scenes, k * cfg.width, k * cfg.height)
        return [self._sample(index, scene, downsample_outputs(out, k))
                for index, scene, out in zip(indices, scenes, outs)]  # fmt: skip

    def _sample(self, index: int, scene: Scene, out: Any) -> dict[str, Any]:
        cfg = self.config
        normals = NORMALS_FRAMES[cfg.normals_frame].convert(out.normals, scene.camera)
        record = {
            "key": sample_key(index), "index": index, "seed": cfg.seed, "level": cfg.level, "engine": cfg.engine,
            "width": cfg.width, "height": cfg.height, "normals_frame": cfg.normals_frame, "scene": scene.to_dict(),
            **annotation_record(scene, out.instance, num_classes=len(self.class_names),
                                min_pixels=cfg.label_min_pixels()),
        }
        return {
            KEY: sample_key(index),
            "rgb.png": np.asarray(out.rgb, dtype=np.uint8),
            "depth.npy": np.asarray(out.depth, dtype=np.float32),
            "normals.npy": np.asarray(normals, dtype=np.float32),
            "instance.png": _uint16(out.instance, "instance"),
            "semantic.png": _uint16(out.semantic, "semantic"),
            "json": record,
        }

    def manifest_extra(self) -> dict[str, Any]:
        return {
            "class_names": self.class_names,
            "fields": list(SAMPLE_FIELDS),
            "normals_frame": self.config.normals_frame,
            "normals_axes": NORMALS_FRAMES[self.config.normals_frame].axes,
            "label_min_pixels": self.config.label_min_pixels(),
            "supersample": self.config.supersample,
            "sample_key": "index as 9 digits (000000012)",
            "sample_seed": "numpy.random.default_rng([seed, index]) drives sample_scene(sampler, seed, index)",
            "sampler": to_plain(scene_sampler(self.sampler).config),
        }


def _uint16(mask: np.ndarray, name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.min() < 0 or mask.max() > np.iinfo(np.uint16).max:
        raise ValueError(f"{name} mask values must fit uint16, got [{mask.min()}, {mask.max()}]")
    return mask.astype(np.uint16)

