"""The seeded scene sampler: (config, seed, index) -> Scene, and the complexity levels lv0 ... lv7.

Scene i is drawn from `numpy.random.default_rng([seed, index])` alone, so it is the same whatever order,
process or machine samples it. The recipe follows the paper's (BlenderProc) scenes, scaled to our object
sizes: objects of the chosen classes dropped onto the floor of an open box (rotated about z, optionally on a
random face, no two footprints overlapping), a point light and an emissive ceiling, random wall/floor
textures, and a camera on a shell around the objects looking at them with +-45 degrees of in-plane roll.

Levels fill the knobs left as None (explicit values win); each adds one source of variety to the one before:

    level | classes       | objects/scene | light  | walls & floor | object materials | resting pose
    ------+---------------+---------------+--------+---------------+------------------+-------------
    lv0   | basic (10)    | 1             | fixed  | fixed         | fixed            | upright
    lv1   | all (84)      | 1             | fixed  | fixed         | fixed            | upright
    lv2   | all           | 1             | random | fixed         | fixed            | upright
    lv3   | all           | 1             | random | random        | fixed            | upright
    lv4   | all           | 1             | random | random        | random           | upright
    lv5   | all           | 1-5           | random | random        | random           | upright
    lv6   | all           | 1-10          | random | random        | random           | upright
    lv7   | all           | 10            | random | random        | random           | random face

fixed light: one white point light at (0.7, -0.5, 1.4), intensity 2, white ceiling of strength 0.35.
random light: point light anywhere over the room (z 0.8..1.5), tinted colour (HSV saturation <= 0.5),
intensity 1..3; ceiling tinted likewise, strength 0.1..0.6.
fixed walls: plain light-grey walls, mid-grey floor. random walls: random colours, each surface with a
random texture (checker / stripes / noise or none) of random scale and second colour.
fixed materials: every object the same matte clay colour (shape is the only cue). random materials: random
colour, roughness, specular, metallic (1 in 5), texture (3 in 10).
upright: the class's canonical pose (glyphs stand on their baseline, everything else on its z-bottom) turned
about z. random face: one of the 6 axis-aligned faces down, then turned about z.
"""

from __future__ import annotations

import colorsys
import json
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np

from synth_render.scene3d.geometry import matrix_quaternion
from synth_render.scene3d.scene import (
    TEXTURE_KINDS,
    Camera,
    CeilingLight,
    Light,
    Material,
    Room,
    Scene,
    SceneObject,
    TextureSpec,
)
from synth_render.scene3d.shapes import ShapeClass, object_mesh, resolve_classes

CHOICES = {
    "light": ("fixed", "random"),
    "walls": ("fixed", "random"),
    "materials": ("fixed", "random"),
    "resting": ("upright", "random_face"),
}
LEVELS: dict[str, dict[str, Any]] = {
    "lv0": {
        "class_sets": ["basic"],
        "objects_per_scene": [1, 1],
        "light": "fixed",
        "walls": "fixed",
        "materials": "fixed",
        "resting": "upright",
    },
    "lv1": {
        "class_sets": ["all"],
        "objects_per_scene": [1, 1],
        "light": "fixed",
        "walls": "fixed",
        "materials": "fixed",
        "resting": "upright",
    },
    "lv2": {
        "class_sets": ["all"],
        "objects_per_scene": [1, 1],
        "light": "random",
        "walls": "fixed",
        "materials": "fixed",
        "resting": "upright",
    },
    "lv3": {
        "class_sets": ["all"],
        "objects_per_scene": [1, 1],
        "light": "random",
        "walls": "random",
        "materials": "fixed",
        "resting": "upright",
    },
    "lv4": {
        "class_sets": ["all"],
        "objects_per_scene": [1, 1],
        "light": "random",
        "walls": "random",
        "materials": "random",
        "resting": "upright",
    },
    "lv5": {
        "class_sets": ["all"],
        "objects_per_scene": [1, 5],
        "light": "random",
        "walls": "random",
        "materials": "random",
        "resting": "upright",
    },
    "lv6": {
        "class_sets": ["all"],
        "objects_per_scene": [1, 10],
        "light": "random",
        "walls": "random",
        "materials": "random",
        "resting": "upright",
    },
    "lv7": {
        "class_sets": ["all"],
        "objects_per_scene": [10, 10],
        "light": "random",
        "walls": "random",
        "materials": "random",
        "resting": "random_face",
    },
}
FIXED_OBJECT_MATERIAL = Material(color=(0.8, 0.55, 0.35), roughness=0.5, specular=0.3)
FIXED_LIGHT = Light(position=(0.7, -0.5, 1.4), color=(1.0, 1.0, 1.0), intensity=2.0)
FIXED_CEILING = CeilingLight(color=(1.0, 1.0, 1.0), strength=0.35)
FOOTPRINT_GAP = 0.005  # metres between neighbouring objects' footprint circles


