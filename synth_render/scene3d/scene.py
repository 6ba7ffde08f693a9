"""A 3D scene as plain data: what every renderer draws and every dataset writer stores next to the image.

Conventions (shared by all renderers, see `geometry.py` for the maths):
- World: right-handed, metres, z up, ground plane z = 0. The room is an open-topped box of 5 planes (floor and
  4 walls, normals pointing inwards) centred on the origin; objects rest on the floor inside it.
- An object's mesh lives in its own normalised frame (centred, bounding radius 1; see `shapes.object_mesh`);
  its pose maps it to the world: `world = position + R(rotation) @ (scale * local)`, rotation a unit
  quaternion (w, x, y, z), scale = metres per object unit = the object's bounding radius in metres.
- Light: point lights plus an optional emissive ceiling (a rectangle covering the room at z = room.height,
  facing down) that fills the room with soft light; the ceiling is a light, not geometry, so no renderer
  reports it in depth/instance outputs.
- Procedural textures are functions of a 3D point in texture space: object space (normalised frame) for
  objects, world metres for the room (`textures.evaluate_texture` is the reference implementation).

Every field is a JSON type or a dataclass of them, so `Scene.from_dict(scene.to_dict()) == scene` exactly
and a dataset can store the scene that produced each image.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

Vec3 = tuple[float, float, float]
SCENE_FORMAT_VERSION = 1
TEXTURE_KINDS = ("checker", "stripes", "noise")


def _vec(values: Any, length: int = 3) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if len(out) != length:
        raise ValueError(f"expected {length} numbers, got {list(values)!r}")
    return out


@dataclass(frozen=True)
class TextureSpec:
    """A procedural texture that mixes the material colour with `color` (see `textures.evaluate_texture`).

    checker: 3D checkerboard of cell size `scale`; stripes: bands of width `scale` across a direction drawn
    from `seed`; noise: a smooth sum of 4 sinusoids (wavelength about `scale`) with directions/phases from `seed`.
    """

    kind: str = "checker"
    color: Vec3 = (0.1, 0.1, 0.1)
    scale: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in TEXTURE_KINDS:
            raise ValueError(f"unknown texture kind {self.kind!r}; valid: {', '.join(TEXTURE_KINDS)}")
        if not self.scale > 0:
            raise ValueError(f"texture scale must be positive, got {self.scale}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TextureSpec":
        return cls(
            kind=str(data["kind"]), color=_vec(data["color"]), scale=float(data["scale"]), seed=int(data["seed"])
        )


@dataclass(frozen=True)
class Material:
    """Surface appearance: base colour (linear RGB in [0, 1]), Blinn-Phong style specular, optional texture."""

    color: Vec3 = (0.6, 0.6, 0.6)
    roughness: float = 0.5  # 0 = mirror-like highlight, 1 = matte
    specular: float = 0.3  # strength of the highlight, 0..1
    metallic: float = 0.0  # 0 = dielectric, 1 = metal (highlight tinted by colour, no diffuse)
    texture: TextureSpec | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Material":
        texture = data.get("texture")
        return cls(
            color=_vec(data["color"]),
            roughness=float(data["roughness"]),
            specular=float(data["specular"]),
            metallic=float(data["metallic"]),
            texture=TextureSpec.from_dict(texture) if texture is not None else None,
        )


@dataclass(frozen=True)
class SceneObject:
    """One object instance: which shape (kind + params), its class, its pose and its material."""

    class_name: str
    class_id: int
    kind: str
    params: dict[str, Any]
    position: Vec3 = (0.0, 0.0, 0.0)
    rotation: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)  # unit quaternion (w, x, y, z)
    scale: float = 0.1  # bounding radius in metres
    material: Material = field(default_factory=Material)

    def __hash__(self) -> int:  # params is a dict; identity hashing is enough for a frozen record
        return id(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SceneObject":
        return cls(
            class_name=str(data["class_name"]),
            class_id=int(data["class_id"]),
            kind=str(data["kind"]),
            params=json.loads(json.dumps(data["params"])),
            position=_vec(data["position"]),
            rotation=_vec(data["rotation"], 4),
            scale=float(data["scale"]),  # type: ignore[arg-type]
            material=Material.from_dict(data["material"]),
        )


@dataclass(frozen=True)
class Light:
    """A point light; radiance at distance d is color * intensity / d^2."""

    position: Vec3 = (0.5, -0.5, 1.4)
    color: Vec3 = (1.0, 1.0, 1.0)
    intensity: float = 2.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Light":
        return cls(position=_vec(data["position"]), color=_vec(data["color"]), intensity=float(data["intensity"]))


@dataclass(frozen=True)
class CeilingLight:
    """The emissive ceiling: a downward-facing area light over the whole room at z = room.height."""

    color: Vec3 = (1.0, 1.0, 1.0)
    strength: float = 0.35

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CeilingLight":
        return cls(color=_vec(data["color"]), strength=float(data["strength"]))


@dataclass(frozen=True)
class Camera:
    """A pinhole camera. `fov_deg` is the vertical field of view; `roll_deg` turns the image content
    counter-clockwise about the viewing axis (see `geometry.camera_basis`)."""

    position: Vec3 = (1.0, 0.0, 0.6)
    look_at: Vec3 = (0.0, 0.0, 0.05)
    up: Vec3 = (0.0, 0.0, 1.0)
    fov_deg: float = 40.0
    roll_deg: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Camera":
        return cls(
            position=_vec(data["position"]),
            look_at=_vec(data["look_at"]),
            up=_vec(data["up"]),
            fov_deg=float(data["fov_deg"]),
            roll_deg=float(data["roll_deg"]),
        )


@dataclass(frozen=True)
class Room:
    """An open-topped box: floor [-half_x, half_x] x [-half_y, half_y] at z = 0 and 4 walls up to `height`."""

    half_x: float = 1.6
    half_y: float = 1.6
    height: float = 1.6
    floor: Material = field(default_factory=lambda: Material(color=(0.5, 0.5, 0.5), specular=0.05, roughness=0.9))
    walls: Material = field(default_factory=lambda: Material(color=(0.7, 0.7, 0.7), specular=0.0, roughness=1.0))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Room":
        return cls(
            half_x=float(data["half_x"]),
            half_y=float(data["half_y"]),
            height=float(data["height"]),
            floor=Material.from_dict(data["floor"]),
            walls=Material.from_dict(data["walls"]),
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class Scene:
    """Everything needed to render one image; `seed`, `index` and `level` say where it came from."""

    objects: tuple[SceneObject, ...]
    camera: Camera
    room: Room = field(default_factory=Room)
    lights: tuple[Light, ...] = (Light(),)
    ceiling: CeilingLight | None = field(default_factory=CeilingLight)
    seed: int = 0
    index: int = 0
    level: str = ""
    version: int = SCENE_FORMAT_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        object.__setattr__(self, "lights", tuple(self.lights))

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Scene":
        version = int(data.get("version", SCENE_FORMAT_VERSION))
        if version != SCENE_FORMAT_VERSION:
            raise ValueError(
                f"scene format version {version} is not supported (this code reads {SCENE_FORMAT_VERSION})"
            )
        ceiling = data.get("ceiling")
        return cls(
            objects=tuple(SceneObject.from_dict(o) for o in data["objects"]),
            camera=Camera.from_dict(data["camera"]),
            room=Room.from_dict(data["room"]),
            lights=tuple(Light.from_dict(light) for light in data["lights"]),
            ceiling=CeilingLight.from_dict(ceiling) if ceiling is not None else None,
            seed=int(data["seed"]),
            index=int(data["index"]),
            level=str(data["level"]),
            version=version,
        )

    @classmethod
    def from_json(cls, text: str) -> "Scene":
        return cls.from_dict(json.loads(text))
