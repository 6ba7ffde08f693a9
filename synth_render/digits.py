"""Synthetic handwritten-style digits: glyphs from offline fonts, randomly distorted, MNIST-like framing.

Each sample is drawn from `numpy.random.default_rng([seed, index])` alone, so sample i is the same whatever
order, process or machine renders it. The pipeline: draw the glyph large (with optional stroke thickening),
fit it into a box of `glyph_fraction` of the image keeping its aspect (as MNIST fits digits in 20 of 28
pixels), apply rotation / shear / scale and a smooth elastic displacement, centre it by its centre of mass,
downsample, then composite over a background (level, optional texture) with blur and pixel noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from synth_render.dataset import RenderJob
from synth_render.fonts import FONT_SETS, find_fonts
from synth_render.registry import RENDERERS

SUPERSAMPLE = 2  # draw and distort at 2x resolution, then area-downsample: smooth anti-aliased strokes


@dataclass
class DigitRendererConfig:
    """Knobs of the digit renderer; ranges are [low, high] and sampled uniformly per image."""

    name: str = "digits"
    seed: int = 0
    image_size: int = 28
    fonts: str = "bundled"  # bundled | system | all (see synth_render.fonts)
    glyph_fraction: list[float] = field(default_factory=lambda: [0.6, 0.78])
    stroke_width: list[float] = field(default_factory=lambda: [0.0, 0.04])  # x glyph height; thick strokes hurt
    rotation_deg: float = 15.0
    shear: float = 0.3
    aspect: list[float] = field(default_factory=lambda: [0.8, 1.2])
    elastic_alpha: float = 1.5  # displacement, output pixels
    elastic_sigma: float = 2.0  # smoothness of the displacement field, output pixels
    jitter_px: float = 1.0
    foreground: list[float] = field(default_factory=lambda: [0.75, 1.0])
    background: list[float] = field(default_factory=lambda: [0.0, 0.15])
    texture_prob: float = 0.3
    texture_strength: float = 0.15
    blur_sigma: list[float] = field(default_factory=lambda: [0.0, 0.7])
    noise_std: float = 0.03
    shard_size: int = 1000

    def validate(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"renderer.image_size must be >= 8, got {self.image_size}")
        if self.fonts not in FONT_SETS:
            raise ValueError(f"renderer.fonts must be one of {', '.join(FONT_SETS)}, got {self.fonts!r}")
        for key in ("glyph_fraction", "stroke_width", "aspect", "foreground", "background", "blur_sigma"):
            low, high = getattr(self, key)
            if not 0 <= low <= high:
                raise ValueError(f"renderer.{key} must be a range [low, high] with 0 <= low <= high")
        if self.shard_size <= 0:
            raise ValueError(f"renderer.shard_size must be positive, got {self.shard_size}")


@dataclass
class DigitRenderJob(RenderJob):
    """`lab render` (digits are the default renderer): npz shards, a contact sheet sorted by label."""

    renderer: DigitRendererConfig = field(default_factory=DigitRendererConfig)
    out: str = "runs/render/digits"


@lru_cache(maxsize=256)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def _glyph_mask(char: str, font_path: Path, height: int, stroke: int) -> np.ndarray:
    """The glyph drawn white on black, cropped to its ink."""
    font = _font(font_path, height)
    canvas = Image.new("L", (height * 3, height * 3), 0)
    ImageDraw.Draw(canvas).text((height, height // 2), char, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    ink = np.asarray(canvas, dtype=np.float32) / 255.0
    rows, cols = np.nonzero(ink > 0.05)
    return ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _uniform(rng: np.random.Generator, bounds: list[float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


@RENDERERS.register("digits")
class DigitRenderer:
    """Renders digit `index % 10` (classes stay balanced in every prefix) for sample `index`."""

    num_classes = 10
    job = DigitRenderJob

    def __init__(self, config: DigitRendererConfig) -> None:
        config.validate()
        self.config = config
        self.fonts = find_fonts(config.fonts, "0123456789")

    def __call__(self, index: int) -> dict[str, np.ndarray | int]:
        image, label = self.render(index)
        return {"image": image, "label": label}

    def render(self, index: int) -> tuple[np.ndarray, int]:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, index])
        label = index % 10
        big = cfg.image_size * SUPERSAMPLE
        box = _uniform(rng, cfg.glyph_fraction) * big

        font_path = self.fonts[rng.integers(len(self.fonts))]
        draw_height = int(round(box * 1.4))  # font size > ink height; the crop below removes the margin
        glyph = _glyph_mask(str(label), font_path, draw_height, int(round(_uniform(rng, cfg.stroke_width) * draw_height)))
        glyph = self._distort(glyph, box, big, rng)
        glyph = self._centre(glyph, big, rng)
        small = glyph.reshape(cfg.image_size, SUPERSAMPLE, cfg.image_size, SUPERSAMPLE).mean(axis=(1, 3))
        return self._composite(small, rng), label

    def _distort(self, glyph: np.ndarray, box: float, big: int, rng: np.random.Generator) -> np.ndarray:
        """Fit into the box, then one affine map (scale, shear, rotation) and a smooth elastic field."""
        cfg = self.config
        scale = box / max(glyph.shape)
        aspect = _uniform(rng, cfg.aspect)
        angle = np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
        shear = rng.uniform(-cfg.shear, cfg.shear)
        cos, sin = np.cos(angle), np.sin(angle)
        # forward map output <- input; rows = y, cols = x
        forward = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, 0.0], [shear, 1.0]]) @ np.diag(
            [scale, scale * aspect]
        )
        inverse = np.linalg.inv(forward)
        centre_in = (np.array(glyph.shape) - 1) / 2
        centre_out = np.array([big - 1, big - 1]) / 2
        offset = centre_in - inverse @ centre_out
        warped = ndimage.affine_transform(glyph, inverse, offset=offset, output_shape=(big, big), order=1)
        if cfg.elastic_alpha > 0:
            sigma = cfg.elastic_sigma * SUPERSAMPLE
            alpha = cfg.elastic_alpha * SUPERSAMPLE
            fields = []
            for _ in range(2):
                noise = ndimage.gaussian_filter(rng.uniform(-1, 1, (big, big)), sigma, mode="constant")
                fields.append(noise / (np.abs(noise).max() + 1e-8) * alpha)
            rows, cols = np.meshgrid(np.arange(big), np.arange(big), indexing="ij")
            warped = ndimage.map_coordinates(warped, [rows + fields[0], cols + fields[1]], order=1)
        return np.clip(warped, 0.0, 1.0)

    def _centre(self, glyph: np.ndarray, big: int, rng: np.random.Generator) -> np.ndarray:
        """Move the centre of mass to the image centre (as MNIST does), plus a small jitter."""
        mass = glyph.sum()
        if mass <= 0:
            return glyph
        com = np.array(ndimage.center_of_mass(glyph))
        target = (big - 1) / 2 + rng.uniform(-1, 1, 2) * self.config.jitter_px * SUPERSAMPLE
        return ndimage.shift(glyph, target - com, order=1, mode="constant")

    def _composite(self, ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        size = cfg.image_size
        background = np.full((size, size), _uniform(rng, cfg.background))
        if rng.random() < cfg.texture_prob:
            texture = ndimage.gaussian_filter(rng.standard_normal((size, size)), rng.uniform(0.5, 3.0))
            background += cfg.texture_strength * texture / (texture.std() + 1e-8)
        image = background * (1 - ink) + _uniform(rng, cfg.foreground) * ink
        blur = _uniform(rng, cfg.blur_sigma)
        if blur > 0:
            image = ndimage.gaussian_filter(image, blur)
        image = image + rng.normal(0, cfg.noise_std, image.shape)
        return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