@dataclass
class SceneSamplerConfig:
    """Knobs of the scene sampler. Knobs left None come from `level`; ranges are [low, high], uniform."""

    level: str = "lv7"
    class_sets: list[str] | None = None  # named sets of shapes.CLASS_SETS (basic, all, digits, ...)
    classes: list[str] = field(default_factory=list)  # single built-in class names, added to the sets
    mesh_folders: list[str] = field(default_factory=list)  # BOP-style folders: one class per OBJ/PLY file
    objects_per_scene: list[int] | None = None
    light: str | None = None  # fixed | random
    walls: str | None = None  # fixed | random (wall and floor colours and textures)
    materials: str | None = None  # fixed | random (object materials)
    resting: str | None = None  # upright | random_face
    object_radius: list[float] = field(default_factory=lambda: [0.05, 0.1])  # bounding radius, metres
    placement_radius: float = 0.3  # objects' footprint centres start inside this disc (grows when crowded)
    camera_radius: list[float] = field(default_factory=lambda: [0.5, 1.0])  # distance to the look-at point
    camera_elevation_deg: list[float] = field(default_factory=lambda: [5.0, 89.0])
    roll_deg: float = 45.0  # in-plane rotation, uniform in [-roll, roll]
    fov_deg: float = 40.0
    room_half_size: float = 1.6
    room_height: float = 1.6
    max_placement_tries: int = 200

    def resolved(self) -> "SceneSamplerConfig":
        """A copy with the level's values filled in where the knobs are None, validated."""
        if self.level not in LEVELS:
            raise ValueError(f"unknown scene level {self.level!r}; valid: {', '.join(LEVELS)}")
        preset = LEVELS[self.level]
        filled = replace(self, **{k: v for k, v in preset.items() if getattr(self, k) is None})
        filled.validate()
        return filled

    def validate(self) -> None:
        for key, valid in CHOICES.items():
            if getattr(self, key) not in valid:
                raise ValueError(f"scene sampler {key} must be one of {', '.join(valid)}, got {getattr(self, key)!r}")
        low, high = self.objects_per_scene or (0, 0)
        if not 1 <= low <= high:
            raise ValueError(
                f"objects_per_scene must be [low, high] with 1 <= low <= high, got {self.objects_per_scene}"
            )
        for key, minimum in (("object_radius", 1e-4), ("camera_radius", 1e-3), ("camera_elevation_deg", -90.0)):
            value = getattr(self, key)
            if len(value) != 2 or not minimum <= value[0] <= value[1]:
                raise ValueError(f"{key} must be a range [low, high] with {minimum} <= low <= high, got {value}")
        if self.camera_elevation_deg[1] > 90:
            raise ValueError(f"camera_elevation_deg must lie in [-90, 90], got {self.camera_elevation_deg}")
        for key in ("placement_radius", "room_half_size", "room_height"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")
        if not 0 < self.fov_deg < 180:
            raise ValueError(f"fov_deg must lie in (0, 180), got {self.fov_deg}")
        if self.roll_deg < 0:
            raise ValueError(f"roll_deg must be >= 0, got {self.roll_deg}")
        if self.max_placement_tries < 1:
            raise ValueError(f"max_placement_tries must be >= 1, got {self.max_placement_tries}")
        reach = self.placement_radius + self.camera_radius[1] + self.object_radius[1]
        if reach >= self.room_half_size:
            raise ValueError(
                f"room_half_size {self.room_half_size} must exceed placement_radius + camera_radius[1] + "
                f"object_radius[1] = {reach:.3f} so the camera stays inside the room"
            )
        for shape_class in resolve_classes(self.classes, self.class_sets, self.mesh_folders):
            object_mesh(shape_class.kind, shape_class.params)  # unknown kinds / bad files fail now, not mid-run


class SceneSampler:
    """A resolved, validated config and its class list; `sample(seed, index)` draws one scene."""

    def __init__(self, config: SceneSamplerConfig) -> None:
        self.config = config.resolved()
        self.classes: list[ShapeClass] = resolve_classes(
            self.config.classes, self.config.class_sets, self.config.mesh_folders
        )

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    def sample(self, seed: int, index: int) -> Scene:
        rng = np.random.default_rng([int(seed), int(index)])
        cfg = self.config
        room = _room(cfg, rng)
        lights, ceiling = _lighting(cfg, rng)
        low, high = cfg.objects_per_scene  # type: ignore[misc]
        count = int(rng.integers(low, high + 1))
        chosen = [self.classes[i] for i in rng.integers(0, len(self.classes), size=count)]
        objects = _place_objects(cfg, chosen, rng, self.class_names)
        camera = _camera(cfg, objects, rng)
        return Scene(
            objects=tuple(objects),
            camera=camera,
            room=room,
            lights=lights,
            ceiling=ceiling,
            seed=int(seed),
            index=int(index),
            level=cfg.level,
        )


@lru_cache(maxsize=16)
def _sampler(config_repr: str, config_json: str) -> SceneSampler:
    return SceneSampler(SceneSamplerConfig(**json.loads(config_json)))


_BY_REPR: dict[str, SceneSampler] = {}


def scene_sampler(config: SceneSamplerConfig) -> SceneSampler:
    """The (cached) sampler for a config: validation and class resolution happen once per config value."""
    key = repr(config)  # cheap, and covers every field: a mutated config gets its own sampler
    if key not in _BY_REPR:
        if len(_BY_REPR) > 64:
            _BY_REPR.clear()
        _BY_REPR[key] = _sampler(key, json.dumps(asdict(config), sort_keys=True))
    return _BY_REPR[key]


def sample_scene(config: SceneSamplerConfig, seed: int, index: int) -> Scene:
    """Scene `index` of the stream `seed`; depends only on (config, seed, index)."""
    return scene_sampler(config).sample(seed, index)


def _random_color(
    rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]
) -> tuple[float, float, float]:
    rgb = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*saturation), rng.uniform(*value))
    return tuple(float(c) for c in rgb)  # type: ignore[return-value]


def _random_texture(rng: np.random.Generator, scale: tuple[float, float]) -> TextureSpec:
    return TextureSpec(
        kind=str(TEXTURE_KINDS[rng.integers(len(TEXTURE_KINDS))]),
        color=_random_color(rng, (0.0, 1.0), (0.05, 1.0)),
        scale=float(rng.uniform(*scale)),
        seed=int(rng.integers(2**31)),
    )


def _room(cfg: SceneSamplerConfig, rng: np.random.Generator) -> Room:
    size = dict(half_x=cfg.room_half_size, half_y=cfg.room_half_size, height=cfg.room_height)
    if cfg.walls == "fixed":
        return Room(**size)
    surfaces = []
    for _ in range(2):
        texture = _random_texture(rng, (0.05, 0.4)) if rng.uniform() < 0.75 else None
        surfaces.append(
            Material(
                color=_random_color(rng, (0.0, 0.8), (0.2, 0.95)),
                roughness=float(rng.uniform(0.5, 1)),
                specular=float(rng.uniform(0, 0.2)),
                texture=texture,
            )
        )
    return Room(**size, floor=surfaces[0], walls=surfaces[1])


def _lighting(cfg: SceneSamplerConfig, rng: np.random.Generator) -> tuple[tuple[Light, ...], CeilingLight]:
    if cfg.light == "fixed":
        return (FIXED_LIGHT,), FIXED_CEILING
    reach = 0.6 * cfg.room_half_size
    position = (
        float(rng.uniform(-reach, reach)),
        float(rng.uniform(-reach, reach)),
        float(rng.uniform(0.5, 0.95) * cfg.room_height),
    )
    light = Light(position=position, color=_random_color(rng, (0, 0.5), (1, 1)), intensity=float(rng.uniform(1, 3)))
    ceiling = CeilingLight(color=_random_color(rng, (0, 0.5), (1, 1)), strength=float(rng.uniform(0.1, 0.6)))
    return (light,), ceiling


def _object_material(cfg: SceneSamplerConfig, rng: np.random.Generator) -> Material:
    if cfg.materials == "fixed":
        return FIXED_OBJECT_MATERIAL
    color = _random_color(rng, (0.0, 1.0), (0.15, 1.0))
    metallic = float(rng.uniform(0.5, 1.0)) if rng.uniform() < 0.2 else 0.0
    texture = _random_texture(rng, (0.15, 0.8)) if rng.uniform() < 0.3 else None
    return Material(
        color=color,
        roughness=float(rng.uniform(0.05, 1.0)),
        specular=float(rng.uniform(0, 1)),
        metallic=metallic,
        texture=texture,
    )


def _axis_rotation(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


# Rotations that put each of the object's 6 axis-aligned faces down (-z, +z, -x, +x, -y, +y).
FACE_DOWN = [
    np.eye(3),
    _axis_rotation(0, np.pi),
    _axis_rotation(1, -np.pi / 2),
    _axis_rotation(1, np.pi / 2),
    _axis_rotation(0, np.pi / 2),
    _axis_rotation(0, -np.pi / 2),
]


def _rest_rotation(shape_class: ShapeClass, cfg: SceneSamplerConfig, rng: np.random.Generator) -> np.ndarray:
    if cfg.resting == "random_face":
        base = FACE_DOWN[int(rng.integers(6))]
    elif shape_class.kind == "glyph":
        base = _axis_rotation(0, np.pi / 2)  # stand the letter up: its outline's y becomes world z
    else:
        base = np.eye(3)
    return _axis_rotation(2, float(rng.uniform(0, 2 * np.pi))) @ base


def _place_objects(
    cfg: SceneSamplerConfig, chosen: list[ShapeClass], rng: np.random.Generator, class_names: list[str]
) -> list[SceneObject]:
    """Drop each object on the floor at a free spot: footprint circles (xy) never overlap."""
    placed: list[tuple[np.ndarray, float]] = []  # footprint centre, radius
    objects = []
    limit = cfg.room_half_size - cfg.camera_radius[1] - cfg.object_radius[1]
    for shape_class in chosen:
        vertices, _ = object_mesh(shape_class.kind, shape_class.params)
        scale = float(rng.uniform(*cfg.object_radius))
        rotation = _rest_rotation(shape_class, cfg, rng)
        world = vertices @ (rotation * scale).T
        lo, hi = world.min(axis=0), world.max(axis=0)
        offset = (lo[:2] + hi[:2]) / 2
        radius = float(np.linalg.norm(world[:, :2] - offset, axis=1).max())
        # All tries drawn at once (a fixed number of draws per object); the disc widens every 20 failed tries.
        tries = cfg.max_placement_tries
        angle = rng.uniform(0, 2 * np.pi, size=tries)
        spread = np.minimum(cfg.placement_radius * 1.15 ** (np.arange(tries) // 20), max(limit, cfg.placement_radius))
        r = spread * np.sqrt(rng.uniform(size=tries))
        candidates = np.stack([r * np.cos(angle), r * np.sin(angle)], -1)
        if placed:
            centres = np.array([c for c, _ in placed])
            radii = np.array([rc for _, rc in placed])
            gaps = np.linalg.norm(candidates[:, None, :] - centres[None], axis=2) - radii - radius - FOOTPRINT_GAP
            free = np.flatnonzero((gaps >= 0).all(axis=1))
        else:
            free = np.arange(1)
        if free.size == 0:
            continue  # no free spot: this object is left out (the scene records what was placed)
        centre = candidates[free[0]]
        placed.append((centre, radius))
        position = (float(centre[0] - offset[0]), float(centre[1] - offset[1]), float(-lo[2]))
        objects.append(
            SceneObject(
                class_name=shape_class.name,
                class_id=class_names.index(shape_class.name),
                kind=shape_class.kind,
                params=json.loads(json.dumps(shape_class.params)),
                position=position,
                rotation=matrix_quaternion(rotation),
                scale=scale,
                material=_object_material(cfg, rng),
            )
        )
    return objects


def _camera(cfg: SceneSamplerConfig, objects: list[SceneObject], rng: np.random.Generator) -> Camera:
    """A camera on a shell around the objects' centroid, never inside an object's bounding sphere."""
    centres = np.array([o.position for o in objects]) if objects else np.zeros((1, 3))
    target = centres.mean(axis=0)
    for _ in range(100):
        elevation = np.deg2rad(rng.uniform(*cfg.camera_elevation_deg))
        azimuth = rng.uniform(0, 2 * np.pi)
        distance = rng.uniform(*cfg.camera_radius)
        position = target + distance * np.array(
            [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
        )
        clear = all(np.linalg.norm(position - np.array(o.position)) > 1.5 * o.scale + 0.02 for o in objects)
        if clear and position[2] > 0.01:
            break
    roll = float(rng.uniform(-cfg.roll_deg, cfg.roll_deg))
    return Camera(
        position=tuple(float(v) for v in position),
        look_at=tuple(float(v) for v in target),  # type: ignore[arg-type]
        fov_deg=cfg.fov_deg,
        roll_deg=roll,
    )
